"""ContentLM: the zero-shot text recommender (no training on behaviour at all)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.models._linalg import recency_weights
from lmrec.models.base import Recommender, register, scores_for_items
from lmrec.models.capabilities import ColdStartItems, LinearScores, UserEmbeddings

#: Score of items without a text vector: below any cosine, so they rank last but are not filtered out.
NO_VECTOR_SCORE = np.float32(-2.0)


@register("content-lm")
class ContentLM(Recommender, UserEmbeddings, LinearScores, ColdStartItems):
    """Rank items by the cosine between their language-model text vector and the user's history vector.

    The history vector is the (recency-weighted) mean of the normalised vectors of the history's items.
    Sentence vectors are anisotropic (they share a large common direction), so by default the catalogue mean
    is removed before normalising, a light form of the whitening that UniSRec found essential. Because
    nothing is learned from behaviour, items nobody has interacted with, and items added after fitting
    (:meth:`add_items` with their text or vector), are scored like any other: this is the cold-start model.

    References
    ----------
    Hou et al., "Towards Universal Sequence Representation Learning for Recommender Systems" (UniSRec),
    KDD 2022.
    Reimers & Gurevych, "Sentence-BERT", EMNLP 2019 (the default encoder family).
    """

    needs_item_vectors = True
    #: (unit vectors it was made from, fixed scores) of :meth:`linear_table`
    _linear: tuple[np.ndarray, np.ndarray] | None = None

    @dataclass(frozen=True)
    class Config:
        #: Recency half-life in history steps; 0 gives every history item the same weight (3 was the best of
        #: 0, 3, 10, 30 on ML-100K leave-one-out validation, NDCG@10 0.039).
        half_life: float = 3.0
        #: Only the last ``max_history`` items of a history are used (0 = all).
        max_history: int = 50
        #: Subtract the catalogue's mean vector before normalising (reduces anisotropy).
        center: bool = True

    def _fit(self, dataset: Dataset, valid: object = None) -> None:
        assert self.item_vectors_ is not None
        self._prepare(new_center=True)

    def _prepare(self, new_center: bool = False) -> None:
        """Normalised (and centred) item vectors; rows without a vector stay zero and are flagged.

        The centre is the fitted catalogue's mean vector; items added later are centred with it, unchanged, so
        adding items never moves the scores of the others.
        """
        assert self.item_vectors_ is not None
        v = self.item_vectors_.astype(np.float32)
        self.has_vector_ = np.linalg.norm(v, axis=1) > 0
        self.has_vector_[0] = False
        if new_center or not hasattr(self, "center_"):
            self.center_ = (
                v[self.has_vector_].mean(axis=0)
                if self.config.center and self.has_vector_.any()
                else np.zeros(v.shape[1], dtype=np.float32)
            ).astype(np.float32)
        v = np.where(self.has_vector_[:, None], v - self.center_[None, :], 0.0)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.unit_vectors_ = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0).astype(np.float32)

    def item_embeddings(self) -> np.ndarray:
        """The unit (centred) text vectors ``(n_items + 1, d)``; zero rows for items without a vector."""
        return self.unit_vectors_

    def user_embeddings(self, histories: Ragged, users: np.ndarray | None = None) -> np.ndarray:
        """``(rows, d)`` unit history vectors (zero for histories without any item that has a vector)."""
        if self.config.max_history > 0:
            keep_from = np.maximum(histories.offsets[1:] - self.config.max_history, histories.offsets[:-1])
            pos = np.arange(len(histories.values))
            row = histories.row_ids()
            mask = pos >= keep_from[row]
            lengths = np.bincount(row[mask], minlength=len(histories))
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            histories = Ragged(offsets, histories.values[mask])
        items = histories.values.astype(np.int64)
        items = np.where(items < len(self.unit_vectors_), items, 0)
        w = recency_weights(histories, self.config.half_life) * self.has_vector_[items]
        u = np.zeros((len(histories), self.unit_vectors_.shape[1]), dtype=np.float32)
        np.add.at(u, histories.row_ids(), self.unit_vectors_[items] * w[:, None])
        norms = np.linalg.norm(u, axis=1, keepdims=True)
        return np.divide(u, norms, out=np.zeros_like(u), where=norms > 0)

    def score(
        self, histories: Ragged, users: np.ndarray | None = None, items: np.ndarray | None = None
    ) -> np.ndarray:
        u = self.user_embeddings(histories)
        if items is None:  # the whole table as it is (indexing it with every column would copy it first)
            cols, table, has = None, self.unit_vectors_, self.has_vector_
        else:
            cols = np.asarray(items, dtype=np.int64)
            table, has = self.unit_vectors_[cols], self.has_vector_[cols]
        s = u @ table.T
        s[:, ~has] = NO_VECTOR_SCORE
        s[np.linalg.norm(u, axis=1) == 0] = -np.inf  # nothing to go on: the base falls back to popularity
        s = s.astype(np.float32, copy=False)
        if cols is None:
            return scores_for_items(s, None)
        s[:, cols == 0] = -np.inf
        return s

    def linear_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores as inner products (:class:`LinearScores`): the unit item vectors; items without a vector
        score ``NO_VECTOR_SCORE``."""
        if self._linear is None or self._linear[0] is not self.unit_vectors_:
            fixed = np.where(self.has_vector_, np.float32(np.nan), NO_VECTOR_SCORE).astype(np.float32)
            fixed[PAD] = -np.inf
            self._linear = (self.unit_vectors_, fixed)
        return self._linear

    def linear_queries(self, histories: Ragged, users: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(self.user_embeddings(histories), dtype=np.float32)

    def _on_items_added(self, indices: np.ndarray) -> None:
        # The base class has already appended the new items' vectors (zeros when none were given).
        self._prepare()

    def _state(self) -> dict[str, np.ndarray]:
        return {"center": self.center_}

    def _load_state(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        if self.item_vectors_ is None:
            raise ValueError(f"{path} has no item vectors (base.item_vectors): it was not saved by ContentLM")
        self.center_ = arrays["center"]
        self._prepare()
