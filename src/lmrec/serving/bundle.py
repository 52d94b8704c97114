"""Everything the service derives from one trained model: the model, item titles and categories, text
vectors, behaviour vectors or co-occurrence, and the retrieval indices. A hot swap builds a new bundle fully,
then swaps one reference.

What a model offers beyond :class:`~lmrec.models.base.Recommender` is declared by the capability interfaces
of :mod:`lmrec.models.capabilities`, and this module checks them with ``isinstance`` only:

* :class:`~lmrec.models.capabilities.ItemEmbeddings` (ALS, BPR, ContentLM, SeqRec, MultiTask): the model's
  own item vectors ``(n_items + 1, d)`` drive similar items by behaviour and explanations; without them,
  co-occurrence in the training histories is used.
* :class:`~lmrec.models.capabilities.UserEmbeddings` (ALS, ContentLM, SeqRec): a history vector in the same
  space. Candidates for a large catalogue then come from an ANN index over the item vectors and are re-scored
  exactly with ``score(..., items=candidates)``.
* :class:`~lmrec.models.capabilities.CatalogueUpdates` (every model): items from the store join the model with
  ``add_items`` and their categories are set with ``set_item_categories``.

A model that reads item text vectors has a :class:`~lmrec.text.space.TextSpace`; new items join it only as
vectors of that space (:func:`lmrec.serving.text.encode_for_model`), never as the service's own vectors
because their widths happen to match.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.models.base import Recommender
from lmrec.models.capabilities import CandidateRetrieval, ItemEmbeddings, UserEmbeddings
from lmrec.models.onboarding import Onboarding
from lmrec.serving.retrieval import VectorIndex, normalise
from lmrec.serving.settings import ServingSettings
from lmrec.serving.text import Encoder, encode_for_model, encode_items
from lmrec.text import ItemTemplate

log = logging.getLogger("lmrec.serving")


class RWLock:
    """Many readers or one writer (writers are not starved: a waiting writer holds off new readers)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def model_item_vectors(model: Recommender) -> np.ndarray | None:
    """The model's own item representations ``(n_items + 1, d)``, or ``None`` when it has none."""
    if not isinstance(model, ItemEmbeddings):
        return None
    return np.asarray(model.item_embeddings(), dtype=np.float32)


def model_user_vectors(model: Recommender, histories: Ragged, users: np.ndarray) -> np.ndarray | None:
    """User vectors in the space of :func:`model_item_vectors`, or ``None`` when the model has none."""
    if not isinstance(model, UserEmbeddings):
        return None
    return np.asarray(model.user_embeddings(histories, users), dtype=np.float32)


def render_texts(items: pl.DataFrame) -> list[str]:
    """Item texts as :mod:`lmrec.text` renders them with its default template."""
    return ItemTemplate.parse(None).render(items)


def add_to_model(model: Recommender, items: pl.DataFrame, vectors: np.ndarray | None) -> np.ndarray:
    """``model.add_items`` for store rows, with their categories; ``vectors`` are the rows' vectors in the
    model's text space (from :func:`~lmrec.serving.text.encode_for_model`; ``None`` for models without text
    vectors). Returns the items' indices."""
    ids = items["item_id"].to_list()
    cats = [list(c or []) for c in items["categories"].to_list()]
    idx = model.add_items(ids, cats, vectors=vectors)
    model.set_item_categories(idx, cats)  # ids already known get the store's categories too
    return idx


