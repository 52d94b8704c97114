"""What each model promises beyond the shared contract."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.models import CatalogueTooLargeError, create_model
from lmrec.models.base import default_batch_size, topk
from lmrec.text.space import TextSpace


def test_topk_breaks_ties_by_lower_index_whatever_the_batch() -> None:
    scores = np.zeros((3, 50), dtype=np.float32)
    scores[:, 40] = 1.0
    idx, val = topk(scores, 4)
    assert idx.tolist() == [[40, 0, 1, 2]] * 3
    assert val[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    idx2, _ = topk(np.array([[np.nan, 2.0, -np.inf, 2.0]], dtype=np.float32), 4)
    assert idx2.tolist() == [[1, 3, 0, 2]]  # NaN counts as -inf; ties by index
    padded, pv = topk(np.array([[0.5, 0.1]]), 4)
    assert padded.tolist() == [[0, 1, 0, 0]] and np.isinf(pv[0, 2:]).all()


def test_batch_size_keeps_score_blocks_bounded() -> None:
    assert default_batch_size(100_001) * 100_001 * 4 <= 64 * 2**20
    assert default_batch_size(10) == 4096
    assert default_batch_size(10**9) == 16


def test_ease_refuses_a_catalogue_too_large_for_a_dense_inverse(board: Dataset) -> None:
    with pytest.raises(CatalogueTooLargeError, match=r"max_items=10.*itemknn"):
        create_model("ease", max_items=10).fit(board)


def test_ease_weights_have_zero_diagonal_and_padding(board: Dataset) -> None:
    m = create_model("ease", lam=10.0).fit(board)
    w = m.weights_
    assert np.all(np.diag(w) == 0) and np.all(w[0] == 0) and np.all(w[:, 0] == 0)


def test_itemknn_keeps_k_neighbours_and_no_self_similarity(board: Dataset) -> None:
    m = create_model("itemknn", k=5, shrink=0.0).fit(board)
    sim = m.similarity_.tocsc()
    assert np.diff(sim.indptr).max() <= 5
    assert sim.diagonal().max() == 0
    assert 0 < sim.data.max() <= 1.0 + 1e-6  # cosine without shrinkage is at most 1
    shrunk = create_model("itemknn", k=5, shrink=100.0).fit(board).similarity_
    assert shrunk.data.max() < sim.data.max()


def test_userknn_is_not_its_own_neighbour() -> None:
    rows = [("a", "1"), ("a", "2"), ("a", "3"), ("b", "1"), ("b", "2"), ("b", "4"), ("c", "5")]
    ds = Dataset.build(
        pl.DataFrame(
            [(f"e{n}", u, i, n, "click", None) for n, (u, i) in enumerate(rows)],
            schema=["event_id", "user_id", "item_id", "timestamp", "event_type", "value"],
            orient="row",
        )
    )
    m = create_model("userknn", k=1, shrink=0.0).fit(ds)
    a = ds.user_map.index("a")
    hist = ds.sequences.take([a])
    item4 = ds.item_map.index("4")
    # known user "a": its nearest other user is "b", who brings item 4
    assert m.score(hist, np.array([a]))[0, item4] > 0
    # the same history anonymously: its nearest user is "a" itself, who brings nothing new
    assert m.score(hist, None)[0, item4] == 0
    assert m.recommend("a", k=1)[0][0] == "4"


def test_als_folds_in_a_history_never_seen_in_training(board: Dataset) -> None:
    m = create_model("als", factors=8, iterations=10).fit(board)
    even = [board.item_map.index(f"i{i}") for i in (2, 4, 6, 8)]
    s = m.score(Ragged.from_lists([even]))[0]
    top = [board.item_map.raw(i) for i in np.argsort(-s)[:10]]
    assert all(int(t[1:]) % 2 == 0 for t in top)


def test_bpr_scores_follow_the_history(board: Dataset) -> None:
    m = create_model("bpr", factors=8, iterations=50).fit(board)
    odd = [board.item_map.index(f"i{i}") for i in (1, 3, 5)]
    ids, _ = m.recommend(histories=[[board.item_map.raw(i) for i in odd]], k=5)
    assert all(int(t[1:]) % 2 == 1 for t in ids[0])


def test_recency_decayed_popularity_prefers_what_is_popular_now() -> None:
    day = 86400
    rows = [(f"e{n}", f"u{n}", "old", n, "click", None) for n in range(5)]  # 5 events at t≈0
    rows += [(f"f{n}", f"v{n}", "new", 100 * day + n, "click", None) for n in range(3)]  # 3 recent events
    ds = Dataset.build(
        pl.DataFrame(
            rows, schema=["event_id", "user_id", "item_id", "timestamp", "event_type", "value"], orient="row"
        )
    )
    plain, _ = create_model("most-popular").fit(ds).recommend("nobody", k=2, unknown="popular")
    decayed, _ = create_model("most-popular", half_life_days=7).fit(ds).recommend("nobody", k=2,
                                                                                  unknown="popular")
    assert list(plain) == ["old", "new"] and list(decayed) == ["new", "old"]


def test_content_lm_ranks_items_nobody_touched_and_items_added_later(
    board: Dataset, board_vectors: np.ndarray
) -> None:
    m = create_model("content-lm").fit(board, item_vectors=board_vectors)
    assert m.text_space_ == TextSpace(dim=board_vectors.shape[1])  # injected: encoder unknown
    # an item added after fitting with a vector like the even items
    new_vec = board_vectors[board.item_map.index("i0")][None, :] * 1.01
    m.add_items(["fresh-even"], [["even"]], vectors=new_vec)
    ids, _ = m.recommend("u0", k=3)
    assert "fresh-even" in set(ids), list(ids)
    # no behaviour at all behind it: popularity is zero, yet it is ranked by its text
    assert m.popularity_[m.item_map.index("fresh-even")] == 0
    # an item added without a vector ranks last, not first
    m.add_items(["no-text"])
    ids_all, _ = m.recommend("u0", k=m.n_items)
    real = [i for i in ids_all if i]
    assert real[-1] == "no-text"


def test_content_lm_recency_weighting_follows_the_latest_items(
    board: Dataset, board_vectors: np.ndarray
) -> None:
    m = create_model("content-lm", half_life=1.0, center=False).fit(board, item_vectors=board_vectors)
    hist = [board.item_map.index(f"i{i}") for i in (2, 4, 6, 8, 1)]  # mostly even, latest odd
    s = m.score(Ragged.from_lists([hist]))[0]
    best = board.item_map.raw(int(np.argmax(np.where(np.isin(np.arange(len(s)), hist), -np.inf, s))))
    assert int(best[1:]) % 2 == 1
    flat = create_model("content-lm", half_life=0.0, center=False).fit(board, item_vectors=board_vectors)
    s2 = flat.score(Ragged.from_lists([hist]))[0]
    best2 = board.item_map.raw(int(np.argmax(np.where(np.isin(np.arange(len(s2)), hist), -np.inf, s2))))
    assert int(best2[1:]) % 2 == 0


def test_item_vectors_must_match_the_catalogue(board: Dataset) -> None:
    with pytest.raises(ValueError, match="item vectors must have shape"):
        create_model("content-lm").fit(board, item_vectors=np.zeros((3, 4), dtype=np.float32))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "low", "high"), [("itemknn", 0.085, 0.13), ("ease", 0.07, 0.11), ("als", 0.065, 0.10)]
)
def test_quality_band_on_movielens_validation(ml100k: Dataset, name: str, low: float, high: float) -> None:
    """Two-sided band on ML-100K leave-one-out validation, full ranking: a jump fails as loudly as a drop."""
    from lmrec.data.splits import leave_one_out
    from lmrec.evaluation import evaluate

    split = leave_one_out(ml100k)
    m = create_model(name).fit(split.train)
    ndcg = evaluate(m, split.valid, split.train, (10,)).mean("NDCG@10")
    assert low <= ndcg <= high, f"{name} NDCG@10 {ndcg:.4f} outside [{low}, {high}]"
