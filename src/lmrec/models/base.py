"""The one interface every recommender honours, and everything written once for all of them.

A model writes ``_fit`` and ``score``. Everything else is written here once: top-k and excluding seen items
(both from :mod:`lmrec.data.ranking`), candidate sets and filters, raw-id mapping, the popularity fallback for
users with no history, batching, growing the catalogue, and saving/loading a model folder, tested once by the
contract suite in ``tests/models/test_contract.py``. What a model can do beyond that is declared in
:mod:`lmrec.models.capabilities`.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pydantic

from lmrec.data.dataset import Dataset
from lmrec.data.exposure import ExposurePolicy, ItemGroups, rerank_rows, tail_items
from lmrec.data.idmap import IdMap, UnknownIdError
from lmrec.data.ragged import Ragged
from lmrec.data.ranking import NEG_INF, mask_items, top_unseen, topk  # noqa: F401  (topk: models API)
from lmrec.data.schema import PAD
from lmrec.models.capabilities import CatalogueUpdates
from lmrec.text import ItemTemplate, get_encoder, item_vectors
from lmrec.text.space import TextSpace, TextSpaceError

MODEL_FILE = "model.json"
ARRAYS_FILE = "arrays.npz"
FORMAT_VERSION = 1
#: The placeholder id of an erased user's index (a NUL byte: no imported or API id can hold one).
ERASED_ID_PREFIX = "\x00erased:"

#: Every model by name. Importing this module runs ``lmrec/models/__init__.py`` first (Python imports a
#: package before its modules), and that registers the built-in models, so the registry is complete
#: whenever a function here can be called.
_REGISTRY: dict[str, type[Recommender]] = {}
R = TypeVar("R", bound="Recommender")


def register(name: str) -> Callable[[type[R]], type[R]]:
    """Class decorator: make a model available by name to the CLI, configs and :func:`load_model`."""

    def deco(cls: type[R]) -> type[R]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def model_class(name: str) -> type[Recommender]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def create_model(name: str, **config: Any) -> Recommender:
    """Instantiate a registered model with config overrides (unknown keys are an error)."""
    return model_class(name)(**config)


def load_model(path: str | Path) -> Recommender:
    """Load any saved model folder, whichever class wrote it."""
    file = Path(path) / MODEL_FILE
    if not file.exists():
        raise FileNotFoundError(f"{path} is not a saved lmrec model (no {MODEL_FILE})")
    meta = json.loads(file.read_text())
    return model_class(meta["model"]).load(path)


#: Target size of one dense ``(rows, n_items + 1)`` float32 score block in batched ranking.
SCORE_BLOCK_BYTES = 64 * 2**20


def default_batch_size(n_columns: int, block_bytes: int = SCORE_BLOCK_BYTES) -> int:
    """Rows per chunk so that one float32 score block is about ``block_bytes`` (between 16 and 4096 rows).

    Top-k needs a few temporaries of the block's size (negated copy, partition indices), so peak memory is a
    small multiple of ``block_bytes``, independent of the number of users.
    """
    return int(np.clip(block_bytes // max(1, 4 * n_columns), 16, 4096))


def resolve_item_vectors(
    dataset: Dataset, vectors: np.ndarray | None, space: TextSpace | dict[str, Any] | None = None
) -> tuple[np.ndarray, TextSpace]:
    """Check injected item vectors against ``dataset``, or compute them with :func:`lmrec.text.item_vectors`
    (the encoder named in ``space``, else the default; the default template; cached). Returns the vectors and
    their :class:`~lmrec.text.space.TextSpace` (what ``space`` says about injected vectors, plus their size).
    """
    if not isinstance(space, TextSpace):
        space = TextSpace.from_dict(space)
    if vectors is None:
        encoder = get_encoder(space.encoder or None)
        vectors = item_vectors(dataset, encoder=encoder, progress=False)
        space = TextSpace(encoder.name, encoder.revision, ItemTemplate.parse(None).canonical())
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != dataset.item_map.size:
        raise ValueError(
            f"item vectors must have shape ({dataset.item_map.size}, d) (row 0 = padding), "
            f"got {vectors.shape}"
        )
    if space.dim and space.dim != vectors.shape[1]:
        raise TextSpaceError(f"{vectors.shape[1]}-d item vectors given for {space.describe()}")
    problem = uninformative_text(vectors, dataset.item_popularity > 0)
    if problem:
        warnings.warn(TextQualityWarning(problem), stacklevel=3)
    return vectors, TextSpace(space.encoder, space.revision, space.template, int(vectors.shape[1]))


class TextQualityWarning(UserWarning):
    """A text-based model is fitted on item text that cannot tell items apart (empty or identical)."""


def uninformative_text(vectors: np.ndarray, used: np.ndarray, share: float = 0.5) -> str | None:
    """Why these item vectors carry little text, or ``None``: among the items of ``used`` (a mask over rows),
    more than ``share`` have no vector at all (zeros: no text), or more than ``share`` have one and the same
    vector (empty or identical text renders the same)."""
    rows = np.asarray(vectors, dtype=np.float32)[np.flatnonzero(np.asarray(used)[: len(vectors)])]
    if len(rows) < 2:
        return None
    advice = "text-based models cannot tell them apart; attach item titles/descriptions (e.g. --items FILE)"
    empty = int((np.linalg.norm(rows, axis=1) == 0).sum())
    if empty > share * len(rows):
        return f"{empty:,} of {len(rows):,} items have no text vector: {advice}"
    _, counts = np.unique(np.round(rows, 5), axis=0, return_counts=True)
    top = int(counts.max())
    if top > share * len(rows):
        return f"{top:,} of {len(rows):,} items have the same text vector (empty or identical text): {advice}"
    return None


def encode_texts(texts: Sequence[str], space: TextSpace) -> np.ndarray:
    """Encode new items' texts in the model's text space: with its encoder, which must still be the one that
    made the vectors (same revision and size)."""
    if not space.encoder:
        raise TextSpaceError(f"this model's item vectors come from an {space.describe()}; pass vectors")
    encoder = get_encoder(space.encoder)
    space.check(encoder)
    return np.asarray(encoder.encode(list(texts), side="document"), dtype=np.float32)


@functools.cache
def _config_adapter(config_cls: type) -> pydantic.TypeAdapter[Any]:
    """The validator of a model's config class, built once per class (building one inspects every field)."""
    return pydantic.TypeAdapter(config_cls)


