"""Ranking and beyond-accuracy metrics: pure functions on arrays, one value per user.

Ranking metrics take a boolean ``hits`` matrix ``(users, K)`` (``hits[u, r]`` is true when the item at rank
``r`` of user ``u``'s list is one of their targets, best rank first) and ``n_targets`` ``(users,)``. Use
:func:`hit_matrix` to build it from ranked item indices and a :class:`~lmrec.data.ragged.Ragged` of targets.
The ranking metrics are defined in :mod:`lmrec.data.ranking` (next to the top-k they score, so that the
validation of models during training uses the same code) and re-exported here; the beyond-accuracy metrics are
defined here. Every function returns per-user values, so confidence intervals and paired tests can be computed
from them (:mod:`lmrec.evaluation.stats`); the mean over users is the reported number.

References
----------
Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques", ACM TOIS 2002 (NDCG).
Castells, Hurley & Vargas, "Novelty and Diversity in Recommender Systems", Recommender Systems Handbook 2015
(novelty as mean self-information, intra-list diversity).
Zhou et al., "Solving the apparent diversity-accuracy dilemma of recommender systems", PNAS 2010 (novelty).
"""

from __future__ import annotations

import numpy as np

from lmrec.data.ranking import (
    average_precision,
    hit_matrix,
    hit_rate,
    ndcg,
    precision,
    recall,
    reciprocal_rank,
)
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
