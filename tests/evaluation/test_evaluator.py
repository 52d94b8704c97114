"""The evaluator: full ranking by default with history removed, sampled only by name, bounded chunks."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.splits import EvalSet, leave_one_out
from lmrec.evaluation import Ranking, evaluate, popularity_buckets
from lmrec.evaluation.evaluator import _sample_negatives
from lmrec.models import create_model


def _tiny() -> Dataset:
    # item popularity: a=4, b=3, c=2, d=1 (e has no events but is in the catalogue)
    rows = [
        ("u1", "a"),
        ("u2", "a"),
        ("u3", "a"),
        ("u4", "a"),
        ("u1", "b"),
        ("u2", "b"),
        ("u3", "b"),
        ("u1", "c"),
        ("u2", "c"),
        ("u1", "d"),
    ]
    ev = pl.DataFrame(
        [(f"e{n}", u, i, n, "click", None) for n, (u, i) in enumerate(rows)],
        schema=["event_id", "user_id", "item_id", "timestamp", "event_type", "value"],
        orient="row",
    )
    return Dataset.build(ev, pl.DataFrame({"item_id": ["a", "b", "c", "d", "e"]}))


def test_full_ranking_by_hand() -> None:
    ds = _tiny()
    model = create_model("most-popular").fit(ds)
    ix = ds.item_map.index
    # user A has seen "a": ranking of the rest is b, c, d, e → target c is at rank 2
    # user B has seen nothing: a, b, c, d, e → target e at rank 5
    es = EvalSet(
        "test",
        np.array([1, 2]),
        Ragged.from_lists([[ix("a")], []]),
        Ragged.from_lists([[ix("c")], [ix("e")]]),
    )
    res = evaluate(model, es, ds, ks=(1, 2, 5))
    np.testing.assert_array_equal(res.ranked[0, :4], [ix("b"), ix("c"), ix("d"), ix("e")])
    assert ix("a") not in res.ranked[0], "the history is removed from the ranking"
    np.testing.assert_allclose(res.per_user["HR@1"], [0, 0])
    np.testing.assert_allclose(res.per_user["HR@2"], [1, 0])
    np.testing.assert_allclose(res.per_user["NDCG@2"], [1 / math.log2(3), 0])
    np.testing.assert_allclose(res.per_user["NDCG@5"], [1 / math.log2(3), 1 / math.log2(6)])
    np.testing.assert_allclose(res.per_user["MRR@5"], [1 / 2, 1 / 5])
    assert res.ranking == "full ranking"
    # Coverage@1: items b and a shown, of 5
    assert res.aggregate["Coverage@1"] == pytest.approx(2 / 5)
    # ARP@5 of user A's list b, c, d, e: (3 + 2 + 1 + 0) / 4
    assert res.per_user["ARP@5"][0] == pytest.approx(1.5)


def test_popularity_buckets_by_thirds_of_events() -> None:
    # events: 6, 3, 2, 1, 0 (total 12). Share before each item: 0, .5, .75, .917 → head, torso, tail, tail
    b = popularity_buckets(np.array([0, 6, 3, 2, 1, 0]))
    assert b.tolist() == [2, 0, 1, 2, 2, 2]


def test_chunking_does_not_change_results(board: Dataset) -> None:
    split = leave_one_out(board)
    model = create_model("itemknn", k=10).fit(split.train)
    a = evaluate(model, split.test, split.train, (5, 10), batch_size=3)
    b = evaluate(model, split.test, split.train, (5, 10), batch_size=1000)
    np.testing.assert_array_equal(a.ranked, b.ranked)
    for m in a.per_user:
        np.testing.assert_array_equal(a.per_user[m], b.per_user[m])


def test_sampled_ranking_is_labelled_seeded_and_inflated(board: Dataset) -> None:
    split = leave_one_out(board)
    model = create_model("most-popular").fit(split.train)
    full = evaluate(model, split.test, split.train, (5,))
    s1 = evaluate(model, split.test, split.train, (5,), ranking="sampled-8", seed=3)
    s2 = evaluate(model, split.test, split.train, (5,), ranking=Ranking("sampled", 8, 3))
    assert s1.ranking == "sampled (8 negatives)" and full.ranking == "full ranking"
    np.testing.assert_array_equal(s1.ranked, s2.ranked)
    assert s1.mean("NDCG@5") >= full.mean("NDCG@5")
    assert Ranking.parse("sampled").label == "sampled (100 negatives)"
    with pytest.raises(ValueError):
        Ranking.parse("partial")


def test_negatives_avoid_history_and_targets(board: Dataset) -> None:
    split = leave_one_out(board)
    neg = _sample_negatives(split.test, board.n_items, 10, seed=0)
    assert neg.shape == (len(split.test), 10)
    for r in range(len(split.test)):
        assert len(set(neg[r])) == 10
        assert not set(neg[r]) & (set(split.test.history[r]) | set(split.test.targets[r]))
        assert neg[r].min() >= 1
    np.testing.assert_array_equal(neg, _sample_negatives(split.test, board.n_items, 10, seed=0))
    with pytest.raises(ValueError, match="fewer than"):
        _sample_negatives(split.test, board.n_items, 39, seed=0)


def test_groups_and_curves(board: Dataset, board_vectors: np.ndarray) -> None:
    split = leave_one_out(board)
    model = create_model("itemknn", k=10).fit(split.train)
    res = evaluate(model, split.test, split.train, (5, 10), item_vectors=board_vectors)
    assert "ILD@10" in res.per_user and np.all(
        (res.per_user["ILD@10"] >= -1e-6) | np.isnan(res.per_user["ILD@10"])
    )
    curve = res.curve("NDCG")
    assert len(curve) == 10 and curve[9] == pytest.approx(res.mean("NDCG@10"))
    groups, labels = res.history_groups()
    by = res.by_group("NDCG@10", groups, labels)
    assert sum(n for _, n in by.values()) == len(split.test)
    s = res.summary(n_boot=200)
    assert s["NDCG@10"].low <= s["NDCG@10"].mean <= s["NDCG@10"].high
