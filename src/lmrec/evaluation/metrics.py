"""Ranking and beyond-accuracy metrics: pure functions on arrays, one value per user.

Ranking metrics take a boolean ``hits`` matrix ``(users, K)`` (``hits[u, r]`` is true when the item at rank
``r`` of user ``u``'s list is one of their targets, best rank first) and ``n_targets`` ``(users,)``. Use
:func:`hit_matrix` to build it from ranked item indices and a :class:`~lmrec.data.ragged.Ragged` of targets.
Every function returns per-user values, so confidence intervals and paired tests can be computed from them
(:mod:`lmrec.evaluation.stats`); the mean over users is the reported number.

References
----------
Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques", ACM TOIS 2002 (NDCG).
Castells, Hurley & Vargas, "Novelty and Diversity in Recommender Systems", Recommender Systems Handbook 2015
(novelty as mean self-information, intra-list diversity).
Zhou et al., "Solving the apparent diversity-accuracy dilemma of recommender systems", PNAS 2010 (novelty).
"""

from __future__ import annotations

import numpy as np

from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD

__all__ = [
    "average_popularity",
    "average_precision",
    "catalogue_coverage",
    "gini_index",
    "hit_matrix",
    "hit_rate",
    "intra_list_diversity",
    "ndcg",
    "novelty",
    "precision",
    "recall",
    "reciprocal_rank",
    "tail_share",
]


