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
* :class:`LinearScores` — scores that are exactly inner products ``query · table[item]``: their mean and
  spread over the catalogue follow from the table's moments, and an inner-product index finds the top items.
* :class:`SparseScores` — scores that are zero for every item outside a sparse row (neighbour models).
* :class:`CandidateRetrieval` — the top items can be found among candidates (from inner-product indexes the
  caller holds, and from what the model finds cheaply itself), which ``score(..., items=candidates)`` then
  scores exactly without scoring the whole catalogue: what large catalogues need per request.
* :class:`PredictionHeads` — predictions beyond ranking: rating, next action type, user value.
* :class:`IncrementalUpdates` — the fitted model continues learning from events that arrived after it was
  fitted (new users and items included), warm-started from its current parameters, without a full refit.
* :class:`RankingReasons` — a learned ranker says which of its inputs placed an item where it is (the
  retrieve-and-rank pipeline: its features' contributions), for explanations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from lmrec.data.ragged import Ragged

if TYPE_CHECKING:
    import polars as pl

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


class LinearScores(ABC):
    """``score(histories)[r, i] == linear_queries(histories)[r] · table[i]`` for every item ``i`` whose
    ``fixed[i]`` is NaN; the others score ``fixed[i]`` whatever the history (``-inf`` for padding, a floor for
    items the model has no representation of). A query row of zeros means the model cannot rank anything for
    that history (every score ``-inf``)."""

    @abstractmethod
    def linear_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``(table float32 (n_items + 1, d), fixed float32 (n_items + 1,))``. The same array objects are
        returned until the table changes (callers may cache what they derive from them by identity)."""

    @abstractmethod
    def linear_queries(self, histories: Ragged, users: np.ndarray | None = None) -> np.ndarray:
        """``float32 (len(histories), d)``; ``users`` as in :meth:`~lmrec.models.base.Recommender.score`."""


class SparseScores(ABC):
    """``score(histories)[:, :n]`` equals the dense form of :meth:`sparse_scores` (zero where it lists
    nothing, every one of those ``n`` columns finite); items from ``n`` on (added after fitting) cannot be
    ranked."""

    @abstractmethod
    def sparse_scores(self, histories: Ragged, users: np.ndarray | None = None) -> sp.csr_matrix:
        """``(len(histories), n)`` with ``n <= n_items + 1``."""


class CandidateRetrieval(ABC):
    """Top items found among candidates instead of over the whole catalogue.

    :meth:`retrieval_spaces` names inner-product spaces in which the caller keeps an index (exact or
    approximate); :meth:`candidates` proposes items per row, asking those indexes through ``search``, and
    scores them as ``score`` would, at a cost that grows with the number of candidates, not with the
    catalogue."""

    @abstractmethod
    def retrieval_spaces(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Name → ``(table (n_items + 1, d), scorable (n_items + 1,))`` to index by inner product."""

    @abstractmethod
    def candidates(
        self, histories: Ragged, users: np.ndarray | None, n: int,
        search: Callable[[str, np.ndarray, int], np.ndarray],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per row, ``(items, scores)``: distinct candidate item indices (about ``n`` from each source,
        padding never) and their scores. ``search(space, queries, n)`` returns ``(rows, n)`` item indices
        from the caller's index of that space (0 where fewer were found)."""


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


@dataclass(frozen=True)
class UpdateReport:
    """What one :meth:`IncrementalUpdates.update` did."""

    events: int  # new events absorbed
    new_users: int  # users the model had never seen
    new_items: int  # items the model had never seen
    users_trained: int  # users whose sequences the update trained on (new events + replayed old ones)
    passes: int  # epochs (SeqRec), ALS sweeps, 1 for an exact recompute (ItemKNN)
    seconds: float  # wall time of the update
    cpu_seconds: float  # CPU time of this process during the update (all threads)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IncrementalUpdates(ABC):
    """The model continues from its fitted state on events that arrived after it was fitted.

    ``events`` has lmrec's event columns (``user_id``, ``item_id``, ``timestamp``, ``event_type``...); users
    and items the model has never seen join its vocabularies (``items``: their catalogue rows, for categories
    and, for text models, the text their new rows start from). Known users' new events are appended to their
    histories. The update changes the model in place; callers that must keep the old one (a service, a guard
    comparing both) update a copy loaded from its folder.
    """

    @abstractmethod
    def update(self, events: pl.DataFrame, items: pl.DataFrame | None = None, *, passes: int | None = None,
               seed: int = 0) -> UpdateReport:
        """Absorb ``events`` and continue training for ``passes`` (the model's default when ``None``)."""


class RankingReasons(ABC):
    """Why a learned ranker placed an item: the inputs that raised its score most."""

    @abstractmethod
    def ranking_reasons(self, histories: Ragged, users: np.ndarray | None, items: np.ndarray,
                        top: int = 3) -> list[list[tuple[str, float]]]:
        """For row ``r``, the reasons (a retriever name such as ``itemknn`` or ``seqrec``, or ``categories``,
        ``content-lm``, ``popular``, ``trending``, ``price``, ``fresh``, ``activity``) that raised the
        score of ``items[r]`` for ``histories[r]`` most, with their contributions, best first (at most
        ``top``)."""