@dataclass
class ModelBundle:
    """One servable model version and its derived state.

    Read under ``lock.read()``, change under ``lock.write()``."""

    version: str
    model: Recommender
    path: Path | None
    titles: list[str]  # index-aligned; "" for padding
    text_index: VectorIndex | None
    behaviour_index: VectorIndex | None  # unit-length model item vectors, for similarity
    factor_index: VectorIndex | None  # raw model item vectors, for dot-product candidate retrieval
    cooc: Any | None  # items × users binary CSR from training histories (when no item vectors)
    cooc_norms: np.ndarray | None
    #: For a model that finds its top items among candidates (auto) on a catalogue above ``ann_threshold``:
    #: an inner-product index per retrieval space (:class:`~lmrec.models.capabilities.CandidateRetrieval`).
    space_indexes: dict[str, VectorIndex] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)
    lock: RWLock = field(default_factory=RWLock)
    _masks: dict[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray] = field(default_factory=dict)
    _onboarding: Any | None = None  # built on the first onboarding request (lmrec.models.onboarding)

    def onboarding(self) -> Any:
        """The :class:`~lmrec.models.onboarding.Onboarding` of this model version (built once, on demand)."""
        if self._onboarding is None:
            self._onboarding = Onboarding(self.model)
        return self._onboarding

    @property
    def n_items(self) -> int:
        return self.model.n_items

    @property
    def model_name(self) -> str:
        return self.model.name

    def title(self, idx: int) -> str:
        return self.titles[idx] if 0 < idx < len(self.titles) else ""

    def categories(self, idx: int) -> list[str]:
        cats = self.model.item_categories_ or []
        return list(cats[idx]) if 0 < idx < len(cats) else []

    def category_mask(self, include: tuple[str, ...], exclude: tuple[str, ...]) -> np.ndarray | None:
        """The model's category mask, cached per rule set until the catalogue changes."""
        if not include and not exclude:
            return None
        key = (include, exclude)
        mask = self._masks.get(key)
        if mask is None:
            mask = self.model.category_mask(list(include), list(exclude))
            assert mask is not None
            if len(self._masks) > 256:
                self._masks.clear()
            self._masks[key] = mask
        return mask

    def invalidate_masks(self) -> None:
        self._masks.clear()

    # ------------------------------------------------------------------ item-item similarity
    def behaviour_similarity(self, items: np.ndarray, others: np.ndarray) -> np.ndarray | None:
        """Cosine similarity ``(len(items), len(others))`` from model vectors or co-occurrence; ``None``
        if neither."""
        items, others = np.asarray(items, dtype=np.int64), np.asarray(others, dtype=np.int64)
        if self.behaviour_index is not None:
            v = self.behaviour_index.vectors
            return v[_clip(items, len(v))] @ v[_clip(others, len(v))].T
        if self.cooc is not None and self.cooc_norms is not None:
            n = self.cooc.shape[0]
            a, b = _clip(items, n), _clip(others, n)
            inter = (self.cooc[a] @ self.cooc[b].T).toarray()
            denom = np.sqrt(np.outer(self.cooc_norms[a], self.cooc_norms[b]))
            return np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0).astype(np.float32)
        return None

    def cooc_neighbours(self, item: int) -> np.ndarray:
        """Cosine co-occurrence of one item with every item, ``(n_items + 1,)``; 0 for items with no
        events and for an item nobody has interacted with."""
        assert self.cooc is not None and self.cooc_norms is not None
        out = np.zeros(self.n_items + 1, dtype=np.float32)
        if item >= self.cooc.shape[0] or self.cooc_norms[item] == 0:
            return out
        inter = np.asarray((self.cooc @ self.cooc[item].T).todense()).ravel()
        denom = np.sqrt(self.cooc_norms * self.cooc_norms[item])
        sims = np.divide(inter, denom, out=np.zeros_like(inter, dtype=np.float64), where=denom > 0)
        out[: len(sims)] = sims
        return out

    def text_similarity(self, items: np.ndarray, others: np.ndarray) -> np.ndarray | None:
        if self.text_index is None:
            return None
        v = self.text_index.vectors
        return v[_clip(np.asarray(items), len(v))] @ v[_clip(np.asarray(others), len(v))].T


