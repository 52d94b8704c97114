"""Diversity re-ranking by maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998)."""

from __future__ import annotations

import numpy as np


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Positions of ``k`` candidates picked greedily by ``(1 - weight) * relevance - weight * max
    similarity``.

    Parameters
    ----------
    relevance:
        ``(n,)`` model scores of the candidates (any scale: they are min-max scaled to ``[0, 1]``; ``-inf``
        rows are never picked).
    vectors:
        ``(n, d)`` unit-length candidate vectors; similarity is their inner product.
    k:
        How many to pick.
    weight:
        ``0`` keeps the relevance order; ``1`` picks only for novelty after the first.

    Returns
    -------
    ``int64 (min(k, n_finite),)`` positions into the candidate arrays, in picking order.
    """
    rel = np.asarray(relevance, dtype=np.float64)
    ok = np.isfinite(rel)
    n = int(ok.sum())
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = rel[ok].min(), rel[ok].max()
    scaled = np.where(ok, (rel - lo) / (hi - lo) if hi > lo else 1.0, -np.inf)
    if weight <= 0:
        return np.argsort(-scaled, kind="stable")[: min(k, n)].astype(np.int64)
    sim = np.asarray(vectors, dtype=np.float64) @ np.asarray(vectors, dtype=np.float64).T  # (n, n)
    max_sim = np.full(len(rel), -np.inf)
    picked: list[int] = []
    available = ok.copy()
    for _ in range(min(k, n)):
        redundancy = np.where(np.isfinite(max_sim), max_sim, 0.0)
        gain = np.where(available, (1.0 - weight) * scaled - weight * redundancy, -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, sim[best])
    return np.asarray(picked, dtype=np.int64)
