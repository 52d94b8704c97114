"""Small sparse/dense helpers shared by the collaborative models (history matrices, recency, saving)."""

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
