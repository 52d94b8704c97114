"""The cold-item protocol can be gamed by a rule that knows nothing; the cold-mixed protocol cannot."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.splits import cold_item, cold_mixed, cold_targets
from lmrec.evaluation.evaluator import evaluate
from lmrec.models import create_model
from lmrec.models.popularity import UnseenRandom


@pytest.fixture(scope="module")
def shop() -> Dataset:
    """400 users, 300 items with Zipf-like popularity, 20 events each in time order."""
    rng = np.random.default_rng(11)
    p = 1.0 / np.arange(1, 301) ** 1.1
    p /= p.sum()
    rows = []
    for u in range(400):
        items = rng.choice(300, size=20, replace=False, p=p)
        rows += [(f"u{u}", f"i{i}", 1_000 * u + t) for t, i in enumerate(items)]
    ev = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").with_row_index("n")
    ev = ev.with_columns(pl.format("e{}", "n").alias("event_id"), pl.lit("view").alias("event_type"))
    ev = ev.drop("n")
    return Dataset.build(ev, name="zipf-shop")


def _hr(model, split) -> np.ndarray:
    res = evaluate(model, split.test, split.train, ks=(10,))
    return res.per_user["HR@10"]


def test_the_unseen_first_rule_games_cold_item_but_not_cold_mixed(shop: Dataset) -> None:
    cold = cold_item(shop, cold_frac=0.1, seed=0)
    rule = create_model("unseen-random", seed=0).fit(cold.train)
    pop = create_model("most-popular").fit(cold.train)
    assert _hr(rule, cold).mean() > 0.1 > _hr(pop, cold).mean()  # every target is unseen: the rule "wins"

    mixed = cold_mixed(shop, cold_frac=0.1, seed=0)
    rule = create_model("unseen-random", seed=0).fit(mixed.train)
    pop = create_model("most-popular").fit(mixed.train)
    r, p = _hr(rule, mixed), _hr(pop, mixed)
    assert r.mean() < p.mean()
    is_cold = cold_targets(mixed.test, mixed.train)
    assert 0 < is_cold.mean() < 1
    assert r[~is_cold].sum() == 0  # the rule fills every list with unseen items: it never hits a warm target
    assert r[is_cold].mean() >= p[is_cold].mean()  # ... and cold targets are where it can hit


def test_unseen_items_first_in_a_seeded_per_user_order(shop: Dataset) -> None:
    sp = cold_item(shop, cold_frac=0.1, seed=1)
    rule = UnseenRandom(seed=5).fit(sp.train)
    unseen = set(np.flatnonzero(sp.train.item_popularity == 0).tolist()) - {0}
    users = np.arange(1, 9)
    idx, _ = rule.recommend_indices(sp.train.sequences.take(users), users, k=10)
    assert all(set(row.tolist()) <= unseen for row in idx)
    assert len({tuple(row) for row in idx}) > 1  # not one global order
    again, _ = UnseenRandom(seed=5).fit(sp.train).recommend_indices(sp.train.sequences.take(users), users, 10)
    other, _ = UnseenRandom(seed=6).fit(sp.train).recommend_indices(sp.train.sequences.take(users), users, 10)
    np.testing.assert_array_equal(idx, again)
    assert not np.array_equal(idx, other)
    # anonymous histories are keyed by their items: the same history, the same order
    h = Ragged.from_lists([sp.train.sequences[1].tolist()] * 2)
    s = rule.score(h)
    np.testing.assert_array_equal(s[0], s[1])