def hit_matrix(ranked: np.ndarray, targets: Ragged) -> tuple[np.ndarray, np.ndarray]:
    """``(hits, n_targets)`` for ranked item indices ``(users, K)`` against each user's target items.

    Padding entries (index 0) in ``ranked`` never hit. Duplicate targets count once.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    n_users, k = ranked.shape
    if len(targets) != n_users:
        raise ValueError(f"{len(targets)} target rows for {n_users} ranked rows")
    hits = np.zeros((n_users, k), dtype=bool)
    n_targets = np.zeros(n_users, dtype=np.int64)
    if len(targets.values) == 0:
        return hits, n_targets
    # Vectorised membership: encode (row, item) pairs as one int64 key and test with isin on sorted keys.
    stride = np.int64(max(int(ranked.max(initial=0)), int(targets.values.max(initial=0))) + 1)
    t_rows = targets.row_ids()
    t_vals = targets.values.astype(np.int64)
    keep = t_vals != PAD
    t_keys = np.unique(t_rows[keep] * stride + t_vals[keep])
    n_targets = np.bincount(t_keys // stride, minlength=n_users).astype(np.int64)
    r_keys = np.arange(n_users, dtype=np.int64)[:, None] * stride + ranked
    hits = np.isin(r_keys, t_keys) & (ranked != PAD)
    return hits, n_targets


def _cut(hits: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > hits.shape[1]:
        raise ValueError(f"k={k} is longer than the ranked lists ({hits.shape[1]})")
    return hits[:, :k]


def hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    """HR@K: 1 when any target is in the top ``k``, else 0."""
    return _cut(hits, k).any(axis=1).astype(np.float64)


def recall(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """Recall@K: targets in the top ``k`` divided by ``min(k, n_targets)`` (equals HR@K for one target).

    Dividing by ``min(k, |targets|)`` rather than ``|targets|`` keeps a perfect list at 1 when a user has more
    targets than ``k`` slots (the convention of Liang et al., "Variational Autoencoders for Collaborative
    Filtering", WWW 2018). Users without targets get 0.
    """
    found = _cut(hits, k).sum(axis=1)
    denom = np.minimum(k, n_targets)
    return np.divide(found, denom, out=np.zeros(len(found), dtype=np.float64), where=denom > 0)


def precision(hits: np.ndarray, k: int) -> np.ndarray:
    """Precision@K: targets in the top ``k`` divided by ``k``."""
    return _cut(hits, k).sum(axis=1) / float(k)


def ndcg(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K with binary relevance: ``DCG = sum_r hit_r / log2(r + 2)``, divided by the ideal DCG of
    ``min(k, n_targets)`` hits at the top. Users without targets get 0."""
    h = _cut(hits, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (h * discounts).sum(axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cum[np.minimum(k, n_targets)]
    return np.divide(dcg, idcg, out=np.zeros(len(dcg), dtype=np.float64), where=idcg > 0)


def reciprocal_rank(hits: np.ndarray, k: int) -> np.ndarray:
    """MRR@K per user: ``1 / rank`` of the first target in the top ``k`` (ranks from 1), else 0."""
    h = _cut(hits, k)
    first = np.argmax(h, axis=1)
    found = h.any(axis=1)
    return np.where(found, 1.0 / (first + 1), 0.0)


def average_precision(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """AP@K: mean of precision@r over the ranks ``r <= k`` that hit, divided by ``min(k, n_targets)``
    (MAP@K is its mean over users)."""
    h = _cut(hits, k).astype(np.float64)
    prec_at_r = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    denom = np.minimum(k, n_targets)
    return np.divide(
        (prec_at_r * h).sum(axis=1), denom, out=np.zeros(len(h), dtype=np.float64), where=denom > 0
    )


# ---------------------------------------------------------------------- beyond accuracy
def _valid(ranked: np.ndarray) -> np.ndarray:
    return np.asarray(ranked, dtype=np.int64) != PAD


def catalogue_coverage(ranked: np.ndarray, n_items: int) -> float:
    """Share of the catalogue's ``n_items`` real items that appear in at least one list (one number)."""
    r = np.asarray(ranked, dtype=np.int64)
    shown = np.unique(r[r != PAD])
    return float(len(shown) / n_items) if n_items else 0.0


def exposure(ranked: np.ndarray, n_items: int) -> np.ndarray:
    """How many lists each item index appears in, ``(n_items + 1,)`` (index 0 unused)."""
    r = np.asarray(ranked, dtype=np.int64)
    return np.bincount(r[r != PAD], minlength=n_items + 1).astype(np.int64)


def gini_index(ranked: np.ndarray, n_items: int) -> float:
    """Gini coefficient of item exposure over the whole catalogue (0 = every item shown equally often, → 1 =
    all exposure on one item). Items never shown count as zero exposure.

    ``G = sum_i (2i - n - 1) x_(i) / (n sum x)`` for exposures sorted ascending, ``i = 1..n``.
    """
    x = np.sort(exposure(ranked, n_items)[1:]).astype(np.float64)
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))


def average_popularity(ranked: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Mean training popularity (events) of each user's recommended items (ARP, Abdollahpouri et al. 2019)."""
    r = np.asarray(ranked, dtype=np.int64)
    ok = r != PAD
    pop = np.asarray(popularity, dtype=np.float64)[r] * ok
    n = ok.sum(axis=1)
    return np.divide(pop.sum(axis=1), n, out=np.zeros(len(r), dtype=np.float64), where=n > 0)


def tail_share(ranked: np.ndarray, is_tail: np.ndarray) -> np.ndarray:
    """Share of each user's recommended items that are long-tail (``is_tail``: ``(n_items + 1,)`` bool)."""
    r = np.asarray(ranked, dtype=np.int64)
    ok = r != PAD
    t = np.asarray(is_tail, dtype=bool)[r] & ok
    n = ok.sum(axis=1)
    return np.divide(t.sum(axis=1), n, out=np.zeros(len(r), dtype=np.float64), where=n > 0)


def novelty(ranked: np.ndarray, popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Mean self-information ``-log2 p(i)`` of each user's recommended items, ``p(i) = pop(i) / n_users`` (the
    share of users who interacted with ``i``). Items without any training event use ``p = 1 / n_users`` (the
    most novel a seen item could be), so the value stays finite."""
    if n_users < 1:
        raise ValueError("n_users must be >= 1")
    r = np.asarray(ranked, dtype=np.int64)
    ok = r != PAD
    p = np.clip(np.asarray(popularity, dtype=np.float64), 1.0, None) / n_users
    info = -np.log2(np.clip(p, None, 1.0))[r] * ok
    n = ok.sum(axis=1)
    return np.divide(info.sum(axis=1), n, out=np.zeros(len(r), dtype=np.float64), where=n > 0)


def intra_list_diversity(ranked: np.ndarray, vectors: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``1 - mean pairwise cosine`` of the item vectors in each list (ILD, Ziegler et al., WWW 2005).

    Lists with fewer than two real items (or items without vectors) get ``nan`` (undefined); pass them to
    ``np.nanmean``. ``vectors`` is ``(n_items + 1, d)`` (row 0 = padding).
    """
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    has = norms[:, 0] > 0
    r = np.asarray(ranked, dtype=np.int64)
    out = np.full(len(r), np.nan)
    for start in range(0, len(r), chunk):
        rr = r[start : start + chunk]
        ok = (rr != PAD) & has[rr]
        u = unit[rr] * ok[..., None]  # (rows, K, d)
        s = u.sum(axis=1)
        # sum over pairs i != j of cos = |sum u|² - sum |u|²; there are n(n-1) ordered pairs
        pair_sum = (s * s).sum(axis=1) - (u * u).sum(axis=(1, 2))
        n = ok.sum(axis=1).astype(np.float64)
        pairs = n * (n - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + chunk] = np.where(pairs > 0, 1.0 - pair_sum / pairs, np.nan)
    return out
