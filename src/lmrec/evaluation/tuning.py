"""Hyper-parameter search on the validation set only (the test set is never read here)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmrec.data.splits import Split
from lmrec.evaluation.evaluator import evaluate
from lmrec.models.base import create_model


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


def tune(
    model: str,
    space: Mapping[str, Sequence[Any]],
    split: Split,
    *,
    base: Mapping[str, Any] | None = None,
    metric: str = "NDCG@10",
    ks: Sequence[int] = (10,),
    item_vectors: np.ndarray | None = None,
) -> TuningResult:
    """Fit ``model`` on ``split.train`` for every point of ``space`` and keep the best ``metric`` on
    ``split.valid`` (full ranking). Ties keep the earlier point of the grid."""
    _, _, k = metric.rpartition("@")
    if not k.isdigit():
        raise ValueError(f"metric must look like NAME@K (e.g. NDCG@10), got {metric!r}")
    ks = tuple(sorted({*ks, int(k)}))
    trials: list[tuple[dict[str, Any], float]] = []
    for point in grid(space):
        cfg = {**(base or {}), **point}
        m = create_model(model, **cfg)
        m.fit(split.train, split.valid, item_vectors=item_vectors if m.needs_item_vectors else None)
        res = evaluate(m, split.valid, split.train, ks)
        trials.append((cfg, res.mean(metric)))
    best, score = max(trials, key=lambda t: t[1])
    return TuningResult(model, metric, trials, best, score)
