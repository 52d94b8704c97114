"""Hyper-parameter search on the validation set only (the test set is never read here).

:func:`tune` is lmrec's one tuner: a grid (every combination) or a seeded random sample of it, each point
fitted on ``split.train`` and scored by a full-ranking ``NAME@K`` metric on ``split.valid``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmrec.data.splits import Split
from lmrec.evaluation.evaluator import evaluate
from lmrec.models.base import create_model

#: How a search picks its points.
MODES = ("grid", "random")


@dataclass(frozen=True)
class TuningResult:
    """Every configuration tried, its validation score, and the best one."""

    model: str
    metric: str
    trials: list[tuple[dict[str, Any], float]]
    best: dict[str, Any]
    best_score: float


def grid(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All combinations of a parameter grid, in a fixed order."""
    keys = sorted(space)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(space[k] for k in keys))]


def sample_points(space: Mapping[str, Sequence[Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``n`` distinct random points of the grid ``space`` (the whole grid, shuffled, when smaller)."""
    points = grid(space)
    rng = random.Random(seed)
    rng.shuffle(points)
    return points[:n]


def metric_cutoff(metric: str, ks: Sequence[int] | None = None) -> int:
    """The ``K`` of a ``NAME@K`` metric.

    A :class:`ValueError` when the metric is malformed, or when ``ks`` is given and ``K`` is not one of them.
    """
    name, _, k = metric.rpartition("@")
    if not name or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric must look like NAME@K (e.g. NDCG@10), got {metric!r}")
    if ks is not None and int(k) not in ks:
        raise ValueError(
            f"metric {metric!r} is at a cut-off that is not evaluated: K={k} is not one of {sorted(ks)}"
        )
    return int(k)


def tune(
    model: str,
    space: Mapping[str, Sequence[Any]],
    split: Split,
    *,
    mode: str = "grid",
    n_trials: int = 8,
    seed: int = 0,
    base: Mapping[str, Any] | None = None,
    metric: str = "NDCG@10",
    ks: Sequence[int] | None = None,
    item_vectors: np.ndarray | None = None,
    on_trial: Callable[[int, dict[str, Any], float], None] | None = None,
) -> TuningResult:
    """Fit ``model`` on ``split.train`` for each point and keep the best full-ranking ``metric`` on
    ``split.valid``. Ties keep the earlier point.

    Parameters
    ----------
    space:
        Candidate values per setting, e.g. ``{"dropout": [0.2, 0.5], "lr": [1e-3, 3e-3]}``.
    mode:
        ``"grid"`` (every combination, in a fixed order) or ``"random"`` (``n_trials`` distinct
        combinations drawn with ``seed``).
    base:
        Settings shared by every trial.
    metric:
        ``NAME@K``, e.g. ``NDCG@10``.
    ks:
        The cut-offs to evaluate (default: the metric's own ``K``); the metric's ``K`` must be one of them.
    on_trial:
        Called after each trial with its number, settings and score.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'grid' or 'random', got {mode!r}")
    if not space:
        raise ValueError("the search space is empty")
    k = metric_cutoff(metric, ks)
    cutoffs = tuple(sorted({int(c) for c in ks})) if ks is not None else (k,)
    points = grid(space) if mode == "grid" else sample_points(space, n_trials, seed)
    trials: list[tuple[dict[str, Any], float]] = []
    for i, point in enumerate(points):
        cfg = {**(base or {}), **point}
        m = create_model(model, **cfg)
        m.fit(split.train, split.valid, item_vectors=item_vectors if m.needs_item_vectors else None)
        score = evaluate(m, split.valid, split.train, cutoffs).mean(metric)
        trials.append((cfg, score))
        if on_trial is not None:
            on_trial(i, cfg, score)
    best, best_score = max(trials, key=lambda t: t[1])
    return TuningResult(model, metric, trials, best, best_score)
