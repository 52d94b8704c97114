"""Incremental model updates with a guard: ``lmrec update`` and the service's background updater.

One update (:func:`update_version`):

1. The events after ``since`` are split by time: the most recent ``holdout`` share of them is held back
   (the *guard set*), the rest is what the update learns from.
2. A copy of the serving model, loaded from its folder, absorbs those events and continues training
   (:class:`~lmrec.models.capabilities.IncrementalUpdates`: SeqRec, ALS, ItemKNN, Auto), new users and items
   included.
3. Both the serving model and the candidate rank the full catalogue for every user with held-back events,
   from the same histories (their known events up to the cut), and are scored with NDCG@k against the
   distinct new items those users touched after the cut (:func:`lmrec.evaluation.replay.raw_ranking_metrics`:
   items a model does not know are misses, not dropped).
4. The candidate is saved as a new version folder in the registry (the models folder the service swaps
   between), with ``update.json``: parent version, time range, figures, the guard's verdict and why. It is
   accepted when its NDCG@k is not worse than the serving model's by more than ``tolerance`` (absolute).

The held-back events are not in the new version; the next update starts from its ``trained_until`` and
learns them then.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.schema import EVENT_COLUMNS, IMPRESSION
from lmrec.evaluation.replay import raw_ranking_metrics
from lmrec.experiment.runs import load_data
from lmrec.models.base import MODEL_FILE, Recommender, load_model
from lmrec.models.capabilities import IncrementalUpdates

UPDATE_FILE = "update.json"
#: The registry's pointer to the version the guard last accepted (``lmrec update`` writes it).
ACTIVE_FILE = "ACTIVE"


@dataclass(frozen=True)
class UpdatePolicy:
    """How an update is made and judged.

    ``holdout``: share of the new events (the most recent, by time) held back to judge the candidate (0: no
    guard, the candidate is accepted). ``tolerance``: the largest NDCG@k drop against the serving model that
    is still accepted. ``min_users``: fewer users with held-back events than this and the guard cannot judge:
    the candidate is saved but not accepted. ``passes``: epochs / sweeps (the model's default when ``None``).
    """

    holdout: float = 0.1
    tolerance: float = 0.01
    k: int = 10
    min_users: int = 5
    passes: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.tolerance < 0 or self.k < 1 or self.min_users < 1:
            raise ValueError("tolerance must be >= 0, k and min_users >= 1")


@dataclass
class UpdateOutcome:
    """What :func:`update_version` did."""

    version: str
    path: Path
    accepted: bool
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "path": str(self.path), "accepted": self.accepted,
                "reason": self.reason, **self.figures}


def last_trained_until(model_dir: str | Path) -> int | None:
    """The newest event time a version folder learned from (its ``update.json``), or ``None``."""
    file = Path(model_dir) / UPDATE_FILE
    if not file.is_file():
        return None
    value = json.loads(file.read_text()).get("trained_until")
    return int(value) if value is not None else None


def split_by_time(events: pl.DataFrame, holdout: float) -> tuple[pl.DataFrame, pl.DataFrame, int | None]:
    """``(learn, held back, cut)``: events before the cut and from it on, the held-back part being about
    ``holdout`` of the events, the most recent; an event time is never split across both parts."""
    ev = events.with_row_index("_order").sort(["timestamp", "_order"]).drop("_order")
    if holdout <= 0 or ev.height == 0:
        return ev, ev.clear(), None
    times = ev["timestamp"].to_numpy()
    cut = int(times[min(len(times) - 1, int(np.floor(len(times) * (1.0 - holdout))))])
    return ev.filter(pl.col("timestamp") < cut), ev.filter(pl.col("timestamp") >= cut), cut


def guard_set(model: Recommender, learn: pl.DataFrame, held: pl.DataFrame
              ) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """Users with held-back events, their histories up to the cut (the model's known history, then the
    events learned from) and their targets (the distinct held-back items not in that history)."""
    assert model.user_map is not None and model.item_map is not None
    users = held["user_id"].cast(pl.String).unique(maintain_order=True).to_list()
    after: dict[str, list[str]] = {}
    for u, i in zip(learn["user_id"].cast(pl.String).to_list(), learn["item_id"].cast(pl.String).to_list(),
                    strict=True):
        after.setdefault(u, []).append(i)
    done: dict[str, set[str]] = {}
    for u, i in zip(held["user_id"].cast(pl.String).to_list(), held["item_id"].cast(pl.String).to_list(),
                    strict=True):
        done.setdefault(u, set()).add(i)
    histories, targets = [], []
    for u in users:
        idx = model.user_map.get(u)
        known = model.item_map.raws(model.histories_for(np.array([idx]))[0]).tolist() if idx else []
        h = [str(x) for x in known] + after.get(u, [])
        histories.append(h)
        targets.append(sorted(done[u] - set(h)))
    keep = [n for n, t in enumerate(targets) if t]
    return [users[n] for n in keep], [histories[n] for n in keep], [targets[n] for n in keep]


def guard_ndcg(model: Recommender, users: list[str], histories: list[list[str]], targets: list[list[str]],
               k: int) -> float:
    """Mean NDCG@k of ``model``'s full-ranking top-k (seen items excluded) against ``targets``."""
    if not users:
        return 0.0
    ids, _ = model.recommend(users, k, histories=histories, unknown="popular")
    lists = [list(r) for r in np.asarray(ids).reshape(len(users), -1)]
    return float(raw_ranking_metrics(lists, targets, k)[f"ndcg@{k}"].mean())


def version_name(parent: str, when: float | None = None) -> str:
    """``PARENT-uYYYYMMDDTHHMMSS`` (the parent's own update suffix replaced): one name per second."""
    base = parent.split("-u20")[0] if "-u20" in parent else parent
    stamp = datetime.fromtimestamp(when if when is not None else time.time(), UTC).strftime("%Y%m%dT%H%M%S")
    return f"{base}-u{stamp}"


def update_version(model_dir: str | Path, events: pl.DataFrame, *, items: pl.DataFrame | None = None,
                   since: int | None = None, registry: str | Path | None = None,
                   policy: UpdatePolicy | None = None, name: str | None = None,
                   serving: Recommender | None = None) -> UpdateOutcome:
    """Update the model in ``model_dir`` on ``events`` (those after ``since``), judge it and save it as a new
    version in ``registry`` (default: ``model_dir``'s parent); see the module docstring.

    ``serving`` is the model to compare against when it is already in memory (the service's); by default it
    is loaded from ``model_dir``. The registry's :data:`ACTIVE_FILE` is not written here (see
    :func:`mark_active`).
    """
    policy = policy or UpdatePolicy()
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{model_dir} is not a saved lmrec model (no {MODEL_FILE})")
    root = Path(registry) if registry is not None else model_dir.parent
    if since is not None:
        events = events.filter(pl.col("timestamp") > since)
    if "event_type" in events.columns:  # what was shown is neither training data nor a guard target
        events = events.filter(pl.col("event_type") != IMPRESSION)
    if events.height == 0:
        raise ValueError(f"no events after {since}: nothing to update on")
    current = serving if serving is not None else load_model(model_dir)
    candidate = load_model(model_dir)
    if not isinstance(candidate, IncrementalUpdates):
        raise TypeError(f"{type(candidate).__name__} cannot be updated incrementally; models that can: those "
                        "with IncrementalUpdates (seqrec, als, itemknn, auto)")
    learn, held, cut = split_by_time(events, policy.holdout)
    if learn.height == 0:
        raise ValueError(f"all {events.height} new events share the newest time: nothing left to learn from "
                         "after holding back the guard's share; lower --holdout or wait for more events")
    users, histories, targets = (guard_set(current, learn, held) if held.height else ([], [], []))
    report = candidate.update(learn, items, passes=policy.passes, seed=policy.seed)
    figures: dict[str, Any] = {
        "parent": model_dir.name, "model": candidate.name, "since": since,
        "trained_until": int(learn["timestamp"].max()),  # type: ignore[arg-type]
        "holdout_from": cut, "events_learned": learn.height, "events_held_back": held.height,
        "guard_users": len(users), "policy": asdict(policy), "update": report.to_dict(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if policy.holdout <= 0:
        accepted, reason = True, "no guard (holdout 0): accepted without a comparison"
    elif len(users) < policy.min_users:
        accepted, reason = False, (f"only {len(users)} user(s) with held-back events (< {policy.min_users}): "
                                   "the guard cannot judge; not activated")
    else:
        now = guard_ndcg(current, users, histories, targets, policy.k)
        new = guard_ndcg(candidate, users, histories, targets, policy.k)
        figures[f"serving_ndcg@{policy.k}"], figures[f"candidate_ndcg@{policy.k}"] = now, new
        accepted = new >= now - policy.tolerance
        verdict = "within" if accepted else "beyond"
        reason = (f"NDCG@{policy.k} on {len(users)} users' held-back events: candidate {new:.4f} vs serving "
                  f"{now:.4f} (change {new - now:+.4f}, {verdict} the tolerance {policy.tolerance})")
    version = name or version_name(model_dir.name)
    if name is None:  # two updates in the same second get distinct folders
        base, n = version, 1
        while (root / version).exists():
            n += 1
            version = f"{base}-{n}"
    path = candidate.save(root / version)
    for extra in ("training.json",):  # what the service reads about the data it was fitted on
        if (model_dir / extra).is_file() and not (path / extra).exists():
            (path / extra).write_text((model_dir / extra).read_text())
    figures.update(accepted=accepted, reason=reason)
    (path / UPDATE_FILE).write_text(json.dumps(figures, indent=2, default=str))
    return UpdateOutcome(version, path, accepted, reason, figures)


def mark_active(registry: str | Path, version: str) -> Path:
    """Record ``version`` as the registry's accepted version (:data:`ACTIVE_FILE`, one line)."""
    file = Path(registry) / ACTIVE_FILE
    tmp = file.with_suffix(".tmp")
    tmp.write_text(version + "\n")
    tmp.replace(file)
    return file


def read_events(spec: str, since: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(events after since, items)`` from a store, a saved dataset, a built-in name or a data file
    (:func:`lmrec.experiment.load_data`), with lmrec's event columns."""
    ds = load_data(spec)
    events = ds.events.select(list(EVENT_COLUMNS))
    if since is not None:
        events = events.filter(pl.col("timestamp") > since)
    return events, ds.items.drop("item_idx")
