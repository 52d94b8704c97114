"""Onboarding's settings are chosen on validation from the model's own training users, and its answer model
is soft: one contradicting answer lowers a training user's weight without ruling them out."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.models import create_model
from lmrec.models.onboarding import (
    MIN_ITEMS,
    PRIOR_GRID,
    RECENCY_GRID,
    SMOOTHING_GRID,
    TEMPERATURE_GRID,
    Onboarding,
    OnboardingSettings,
    _ages,
    _Neighbours,
)

GROUPS, ITEMS_PER_GROUP, USERS_PER_GROUP = 3, 12, 40


def taste_groups(seed: int = 0) -> Dataset:
    """Three taste groups of 40 users; each user chose 5 to 10 of their group's 12 items and one of three
    items everybody likes (``all0..all2``)."""
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    for g in range(GROUPS):
        for u in range(USERS_PER_GROUP):
            chosen = [f"g{g}i{i}" for i in rng.choice(ITEMS_PER_GROUP, rng.integers(5, 11), replace=False)]
            for item in [*chosen, f"all{rng.integers(3)}"]:
                t += 1
                rows.append((f"e{t}", f"g{g}u{u}", item, t, "click", None))
    events = pl.DataFrame(rows, schema=["event_id", "user_id", "item_id", "timestamp", "event_type", "value"],
                          orient="row")
    return Dataset.build(events, None, name="taste-groups")


@pytest.fixture(scope="module")
def onboarding() -> Onboarding:
    return Onboarding(create_model("itemknn").fit(taste_groups()))


def test_settings_are_the_best_grid_point_on_the_training_users(onboarding: Onboarding) -> None:
    cal = onboarding.calibration
    assert cal.users == GROUPS * USERS_PER_GROUP  # every training user has at least MIN_ITEMS items
    assert MIN_ITEMS <= 6
    grid = {OnboardingSettings(s, t, b, r)
            for s in SMOOTHING_GRID for t in TEMPERATURE_GRID for b in PRIOR_GRID for r in RECENCY_GRID}
    assert set(cal.scores) == grid
    assert onboarding.settings == max(cal.scores, key=lambda g: cal.scores[g])
    # Validation users from three clean taste groups find their newest items far more often than chance.
    assert cal.scores[onboarding.settings] > 3 * 10 / (GROUPS * ITEMS_PER_GROUP + 3)
    # The same training data, the same seed: the same choice.
    again = Onboarding(onboarding.model)
    assert again.settings == onboarding.settings and again.calibration.scores == cal.scores


def test_answers_point_to_the_group_softly(onboarding: Onboarding) -> None:
    ob = Onboarding(onboarding.model, settings=OnboardingSettings(smoothing=0.1, temperature=1.0, prior=0.3))
    idx = ob.model.item_map.index
    sc = ob.scores({"g1i0": True, "g1i1": True, "g0i0": False})
    group1 = [sc[idx(f"g1i{i}")] for i in range(2, ITEMS_PER_GROUP)]
    others = [sc[idx(f"g{g}i{i}")] for g in (0, 2) for i in range(1, ITEMS_PER_GROUP)]
    assert min(group1) > max(others)
    # Soft evidence: the group the answers speak against still has some weight (no one is ruled out).
    assert min(others) > 0
    # The next question is informative: not an item already answered, and one the group-1 users are split on
    # or that tells the groups apart.
    q = ob.next_questions({"g1i0": True, "g1i1": True, "g0i0": False}, 3)
    assert len(q) == 3 and {"g1i0", "g1i1", "g0i0"}.isdisjoint(q)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="smoothing"):
        OnboardingSettings(smoothing=0.0)
    with pytest.raises(ValueError, match="temperature"):
        OnboardingSettings(temperature=1.5)
    with pytest.raises(ValueError, match="prior"):
        OnboardingSettings(prior=1.0)
    with pytest.raises(ValueError, match="recency"):
        OnboardingSettings(recency=-1.0)


def test_newer_items_of_a_neighbour_weigh_more_with_recency() -> None:
    # User 0 chose items 1, 2, 1, 3 (oldest first): distinct items newest first 3, 1 (its newest time), 2.
    hist = Ragged.from_lists([[1, 2, 1, 3], [], [4, 2]])
    ages = _ages(hist, 5).toarray()
    np.testing.assert_allclose(ages[0], [0, 1.5 / 3, 2.5 / 3, 0.5 / 3, 0])
    np.testing.assert_allclose(ages[2], [0, 0, 0.5 / 2, 0, 1.5 / 2])
    nb = _Neighbours(_ages(hist, 5), np.array([1, 2]))
    assert nb.n_users == 2  # the user without items is no component
    flat, q = nb.dist(0.0)
    np.testing.assert_allclose(flat.toarray()[0], [0, 1 / 3, 1 / 3, 1 / 3, 0])  # 1 / |u| at recency 0
    np.testing.assert_allclose(q, flat.toarray().mean(axis=0))
    d, q = nb.dist(3.0)
    d = d.toarray()
    np.testing.assert_allclose(d.sum(axis=1), 1.0)
    np.testing.assert_allclose(q.sum(), 1.0)
    # Each step towards the past (1/3 of user 0's history) divides the weight by e^(3/3).
    assert d[0, 3] / d[0, 1] == pytest.approx(np.e) and d[0, 1] / d[0, 2] == pytest.approx(np.e)