def _clip(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices beyond a matrix (items newer than it) map to the padding row, which is all zeros."""
    idx = np.asarray(idx, dtype=np.int64)
    return np.where(idx < n, idx, PAD)


def _index(vectors: np.ndarray, settings: ServingSettings) -> VectorIndex:
    return VectorIndex(vectors, threshold=settings.ann_threshold, candidates=settings.ann_candidates,
                       hnsw_m=settings.hnsw_m, ef_search=settings.hnsw_ef_search)


def sync_catalogue(model: Recommender, items: pl.DataFrame, encoder: Encoder | None, store: Any) -> None:
    """Make every store item known to the model (cold start) and take categories from the store."""
    if items.height == 0:
        return
    assert model.item_map is not None
    missing = items.filter(~pl.col("item_id").is_in(model.item_map.raw_ids))
    if missing.height:
        add_to_model(model, missing, encode_for_model(model, missing, encoder, store))
    known = items.filter(pl.col("categories").list.len() > 0)
    if known.height:
        model.set_item_categories(model.item_map.indices(known["item_id"].to_list()),
                                  [list(c) for c in known["categories"].to_list()])


def _text_vectors(model: Recommender, frame: pl.DataFrame, encoder: Encoder, store: Any) -> np.ndarray:
    """Unit text vectors ``(n_items + 1, d)`` in the service's text space: the model's own when the service
    encoder makes vectors of the model's space, else encoded."""
    mv, space = model.item_vectors_, model.text_space_
    if mv is not None and space is not None and len(mv) == model.n_items + 1 and space.encoder \
            and space.mismatch(encoder) is None:
        return normalise(mv)
    tv = encode_items(encoder, frame, store=store)
    return np.vstack([np.zeros((1, tv.shape[1]), np.float32), tv])


def catalogue_frame(model: Recommender, items: pl.DataFrame) -> pl.DataFrame:
    """Store item rows in the model's index order (``n_items`` rows; items the store lacks get nulls)."""
    assert model.item_map is not None
    order = pl.DataFrame({"item_id": model.item_map.raw_ids})
    cols = ["item_id", "title", "description", "categories"]
    if items.height == 0:
        return order.with_columns(pl.lit(None, pl.String).alias("title"),
                                  pl.lit(None, pl.String).alias("description"),
                                  pl.lit(None, pl.List(pl.String)).alias("categories"))
    return order.join(items.select(cols), on="item_id", how="left", maintain_order="left")


def build_bundle(model: Recommender, version: str, path: Path | None, items: pl.DataFrame,
                 encoder: Encoder | None, settings: ServingSettings, store: Any = None) -> ModelBundle:
    """Derive everything the service needs from a loaded model and the store's items (may take a while)."""
    t0 = time.perf_counter()
    sync_catalogue(model, items, encoder, store)
    frame = catalogue_frame(model, items)
    titles = [""] + [t if t else i for i, t in zip(frame["item_id"].to_list(), frame["title"].to_list(),
                                                     strict=True)]
    text_index = None
    if encoder is not None:
        text_index = _index(_text_vectors(model, frame, encoder, store), settings)
    behaviour_index = factor_index = cooc = cooc_norms = None
    iv = model_item_vectors(model)
    if iv is not None:
        behaviour_index = _index(normalise(iv), settings)
        if isinstance(model, UserEmbeddings):
            factor_index = _index(iv, settings)
    elif model.user_histories_ is not None:
        ui = model.user_histories_.to_csr(model.n_items + 1)
        ui.data[:] = 1.0
        cooc = ui.T.tocsr()  # (items, users)
        cooc_norms = np.asarray(cooc.sum(axis=1), dtype=np.float64).ravel()
    spaces = retrieval_indexes(model, settings)
    log.info("model %s (%s, %d items) ready in %.1fs", version, model.name, model.n_items,
             time.perf_counter() - t0)
    return ModelBundle(version, model, path, titles, text_index, behaviour_index, factor_index, cooc,
                       cooc_norms, spaces)


def retrieval_indexes(model: Recommender, settings: ServingSettings) -> dict[str, VectorIndex]:
    """One inner-product index per retrieval space of a :class:`CandidateRetrieval` model whose catalogue is
    above ``ann_threshold`` (below it, scoring every item is cheap enough); items whose score does not
    depend on the user are left out of the index (zero vectors)."""
    if not isinstance(model, CandidateRetrieval) or model.n_items <= settings.ann_threshold:
        return {}
    return {name: _index(table * scorable[:, None], settings)
            for name, (table, scorable) in model.retrieval_spaces().items()}