def _build_config(model: str, config_cls: type, settings: dict[str, Any]) -> Any:
    """``config_cls(**settings)`` with every value checked against its field's type when the model is built,
    not deep inside ``fit``: ``lr="fast"`` is refused at once, ``lr="0.002"`` (as a config file or ``--set``
    may give it) becomes 0.002. The config's own ``__post_init__`` checks run as before."""
    try:
        return _config_adapter(config_cls).validate_python(settings)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in e['loc'])}={e.get('input')!r}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ValueError(f"{model}: invalid setting(s): {problems}") from None


@dataclass(frozen=True)
class NoConfig:
    """For models without hyper-parameters."""


class NotFittedError(RuntimeError):
    pass


#: What happens to a user id the model has never seen (and that comes without a history), in Python, the CLI
#: (``lmrec recommend --unknown``) and HTTP (``?unknown=``) alike: ``error`` (the default) names the unknown
#: users; ``popular`` gives them the most popular items, marked as a fallback
#: (:meth:`Recommender.unknown_users` in Python, a printed count in the CLI, ``"fallback": "unknown-user"``
#: over HTTP).
UNKNOWN_USER_POLICIES = ("error", "popular")


class UnknownUserError(UnknownIdError):
    """User ids the model has never seen, asked for without a history and without ``unknown="popular"``."""

    def __init__(self, users: Sequence[str],
                 hint: str = "pass unknown='popular' for the most popular items") -> None:
        super().__init__("user", str(users[0]))
        self.users = list(users)
        shown = ", ".join(repr(u) for u in self.users[:5]) + (" ..." if len(self.users) > 5 else "")
        noun = "user" if len(self.users) == 1 else "users"
        self.args = (f"{len(self.users)} {noun} unknown to the model: {shown}; {hint}",)


