"""Small sparse/dense helpers shared by the collaborative models (history matrices, top-k pruning)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD


def history_matrix(histories: Ragged, n_cols: int, binary: bool = True) -> sp.csr_matrix:
    """``(rows, n_cols)`` CSR matrix of each row's items (1 per distinct item, or counts when not binary).

    Item indices at or beyond ``n_cols`` (items added after fitting) and padding are dropped.
    """
    values = histories.values.astype(np.int64)
    keep = (values < n_cols) & (values != PAD)
    rows = histories.row_ids()[keep]
    cols = values[keep]
    m = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(histories), n_cols))
    m.sum_duplicates()
    if binary and m.nnz:
        m.data[:] = 1.0
    return m


def prune_columns_topk(dense_block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and values of the ``k`` largest positive entries of every column of ``dense_block``.

    Returns ``(rows, vals)``, each ``(k, n_cols)``; entries that are not positive are returned with value 0.
    """
    n = dense_block.shape[0]
    k = min(k, n)
    if k < n:
        idx = np.argpartition(-dense_block, k - 1, axis=0)[:k]
    else:
        idx = np.broadcast_to(np.arange(n)[:, None], dense_block.shape).copy()
    vals = np.take_along_axis(dense_block, idx, axis=0)
    vals = np.where(vals > 0, vals, 0.0)
    return idx, vals


def topk_sparse_similarity(
    gram: sp.spmatrix, norms: np.ndarray, k: int, shrink: float, chunk: int = 512
) -> sp.csc_matrix:
    """Cosine similarity with shrinkage from a co-occurrence (Gram) matrix, keeping ``k`` neighbours per
    column.

    ``sim[i, j] = gram[i, j] / (norms[i] * norms[j] + shrink)``, the diagonal set to zero. Computed in column
    chunks so that at most ``(n, chunk)`` dense values exist at once.
    """
    gram = sp.csc_matrix(gram, dtype=np.float32)
    n = gram.shape[0]
    rows_out, cols_out, vals_out = [], [], []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = gram[:, start:stop].toarray()  # (n, chunk)
        denom = norms[:, None] * norms[None, start:stop] + shrink
        with np.errstate(divide="ignore", invalid="ignore"):
            block = np.where(denom > 0, block / np.maximum(denom, 1e-12), 0.0).astype(np.float32)
        block[np.arange(start, stop), np.arange(stop - start)] = 0.0  # no self-similarity
        idx, vals = prune_columns_topk(block, k)
        cols = np.broadcast_to(np.arange(start, stop)[None, :], idx.shape)
        nz = vals > 0
        rows_out.append(idx[nz])
        cols_out.append(cols[nz])
        vals_out.append(vals[nz])
    rows = np.concatenate(rows_out) if rows_out else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(cols_out) if cols_out else np.zeros(0, dtype=np.int64)
    vals = np.concatenate(vals_out) if vals_out else np.zeros(0, dtype=np.float32)
    return sp.csc_matrix((vals.astype(np.float32), (rows, cols)), shape=(n, n))


def recency_weights(histories: Ragged, half_life: float) -> np.ndarray:
    """A weight per history value: ``0.5 ** (steps_from_end / half_life)`` (all 1 when ``half_life <= 0``)."""
    if half_life <= 0 or len(histories.values) == 0:
        return np.ones(len(histories.values), dtype=np.float32)
    ends = np.repeat(histories.offsets[1:], histories.lengths)
    from_end = ends - 1 - np.arange(len(histories.values))
    return np.power(0.5, from_end / half_life).astype(np.float32)


def save_csr(prefix: str, m: sp.spmatrix) -> dict[str, np.ndarray]:
    """A sparse matrix as plain arrays for ``npz`` (no pickles)."""
    m = sp.csr_matrix(m)
    return {
        f"{prefix}_data": m.data,
        f"{prefix}_indices": m.indices,
        f"{prefix}_indptr": m.indptr,
        f"{prefix}_shape": np.asarray(m.shape, dtype=np.int64),
    }


def load_csr(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape
    )
