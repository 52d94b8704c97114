"""Ranked lists against held-out targets: top-k with the seen items excluded, and the ranking metrics.

The one ranking routine of lmrec. :meth:`lmrec.models.base.Recommender.recommend_indices` (and through it
:func:`lmrec.evaluation.evaluate`) ranks with :func:`top_unseen`; the validation that stops a model's training
early (:func:`full_ranking_metrics`) ranks with the same function and scores the lists with the same metrics,
which :mod:`lmrec.evaluation.metrics` re-exports. It sits below every model (it needs only
:class:`~lmrec.data.ragged.Ragged`), so that models and the evaluation layer can both import it.

Ranking metrics take a boolean ``hits`` matrix ``(users, K)`` (``hits[u, r]`` is true when the item at rank
``r`` of user ``u``'s list is one of their targets, best rank first) and ``n_targets`` ``(users,)``, built by
:func:`hit_matrix`; each returns one value per user.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD

NEG_INF = np.float32(-np.inf)


def mask_items(scores: np.ndarray, items: Ragged) -> None:
    """Set ``scores[row, item] = -inf`` for every item of each row (vectorised)."""
    if len(items.values) == 0:
        return
    rows = items.row_ids()
    cols = items.values.astype(np.int64)
    ok = cols < scores.shape[1]
    scores[rows[ok], cols[ok]] = NEG_INF


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest scores per row, best first; equal scores: lower index first.

    ``argpartition`` alone picks an arbitrary subset of the items tied at the k-th value, which would make the
    result depend on the batch or the platform; the tied boundary items are therefore taken in index order.
    NaN counts as ``-inf``.
    """
    scores = np.asarray(scores)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), NEG_INF, scores)
    rows, n = scores.shape
    k_eff = min(k, n)
    if k_eff == 0:
        idx = np.zeros((rows, 0), dtype=np.int64)
    elif k_eff < n:
        part = _partition_topk(scores, k_eff)
        part_vals = np.take_along_axis(scores, part, axis=1)
        kth = part_vals.min(axis=1, keepdims=True)  # (rows, 1) the k-th largest score
        n_tied_in = (part_vals == kth).sum(axis=1)
        n_tied_all = (scores == kth).sum(axis=1)
        idx = part.astype(np.int64)
        # Only rows with more items tied at the k-th score than slots left need the costlier index-order fill.
        spill = np.flatnonzero(n_tied_all > n_tied_in)
        if len(spill):
            s = scores[spill]
            above = s > kth[spill]
            tied = s == kth[spill]
            need = k_eff - above.sum(axis=1, keepdims=True)  # tied items each row still needs
            chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
            idx[spill] = np.nonzero(chosen)[1].reshape(len(spill), k_eff)  # row-major: ascending index
    else:
        idx = np.broadcast_to(np.arange(n, dtype=np.int64), (rows, n)).copy()
    vals = np.take_along_axis(scores, idx, axis=1)
    # primary key -score, secondary the index: equal scores come out in ascending index order
    order = np.lexsort((idx, -vals), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    val = np.take_along_axis(vals, order, axis=1)
    if k_eff < k:
        idx = np.pad(idx, ((0, 0), (0, k - k_eff)))
        val = np.pad(val, ((0, 0), (0, k - k_eff)), constant_values=NEG_INF)
    return idx, val.astype(np.float32)


def _partition_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` largest scores per row, unordered. ``torch.topk`` is several times faster than
    ``np.argpartition`` on wide rows (a 100k-item catalogue); numpy is the fallback."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but the base class does not need it
        return np.argpartition(-scores, k - 1, axis=1)[:, :k]
    t = torch.from_numpy(np.ascontiguousarray(scores))
    return t.topk(k, dim=1, sorted=False).indices.numpy()


def top_unseen(scores: np.ndarray, seen: Ragged | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of a ``(rows, n_items + 1)`` score block with padding and each row's ``seen`` items set to
    ``-inf`` first (in place); returns :func:`topk`'s indices and scores."""
    scores[:, PAD] = NEG_INF
    if seen is not None:
        mask_items(scores, seen)
    return topk(scores, k)


def first_occurrences(cand: np.ndarray) -> np.ndarray:
    """``out[r, j]``: ``cand[r, j]`` is neither padding nor a repeat of an item earlier in row ``r``
    (candidate lists merged from several sources)."""
    order = np.argsort(cand, axis=1, kind="stable")
    sorted_c = np.take_along_axis(cand, order, axis=1)
    dup_sorted = np.zeros_like(sorted_c, dtype=bool)
    dup_sorted[:, 1:] = sorted_c[:, 1:] == sorted_c[:, :-1]
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return (cand != PAD) & ~dup


def full_ranking_metrics(score_rows: Callable[[np.ndarray], np.ndarray], histories: Ragged, targets: Ragged,
                         k: int = 10, batch_size: int = 256) -> dict[str, float]:
    """Mean NDCG@k and HR@k over the rows with a target, every item ranked and each row's history excluded
    (the validation used for early stopping).

    Parameters
    ----------
    score_rows:
        Maps row positions ``(b,)`` to float32 scores ``(b, n_items + 1)``.
    histories, targets:
        Per-row items to exclude and to find.
    batch_size:
        Rows per call of ``score_rows``; rows of similar history length are scored together (less padding).
    """
    n = len(histories)
    ranked = np.zeros((n, k), dtype=np.int64)
    by_length = np.argsort(histories.lengths, kind="stable")
    for start in range(0, n, batch_size):
        rows = by_length[start:start + batch_size]
        scores = np.array(score_rows(rows), dtype=np.float32, copy=True)
        ranked[rows], _ = top_unseen(scores, histories.take(rows), k)
    hits, n_targets = hit_matrix(ranked, targets)
    evaluated = n_targets > 0
    if not evaluated.any():
        return {f"ndcg@{k}": 0.0, f"hr@{k}": 0.0}
    return {f"ndcg@{k}": float(ndcg(hits, n_targets, k)[evaluated].mean()),
            f"hr@{k}": float(hit_rate(hits, k)[evaluated].mean())}


# ---------------------------------------------------------------------- ranking metrics
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


__all__ = ["NEG_INF", "average_precision", "full_ranking_metrics", "hit_matrix", "hit_rate", "mask_items",
           "ndcg", "precision", "recall", "reciprocal_rank", "top_unseen", "topk"]