def check_unknown_policy(unknown: str) -> str:
    if unknown not in UNKNOWN_USER_POLICIES:
        raise ValueError(f"unknown must be one of {', '.join(UNKNOWN_USER_POLICIES)}, got {unknown!r}")
    return unknown


class Recommender(CatalogueUpdates, ABC):
    """Base class of every lmrec recommender.

    Subclasses set ``Config`` (a frozen dataclass of hyper-parameters) and implement :meth:`_fit` and
    :meth:`score`; models with learned arrays implement :meth:`_state` / :meth:`_load_state`.

    Indices: item and user indices are those of the dataset the model was fitted on (``0`` is padding, never
    recommended). ``score`` returns ``(batch, n_items + 1)`` with column 0 set to ``-inf``.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type] = NoConfig
    #: Whether ``score`` uses the user index (collaborative models with per-user parameters).
    uses_user_ids: ClassVar[bool] = False
    #: Whether the model reads item text vectors (``fit`` then needs ``item_vectors`` or ``lmrec.text``).
    needs_item_vectors: ClassVar[bool] = False
    #: Settings for a quick fit on tiny data (the contract tests and smoke runs use them).
    fast_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is None:
            valid = {f.name for f in fields(self.Config)}
            unknown = set(overrides) - valid
            if unknown:
                raise TypeError(
                    f"{type(self).__name__} has no setting(s) {sorted(unknown)}; valid: {sorted(valid)}"
                )
            config = _build_config(type(self).__name__, self.Config, overrides)
        elif overrides:
            from dataclasses import replace

            config = replace(config, **overrides)
        self.config = config
        self.item_map: IdMap | None = None
        self.user_map: IdMap | None = None
        self.popularity_: np.ndarray | None = None  # (n_items + 1,) training events per item
        self.user_histories_: Ragged | None = None  # training sequences, the default history of known users
        self.item_categories_: list[list[str]] | None = None  # for category filters, index-aligned (0 = PAD)
        self.item_vectors_: np.ndarray | None = None  # (n_items + 1, d) float32 text vectors, row 0 zeros
        self.text_space_: TextSpace | None = None  # where item_vectors_ came from (None without them)

    # ------------------------------------------------------------------ what a model writes
    @abstractmethod
    def _fit(self, dataset: Dataset, valid: Any = None) -> None:
        """Learn from ``dataset`` (``valid``, an :class:`~lmrec.data.splits.EvalSet`, for early stopping)."""

    @abstractmethod
    def score(
        self, histories: Ragged, users: np.ndarray | None = None, items: np.ndarray | None = None
    ) -> np.ndarray:
        """Scores, higher is better.

        Parameters
        ----------
        histories:
            One chronological sequence of item indices per row (may be empty).
        users:
            The user index of each row, or ``PAD`` (0) for an anonymous history; ``None`` means all anonymous.
        items:
            Score only these item indices (``(n,)``); by default the whole catalogue.

        Returns
        -------
        ``float32 (rows, n_items + 1)`` (column 0 is ``-inf``), or ``(rows, len(items))`` when
        ``items`` is given.
        """

    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (``allow_pickle=False``)."""
        return {}

    def _load_state(self, arrays: dict[str, np.ndarray], path: Path) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`_state` saved; ``path`` is the model folder for models with extra files."""

    def _save_extra(self, path: Path) -> None:  # noqa: B027 - optional hook
        """Write files besides ``arrays.npz`` (e.g. torch weights)."""

    # ------------------------------------------------------------------ written once for all models
    def fit(
        self,
        dataset: Dataset,
        valid: Any = None,
        *,
        item_vectors: np.ndarray | None = None,
        vectors_meta: TextSpace | dict[str, Any] | None = None,
    ) -> Recommender:
        """Learn from ``dataset``; returns ``self``.

        Parameters
        ----------
        dataset:
            Training data; its id maps become the model's.
        valid:
            An :class:`~lmrec.data.splits.EvalSet` for early stopping / selection (never the test set).
        item_vectors:
            ``(n_items + 1, d)`` float32 item text vectors (row 0 zeros) for models with
            ``needs_item_vectors``; when omitted such models ask :func:`lmrec.text.item_vectors`.
        vectors_meta:
            Where the vectors came from: a :class:`~lmrec.text.space.TextSpace` or a dict with its
            fields (``encoder``, ``revision``, ``template``), saved with the model; new items' texts are
            encoded in that space.
        """
        self.item_map, self.user_map = dataset.item_map, dataset.user_map
        self.popularity_ = dataset.item_popularity.copy()
        self.user_histories_ = dataset.sequences
        self.item_categories_ = [[]] + [list(c or []) for c in dataset.items["categories"].to_list()]
        if item_vectors is not None or self.needs_item_vectors:
            self.item_vectors_, self.text_space_ = resolve_item_vectors(dataset, item_vectors, vectors_meta)
        self._fit(dataset, valid)
        return self

    @property
    def n_items(self) -> int:
        self._check_fitted()
        assert self.item_map is not None
        return len(self.item_map)

    def _check_fitted(self) -> None:
        if self.item_map is None:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call fit(dataset) or load(path) first"
            )

    def add_items(
        self,
        item_ids: Sequence[str],
        categories: Sequence[Sequence[str]] | None = None,
        *,
        vectors: np.ndarray | None = None,
        texts: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Extend the item vocabulary with new raw ids (cold start). Returns their indices.

        The base class grows the id map, popularity, categories and (for text models) the item vectors: give
        ``vectors`` (``(len(item_ids), d)``, aligned with ``item_ids``) or ``texts`` (encoded in the model's
        text space, :func:`encode_texts`). Models that can score unseen items override
        :meth:`_on_items_added` (and declare :class:`~lmrec.models.capabilities.ColdStartItems`); others score
        new items ``-inf`` until refit. Ids already known are left as they are.
        """
        self._check_fitted()
        assert (
            self.item_map is not None and self.popularity_ is not None and self.item_categories_ is not None
        )
        ids = [str(i) for i in item_ids]
        if vectors is not None and len(vectors) != len(ids):
            raise ValueError(f"{len(vectors)} vectors for {len(ids)} items")
        if texts is not None and len(texts) != len(ids):
            raise ValueError(f"{len(texts)} texts for {len(ids)} items")
        new = [i for i in dict.fromkeys(ids) if i not in self.item_map]
        cats = dict(zip(ids, categories or [[]] * len(ids), strict=False))
        if new:
            first = {i: n for n, i in reversed(list(enumerate(ids)))}  # row of each id's first occurrence
            rows = np.array([first[i] for i in new], dtype=np.int64)
            self.item_map = self.item_map.extend(new)
            self.popularity_ = np.concatenate([self.popularity_, np.zeros(len(new), dtype=np.int64)])
            self.item_categories_ = self.item_categories_ + [list(cats.get(i) or []) for i in new]
            if self.item_vectors_ is not None:
                if vectors is None and texts is not None:
                    assert self.text_space_ is not None
                    vectors = encode_texts(list(texts), self.text_space_)
                d = self.item_vectors_.shape[1]
                add = np.zeros((len(new), d), dtype=np.float32)
                if vectors is not None:
                    vectors = np.asarray(vectors, dtype=np.float32)
                    if vectors.ndim != 2 or vectors.shape[1] != d:
                        raise ValueError(f"item vectors must have shape (n, {d}), got {vectors.shape}")
                    add = vectors[rows]
                self.item_vectors_ = np.concatenate([self.item_vectors_, add])
            self._on_items_added(np.array([self.item_map.index(i) for i in new], dtype=np.int64))
        return self.item_map.indices(ids)

    def set_item_categories(self, indices: np.ndarray, categories: Sequence[Sequence[str]]) -> None:
        """Replace the categories of the items at ``indices`` (an item's categories as a list of names)."""
        self._check_fitted()
        assert self.item_categories_ is not None
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) != len(categories):
            raise ValueError(f"{len(categories)} category lists for {len(indices)} items")
        if len(indices) and (indices.min() <= PAD or indices.max() > self.n_items):
            raise IndexError(f"item indices must be in 1..{self.n_items}")
        updated = list(self.item_categories_)
        for i, c in zip(indices.tolist(), categories, strict=True):
            updated[i] = list(c or [])
        self.item_categories_ = updated

    def _on_items_added(self, indices: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Hook for models that can represent new items; by default they score ``-inf`` until refit."""

    def _pad_new_items(self, scores: np.ndarray) -> np.ndarray:
        """Widen ``(rows, n_fit)`` scores to the whole catalogue; items added since the fit score ``-inf``."""
        width = self.n_items + 1
        if scores.shape[1] >= width:
            return scores
        pad = np.full((scores.shape[0], width - scores.shape[1]), NEG_INF, dtype=np.float32)
        return np.concatenate([scores.astype(np.float32, copy=False), pad], axis=1)

    def popularity_scores(self, rows: int) -> np.ndarray:
        """The fallback for rows with nothing to go on: item popularity, the same for every row."""
        assert self.popularity_ is not None
        pop = np.log1p(self.popularity_.astype(np.float32))
        pop[PAD] = NEG_INF
        return np.broadcast_to(pop, (rows, len(pop))).copy()

    def histories_for(self, users: np.ndarray) -> Ragged:
        """Training histories of known user indices (empty for PAD)."""
        self._check_fitted()
        assert self.user_histories_ is not None
        users = np.asarray(users, dtype=np.int64)
        n = len(self.user_histories_)
        safe = np.where((users > 0) & (users < n), users, 0)  # row 0 is empty
        return self.user_histories_.take(safe)

    def recommend_indices(
        self,
        histories: Ragged,
        users: np.ndarray | None = None,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        exclude: Ragged | None = None,
        candidates: np.ndarray | None = None,
        item_mask: np.ndarray | None = None,
        batch_size: int | None = None,
        exposure: ExposurePolicy | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per row, in index space (the evaluation path).

        ``exposure`` re-ranks each row's top ``exposure.pool × k`` with :func:`lmrec.data.exposure.rerank`
        (groups: the items' categories; long tail: by training popularity; see :meth:`exposure_groups`).

        ``exclude`` adds per-row items to drop; ``candidates`` restricts ranking to these indices (shared by
        all rows); ``item_mask`` (``(n_items + 1,)`` bool) keeps only allowed items. Rows with no history and
        no known user fall back to popularity. Rows with fewer than ``k`` rankable items are padded with
        index 0 and score ``-inf``.

        Rows are scored in chunks of ``batch_size`` (by default as many as keep one dense score block near
        :data:`SCORE_BLOCK_BYTES`), so memory stays bounded whatever the number of users and items.
        """
        self._check_fitted()
        n_rows = len(histories)
        users_arr = np.zeros(n_rows, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
        if len(users_arr) != n_rows:
            raise ValueError(f"{len(users_arr)} users for {n_rows} histories")
        batch_size = batch_size or default_batch_size(self.n_items + 1)
        if exposure is not None and exposure.active:
            groups, tail = self.exposure_groups()
            idx, sc = self.recommend_indices(histories, users_arr, exposure.candidates(k),
                                             exclude_seen=exclude_seen, exclude=exclude,
                                             candidates=candidates, item_mask=item_mask,
                                             batch_size=batch_size)
            return rerank_rows(idx, sc, k, exposure, groups, tail)
        out_idx = np.zeros((n_rows, k), dtype=np.int64)
        out_score = np.full((n_rows, k), NEG_INF, dtype=np.float32)
        if candidates is not None:
            allowed = np.zeros(self.n_items + 1, dtype=bool)
            allowed[np.asarray(candidates, dtype=np.int64)] = True
            item_mask = allowed if item_mask is None else (item_mask & allowed)
        for start in range(0, n_rows, batch_size):
            rows = np.arange(start, min(start + batch_size, n_rows))
            h = histories.take(rows)
            u = users_arr[rows]
            scores = self._scores_with_fallback(h, u)
            if item_mask is not None:
                scores[:, ~item_mask[: scores.shape[1]]] = NEG_INF
            if exclude is not None:
                mask_items(scores, exclude.take(rows))
            idx, sc = top_unseen(scores, h if exclude_seen else None, k)
            out_idx[rows], out_score[rows] = idx, sc
        out_idx[~np.isfinite(out_score)] = PAD
        return out_idx, out_score

    def exposure_groups(self) -> tuple[ItemGroups, np.ndarray]:
        """The item groups (categories) and long-tail flags (by training popularity) the exposure re-ranking
        uses, rebuilt when the catalogue or its categories change."""
        self._check_fitted()
        assert self.item_categories_ is not None and self.popularity_ is not None
        key = (id(self.item_categories_), len(self.item_categories_), id(self.popularity_))
        cached = getattr(self, "_exposure_cache", None)
        if cached is None or cached[0] != key:
            pop = np.zeros(len(self.item_categories_), dtype=np.float64)
            pop[: len(self.popularity_)] = self.popularity_[: len(pop)]
            cached = (key, ItemGroups.from_lists(self.item_categories_), tail_items(pop))
            self._exposure_cache = cached
        return cached[1], cached[2]

    def _scores_with_fallback(self, histories: Ragged, users: np.ndarray) -> np.ndarray:
        """``score`` for every row, with popularity for rows that have nothing to go on.

        A row has nothing to go on when its history is empty and the model does not use user ids (or the user
        is unknown), and also when the model gives it no finite score at all (e.g. a history of items the
        model has no representation for).
        """
        known = (users > 0) if self.uses_user_ids else np.zeros(len(users), dtype=bool)
        empty = (histories.lengths == 0) & ~known
        scores = np.array(self.score(histories, users), dtype=np.float32, copy=True)
        scores[:, PAD] = NEG_INF
        # NaN would silently break top-k ordering; treat it as "cannot rank".
        np.nan_to_num(scores, copy=False, nan=NEG_INF, neginf=NEG_INF)
        empty |= ~np.isfinite(scores[:, 1:]).any(axis=1) if scores.shape[1] > 1 else empty
        if empty.any():
            scores[empty] = self.popularity_scores(int(empty.sum()))[:, : scores.shape[1]]
        return scores

    def recommend(
        self,
        users: Iterable[str] | str | None = None,
        k: int = 10,
        *,
        histories: Sequence[Sequence[str]] | None = None,
        exclude_seen: bool = True,
        exclude: Sequence[Sequence[str]] | None = None,
        candidates: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        exclude_categories: Sequence[str] | None = None,
        batch_size: int | None = None,
        unknown: str = "error",
        exposure: ExposurePolicy | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` raw item ids and scores for raw user ids and/or raw histories.

        Give ``users`` (known users use their training history; a user the model has never seen is an
        :class:`UnknownUserError` naming it, or, with ``unknown="popular"``, gets the most popular items:
        :meth:`unknown_users` says which did), or
        ``histories`` (anonymous sessions: lists of raw item ids, oldest first; unknown items are ignored), or
        both (the histories are then the users' current sequences). ``categories`` keeps only items in at
        least one of them; ``exclude_categories`` drops items in any of them.

        Returns ``(ids, scores)``: object array ``(rows, k)`` of raw ids (``""`` where fewer than ``k`` items
        could be ranked) and float32 scores.
        """
        self._check_fitted()
        assert self.item_map is not None and self.user_map is not None
        single = isinstance(users, str)
        user_list = [users] if isinstance(users, str) else (list(users) if users is not None else None)
        if user_list is None and histories is None:
            raise ValueError("give users, histories or both")
        check_unknown_policy(unknown)
        if user_list is not None:
            uidx = self.user_map.indices(user_list, strict=False)
            if unknown == "error":
                given = [len(h) > 0 for h in histories] if histories is not None else [False] * len(uidx)
                missing = [u for u, i, g in zip(user_list, uidx, given, strict=False) if i == PAD and not g]
                if missing:
                    raise UnknownUserError(missing)
        else:
            uidx = np.zeros(len(histories or []), dtype=np.int64)
        if histories is not None:
            if len(histories) != len(uidx):
                raise ValueError(f"{len(histories)} histories for {len(uidx)} users")
            hist = Ragged.from_lists([self.item_map.indices(h, strict=False) for h in histories])
            hist = Ragged.from_lists([r[r != PAD] for r in hist])
        else:
            hist = self.histories_for(uidx)
        excl = (
            Ragged.from_lists([self.item_map.indices(e, strict=False) for e in exclude]) if exclude else None
        )
        cand = self.item_map.indices(candidates, strict=False) if candidates is not None else None
        mask = self.category_mask(categories, exclude_categories)
        idx, sc = self.recommend_indices(
            hist,
            uidx,
            k,
            exclude_seen=exclude_seen,
            exclude=excl,
            candidates=cand,
            item_mask=mask,
            batch_size=batch_size,
            exposure=exposure,
        )
        ids = self.item_map.raws(idx)
        if single:
            return ids[0], sc[0]
        return ids, sc

    def unknown_users(self, users: Iterable[str]) -> list[str]:
        """The ids among ``users`` the model has never seen: those :meth:`recommend` refuses, or, with
        ``unknown="popular"``, gives the popularity fallback (unless their history is given)."""
        self._check_fitted()
        assert self.user_map is not None
        return [str(u) for u in users if str(u) not in self.user_map]

    def category_mask(
        self, include: Sequence[str] | None, exclude: Sequence[str] | None
    ) -> np.ndarray | None:
        """Allowed items under category rules, or ``None`` when there are no rules."""
        if not include and not exclude:
            return None
        assert self.item_categories_ is not None
        inc, exc = set(include or ()), set(exclude or ())
        mask = np.array(
            [
                (not inc or bool(inc.intersection(c))) and not exc.intersection(c)
                for c in self.item_categories_
            ],
            dtype=bool,
        )
        mask[PAD] = False
        return mask

    # ------------------------------------------------------------------ erasure
    def forget_users(self, raw_ids: Iterable[str]) -> int:
        """Drop these users' ids and training histories from the fitted model (an erasure); returns how many
        of them the model knew. Their index is kept (other users' indices do not move) under a placeholder id
        that no real id can take. What the model *learned* from them (item similarities, weights) stays until
        it is retrained: ``lmrec models forget --retrain``."""
        self._check_fitted()
        assert self.user_map is not None and self.user_histories_ is not None
        ids = [str(r) for r in raw_ids if str(r) in self.user_map]
        idx = self.user_map.indices(ids) if ids else np.zeros(0, dtype=np.int64)
        if ids:
            raw = self.user_map.raw_ids
            for i in idx.tolist():
                raw[i - 1] = f"{ERASED_ID_PREFIX}{i}"
            self.user_map = IdMap(raw, kind="user")
            if len(self.user_histories_) > int(idx.max()):
                self.user_histories_ = self.user_histories_.emptied(idx)
        self._forget_rows(idx, ids)
        return len(ids)

    def _forget_rows(self, rows: np.ndarray, raw_ids: list[str]) -> None:  # noqa: B027 - optional hook
        """Models with per-user state of their own (beyond the id map and the histories) drop ``rows`` here;
        a model made of other models passes ``raw_ids`` on to them."""

    # ------------------------------------------------------------------ persistence: a folder, no pickles
    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` (class, config, id maps) and ``arrays.npz`` (+ any model-specific files)."""
        self._check_fitted()
        assert self.item_map is not None and self.user_map is not None and self.user_histories_ is not None
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "model": self.name,
            "format_version": FORMAT_VERSION,
            "config": asdict(self.config) if is_dataclass(self.config) else {},
            "item_ids": self.item_map.raw_ids,
            "user_ids": self.user_map.raw_ids,
            "item_categories": self.item_categories_[1:] if self.item_categories_ else [],
        }
        if self.text_space_ is not None:
            meta["text_space"] = self.text_space_.to_dict()
        arrays = {f"state.{k}": np.asarray(v) for k, v in self._state().items()}
        arrays["base.popularity"] = np.asarray(self.popularity_)
        arrays["base.hist_offsets"] = self.user_histories_.offsets
        arrays["base.hist_values"] = self.user_histories_.values
        if self.item_vectors_ is not None:
            arrays["base.item_vectors"] = self.item_vectors_
        for name, arr in arrays.items():
            if arr.dtype == object:
                raise TypeError(
                    f"{type(self).__name__}._state()[{name!r}] is an object array; save numbers only"
                )
        # Write to temporary names, then rename: a crash never leaves a half-written model folder behind.
        tmp_arrays = path / f".{ARRAYS_FILE}.tmp"
        with open(tmp_arrays, "wb") as fh:
            np.savez(fh, **arrays)
        self._save_extra(path)
        tmp_meta = path / f".{MODEL_FILE}.tmp"
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_arrays, path / ARRAYS_FILE)
        os.replace(tmp_meta, path / MODEL_FILE)  # model.json last: its presence marks a complete folder
        return path

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        path = Path(path)
        if not (path / MODEL_FILE).exists():
            raise FileNotFoundError(f"{path} is not a saved lmrec model (no {MODEL_FILE})")
        meta = json.loads((path / MODEL_FILE).read_text())
        if meta["model"] != cls.name and cls is not Recommender:
            raise ValueError(f"{path} holds a {meta['model']!r} model, not {cls.name!r}")
        model = cls(cls.Config(**meta["config"]))
        model.item_map = IdMap(meta["item_ids"], kind="item")
        model.user_map = IdMap(meta["user_ids"], kind="user")
        model.item_categories_ = [[]] + [list(c) for c in meta.get("item_categories", [])]
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        model.popularity_ = arrays["base.popularity"]
        model.user_histories_ = Ragged(arrays["base.hist_offsets"], arrays["base.hist_values"])
        model.item_vectors_ = arrays.get("base.item_vectors")
        if model.item_vectors_ is not None:
            # Folders saved before the text space record kept a free "vectors" dict (maybe empty).
            recorded = meta.get("text_space") or meta.get("vectors")
            model.text_space_ = TextSpace.from_dict(recorded, dim=int(model.item_vectors_.shape[1]))
        model._load_state({k[len("state.") :]: v for k, v in arrays.items() if k.startswith("state.")}, path)
        return model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def scores_for_items(full: np.ndarray, items: np.ndarray | None) -> np.ndarray:
    """Helper for ``score``: set the padding column to ``-inf`` and narrow to the requested items (if any)."""
    full[:, PAD] = NEG_INF
    return full if items is None else full[:, np.asarray(items, dtype=np.int64)]
