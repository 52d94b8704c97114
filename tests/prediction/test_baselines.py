"""Baselines recover what they model and beat trivial predictors."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.synthetic_ecommerce import generate_ecommerce
from lmrec.prediction import metrics as M
from lmrec.prediction import tasks
from lmrec.prediction.baselines import (
    BiasBaseline,
    BiasedMF,
    GBMValue,
    LastPeriodValue,
    MajorityType,
    MarkovType,
    RFMScore,
)


def _low_rank_ratings(seed: int = 0) -> tuple[tasks.RatingSet, tasks.RatingSet]:
    rng = np.random.default_rng(seed)
    n_u, n_i = 120, 80
    p, q = rng.normal(0, 0.7, (n_u, 2)), rng.normal(0, 0.7, (n_i, 2))
    bu, bi = rng.normal(0, 0.4, n_u), rng.normal(0, 0.4, n_i)
    u = rng.integers(1, n_u, 6000)
    i = rng.integers(1, n_i, 6000)
    r = np.clip(3.5 + bu[u] + bi[i] + (p[u] * q[i]).sum(1) + rng.normal(0, 0.3, len(u)), 1, 5)
    tr, te = slice(0, 5000), slice(5000, None)
    return (tasks.RatingSet(u[tr], i[tr], r[tr]), tasks.RatingSet(u[te], i[te], r[te]))


def test_bias_and_mf_beat_the_mean_and_mf_beats_bias() -> None:
    train, test = _low_rank_ratings()
    mean = M.rmse(test.ratings, np.full(len(test), train.ratings.mean()))
    bias = M.rmse(test.ratings, BiasBaseline().fit(train, 120, 80).predict(test.users, test.items))
    mf_model = BiasedMF(factors=4, reg=2.0).fit(train, 120, 80)
    mf = M.rmse(test.ratings, mf_model.predict(test.users, test.items))
    assert bias < mean - 0.05
    assert mf < bias - 0.05
    # unknown users and items fall back to the biases that exist (no index error)
    out = BiasedMF(factors=2).fit(train, 120, 80).predict(np.array([500]), np.array([3]))
    assert out.shape == (1,) and 1.0 <= out[0] <= 5.0


def test_bias_baseline_exact_on_additive_data() -> None:
    u = np.repeat(np.arange(1, 4), 3)
    i = np.tile(np.arange(1, 4), 3)
    r = 3.0 + np.array([0.5, 0.0, -0.5])[u - 1] + np.array([1.0, 0.0, -1.0])[i - 1]
    m = BiasBaseline(reg_user=0.0, reg_item=0.0, n_iter=20).fit(tasks.RatingSet(u, i, r), 4, 4)
    assert np.allclose(m.predict(u, i), r)


def test_type_baselines() -> None:
    ex = tasks.TypeSet(np.zeros(6, np.int64), np.arange(6), np.array([-1, 0, 1, 0, 1, 0]),
                       np.array([0, 1, 0, 1, 0, 1]))
    maj = MajorityType().fit(ex.labels, 3).predict_proba(ex)
    assert np.allclose(maj[0], [(3 + 1) / 9, (3 + 1) / 9, 1 / 9])
    mk = MarkovType(alpha=0.0).fit(ex, 3)
    p = mk.predict_proba(ex)
    assert np.allclose(p[1], [0, 1, 0]) and np.allclose(p[2], [1, 0, 0])  # 0 → 1 always, 1 → 0 always
    assert M.accuracy(ex.labels[1:], p[1:]) == 1.0


@pytest.fixture(scope="module")
def shop_values():
    ds = generate_ecommerce(n_users=600, n_items=150, days=150, seed=2).dataset()
    test_cut, train_cuts = tasks.value_cuts(ds, horizon_days=30, n_train_cuts=3)
    train = [tasks.value_labels(ds, c, 30) for c in train_cuts]
    return train, tasks.value_labels(ds, test_cut, 30)


def test_value_labels_have_no_leakage(shop_values) -> None:
    train, test = shop_values
    assert all(s.cut + 30 * 86_400 <= test.cut for s in train)
    # recency is measured back from the cut, so it is never negative
    assert (test.features[:, 0] >= 0).all()


def test_value_baselines_rank_better_than_chance(shop_values) -> None:
    train, test = shop_values
    rfm = RFMScore().fit(train[0])
    last = LastPeriodValue().fit(train[0])
    gbm = GBMValue(n_estimators=100).fit(train)
    for model in (rfm, last, gbm):
        pred = model.predict(test)
        assert M.top_decile_capture(test.target, pred) > 0.2  # random ≈ 0.1
        assert M.spearman(test.target, pred) > 0.2
    s = rfm.score(test)
    assert s.min() >= 3 and s.max() <= 15
