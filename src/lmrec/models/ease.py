"""EASE: a closed-form linear item-item autoencoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.models._linalg import history_matrix
from lmrec.models.base import Recommender, register, scores_for_items


class CatalogueTooLargeError(ValueError):
    """EASE needs a dense ``(n_items, n_items)`` inverse; the catalogue is beyond the configured limit."""


@register("ease")
class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder: ``B = argmin ||X - XB||² + λ||B||²`` with ``diag(B) = 0``.

    Closed form: ``P = (XᵀX + λI)⁻¹``, ``B = I - P · diag(1 / diag(P))`` with the diagonal zeroed. Scores are
    ``h B`` for a binary history row ``h``. Time ``O(n³)`` and memory ``O(n²)`` in the number of items, so
    catalogues above ``max_items`` are refused with an error that says what to use instead.

    References
    ----------
    Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.
    """

    @dataclass(frozen=True)
    class Config:
        #: L2 regularisation λ (tuned on the ML-100K leave-one-out validation split: 100; 70-150 are within
        #: 0.0003 NDCG@10 of it, 300 loses 0.005).
        lam: float = 100.0
        #: Largest catalogue for which the dense inverse is attempted (30k items ≈ 3.6 GB in float32).
        max_items: int = 30_000

    def _fit(self, dataset: Dataset, valid: object = None) -> None:
        n = dataset.item_map.size
        if n - 1 > self.config.max_items:
            gb = 4 * n * n * 3 / 2**30
            raise CatalogueTooLargeError(
                f"EASE needs a dense {n - 1:,} x {n - 1:,} inverse (about {gb:.1f} GB); the limit is "
                f"max_items={self.config.max_items:,}. Use itemknn (sparse) or als for this catalogue, "
                "filter rare items (lmrec data ... --min-item-events), or raise max_items if the machine has "
                "the memory."
            )
        if self.config.lam <= 0:
            raise ValueError(f"EASE lam must be > 0, got {self.config.lam}")
        x = dataset.interaction_matrix(binary=True)
        # float64 for small catalogues (exact), float32 for big ones (memory); the pad column stays zero.
        dtype = np.float64 if n <= 10_000 else np.float32
        g = np.asarray((x.T @ x).todense(), dtype=dtype)
        g[np.diag_indices(n)] += self.config.lam
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices(n)] = 0.0
        b[0, :] = 0.0
        b[:, 0] = 0.0
        self.weights_ = b.astype(np.float32)

    def score(
        self, histories: Ragged, users: np.ndarray | None = None, items: np.ndarray | None = None
    ) -> np.ndarray:
        h = history_matrix(histories, self.weights_.shape[0], binary=True)
        if items is not None and self.weights_.shape[0] == self.n_items + 1:
            # only the requested columns: cheaper when scoring a few candidates
            return np.asarray(h @ self.weights_[:, np.asarray(items, dtype=np.int64)], dtype=np.float32)
        return scores_for_items(self._pad_new_items(np.asarray(h @ self.weights_, dtype=np.float32)), items)

    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _load_state(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        self.weights_ = arrays["weights"]
