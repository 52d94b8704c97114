"""Item-item similarity from co-occurrence in users' histories (ItemKNN's; fine-tuning pairs draw on it), and
the items' spectral factors of the same matrix (SeqRec's start for its id table)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from lmrec.data.dataset import Dataset


def item_similarity(dataset: Dataset, k: int, shrink: float = 0.0) -> sp.csc_matrix:
    """Shrunk cosine over the binary user-item matrix of ``dataset``, ``(items + 1, items + 1)``: column ``j``
    holds item ``j``'s ``k`` most similar items (:func:`topk_sparse_similarity`)."""
    x = dataset.interaction_matrix(binary=True).astype(np.float32)  # (users+1, items+1)
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel()).astype(np.float32)
    return topk_sparse_similarity((x.T @ x).tocsc(), norms, k, shrink)


def topk_sparse_similarity(gram: sp.spmatrix, norms: np.ndarray, k: int, shrink: float) -> sp.csc_matrix:
    """Cosine similarity with shrinkage from a co-occurrence (Gram) matrix, ``k`` neighbours kept per column.

    ``sim[i, j] = gram[i, j] / (norms[i] * norms[j] + shrink)``, the diagonal set to zero. Works on the Gram
    matrix's non-zeros only (pairs of items that share a user), so memory and time follow the number of
    co-occurring pairs, never ``n_items²``. Ties at the k-th value keep the lower row index.
    """
    g = sp.csc_matrix(gram, dtype=np.float32)
    g.sum_duplicates()
    n = g.shape[0]
    cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(g.indptr))
    rows = g.indices.astype(np.int64)
    denom = norms[rows].astype(np.float32) * norms[cols].astype(np.float32) + np.float32(shrink)
    vals = np.divide(g.data, denom, out=np.zeros_like(g.data), where=denom > 0)
    keep = (rows != cols) & (vals > 0)
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    # Order by column, then similarity descending, then row ascending; keep each column's first k entries.
    order = np.lexsort((rows, -vals, cols))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(cols, np.arange(n))
    rank = np.arange(len(cols)) - starts[cols]
    top = rank < k
    return sp.csc_matrix((vals[top], (rows[top], cols[top])), shape=(n, n))


#: Users × items up to which :func:`spectral_item_factors` takes a dense, exact SVD (32 MiB of float64):
#: ARPACK is inexact when the factors asked for are nearly all there are, as in a small catalogue.
DENSE_SVD_ENTRIES = 2**22


def spectral_item_factors(dataset: Dataset, dim: int, seed: int = 0) -> np.ndarray | None:
    """Items' top ``dim`` spectral factors of the binary user-item matrix: ``(items + 1, k)``, ``k ≤ dim``.

    The matrix's columns are scaled by ``count ** -1/4`` first, and the factors are ``V·√S`` of its truncated
    SVD, so that ``factors @ factors.T`` approximates item co-occurrence damped by popularity,
    ``co(i, j) / (count_i · count_j) ** 1/4``. Row 0 (padding) and items without events are zeros. ``k`` is
    ``dim`` unless the matrix is smaller (``min(shape) - 1``); ``None`` when that leaves nothing. A matrix of
    up to :data:`DENSE_SVD_ENTRIES` entries takes LAPACK's exact SVD, a larger one ARPACK's
    (``scipy.sparse.linalg.svds``, start vector seeded by ``seed``), whose time follows the non-zeros.
    """
    x = dataset.interaction_matrix(binary=True).astype(np.float64)
    k = min(dim, min(x.shape) - 1)
    if k < 1 or x.nnz == 0:
        return None
    counts = np.asarray(x.sum(axis=0)).ravel()
    scale = np.zeros_like(counts)
    np.power(counts, -0.25, out=scale, where=counts > 0)
    scaled = (x @ sp.diags(scale)).tocsr()
    if x.shape[0] * x.shape[1] <= DENSE_SVD_ENTRIES:
        _, s, vt = np.linalg.svd(scaled.toarray(), full_matrices=False)
        s, vt = s[:k], vt[:k]
    else:
        _, s, vt = svds(scaled, k=k, random_state=seed)
    factors = (vt.T * np.sqrt(np.clip(s, 0, None))).astype(np.float32)
    factors[counts == 0] = 0.0  # exactly (the solver leaves rounding noise in empty columns)
    return factors
