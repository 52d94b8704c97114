"""Every metric against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmrec.data.ragged import Ragged
from lmrec.evaluation import metrics as M
from lmrec.evaluation.stats import bootstrap_ci, paired_test

# Two users, lists of 4. User 0's targets {7, 9}: hits at ranks 2 and 4. User 1's target {5}: hit at rank 1.
RANKED = np.array([[3, 7, 4, 9], [5, 1, 2, 8]])
TARGETS = Ragged.from_lists([[9, 7], [5]])


@pytest.fixture()
def hits() -> tuple[np.ndarray, np.ndarray]:
    return M.hit_matrix(RANKED, TARGETS)


def test_hit_matrix(hits: tuple[np.ndarray, np.ndarray]) -> None:
    h, n = hits
    np.testing.assert_array_equal(h, [[False, True, False, True], [True, False, False, False]])
    np.testing.assert_array_equal(n, [2, 1])


def test_hit_matrix_ignores_padding_and_duplicate_targets() -> None:
    h, n = M.hit_matrix(np.array([[0, 2, 0]]), Ragged.from_lists([[2, 2, 0]]))
    np.testing.assert_array_equal(h, [[False, True, False]])
    np.testing.assert_array_equal(n, [1])


def test_hit_rate_recall_precision(hits: tuple[np.ndarray, np.ndarray]) -> None:
    h, n = hits
    np.testing.assert_allclose(M.hit_rate(h, 1), [0, 1])
    np.testing.assert_allclose(M.hit_rate(h, 2), [1, 1])
    # recall@2: user 0 found 1 of min(2, 2) = 2; recall@4: 2 of 2
    np.testing.assert_allclose(M.recall(h, n, 2), [0.5, 1.0])
    np.testing.assert_allclose(M.recall(h, n, 4), [1.0, 1.0])
    # recall@1 divides by min(1, |T|) = 1
    np.testing.assert_allclose(M.recall(h, n, 1), [0.0, 1.0])
    np.testing.assert_allclose(M.precision(h, 4), [2 / 4, 1 / 4])
    np.testing.assert_allclose(M.precision(h, 2), [1 / 2, 1 / 2])


def test_ndcg(hits: tuple[np.ndarray, np.ndarray]) -> None:
    h, n = hits
    # user 0: DCG = 1/log2(3) + 1/log2(5); IDCG = 1/log2(2) + 1/log2(3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    np.testing.assert_allclose(M.ndcg(h, n, 4), [dcg / idcg, 1.0])
    # @2: DCG = 1/log2(3) = 0.6309, IDCG the same two-hit ideal → 0.6309 / 1.6309
    np.testing.assert_allclose(M.ndcg(h, n, 2), [0.63092975 / 1.63092975, 1.0], rtol=1e-6)
    # one target at rank 3: 1/log2(4) = 0.5
    h1, n1 = M.hit_matrix(np.array([[1, 2, 3]]), Ragged.from_lists([[3]]))
    np.testing.assert_allclose(M.ndcg(h1, n1, 3), [0.5])


def test_mrr_and_map(hits: tuple[np.ndarray, np.ndarray]) -> None:
    h, n = hits
    np.testing.assert_allclose(M.reciprocal_rank(h, 4), [0.5, 1.0])
    np.testing.assert_allclose(M.reciprocal_rank(h, 1), [0.0, 1.0])
    # AP@4 user 0: precision at hit ranks: 1/2 at rank 2, 2/4 at rank 4 → (0.5 + 0.5) / 2 = 0.5
    np.testing.assert_allclose(M.average_precision(h, n, 4), [0.5, 1.0])
    # AP@2 user 0: (1/2) / min(2, 2) = 0.25
    np.testing.assert_allclose(M.average_precision(h, n, 2), [0.25, 1.0])


def test_users_without_targets_score_zero() -> None:
    h, n = M.hit_matrix(np.array([[1, 2]]), Ragged.from_lists([[]]))
    assert M.ndcg(h, n, 2)[0] == 0 and M.recall(h, n, 2)[0] == 0 and M.average_precision(h, n, 2)[0] == 0


def test_k_is_checked(hits: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ValueError):
        M.hit_rate(hits[0], 5)
    with pytest.raises(ValueError):
        M.hit_rate(hits[0], 0)


def test_coverage_and_gini() -> None:
    ranked = np.array([[1, 2], [1, 3]])
    assert M.catalogue_coverage(ranked, 4) == pytest.approx(3 / 4)
    # exposures of items 1..4: [2, 1, 1, 0] → sorted [0, 1, 1, 2], n = 4, sum = 4
    # G = ((2*1-5)*0 + (2*2-5)*1 + (2*3-5)*1 + (2*4-5)*2) / (4 * 4) = (0 - 1 + 1 + 6) / 16 = 0.375
    assert M.gini_index(ranked, 4) == pytest.approx(0.375)
    assert M.gini_index(np.array([[1, 2], [3, 4]]), 4) == pytest.approx(0.0)
    assert M.catalogue_coverage(np.array([[0, 0]]), 4) == 0.0


def test_popularity_tail_and_novelty() -> None:
    pop = np.array([0, 10, 5, 1, 0])  # index 0 = padding
    ranked = np.array([[1, 2], [3, 0]])
    np.testing.assert_allclose(M.average_popularity(ranked, pop), [7.5, 1.0])
    is_tail = np.array([False, False, False, True, True])
    np.testing.assert_allclose(M.tail_share(ranked, is_tail), [0.0, 1.0])
    # 20 users: p = [0.5, 0.25] → info [1, 2] bits → mean 1.5; user 1: p = 1/20 → log2(20)
    np.testing.assert_allclose(M.novelty(ranked, pop, 20), [1.5, math.log2(20)])
    # an item without events counts as p = 1/n_users
    np.testing.assert_allclose(M.novelty(np.array([[4]]), pop, 20), [math.log2(20)])


def test_intra_list_diversity() -> None:
    v = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 0]], dtype=np.float32)
    # items 1 and 2 orthogonal: cos 0 → ILD 1; items 1 and 4 parallel → 0
    # items 1, 2, 3: cos(1,2)=0, cos(1,3)=cos(2,3)=1/sqrt2 → mean = sqrt2/3 → ILD 1 - 0.4714
    ranked = np.array([[1, 2, 0], [1, 4, 0], [1, 2, 3], [1, 0, 0]])
    out = M.intra_list_diversity(ranked, v)
    np.testing.assert_allclose(out[:3], [1.0, 0.0, 1 - math.sqrt(2) / 3], atol=1e-6)
    assert np.isnan(out[3])


def test_bootstrap_ci_brackets_the_mean() -> None:
    x = np.random.default_rng(1).normal(0.3, 0.1, size=2000)
    ci = bootstrap_ci(x, n_boot=500, seed=0)
    assert ci.low < ci.mean < ci.high
    # standard error 0.1/sqrt(2000) = 0.00224 → a 95% half-width near 1.96 * 0.00224 = 0.0044
    assert 0.0035 < ci.half_width < 0.0053
    assert bootstrap_ci(x, n_boot=500, seed=0) == ci  # seeded
    assert math.isnan(bootstrap_ci(np.array([])).mean)


def test_paired_tests_detect_a_real_difference_and_not_a_null_one() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0.5, 0.2, 400)
    b = a - 0.05 + rng.normal(0, 0.05, 400)
    c = a + rng.normal(0, 0.05, 400)
    for method in ("t", "wilcoxon", "bootstrap"):
        res = paired_test(a, b, method=method, n_boot=2000)
        assert res.p_value < 0.001 and res.mean_difference == pytest.approx(0.05, abs=0.01)
        assert paired_test(a, c, method=method, n_boot=2000).p_value > 0.01
    assert paired_test(a, a).p_value == 1.0
    with pytest.raises(ValueError):
        paired_test(a, b[:3])
