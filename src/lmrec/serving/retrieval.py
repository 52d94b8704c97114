"""Nearest items by inner product: exact for small catalogues, a FAISS HNSW index with exact re-scoring above.

Vectors are index-aligned with the model's item indices (row 0 is padding and never returned). New items join
the index on arrival (:meth:`VectorIndex.upsert`); a changed item gets its new vector in the exact matrix at
once, and since every ANN candidate is re-scored against that matrix, its stale graph entry only affects which
candidates are found, never their scores.
"""

from __future__ import annotations

import threading

import numpy as np

from lmrec.data.schema import PAD
from lmrec.models.base import NEG_INF, topk


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


class VectorIndex:
    """Top-k inner-product search over item vectors.

    Parameters
    ----------
    vectors:
        ``(n_items + 1, d)`` float32, row ``i`` for item index ``i`` (row 0 is padding).
    threshold:
        Up to this many items, search is exact (one matrix product); above it, a FAISS ``IndexHNSWFlat`` with
        inner-product metric proposes candidates that are re-scored exactly.
    candidates:
        Candidates the graph returns per query before re-scoring (at least ``4 k``).
    hnsw_m, ef_search:
        HNSW degree and search breadth.
    """

    def __init__(self, vectors: np.ndarray, *, threshold: int = 50_000, candidates: int = 200,
                 hnsw_m: int = 32,
                 ef_search: int = 128) -> None:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if v.ndim != 2 or len(v) < 1:
            raise ValueError(f"vectors must be (n_items + 1, d), got shape {v.shape}")
        self.dim = v.shape[1]
        self._n = len(v)
        # Spare capacity (grown by half when full) so that adding items one batch at a time stays cheap.
        self._buf = np.zeros((self._n + max(64, self._n // 8), self.dim), dtype=np.float32)
        self._buf[: self._n] = v
        self._buf[PAD] = 0.0
        self.threshold = threshold
        self.n_candidates = candidates
        self._lock = threading.Lock()
        self._ann = None
        self._ann_size = 0  # rows 1.._ann_size are in the graph
        self._m, self._ef = hnsw_m, ef_search
        if self.n_items > threshold:
            self._build_ann()

    # ------------------------------------------------------------------ size and contents
    @property
    def n_items(self) -> int:
        return self._n - 1

    @property
    def vectors(self) -> np.ndarray:
        """The current ``(n_items + 1, d)`` matrix (a view: do not write to it)."""
        return self._buf[: self._n]

    @property
    def uses_ann(self) -> bool:
        return self._ann is not None

    def _build_ann(self) -> None:
        import faiss

        index = faiss.IndexHNSWFlat(self.dim, self._m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, self._m * 2)
        index.hnsw.efSearch = self._ef
        index.add(self._buf[1 : self._n])  # graph id j is item index j + 1
        self._ann, self._ann_size = index, self._n - 1

    def upsert(self, indices: np.ndarray, vectors: np.ndarray) -> None:
        """Set the vectors of item ``indices`` (new indices must continue the sequence ``n_items + 1,
        ...``)."""
        indices = np.asarray(indices, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(indices), self.dim)
        with self._lock:
            top = int(indices.max(initial=0)) + 1
            if top > len(self._buf):
                grown = np.zeros((max(top + 64, len(self._buf) * 3 // 2), self.dim), dtype=np.float32)
                grown[: self._n] = self._buf[: self._n]
                self._buf = grown
            self._buf[indices] = vectors
            self._n = max(self._n, top)
            if self._ann is None and self.n_items > self.threshold:
                self._build_ann()
            elif self._ann is not None and self._n - 1 > self._ann_size:
                self._ann.add(self._buf[self._ann_size + 1 : self._n])
                self._ann_size = self._n - 1

    # ------------------------------------------------------------------ search
    def scores(self, queries: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Exact inner products ``(rows, n_items + 1)``, or ``(rows, len(items))`` for chosen items."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        mat = self.vectors if items is None else self.vectors[np.asarray(items, dtype=np.int64)]
        return q @ mat.T

    def search(self, queries: np.ndarray, k: int, *, mask: np.ndarray | None = None,
               exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and inner products per query row, best first.

        ``mask`` (``(n_items + 1,)`` bool) keeps only allowed items. Rows with fewer than ``k`` allowed items
        are padded with index 0 and ``-inf``. With an index, a row whose candidates leave fewer than ``k``
        allowed items is answered exactly, so filters never shorten a list.
        """
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if self._ann is None or exact:
            return self._exact(q, k, mask)
        n_cand = min(self._ann_size, max(self.n_candidates, 4 * k))
        with self._lock:
            _, found = self._ann.search(q, n_cand)
        out_idx = np.zeros((len(q), k), dtype=np.int64)
        out_sc = np.full((len(q), k), NEG_INF, dtype=np.float32)
        for r in range(len(q)):
            cand = found[r][found[r] >= 0] + 1
            if mask is not None:
                cand = cand[cand < len(mask)]
                cand = cand[mask[cand]]
            if len(cand) < k:
                i, s = self._exact(q[r : r + 1], k, mask)
                out_idx[r], out_sc[r] = i[0], s[0]
                continue
            sc = self.vectors[cand] @ q[r]  # exact re-scoring
            order = np.lexsort((cand, -sc))[:k]
            out_idx[r], out_sc[r] = cand[order], sc[order]
        return out_idx, out_sc

    def candidates(self, queries: np.ndarray, n: int) -> np.ndarray:
        """Up to ``n`` candidate item indices per query, unordered, for a caller that re-scores them itself.

        Exact search when there is no graph. Returns ``(rows, n)`` with 0 where fewer were found.
        """
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if self._ann is None:
            return self._exact(q, n, None)[0]
        with self._lock:
            _, found = self._ann.search(q, min(n, self._ann_size))
        return np.where(found >= 0, found + 1, PAD).astype(np.int64)

    def _exact(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        sc = self.scores(q)
        sc[:, PAD] = NEG_INF
        if mask is not None:
            sc[:, ~mask[: sc.shape[1]]] = NEG_INF
        idx, val = topk(sc, k)
        idx[~np.isfinite(val)] = PAD
        return idx, val
