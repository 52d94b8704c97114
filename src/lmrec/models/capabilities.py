"""What a model can do beyond ranking, declared as interfaces (in the spirit of cornac's ``ANNMixin`` and
implicit's base classes).

A model lists the capabilities it really has among its base classes; callers (the service) check
``isinstance(model, Capability)`` and use the methods, never attribute names:

* :class:`CatalogueUpdates` — items can be added after fitting and their categories set. Every
  :class:`~lmrec.models.base.Recommender` has it (the base class implements it for all models).
* :class:`ColdStartItems` — items added after fitting are scored at once (from their text, or as new items
  with no events), so they can be recommended without a refit.
* :class:`ItemEmbeddings` — one vector per item, the model's own representation; item-item similarity is
  the cosine of two rows.
* :class:`UserEmbeddings` — a vector per history in the space of :class:`ItemEmbeddings`, such that the
  dot product with an item's vector is the model's score of that item (up to a per-item term such as a
  popularity prior). An inner-product index over the item vectors then proposes candidates, which the caller
  re-scores exactly with ``score(..., items=candidates)``.
* :class:`PredictionHeads` — predictions beyond ranking: rating, next action type, user value.
* :class:`RankingReasons` — a learned ranker says which of its inputs placed an item where it is (the
  retrieve-and-rank pipeline: its features' contributions), for explanations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lmrec.data.ragged import Ragged

if TYPE_CHECKING:
    from lmrec.data.dataset import Dataset


class CatalogueUpdates(ABC):
    """The catalogue can grow after fitting, and item categories can be changed."""

    @abstractmethod
    def add_items(
        self,
        item_ids: Sequence[str],
        categories: Sequence[Sequence[str]] | None = None,
        *,
        vectors: np.ndarray | None = None,
        texts: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Make new raw ids known (ids already known are left as they are); returns the indices of all
        ``item_ids``. Text models take the new items' ``vectors`` (in the model's text space) or ``texts``
        (encoded with the model's own encoder)."""

    @abstractmethod
    def set_item_categories(self, indices: np.ndarray, categories: Sequence[Sequence[str]]) -> None:
        """Replace the categories of the items at ``indices`` (used by category filters)."""


class ColdStartItems(CatalogueUpdates):
    """Items added after fitting get a finite score at once: they can be recommended without a refit."""


class ItemEmbeddings(ABC):
    """The model's own item representation."""

    @abstractmethod
    def item_embeddings(self) -> np.ndarray:
        """``float32 (n_items + 1, d)``: row ``i`` is item index ``i``; row 0 (padding) and items the model
        has no representation for (e.g. added after fitting) are zeros."""


class UserEmbeddings(ItemEmbeddings):
    """Histories as vectors in the space of :meth:`item_embeddings`: ``user · item`` is the score."""

    @abstractmethod
    def user_embeddings(self, histories: Ragged, users: np.ndarray | None = None) -> np.ndarray:
        """``float32 (len(histories), d)``; ``users`` as in :meth:`~lmrec.models.base.Recommender.score`.
        A row with nothing to go on (empty history) may be zeros."""


class PredictionHeads(ABC):
    """Predictions beyond ranking, from trained heads.

    ``context`` is a :class:`~lmrec.data.dataset.Dataset` whose events are the users' histories (``None``:
    the training events); user indices are in its user map.
    """

    @property
    @abstractmethod
    def heads(self) -> tuple[str, ...]:
        """The trained heads, among ``rating``, ``next_type``, ``value`` (and ``next_item``)."""

    @property
    @abstractmethod
    def event_types(self) -> tuple[str, ...]:
        """The event types, in the column order of :meth:`predict_next_type`."""

    @abstractmethod
    def predict_ratings(self, users: np.ndarray, items: np.ndarray,
                        context: Dataset | None = None) -> np.ndarray:
        """``(n,)`` the rating of ``items[i]`` by ``users[i]``."""

    @abstractmethod
    def predict_next_type(self, users: np.ndarray, context: Dataset | None = None) -> np.ndarray:
        """``(n, n_types)`` probabilities over :attr:`event_types` of each user's next event type."""

    @abstractmethod
    def predict_value(self, users: np.ndarray, context: Dataset | None = None) -> np.ndarray:
        """``(n,)`` each user's value over the model's horizon."""


class RankingReasons(ABC):
    """Why a learned ranker placed an item: the inputs that raised its score most."""

    @abstractmethod
    def ranking_reasons(self, histories: Ragged, users: np.ndarray | None, items: np.ndarray,
                        top: int = 3) -> list[list[tuple[str, float]]]:
        """For row ``r``, the reasons (a retriever name such as ``itemknn`` or ``seqrec``, or ``categories``,
        ``content-lm``, ``popular``, ``trending``, ``price``, ``fresh``, ``activity``) that raised the
        score of ``items[r]`` for ``histories[r]`` most, with their contributions, best first (at most
        ``top``)."""
