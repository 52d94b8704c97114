"""What MultiTask's network reads: per-user event arrays, left-padded windows of them, and the training and
validation rows (sequence windows and value examples) handed to the Trainer.

Windows are gathered with :meth:`lmrec.data.ragged.Ragged.windows` and cut with
:func:`lmrec.data.ragged.window_bounds`, as SeqRec's rows are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged, window_bounds
from lmrec.data.rfm import RFM_FEATURES, rfm_frame, value_cuts
from lmrec.data.schema import PAD
from lmrec.models.multitask.config import MultiTaskConfig, Spec
from lmrec.models.seqrec.network import gap_buckets

#: Shrinkage (pseudo-ratings at the global mean) of the running user-mean feature of the rating head.
RATING_SHRINK = 5.0

Rows = dict[str, np.ndarray]


@dataclass
class Events:
    """Per-user event arrays aligned with ``Dataset.sequences`` (row = user index)."""

    items: Ragged
    tokens: Ragged  # 1 + type * (value_buckets + 1) + bucket; 0 is padding
    types: Ragged
    times: Ragged
    ratings: Ragged  # float, NaN where the event is not a rating
    values: Ragged  # float, NaN where the event has no value
    rating_dev: Ragged  # float: shrunk mean rating deviation up to and including each event


#: The arrays of :class:`Events` in the order they are saved (``ev_<name>`` in ``arrays.npz``).
EVENT_ARRAYS = ("items", "tokens", "types", "times", "ratings", "values", "rating_dev")


def value_edges(values: np.ndarray, n: int) -> np.ndarray:
    """Bucket edges: midpoints between distinct values when there are at most ``n`` (ratings), else quantiles
    of ``log1p`` (amounts)."""
    v = values[np.isfinite(values)]
    if n <= 0 or v.size == 0:
        return np.zeros(0)
    uniq = np.unique(v)
    if len(uniq) <= n:
        return (uniq[:-1] + uniq[1:]) / 2
    return np.unique(np.expm1(np.quantile(np.log1p(np.maximum(v, 0)), np.linspace(0, 1, n + 1)[1:-1])))


def events_of(ds: Dataset, spec: Spec, cfg: MultiTaskConfig) -> Events:
    """Per-user arrays the network reads, for any dataset sharing the model's vocabularies."""
    ev = ds.events
    # The model's type vocabulary is the training one; unseen types map to the first.
    type_names = ev["event_type"].to_list()
    lookup = {t: i for i, t in enumerate(spec.event_types)}
    types = np.fromiter((lookup.get(t, 0) for t in type_names), dtype=np.int64, count=len(type_names))
    values = ev["value"].fill_null(float("nan")).to_numpy().astype(np.float64)
    edges = np.asarray(spec.value_edges)
    nb = cfg.value_buckets if len(edges) or cfg.value_buckets == 0 else 0
    if nb:
        bucket = np.where(np.isfinite(values), 1 + np.searchsorted(edges, np.nan_to_num(values)), 0)
    else:
        bucket = np.zeros(len(values), dtype=np.int64)
    tokens = 1 + types * (cfg.value_buckets + 1) + bucket
    is_rating = (ev["event_type"] == cfg.rating_type).to_numpy() & np.isfinite(values)
    ratings = np.where(is_rating, values, np.nan)
    # Running shrunk mean deviation of the user's ratings, including the current event.
    users = ev["user_idx"].to_numpy()
    dev = np.where(is_rating, values - spec.rating_mu, 0.0)
    cs = pl.DataFrame({"u": users, "d": dev, "c": is_rating.astype(np.float64)}).with_columns(
        pl.col("d").cum_sum().over("u"), pl.col("c").cum_sum().over("u"))
    rating_dev = (cs["d"].to_numpy() / (cs["c"].to_numpy() + RATING_SHRINK))
    off = ds.sequences.offsets
    return Events(ds.sequences, Ragged(off, tokens.astype(np.int64)), Ragged(off, types),
                  ds.timestamps, Ragged(off, ratings), Ragged(off, values), Ragged(off, rating_dev))


def _positions(ends: np.ndarray, width: int) -> np.ndarray:
    """``(len(ends), width)``: the position within its user's events of every column of a window that ends
    (exclusive) at ``ends[i]``; negative where the window reaches before the first event."""
    return ends[:, None] - width + np.arange(width)[None, :]


