"""Evaluation splits: leave-one-out, global temporal, cold-item, cold-mixed, and the split the data came with
(``given``). Deterministic given the data and the seed.

Every split keeps the dataset's vocabularies, so indices mean the same item in train, validation and test; a
model fitted on ``split.train`` scores the targets of ``split.valid`` and ``split.test`` directly. Validation
is for model selection and early stopping; test is read once.

Impressions (:attr:`Dataset.impressions`) are never targets, since they are not in the events. A part's
impressions are those shown before its cut (per user before their last training event for leave-one-out and
cold-mixed, by time for temporal), none of a list a held-out event came from (its ``list_id``) and none of a
held-out item, so that a ranker trained on ``train`` never sees the list its target was shown in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.schema import SPLIT_COLUMN


@dataclass(frozen=True)
class EvalSet:
    """What a model is asked and what it should answer.

    ``users[i]`` (a user index) has seen ``history[i]`` (item indices, oldest first) and should next interact
    with ``targets[i]``. ``history`` is both the model's input and the default set of items excluded from
    ranking.
    """

    name: str
    users: np.ndarray  # (n,) int64 user indices
    history: Ragged  # item indices, chronological
    targets: Ragged  # item indices to retrieve

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, rows: np.ndarray) -> EvalSet:
        return EvalSet(self.name, self.users[rows], self.history.take(rows), self.targets.take(rows))


@dataclass(frozen=True)
class Split:
    """A protocol applied to a dataset.

    ``train`` is what models fit on; ``train_valid`` adds the validation events (to refit before testing if a
    protocol asks for it). ``params`` records the protocol's settings, reported next to every number.
    """

    protocol: str
    train: Dataset
    train_valid: Dataset
    valid: EvalSet
    test: EvalSet
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        p = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (
            f"{self.protocol}{f' ({p})' if p else ''}: train {self.train.n_events:,} events, "
            f"valid {len(self.valid):,} users, test {len(self.test):,} users"
        )


def _eval_set(name: str, users: np.ndarray, hist: Ragged, target_user: np.ndarray, target_item: np.ndarray,
              n_user_rows: int) -> EvalSet:
    """Group target (user, item) pairs, already ordered by user, into an EvalSet over ``users``."""
    targets_all = Ragged.from_groups(target_user, target_item.astype(np.int64), n_user_rows)
    return EvalSet(name, users, hist.take(users), targets_all.take(users))


def _shown_before(ds: Dataset, held: pl.DataFrame, cut: pl.DataFrame | None = None,
                  before: int | None = None, held_items: pl.Expr | None = None) -> pl.DataFrame:
    """The impressions a model fitted on a part may read: none of a list that a held-out event (``held``)
    came from, none shown at or after the user's cut-off time (``cut``: ``user_idx``, ``_cut``; users
    without one keep theirs) or at or after ``before``, none of a held-out item. The list shown just before
    a held-out event may hold its target, and must not reach training."""
    imp = ds.impressions
    if imp.height == 0:
        return imp
    cols = imp.columns
    if held_items is not None:
        imp = imp.filter(~held_items)
    if before is not None:
        imp = imp.filter(pl.col("timestamp") < before)
    if cut is not None:
        imp = imp.join(cut.select("user_idx", "_cut"), on="user_idx", how="left", maintain_order="left")
        imp = imp.filter(pl.col("_cut").is_null() | (pl.col("timestamp") < pl.col("_cut")))
    lists = held.filter(pl.col("list_id").is_not_null()).select("user_idx", "list_id").unique()
    if lists.height:
        imp = imp.join(lists, on=["user_idx", "list_id"], how="anti", maintain_order="left")
    return imp.select(cols)


def _position_columns(events: pl.DataFrame) -> pl.DataFrame:
    return events.with_columns(
        (pl.len().over("user_idx") - 1 - pl.int_range(pl.len()).over("user_idx")).alias("_from_end")
    )


def leave_one_out(ds: Dataset, min_events: int = 3) -> Split:
    """Each user's last event is the test target and the one before it the validation target.

    Users with fewer than ``min_events`` events stay wholly in training and are not evaluated. The test
    history is the training history plus the validation item, as in SASRec and its successors.
    """
    if min_events < 3:
        raise ValueError("leave-one-out needs at least 3 events per evaluated user (train, valid, test)")
    train, train_valid, valid, test = _last_two_held_out(ds, min_events)
    return Split("leave-one-out", train, train_valid, valid, test, {"min_events": min_events})


def _last_two_held_out(ds: Dataset, min_events: int, held_items: pl.Expr | None = None
                       ) -> tuple[Dataset, Dataset, EvalSet, EvalSet]:
    """Each evaluated user's last event is the test target and the one before it the validation target
    (users with fewer than ``min_events`` events stay in training). Events matching ``held_items`` are left
    out of training and of every history, wherever they are, but stay targets."""
    ev = _position_columns(ds.events).with_columns(pl.len().over("user_idx").alias("_n"))
    evaluated = pl.col("_n") >= min_events
    test_ev = ev.filter(evaluated & (pl.col("_from_end") == 0))
    valid_ev = ev.filter(evaluated & (pl.col("_from_end") == 1))
    kept = ev if held_items is None else ev.filter(~held_items)
    train_ev = kept.filter(~evaluated | (pl.col("_from_end") >= 2))
    train_valid_ev = kept.filter(~evaluated | (pl.col("_from_end") >= 1))
    cols = ds.events.columns
    # Training's impressions end before each evaluated user's last training event (the lists after it lead
    # to the held-out ones); train_valid's, before the validation event.
    last_train = ev.filter(evaluated & (pl.col("_from_end") == 2)).select(
        "user_idx", pl.col("timestamp").alias("_cut"))
    train = ds.with_events(train_ev.select(cols), impressions=_shown_before(
        ds, pl.concat([valid_ev, test_ev]), last_train, held_items=held_items))
    train_valid = ds.with_events(train_valid_ev.select(cols), impressions=_shown_before(
        ds, test_ev, valid_ev.select("user_idx", pl.col("timestamp").alias("_cut")), held_items=held_items))
    users = test_ev["user_idx"].to_numpy().astype(np.int64)
    n_rows = ds.user_map.size
    valid = _eval_set("valid", users, train.sequences, valid_ev["user_idx"].to_numpy(),
                      valid_ev["item_idx"].to_numpy(), n_rows)
    test = _eval_set("test", users, train_valid.sequences, test_ev["user_idx"].to_numpy(),
                     test_ev["item_idx"].to_numpy(), n_rows)
    return train, train_valid, valid, test


def _window_targets(window: pl.DataFrame, history: Dataset, name: str, exclude_seen: bool,
                    n_rows: int) -> EvalSet:
    """Distinct items each user touched in a time window, optionally without those already in their
    history."""
    w = window.select("user_idx", "item_idx").unique(maintain_order=True)
    if exclude_seen:
        seen = history.events.select("user_idx", "item_idx").unique()
        w = w.join(seen, on=["user_idx", "item_idx"], how="anti", maintain_order="left")
    with_history = np.flatnonzero(history.sequences.lengths > 0).astype(np.int32)
    w = w.filter(pl.col("user_idx").is_in(pl.Series(with_history).implode()))
    w = w.sort("user_idx", maintain_order=True)
    users = w["user_idx"].unique(maintain_order=True).to_numpy().astype(np.int64)
    return _eval_set(
        name, users, history.sequences, w["user_idx"].to_numpy(), w["item_idx"].to_numpy(), n_rows
    )


def temporal(
    ds: Dataset, valid_frac: float = 0.1, test_frac: float = 0.1, exclude_seen_targets: bool = True
) -> Split:
    """A global split by time: the last ``test_frac`` of events (by timestamp) are test, the ``valid_frac``
    before them validation. Targets are the distinct items a user touched in the window (not already in their
    history, by default); only users with history before the window are evaluated. No event after a cut-off is
    ever seen in training, so this protocol has no leakage from the future.
    """
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ValueError("valid_frac and test_frac must be in (0, 1) with a sum below 1")
    ts = np.sort(ds.events["timestamp"].to_numpy())
    t_valid = int(ts[int(len(ts) * (1 - valid_frac - test_frac))])
    t_test = int(ts[int(len(ts) * (1 - test_frac))])
    cols = ds.events.columns
    later = ds.events.filter(pl.col("timestamp") >= t_valid)
    train = ds.with_events(ds.events.filter(pl.col("timestamp") < t_valid).select(cols),
                           impressions=_shown_before(ds, later, before=t_valid))
    train_valid = ds.with_events(ds.events.filter(pl.col("timestamp") < t_test).select(cols),
                                 impressions=_shown_before(ds, later.filter(pl.col("timestamp") >= t_test),
                                                           before=t_test))
    n_rows = ds.user_map.size
    valid = _window_targets(
        ds.events.filter((pl.col("timestamp") >= t_valid) & (pl.col("timestamp") < t_test)),
        train,
        "valid",
        exclude_seen_targets,
        n_rows,
    )
    test = _window_targets(ds.events.filter(pl.col("timestamp") >= t_test), train_valid, "test",
                           exclude_seen_targets, n_rows)
    return Split("temporal", train, train_valid, valid, test,
                 {"valid_frac": valid_frac, "test_frac": test_frac, "t_valid": t_valid, "t_test": t_test,
                  "exclude_seen_targets": exclude_seen_targets})


def cold_item(ds: Dataset, cold_frac: float = 0.1, seed: int = 0) -> Split:
    """Hold out a random ``cold_frac`` of the items that have events as test items and another ``cold_frac``
    as validation items; no event on a held-out item is in training.

    A user is evaluated on the held-out items they interacted with, given their whole history of training
    items. Only text (or other content) can rank such items: this is the protocol for cold start.
    """
    if not 0 < cold_frac < 0.5:
        raise ValueError("cold_frac must be in (0, 0.5)")
    active = np.flatnonzero(ds.item_popularity > 0)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(active)
    n_cold = max(1, int(round(len(active) * cold_frac)))
    test_items, valid_items = np.sort(perm[:n_cold]), np.sort(perm[n_cold : 2 * n_cold])
    cold = np.concatenate([test_items, valid_items])
    cols = ds.events.columns
    is_cold = pl.col("item_idx").is_in(pl.Series(cold.astype(np.int32)).implode())
    train = ds.with_events(ds.events.filter(~is_cold).select(cols),
                           impressions=_shown_before(ds, ds.events.filter(is_cold), held_items=is_cold))
    n_rows = ds.user_map.size

    def window(items: np.ndarray, name: str) -> EvalSet:
        w = ds.events.filter(pl.col("item_idx").is_in(pl.Series(items.astype(np.int32)).implode()))
        return _window_targets(w, train, name, True, n_rows)

    valid, test = window(valid_items, "valid"), window(test_items, "test")
    return Split("cold-item", train, train, valid, test,
                 {"cold_frac": cold_frac, "seed": seed, "n_test_items": int(len(test_items)),
                  "n_valid_items": int(len(valid_items))})


def cold_mixed(ds: Dataset, cold_frac: float = 0.2, min_events: int = 3, seed: int = 0) -> Split:
    """Leave-one-out targets with a random ``cold_frac`` of the items held out of training: some targets are
    cold, the others warm, and a model does not know which.

    The cold-item protocol's targets are exactly the items without training events, so a rule that ranks
    those items first, at random, scores well without knowing anything (HR@10 0.24 on MovieLens-100K, above a
    text model). Here each evaluated user's test target is their last event and the validation target the one
    before, whatever the item, as in :func:`leave_one_out`; every event on a held-out item is removed from
    training *and* from the histories the models read, so a target on a held-out item is as cold as in
    :func:`cold_item`, while the other targets are ordinary next items. Ranking unseen items first then costs
    every warm target.

    Invariants: no event on a held-out item is in ``train`` or ``train_valid`` (the latter adds the warm
    validation targets only; a cold validation target stays out so that test items stay cold after a refit);
    one target per evaluated user. A target is *cold* when its item has no training event
    (:func:`cold_targets`): the held-out items, plus the rare item whose only events were held-out targets.
    ``params`` records the cold share of test and validation targets.
    """
    if not 0 < cold_frac < 1:
        raise ValueError("cold_frac must be in (0, 1)")
    if min_events < 3:
        raise ValueError("cold-mixed needs at least 3 events per evaluated user (train, valid, test)")
    active = np.flatnonzero(ds.item_popularity > 0)
    rng = np.random.default_rng(seed)
    n_cold = max(1, int(round(len(active) * cold_frac)))
    held_out = np.sort(rng.permutation(active)[:n_cold]).astype(np.int32)
    is_held = pl.col("item_idx").is_in(pl.Series(held_out).implode())
    train, train_valid, valid, test = _last_two_held_out(ds, min_events, is_held)

    def share(es: EvalSet) -> float:
        return round(float(cold_targets(es, train).mean()), 4) if len(es) else 0.0

    return Split("cold-mixed", train, train_valid, valid, test,
                 {"cold_frac": cold_frac, "min_events": min_events, "seed": seed,
                  "n_cold_items": int(n_cold), "test_cold_share": share(test),
                  "valid_cold_share": share(valid)})


def cold_targets(eval_set: EvalSet, train: Dataset) -> np.ndarray:
    """``(n,)`` bool: does row ``i`` have a target item without any event in ``train`` (a cold target)?

    The per-share view of :func:`cold_mixed` (and of any protocol): evaluate once, then average the per-user
    metrics over the cold rows and over the others.
    """
    pop = train.item_popularity
    t = eval_set.targets
    item_cold = np.zeros(len(t.values), dtype=bool)
    known = t.values < len(pop)
    item_cold[known] = pop[t.values[known]] == 0
    item_cold[~known] = True
    out = np.zeros(len(t), dtype=bool)
    np.logical_or.at(out, t.row_ids(), item_cold)
    return out


def given(ds: Dataset) -> Split:
    """The split the data came with: events marked ``train`` are what models fit on, ``valid`` events are the
    validation targets and ``test`` events the test targets (see :data:`~lmrec.data.schema.SPLIT_COLUMN`).

    Such data comes from a table with a ``split`` column, RecBole's ``X.train.inter`` / ``X.valid.inter`` /
    ``X.test.inter``, a sequence file read with a stated protocol (``-o split=leave-one-out``) or a folder
    written by :func:`lmrec.data.split_io.write_split`. Every user with a validation (test) event is evaluated
    on the distinct items of those events, from their training history (training plus validation events for
    test), as RecBole and SASRec do; ``train_valid`` is every event not marked ``test``. The other protocols
    ignore the column: they cut all events, whatever their mark.
    """
    if not ds.has_split:
        raise ValueError(
            "protocol 'given' needs data that carries its split: a table with a split column "
            "(train/valid/test), RecBole X.train.inter/X.valid.inter/X.test.inter files, a sequence file "
            "read with -o split=leave-one-out, or a folder written by `lmrec data split`; "
            f"{ds.name} has none (choose another protocol)"
        )
    ev = ds.events
    cols = ev.columns
    part = pl.col(SPLIT_COLUMN)
    imp = ds.impressions
    if imp.height and SPLIT_COLUMN in imp.columns:
        train_imp = _shown_before(ds.with_events(ev, impressions=imp.filter(part == "train")),
                                  ev.filter(part != "train"))
        train_valid_imp = _shown_before(ds.with_events(ev, impressions=imp.filter(part != "test")),
                                        ev.filter(part == "test"))
    else:  # impressions without a mark: none may reach training (a test list could hold its target)
        train_imp = train_valid_imp = imp.clear()
    train = ds.with_events(ev.filter(part == "train").select(cols), impressions=train_imp)
    train_valid = ds.with_events(ev.filter(part != "test").select(cols), impressions=train_valid_imp)
    n_rows = ds.user_map.size

    def targets(name: str, history: Dataset) -> EvalSet:
        w = ev.filter(part == name).select("user_idx", "item_idx").unique(maintain_order=True)
        users = w["user_idx"].unique(maintain_order=True).to_numpy().astype(np.int64)
        return _eval_set(name, users, history.sequences, w["user_idx"].to_numpy(), w["item_idx"].to_numpy(),
                         n_rows)

    valid, test = targets("valid", train), targets("test", train_valid)
    if len(test) == 0:
        raise ValueError(f"protocol 'given': {ds.name} has no event marked test")
    return Split("given", train, train_valid, valid, test)


PROTOCOLS = {
    "leave-one-out": leave_one_out,
    "loo": leave_one_out,
    "temporal": temporal,
    "cold-item": cold_item,
    "cold-mixed": cold_mixed,
    "given": given,
}


def split_settings(protocol: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """The settings in a split's recorded :attr:`Split.params` (which also holds what the protocol derived,
    e.g. temporal's cut-off times), so that :func:`make_split` makes the same split again."""
    import inspect

    fn = PROTOCOLS.get(protocol)
    if fn is None:
        return dict(recorded)
    accepted = inspect.signature(fn).parameters  # type: ignore[arg-type]
    return {k: v for k, v in recorded.items() if k in accepted and k != "ds"}


def make_split(ds: Dataset, protocol: str, **params: Any) -> Split:
    """Apply a protocol by name (``leave-one-out``, ``temporal``, ``cold-item``, ``cold-mixed``,
    ``given``)."""
    try:
        fn = PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(
            f"unknown protocol {protocol!r}; choose one of {sorted(set(PROTOCOLS) - {'loo'})}"
        ) from None
    return fn(ds, **params)  # type: ignore[operator]
