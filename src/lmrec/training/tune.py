"""A small random or grid search over settings, scored on validation only (the test set is never read
here)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lmrec.data.splits import Split
from lmrec.evaluation.evaluator import evaluate
from lmrec.evaluation.tuning import TuningResult, grid
from lmrec.models.base import create_model


def sample_points(space: Mapping[str, Sequence[Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``n`` distinct random points of the grid ``space`` (the whole grid, shuffled, when it is
    smaller)."""
    points = grid(space)
    rng = random.Random(seed)
    rng.shuffle(points)
    return points[:n]


def search(model: str, space: Mapping[str, Sequence[Any]], split: Split, *, mode: str = "random",
           n_trials: int = 8, seed: int = 0, base: Mapping[str, Any] | None = None, metric: str = "NDCG@10",
           item_vectors: np.ndarray | None = None,
           on_trial: Callable[[int, dict[str, Any], float], None] | None = None) -> TuningResult:
    """Fit ``model`` on ``split.train`` for each point and keep the best full-ranking ``metric`` on
    ``split.valid``.

    Parameters
    ----------
    space:
        Candidate values per setting, e.g. ``{"dropout": [0.2, 0.5], "lr": [1e-3, 3e-3]}``.
    mode:
        ``"grid"`` (every combination) or ``"random"`` (``n_trials`` distinct combinations).
    base:
        Settings shared by every trial.
    on_trial:
        Called after each trial with its number, settings and score.
    """
    if mode not in ("grid", "random"):
        raise ValueError(f"mode must be 'grid' or 'random', got {mode!r}")
    if not space:
        raise ValueError("the search space is empty")
    points = grid(space) if mode == "grid" else sample_points(space, n_trials, seed)
    trials: list[tuple[dict[str, Any], float]] = []
    for i, point in enumerate(points):
        cfg = {**(base or {}), **point}
        m = create_model(model, **cfg)
        m.fit(split.train, split.valid, item_vectors=item_vectors if m.needs_item_vectors else None)
        score = evaluate(m, split.valid, split.train, (10,)).mean(metric)
        trials.append((cfg, score))
        if on_trial is not None:
            on_trial(i, cfg, score)
    best, best_score = max(trials, key=lambda t: t[1])
    return TuningResult(model, metric, trials, best, best_score)