def input_windows(ev: Events, users: np.ndarray, ends: np.ndarray, max_len: int,
                  n_gap_buckets: int) -> Rows:
    """Left-padded inputs of the ``max_len`` events before position ``ends[i]`` of user ``users[i]``:
    ``items``, ``tokens``, ``gaps`` ``(n, max_len)`` and ``dev``, the rating deviation after the last of them
    ``(n,)``, 0 for an empty window."""
    users = np.asarray(users, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    valid = _positions(ends, max_len) >= 0
    items = ev.items.windows(users, ends, max_len, PAD).astype(np.int64)
    tokens = ev.tokens.windows(users, ends, max_len).astype(np.int64)
    times = ev.times.windows(users, ends, max_len).astype(np.int64)
    dev = np.zeros(len(users), dtype=np.float32)
    some = ends > 0
    dev[some] = ev.rating_dev.values[ev.items.offsets[users[some]] + ends[some] - 1]
    return {"items": items, "tokens": tokens, "gaps": gap_buckets(times, n_gap_buckets, valid), "dev": dev}


def sequence_rows(ev: Events, users: np.ndarray, ends: np.ndarray, cfg: MultiTaskConfig,
                  last_only: bool) -> Rows:
    """Next-event rows of the windows ending (exclusive) at ``ends[i]`` of user ``users[i]``: the inputs are
    events ``end - max_len - 1 .. end - 2``, the targets (item, type, rating) the events after each input.
    ``last_only``: only the last column is a target (validation)."""
    L = cfg.max_len
    inp = input_windows(ev, users, ends - 1, L, cfg.n_gap_buckets)
    pos = _positions(ends, L)  # position of each column's target event
    tgt = ev.items.windows(users, ends, L, PAD).astype(np.int64)
    t_types = np.where(pos >= 0, ev.types.windows(users, ends, L), -1).astype(np.int64)
    # ratings and deviations of the targets that follow an input event (the first event's are left out)
    t_rat = np.where(pos >= 1, ev.ratings.windows(users, ends, L), np.nan).astype(np.float32)
    dev = np.where(pos >= 1, ev.rating_dev.windows(users, ends - 1, L), 0.0).astype(np.float32)
    tgt[inp["items"] == PAD] = PAD
    # A window that starts the sequence also predicts its first event from the empty "start" state (the
    # padded column just before it), so first items are targets too and not only ever negatives.
    starts = np.flatnonzero((ends - 1 < L) & (ends >= 1))
    tgt[starts, L - ends[starts]] = ev.items.values[ev.items.offsets[users[starts]]]
    if last_only:
        tgt[:, :-1] = PAD
        t_types[:, :-1] = -1
        t_rat[:, :-1] = np.nan
    t_types[tgt == PAD] = -1
    t_rat[tgt == PAD] = np.nan
    return {"items": inp["items"], "tokens": inp["tokens"], "gaps": inp["gaps"], "tgt_items": tgt,
            "tgt_types": t_types, "tgt_ratings": t_rat, "rating_dev": dev, "users": users}


def train_rows(ds: Dataset, ev: Events, spec: Spec, cfg: MultiTaskConfig) -> tuple[Rows, Rows]:
    """Training and validation rows: sequence windows (+ value examples), as the Trainer's row arrays.

    Validation holds out the last event of a seeded ``valid_users`` share of the users with at least three
    events; their training windows stop before it. Every training event is a target once
    (:func:`~lmrec.data.ragged.window_bounds`, ``"all"``).
    """
    lengths = ev.items.lengths
    candidates = np.flatnonzero(lengths >= 3)
    rng = np.random.default_rng(cfg.seed)
    n_val = int(round(cfg.valid_users * len(candidates)))
    held = np.zeros(len(lengths), dtype=np.int64)
    if n_val:
        held[rng.choice(candidates, size=n_val, replace=False)] = 1
    users, ends = window_bounds(lengths - held, cfg.max_len, "all")
    val_users = np.flatnonzero(held)
    tr = sequence_rows(ev, users, ends, cfg, last_only=False) if len(users) else None
    va = sequence_rows(ev, val_users, lengths[val_users], cfg, last_only=True) if len(val_users) else None
    vtr, vva = value_rows(ds, ev, spec, cfg)
    return merge_rows(tr, vtr, cfg.seed), merge_rows(va, vva, cfg.seed, cycle=False)


def side_features(frame: pl.DataFrame, spec: Spec) -> np.ndarray:
    """Standardised ``log1p`` RFM features (statistics from training)."""
    x = np.log1p(np.maximum(frame.select(list(RFM_FEATURES)).to_numpy().astype(np.float64), 0.0))
    return ((x - np.asarray(spec.side_mean)) / np.asarray(spec.side_std)).astype(np.float32)


def value_rows(ds: Dataset, ev: Events, spec: Spec, cfg: MultiTaskConfig) -> tuple[Rows | None, Rows | None]:
    """Value examples at the training cuts and at the validation cut (``None`` without a value head); sets
    the RFM standardisation statistics of ``spec`` from the training cuts."""
    if "value" not in spec.heads:
        return None, None
    val_cut, cuts = value_cuts(ds, cfg.horizon_days, cfg.value_cuts, cfg.value_step_days)
    frames = {c: rfm_frame(ds.events, c, cfg.horizon_days, cfg.value_target) for c in [val_cut, *cuts]}
    x = np.vstack([np.log1p(np.maximum(f.select(list(RFM_FEATURES)).to_numpy(), 0.0)) for c, f in
                   frames.items() if c != val_cut])
    spec.side_mean = x.mean(0).tolist()
    spec.side_std = np.maximum(x.std(0), 1e-6).tolist()

    def rows(cut_list: list[int]) -> Rows | None:
        parts = []
        for c in cut_list:
            f = frames[c]
            users = f["user_idx"].to_numpy().astype(np.int64)
            ends = np.array([np.searchsorted(ev.times[u], c, side="left") for u in users], dtype=np.int64)
            w = input_windows(ev, users, ends, cfg.max_len, cfg.n_gap_buckets)
            parts.append({"val_items": w["items"], "val_tokens": w["tokens"], "val_gaps": w["gaps"],
                          "val_side": side_features(f, spec),
                          "val_target": np.log1p(f["target"].to_numpy()).astype(np.float32)})
        if not parts:
            return None
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    return rows(cuts), rows([val_cut])


def merge_rows(seq: Rows | None, val: Rows | None, seed: int, cycle: bool = True) -> Rows:
    """Pair sequence windows with value examples row by row, so the Trainer sees one array per field with a
    shared first dimension: the shorter list is cycled in a seeded order (training), or, with ``cycle=False``
    (validation), filled with copies of its first row whose targets are masked, so that every held-out target
    counts once and a head's validation loss is the same whichever other heads share the rows."""
    if seq is None and val is None:
        return {}
    n = max(len(next(iter(d.values()))) for d in (seq, val) if d)
    rng = np.random.default_rng(seed)
    out: Rows = {}
    for d, ok_key in ((seq, "seq_ok"), (val, "val_ok")):
        if d is None:
            continue
        m = len(next(iter(d.values())))
        fill = rng.integers(0, m, n - m) if cycle else np.zeros(n - m, dtype=np.int64)
        idx = np.concatenate([np.arange(m), fill]) if n > m else np.arange(n)
        out.update({k: v[idx] for k, v in d.items()})
        out[ok_key] = np.ones(n, dtype=bool)
        if not cycle and n > m:  # the filler rows carry no target
            out[ok_key][m:] = False
            if ok_key == "seq_ok":
                out["tgt_items"][m:] = PAD
                out["tgt_types"][m:] = -1
                out["tgt_ratings"][m:] = np.nan
    if "val_ok" not in out:
        out["val_ok"] = np.zeros(n, dtype=bool)
    if seq is None:  # value only: empty sequence fields so the loss module's signature holds
        L = next(iter(val.values())).shape[1] if val else 1  # type: ignore[union-attr]
        for k in ("items", "tokens", "gaps", "tgt_items", "tgt_types"):
            out[k] = np.zeros((n, L), dtype=np.int64)
        out["users"] = np.zeros(n, dtype=np.int64)
        out["tgt_ratings"] = np.full((n, L), np.nan, dtype=np.float32)
        out["rating_dev"] = np.zeros((n, L), dtype=np.float32)
    if "val_items" not in out:
        L = out["items"].shape[1]
        out.update({"val_items": np.zeros((n, L), dtype=np.int64),
                    "val_tokens": np.zeros((n, L), dtype=np.int64),
                    "val_gaps": np.zeros((n, L), dtype=np.int64),
                    "val_side": np.zeros((n, len(RFM_FEATURES)), dtype=np.float32),
                    "val_target": np.zeros(n, dtype=np.float32)})
    out.pop("seq_ok", None)
    return out


def end_time(ds: Dataset) -> int:
    """Just after the last event: where "now" is for a model fitted on ``ds``."""
    return int(ds.events["timestamp"].max()) + 1 if ds.n_events else 0  # type: ignore[arg-type]


def events_frame(ev: Events, spec: Spec) -> pl.DataFrame:
    """The stored training events as the table :func:`~lmrec.data.rfm.rfm_frame` reads."""
    users = ev.items.row_ids()
    names = np.asarray(spec.event_types, dtype=object)[ev.types.values] if len(ev.types.values) else []
    return pl.DataFrame({"user_idx": users.astype(np.int32), "timestamp": ev.times.values.astype(np.int64),
                         "event_type": pl.Series(list(names), dtype=pl.String),
                         "value": pl.Series(ev.values.values, dtype=pl.Float64).fill_nan(None)})
