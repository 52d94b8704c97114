"""Random and grid search over settings, scored on validation only."""

from __future__ import annotations

import pytest

from lmrec.data.splits import leave_one_out
from lmrec.evaluation.tuning import metric_cutoff, sample_points, tune
from tests.training.synthetic import cyclic_dataset


def test_sample_points_are_distinct_grid_points() -> None:
    space = {"a": [1, 2, 3], "b": ["x", "y"]}
    pts = sample_points(space, 4, seed=0)
    assert len(pts) == 4 and len({tuple(sorted(p.items())) for p in pts}) == 4
    assert all(p["a"] in space["a"] and p["b"] in space["b"] for p in pts)
    assert len(sample_points(space, 100)) == 6  # never more than the grid
    assert sample_points(space, 4, seed=0) == pts  # seeded


def test_search_keeps_the_best_validation_score(monkeypatch: pytest.MonkeyPatch) -> None:
    split = leave_one_out(cyclic_dataset())
    seen: list[float] = []
    res = tune("most-popular", {"half_life_days": [0.0, 0.5, 30.0]}, split, mode="grid",
               on_trial=lambda i, cfg, s: seen.append(s))
    assert len(res.trials) == 3 and seen == [s for _, s in res.trials]
    assert res.best_score == max(seen)
    assert res.best == max(res.trials, key=lambda t: t[1])[0]
    with pytest.raises(ValueError, match="mode"):
        tune("most-popular", {"half_life_days": [0.0]}, split, mode="bayes")


def test_random_search_tries_n_distinct_points() -> None:
    split = leave_one_out(cyclic_dataset())
    res = tune("most-popular", {"half_life_days": [0.0, 0.5, 30.0]}, split, mode="random", n_trials=2, seed=1)
    assert len(res.trials) == 2 and len({c["half_life_days"] for c, _ in res.trials}) == 2


def test_the_metric_cutoff_must_be_evaluated() -> None:
    split = leave_one_out(cyclic_dataset())
    with pytest.raises(ValueError, match="not evaluated"):
        tune("most-popular", {"half_life_days": [0.0]}, split, metric="NDCG@10", ks=(5, 20))
    with pytest.raises(ValueError, match="NAME@K"):
        tune("most-popular", {"half_life_days": [0.0]}, split, metric="NDCG")
    assert metric_cutoff("HR@20", (5, 20)) == 20
    res = tune("most-popular", {"half_life_days": [0.0]}, split, metric="HR@5", ks=(5, 10))
    assert res.metric == "HR@5" and 0.0 <= res.best_score <= 1.0
