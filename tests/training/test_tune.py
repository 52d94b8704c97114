"""Random and grid search over settings, scored on validation only."""

from __future__ import annotations

import pytest

from lmrec.data.splits import leave_one_out
from lmrec.training.tune import sample_points, search
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
    res = search("most-popular", {"half_life_days": [0.0, 0.5, 30.0]}, split, mode="grid",
                 on_trial=lambda i, cfg, s: seen.append(s))
    assert len(res.trials) == 3 and seen == [s for _, s in res.trials]
    assert res.best_score == max(seen)
    assert res.best == max(res.trials, key=lambda t: t[1])[0]
    with pytest.raises(ValueError, match="mode"):
        search("most-popular", {"half_life_days": [0.0]}, split, mode="bayes")
