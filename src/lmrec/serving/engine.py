"""The serving engine: every operation the HTTP routes expose, written once against the Recommender interface.

Routes only validate, call one method here and shape the result. The engine owns the store, the active
:class:`~lmrec.serving.bundle.ModelBundle` (swapped atomically), the per-user history overlay and the
text encoder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.exposure import ExposurePolicy, rerank
from lmrec.data.ragged import Ragged
from lmrec.data.schema import IMPRESSION, PAD
from lmrec.models.base import MODEL_FILE, NEG_INF, topk
from lmrec.models.capabilities import CandidateRetrieval, PredictionHeads
from lmrec.models.erasure import forget_in_folder, forget_in_model, model_folders
from lmrec.models.seqrec.inference import ServingFormError
from lmrec.models.serving_forms import load_for_serving, runtimes_of
from lmrec.privacy import user_tag
from lmrec.serving import heads
from lmrec.serving.bundle import (
    ModelBundle,
    add_to_model,
    build_bundle,
    model_item_vectors,
    model_user_vectors,
)
from lmrec.serving.errors import CapabilityError, CommitError, InvalidRequestError, NotFoundError
from lmrec.serving.experiments import Assignment, ExperimentRuntime
from lmrec.serving.explain import Explanation, explain
from lmrec.serving.idfilter import IdFilter
from lmrec.serving.ingest import Event, EventWriter, prepare
from lmrec.serving.overlay import HistoryOverlay, UserState
from lmrec.serving.replicas import ACTIVE_MODEL_KEY, shares_store
from lmrec.serving.rerank import mmr
from lmrec.serving.retrieval import normalise
from lmrec.serving.settings import ServingSettings
from lmrec.serving.text import Encoder, encode_for_model, encode_items, encode_query
from lmrec.store.audit import AuditEntry, AuditLog
from lmrec.store.duckdb_store import Store
from lmrec.store.keys import (
    KeyStore,
    ReadCursor,
    existing_event_ids,
    recent_histories,
    user_events,
    user_profile,
    user_row_counts,
)
from lmrec.text.space import TextSpaceError

log = logging.getLogger("lmrec.serving")


# ---------------------------------------------------------------------- results (domain objects, not schemas)
@dataclass
class RecommendedItem:
    item_id: str
    score: float
    title: str
    categories: list[str]
    explanation: Explanation | None = None


@dataclass
class Recommendations:
    items: list[RecommendedItem]
    model_version: str
    strategy: str  # "model", "ann+rescore", "candidates", "profile-text", "popularity"
    ignored_items: list[str] = field(default_factory=list)
    #: Why a fallback answered instead of the user's own history: ``"unknown-user"`` (``unknown=popular``).
    fallback: str | None = None
    #: This answer's id: the ``list_id`` of the impressions it is stored as, of the clicks that follow, and
    #: the key the experiment tables record it under.
    list_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: The online experiment and arm that answered (:mod:`lmrec.serving.experiments`), if any.
    experiment: str | None = None
    arm: str | None = None


@dataclass
class SimilarItems:
    item_id: str
    by: str
    items: list[RecommendedItem]
    model_version: str
    note: str | None = None


@dataclass
class IngestResult:
    accepted: int
    duplicates: int
    users: int


@dataclass
class UpsertResult:
    created: int
    updated: int
    encoded: int
    catalogue_size: int


@dataclass(frozen=True)
class RecRequest:
    """What a recommendation call asks for, beyond whose history."""

    k: int = 10
    exclude_seen: bool = True
    categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    diversity: float = 0.0
    explain: bool = False
    #: A user the service does not know: ``error`` (404, the default) or ``popular`` (the most popular items,
    #: marked ``fallback="unknown-user"``); the policy of :data:`lmrec.models.base.UNKNOWN_USER_POLICIES`.
    unknown: str = "error"
    #: Exposure re-ranking (:mod:`lmrec.data.exposure`): no category above this share of the list, at least
    #: this share of long-tail items; 1 and 0 are off.
    max_group_share: float = 1.0
    min_tail_share: float = 0.0

    def exposure(self) -> ExposurePolicy:
        return ExposurePolicy(self.max_group_share, self.min_tail_share)


def model_concurrency(settings: ServingSettings) -> int:
    """How many requests may run model inference at once: the setting, or one per usable CPU core."""
    if settings.model_concurrency > 0:
        return int(settings.model_concurrency)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Engine:
    """All serving operations over one store and the active model.

    Parameters
    ----------
    settings:
        The service settings.
    store:
        The open store (events, items, users, keys).
    bundle:
        The first model's bundle.
    encoder:
        Text encoder for new items and profile text, or ``None`` (text features off).
    on_activate:
        Called with the new bundle after each swap (metrics).
    """

    def __init__(self, settings: ServingSettings, store: Store, bundle: ModelBundle, encoder: Encoder | None,
                 on_activate: Callable[[ModelBundle], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.keys = KeyStore(store)
        #: Other processes (replicas) write this store too: histories and erasures are read through
        #: (:mod:`lmrec.serving.replicas`).
        self.shared = shares_store(store)
        self.encoder = encoder
        self._bundle = bundle
        self._swap_lock = threading.Lock()  # one swap or catalogue change at a time
        self._erased: set[str] = set()
        #: When (``time.monotonic()``) each user was erased: no answer computed before logs impressions.
        self._erased_at: dict[str, float] = {}
        self._on_activate = on_activate
        self.overlay = HistoryOverlay(self._load_user, settings.max_cached_users, settings.history_limit)
        self.audit = AuditLog(store)
        self.writer = EventWriter(store, settings.ingest_flush_ms,
                                  settings.ingest_ack_before_commit_may_lose_events, self.audit)
        self.reader = ReadCursor(store)  # point reads that need not wait for a commit in progress
        t0 = time.perf_counter()
        # new event ids are told apart without a store scan; with replicas every id is asked of the store's
        # unique index instead (another process may have stored it), so there is nothing to index
        self.id_filter = IdFilter() if self.shared else IdFilter.of_store(store)
        log.info("indexed %d event ids in %.1fs", self.id_filter.count, time.perf_counter() - t0)
        self._ingest_lock = threading.Lock()
        self._model_gate = threading.BoundedSemaphore(model_concurrency(settings))
        self.started_at = time.time()
        if settings.preload_users:
            t0 = time.perf_counter()
            recent = recent_histories(store, settings.max_cached_users, settings.history_limit)
            n = self.overlay.preload(recent)
            log.info("loaded the recent history of %d users in %.1fs", n, time.perf_counter() - t0)
        if settings.store_threads:  # after the start-up scans, which do use every core
            store.set_threads(settings.store_threads)
        if on_activate is not None:
            on_activate(bundle)
        self.experiments = ExperimentRuntime(store, self.load_version, lambda: self._bundle)

    @classmethod
    def open(cls, settings: ServingSettings, store: Store | None = None, encoder: Encoder | None = None,
             on_activate: Callable[[ModelBundle], None] | None = None) -> Engine:
        """Open the store, load ``settings.model_dir`` and build the first bundle."""
        if settings.model_dir is None:
            raise ValueError("no model to serve: set model_dir (LMREC_MODEL_DIR or `lmrec serve MODEL_DIR`)")
        path = Path(settings.model_dir)
        if not (path / MODEL_FILE).exists():
            raise FileNotFoundError(f"{path} is not a trained lmrec model folder (no {MODEL_FILE})")
        model = load_for_serving(path, settings.runtime)  # a runtime the folder cannot give fails here
        store = store if store is not None else Store(settings.store)
        bundle = build_bundle(model, path.name, path, store.items(), encoder, settings, store)
        return cls(settings, store, bundle, encoder, on_activate)

    @property
    def bundle(self) -> ModelBundle:
        """The active bundle; a request reads it once and uses that one throughout."""
        return self._bundle

    # ------------------------------------------------------------------ users and their histories
    def _load_user(self, user_id: str) -> UserState | None:
        """A user's state from the store (plus events not yet committed), else the model's training history;
        ``None`` if the user is unknown everywhere."""
        limit = self.settings.history_limit
        with self.writer.commit_lock:  # no batch may move from "pending" to "stored" while we read both
            stored = user_events(self.reader, user_id, limit * 2)
            pending = self.writer.pending_for(user_id)
        events = stored + [(e.item_id, e.event_type) for e in sorted(pending, key=lambda e: e.timestamp)
                           if e.event_type != IMPRESSION]  # what was shown is not history
        if events:
            state = UserState()
            for item, etype in events:
                state.apply(item, etype, limit)
            return state
        # with replicas, point reads go through the reader's connection: the store's own one is held by
        # every commit of the event writer
        has_row, profile = user_profile(self.reader if self.shared else self.store, user_id)
        state = UserState(profile=profile)
        b = self.bundle
        assert b.model.user_map is not None and b.model.item_map is not None
        uidx = b.model.user_map.get(user_id)
        if uidx and not (user_id in self._erased or self._tombstoned(user_id)):
            hist = b.model.histories_for(np.array([uidx]))[0]
            for item in b.model.item_map.raws(hist).tolist():
                state.apply(item, "view", limit)
            return state
        return state if has_row else None

    def _current_state(self, user_id: str) -> UserState | None:
        """The user's state: from the overlay, or, when replicas share the store, read again now (another
        replica may have stored events or erased the user since)."""
        if not self.shared:
            return self.overlay.get(user_id)
        with self.overlay.user_lock(user_id):
            self.overlay.forget(user_id)
            return self.overlay.load_locked(user_id)

    def forget_erased(self, user_id: str) -> None:
        """Another replica erased this user: drop every trace this process holds in memory."""
        with self.overlay.user_lock(user_id):
            self._erased.add(user_id)
            self.overlay.forget(user_id)
        self.writer.drop_user(user_id)
        with self._swap_lock:
            self.bundle.model.forget_users([user_id])

    def _user_state(self, user_id: str) -> UserState:
        state = self._current_state(user_id)
        if state is None:
            raise NotFoundError(f"unknown user {user_id!r}")
        return state

    def _user_index(self, b: ModelBundle, user_id: str) -> int:
        assert b.model.user_map is not None
        if user_id in self._erased:
            return 0
        uidx = b.model.user_map.get(user_id)
        if uidx and self.shared and self._tombstoned(user_id):  # erased on another replica
            return 0
        return uidx

    def _tombstoned(self, user_id: str) -> bool:
        return self.keys.is_erased(user_id, via=self.reader if self.shared else None)

    # ------------------------------------------------------------------ recommendations
    def user_recommendations(self, user_id: str, req: RecRequest, record: bool = True) -> Recommendations:
        """Top-k for a known user: training or stored history plus everything ingested since.

        An unknown (or erased) user is a 404, or, with ``req.unknown == "popular"``, gets the most popular
        items marked ``fallback="unknown-user"``: the same policy as ``Recommender.recommend`` and
        ``lmrec recommend --unknown``.

        A user in a running experiment is answered by their arm's model version, and the answer is recorded
        for the experiment's metrics unless ``record`` is false (the dashboard's look at a user).
        """
        asked = time.monotonic()
        state = self._current_state(user_id)
        assignment = self.experiments.route(user_id)
        b = assignment.bundle if assignment is not None else self.bundle
        if state is None:
            if req.unknown != "popular":
                raise NotFoundError(f"unknown user {user_id!r}; ask with unknown=popular for the most "
                                    "popular items")
            out = self._recommend(b, 0, UserState(), req)
            out.fallback = "unknown-user"
            return self._answered(out, user_id, assignment, record)  # no impressions: maybe an erased user
        out = self._recommend(b, self._user_index(b, user_id), state, req)
        if self.settings.log_impressions:
            self._log_impressions(user_id, out, asked)
        return self._answered(out, user_id, assignment, record)

    def _answered(self, out: Recommendations, user_id: str, assignment: Assignment | None,
                  record: bool) -> Recommendations:
        """Inside an experiment, give the answer its arm (recorded under its list id when ``record``)."""
        if assignment is not None:
            out.experiment, out.arm = assignment.experiment.name, assignment.arm.name
            if record:
                self.experiments.record(out.list_id, assignment, user_id, [i.item_id for i in out.items])
        return out

    def _log_impressions(self, user_id: str, recs: Recommendations, asked: float) -> None:
        """Queue what ``recs`` shows ``user_id`` as impression events (list ``recs.list_id``, position = rank
        from 0) on the events writer, without waiting for their commit: the answer is not slowed by the
        store, and the writer commits them with the next group (a failed group is retried event by event, so
        an impression can never cost a click its commit). They never enter the user's history. An answer
        computed before the user was erased logs nothing."""
        if not recs.items:
            return
        now = int(time.time())
        shown = [Event(f"impression|{recs.list_id}|{pos}", user_id, item.item_id, now, IMPRESSION, None,
                       recs.list_id, pos) for pos, item in enumerate(recs.items)]
        with self._ingest_lock:  # ordered with de-duplication (the ids are new) and with erasure
            if self._erased_at.get(user_id, -1.0) >= asked:
                return
            self.id_filter.add([e.event_id for e in shown])
            self.writer.submit(shown)

    def session_recommendations(self, items: list[str], profile: str | None,
                                req: RecRequest) -> Recommendations:
        """Top-k for an anonymous session (item ids, oldest first) or, with no usable items, profile text."""
        b = self.bundle
        assert b.model.item_map is not None
        known = [i for i in items if i in b.model.item_map]
        ignored = [i for i in items if i not in b.model.item_map]
        state = UserState(items=known, types=["view"] * len(known), profile=profile)
        out = self._recommend(b, 0, state, req)
        out.ignored_items = ignored
        return out

    def _recommend(self, b: ModelBundle, uidx: int, state: UserState, req: RecRequest) -> Recommendations:
        if req.k > self.settings.max_k:
            raise InvalidRequestError(f"k={req.k} is above the limit of {self.settings.max_k}")
        with b.lock.read():
            model = b.model
            assert model.item_map is not None
            hist = model.item_map.indices(state.items, strict=False)
            types = [t for t, h in zip(state.types, hist.tolist(), strict=True) if h]
            hist = hist[hist > 0]
            neg = model.item_map.indices(sorted(state.negatives), strict=False)
            neg = neg[neg > 0]
            mask = b.category_mask(req.categories, req.exclude_categories)
            policy = req.exposure()
            n_fetch = req.k if req.diversity <= 0 else max(3 * req.k, req.k + 20)
            n_fetch = max(n_fetch, policy.candidates(req.k))
            profile_match = None
            with self._model_gate:  # CPU-bound: at most one request per core scores at a time
                if not len(hist) and not uidx and state.profile and b.text_index is not None and self.encoder:
                    idx, sc, strategy = self._by_profile(b, state.profile, n_fetch, mask, neg)
                    profile_match = sc
                else:
                    idx, sc, strategy = self._by_model(b, hist, uidx, n_fetch, req.exclude_seen, mask, neg)
            keep = (idx > 0) & np.isfinite(sc)  # fewer rankable items than asked for
            idx, sc = idx[keep], sc[keep]
            if profile_match is not None:
                profile_match = profile_match[keep]
            if req.diversity > 0 and len(idx) > req.k:
                vecs = self._diversity_vectors(b, idx)
                if vecs is not None:
                    # with exposure rules too, MMR orders every candidate and the rules pick from that order
                    order = mmr(sc, vecs, len(idx) if policy.active else req.k, req.diversity)
                    idx, sc = idx[order], sc[order]
                    if profile_match is not None:
                        profile_match = profile_match[order]
            if policy.active and len(idx) > 0:
                groups, tail = model.exposure_groups()
                order = rerank(idx, req.k, policy, groups, tail)
                idx, sc = idx[order], sc[order]
                if profile_match is not None:
                    profile_match = profile_match[order]
            idx, sc = idx[: req.k], sc[: req.k]
            if profile_match is not None:
                profile_match = profile_match[: req.k]
            expl = (explain(b, idx, hist, types, profile_match, state.profile, user=uidx) if req.explain
                    else [None] * len(idx))
            ids = model.item_map.raws(idx).tolist()
            items = [RecommendedItem(i, float(s), b.title(int(x)), b.categories(int(x)), e)
                     for i, s, x, e in zip(ids, sc.tolist(), idx.tolist(), expl, strict=True)]
        if not len(hist) and not uidx and strategy == "model":
            strategy = "popularity"
        return Recommendations(items, b.version, strategy)

    def _by_model(self, b: ModelBundle, hist: np.ndarray, uidx: int, n: int, exclude_seen: bool,
                  mask: np.ndarray | None, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        model = b.model
        histories = Ragged.from_lists([hist])
        users = np.array([uidx], dtype=np.int64)
        banned = np.concatenate([neg, hist]) if exclude_seen else neg
        if b.space_indexes and isinstance(model, CandidateRetrieval) and (len(hist) or uidx):
            # a blend on a large catalogue: each component's top items from its index or its sparse row, and
            # the blend's exact scores of them (models/auto.py), instead of scoring every item
            indexes = b.space_indexes
            want = self.settings.ann_candidates + n + len(banned)
            [(cand, scores)] = model.candidates(histories, users, want,
                                                lambda name, q, k: indexes[name].candidates(q, k))
            keep = ~np.isin(cand, banned) & np.isfinite(scores)
            if mask is not None:
                keep &= (cand < len(mask)) & mask[np.minimum(cand, len(mask) - 1)]
            cand, scores = cand[keep], scores[keep]
            if len(cand) >= n:
                idx, sc = topk(scores[None, :], n)
                return cand[idx[0]], sc[0], "candidates"
        if b.factor_index is not None and b.factor_index.uses_ann and (len(hist) or uidx):
            uvec = model_user_vectors(model, histories, users)
            if uvec is not None:
                n_banned = len(neg) + (len(hist) if exclude_seen else 0)
                cand = b.factor_index.candidates(uvec, self.settings.ann_candidates + n + n_banned)[0]
                cand = np.unique(cand[cand > 0])
                cand = cand[~np.isin(cand, banned)]
                if mask is not None:
                    cand = cand[cand < len(mask)]
                    cand = cand[mask[cand]]
                if len(cand) >= n:
                    scores = np.asarray(model.score(histories, users, items=cand), dtype=np.float32)[0]
                    idx, sc = topk(scores[None, :], n)
                    return cand[idx[0]], sc[0], "ann+rescore"
        excl = Ragged.from_lists([neg]) if len(neg) else None
        idx, sc = model.recommend_indices(histories, users, n, exclude_seen=exclude_seen, exclude=excl,
                                          item_mask=mask)
        return idx[0], sc[0], "model"

    def _by_profile(self, b: ModelBundle, profile: str, n: int, mask: np.ndarray | None,
                    neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        assert b.text_index is not None and self.encoder is not None
        allowed = np.ones(b.text_index.n_items + 1, dtype=bool) if mask is None else mask.copy()
        allowed[PAD] = False
        allowed[neg[neg < len(allowed)]] = False
        q = encode_query(self.encoder, profile)
        idx, sc = b.text_index.search(q, n, mask=allowed)
        return idx[0], sc[0], "profile-text"

    def _diversity_vectors(self, b: ModelBundle, idx: np.ndarray) -> np.ndarray | None:
        index = b.text_index or b.behaviour_index
        if index is None:
            return None
        v = index.vectors
        return v[np.where(idx < len(v), idx, PAD)]

    # ------------------------------------------------------------------ similar items
    def similar_items(self, item_id: str, k: int, by: str) -> SimilarItems:
        """Items most like ``item_id`` by the model's behaviour (vectors or co-occurrence) or by text."""
        if k > self.settings.max_k:
            raise InvalidRequestError(f"k={k} is above the limit of {self.settings.max_k}")
        b = self.bundle
        with b.lock.read():
            assert b.model.item_map is not None
            item = b.model.item_map.get(item_id)
            if not item:
                raise NotFoundError(f"unknown item {item_id!r}")
            note = None
            if by == "text":
                if b.text_index is None:
                    raise CapabilityError("similar items by text need a text encoder, and this service has "
                                          "none (LMREC_TEXT_ENCODER is 'none' or lmrec.text is not "
                                          "installed); use by=behaviour")
                allowed = np.ones(b.text_index.n_items + 1, dtype=bool)
                allowed[[PAD, item]] = False
                q = b.text_index.vectors[item]
                if not np.any(q):
                    idx, sc, note = np.zeros(0, np.int64), np.zeros(0, np.float32), "this item has no text"
                else:
                    i2, s2 = b.text_index.search(q, k, mask=allowed)
                    idx, sc = i2[0], s2[0]
            elif b.behaviour_index is not None:
                allowed = np.ones(b.behaviour_index.n_items + 1, dtype=bool)
                allowed[[PAD, item]] = False
                q = b.behaviour_index.vectors[item] if item < len(b.behaviour_index.vectors) else None
                if q is None or not np.any(q):
                    idx, sc, note = np.zeros(0, np.int64), np.zeros(0, np.float32), \
                        "the model has no representation of this item yet; try by=text"
                else:
                    i2, s2 = b.behaviour_index.search(q, k, mask=allowed)
                    idx, sc = i2[0], s2[0]
            elif b.cooc is not None:
                sims = b.cooc_neighbours(item)
                sims[[PAD, item]] = NEG_INF
                sims[sims <= 0] = NEG_INF
                i2, s2 = topk(sims[None, :], k)
                idx, sc = i2[0], s2[0]
                if not np.isfinite(sc).any():
                    note = "nobody has interacted with this item yet; try by=text"
            else:
                raise CapabilityError("the active model has neither item vectors nor training histories; "
                                      "use by=text")
            keep = (idx > 0) & np.isfinite(sc)
            idx, sc = idx[keep], sc[keep]
            ids = b.model.item_map.raws(idx).tolist()
            items = [RecommendedItem(i, float(s), b.title(int(x)), b.categories(int(x)))
                     for i, s, x in zip(ids, sc.tolist(), idx.tolist(), strict=True)]
        return SimilarItems(item_id, by, items, b.version, note)

    # ------------------------------------------------------------------ predictions
    def predictions(self, user_id: str, item_ids: list[str],
                    want: list[str] | None) -> tuple[heads.Predictions, str]:
        """Rating / next action / value for a user, from the heads the active model has.

        The user's history is their events in the store (flushed first, so ingested events count), or the
        model's training events for a user the store does not have.
        """
        self._user_state(user_id)  # 404 for unknown or erased users
        b = self.bundle
        have = heads.available_heads(b.model)
        if not have:
            raise CapabilityError(f"the active model ({b.model.name}, version {b.version}) has no prediction "
                                  "heads (rating, next action, value); serve a multi-task model", status=404)
        want = want or [h for h in have if h != "rating" or item_ids]
        missing = [h for h in want if h not in have]
        if missing:
            raise CapabilityError(f"the active model has no {', '.join(missing)} head; "
                                  f"it has: {', '.join(have)}", status=404)
        if "rating" in want and not item_ids:
            raise InvalidRequestError("rating predictions need items: give ?items=ID&items=ID")
        self.writer.flush()
        events = self.store.events("user_id = ?", [user_id])
        with b.lock.read():
            model = b.model
            assert model.item_map is not None and model.user_map is not None
            items = model.item_map.indices(item_ids, strict=False)
            unknown = [i for i, x in zip(item_ids, items.tolist(), strict=True) if not x]
            if unknown:
                raise NotFoundError(f"unknown item(s): {', '.join(unknown[:10])}")
            context = heads.context_for(model, events) if events.height else None
            user = context.user_map.index(user_id) if context is not None else self._user_index(b, user_id)
            if not user:
                raise CapabilityError(f"user {user_id!r} has no events the model can read yet", status=404)
            assert isinstance(model, PredictionHeads)  # available_heads found some
            try:
                out = heads.predict(model, user, context, items, item_ids, want)
            except IndexError:
                raise CapabilityError("an item was added after the model was trained; its rating needs a "
                                      "retrained model", status=409) from None
        return out, b.version

    # ------------------------------------------------------------------ writes: events
    def ingest(self, events: list[dict[str, Any]], audit: AuditEntry | None = None) -> IngestResult:
        """Store a batch of events (idempotent by ``event_id``) and answer once they are committed (group
        commit, see :mod:`lmrec.serving.ingest`); the next recommendation reflects them.

        Events without an ``event_id`` get the stable id the importer derives from their fields; without a
        ``timestamp`` they are stamped now. A bad field fails the whole batch with the event index and field
        named, before anything is stored. ``audit`` is committed in the same transaction as the events.
        """
        if len(events) > self.settings.max_batch:
            raise InvalidRequestError(f"{len(events)} events in one batch; "
                                      f"the limit is {self.settings.max_batch}")
        prepared = prepare(events)
        rows = list({e.event_id: e for e in reversed(prepared)}.values())[::-1]  # first of each id
        users = list(dict.fromkeys(e.user_id for e in rows))
        # Users with behaviour in the batch; impressions alone (what was shown) make nobody known.
        acting = list(dict.fromkeys(e.user_id for e in rows if e.event_type != IMPRESSION))
        locks = sorted({id(self.overlay.user_lock(u)): self.overlay.user_lock(u) for u in users}.items())
        for _, lock in locks:
            lock.acquire()
        try:
            for u in acting:
                # Load before the new events exist anywhere, so that none is counted twice.
                self.overlay.ensure_loaded(u)
            with self._ingest_lock:  # one de-duplication at a time: a concurrent resend cannot slip through
                ids = [e.event_id for e in rows]
                seen = self.writer.pending_ids(ids)
                rest = [i for i in ids if i not in seen]
                # with replicas, another process may have stored any id: ask the store about all of them
                maybe = rest if self.shared else [
                    i for i, m in zip(rest, self.id_filter.may_contain(rest), strict=True) if m]
                seen |= existing_event_ids(self.reader, maybe)  # only ids the filter cannot rule out
                new = [e for e in rows if e.event_id not in seen]
                self.id_filter.add([e.event_id for e in new])
                ticket = self.writer.submit(new, audit)
                if audit is not None:
                    audit.recorded = True
            if not self.writer.ack_before_commit and not ticket.wait(self.settings.ingest_timeout_s):
                raise CommitError(f"the store did not commit within {self.settings.ingest_timeout_s:g} s; "
                                  "resending is safe (events are idempotent by id)")
            failed = {ticket.events[p].event_id for p in ticket.failed}
            stored = [e for e in new if e.event_id not in failed]
            by_user: dict[str, list[tuple[str, str]]] = {}
            for e in sorted(stored, key=lambda e: e.timestamp):
                if e.event_type != IMPRESSION:
                    by_user.setdefault(e.user_id, []).append((e.item_id, e.event_type))
            for u, evs in by_user.items():
                self.overlay.apply(u, evs)
        finally:
            for _, lock in reversed(locks):
                lock.release()
        if failed:
            where = [i for i, e in enumerate(prepared) if e.event_id in failed]
            raise CommitError(f"events at index {where} could not be stored (the others were); "
                              "resending them is safe")
        return IngestResult(accepted=len(new), duplicates=len(events) - len(new), users=len(users))

    # ------------------------------------------------------------------ writes: items
    def upsert_items(self, items: list[dict[str, Any]]) -> UpsertResult:
        """Store new or changed items; they are recommendable and findable by similarity at once."""
        if len(items) > self.settings.max_batch:
            raise InvalidRequestError(f"{len(items)} items in one batch; "
                                      f"the limit is {self.settings.max_batch}")
        df = pl.DataFrame(items, schema={"item_id": pl.String, "title": pl.String, "description": pl.String,
                                         "categories": pl.List(pl.String), "attributes": pl.String})
        df = df.unique("item_id", keep="last", maintain_order=True)
        with self._swap_lock:
            self.store.upsert_items(df)
            b = self.bundle
            # Encode before taking the write lock: readers keep being served while the encoder runs. The text
            # index holds the service's vectors; a text model gets vectors of its own text space.
            vecs = encode_items(self.encoder, df, store=self.store) if b.text_index is not None and \
                self.encoder is not None else None
            created: list[str] = []
            ids = df["item_id"].to_list()
            # the active bundle last: its counts are the answer; experiment arms' bundles learn the items too
            for bb in [*self.experiments.bundles(), b]:
                created = self._upsert_into(bb, df, ids, vecs)
        return UpsertResult(created=len(created), updated=len(ids) - len(created),
                            encoded=0 if vecs is None else len(vecs), catalogue_size=b.n_items)

    def _upsert_into(self, b: ModelBundle, df: pl.DataFrame, ids: list[str],
                     vecs: np.ndarray | None) -> list[str]:
        """Add or update items in one bundle; returns the ids that were new to it. Caller holds the swap
        lock."""
        try:
            model_vecs = encode_for_model(b.model, df, self.encoder, self.store)
        except TextSpaceError as exc:
            raise CapabilityError(str(exc)) from exc
        with b.lock.write():
            model = b.model
            assert model.item_map is not None
            created = [i for i in ids if i not in model.item_map]
            idx = add_to_model(model, df, model_vecs)
            titles = b.titles + [""] * (model.n_items + 1 - len(b.titles))
            for i, t, raw in zip(idx.tolist(), df["title"].to_list(), ids, strict=True):
                titles[i] = t or raw
            b.titles = titles
            b.invalidate_masks()
            if vecs is not None and b.text_index is not None:
                b.text_index.upsert(idx, vecs)
            has_vectors = b.behaviour_index is not None or b.factor_index is not None
            iv = model_item_vectors(model) if has_vectors else None
            if iv is not None:
                if b.behaviour_index is not None:
                    b.behaviour_index.upsert(idx, normalise(iv[idx]))
                if b.factor_index is not None:
                    b.factor_index.upsert(idx, iv[idx])
            if b.space_indexes and isinstance(model, CandidateRetrieval):
                spaces = model.retrieval_spaces()
                for name, index in b.space_indexes.items():
                    table, scorable = spaces[name]
                    index.upsert(idx, table[idx] * scorable[idx, None])
        return created

    # ------------------------------------------------------------------ onboarding
    def onboarding(self, answers: dict[str, bool], n: int, k: int,
                   user_id: str | None = None) -> tuple[list[RecommendedItem], list[RecommendedItem], int]:
        """The next ``n`` questions for a new user given their answers so far (``{item id: chose it}``), the
        first ``k`` recommendations from those answers (empty before any answer), and, with ``user_id``, how
        many "yes" answers were stored as ``like`` events of that user (so their next recommendations follow
        from them at once). Items the model does not know are ignored."""
        b = self.bundle
        ob = b.onboarding()
        known = {i: v for i, v in answers.items() if i in b.model.item_map}
        with b.lock.read():
            questions = [RecommendedItem(q, 0.0, b.title(b.model.item_map.index(q)),
                                         b.categories(b.model.item_map.index(q)))
                         for q in ob.next_questions(known, n)]
            recs: list[RecommendedItem] = []
            if known:
                scores = ob.scores(known)
                scores[PAD] = NEG_INF
                scores[b.model.item_map.indices(list(known))] = NEG_INF
                idx, sc = topk(scores[None, :], k)
                recs = [RecommendedItem(str(b.model.item_map.raw(int(i))), float(s), b.title(int(i)),
                                        b.categories(int(i)))
                        for i, s in zip(idx[0], sc[0], strict=True) if np.isfinite(s)]
        added = 0
        if user_id is not None:
            liked = [i for i, v in known.items() if v]
            now = int(time.time())
            res = self.ingest([{"event_id": f"onboarding:{user_id}:{i}", "user_id": user_id, "item_id": i,
                                "timestamp": now, "event_type": "like"} for i in liked]) if liked else None
            added = res.accepted if res is not None else 0
        return questions, recs, added

    # ------------------------------------------------------------------ erasure
    def erase_user(self, user_id: str) -> dict[str, int]:
        """Erase a user's events, profile and every cached trace; afterwards the user is unknown (404)."""
        with self.overlay.user_lock(user_id):
            if self.overlay.load_locked(user_id) is None:
                raise NotFoundError(f"unknown user {user_id!r}")
            with self._ingest_lock:  # no impression of an answer computed before now is queued after this
                self._erased_at[user_id] = time.monotonic()
            self.writer.drop_user(user_id)
            self.experiments.forget_user(user_id)
            removed = self.keys.erase_user(user_id)
            self._erased.add(user_id)
            removed["cached"] = int(self.overlay.forget(user_id))
        left = user_row_counts(self.store, user_id)
        if any(left.values()):  # a concurrent ingest slipped in between; erase again
            self.store.delete_user(user_id)
        removed["models"] = self._forget_in_models(user_id)
        if self.settings.erasure_compaction:
            with self._swap_lock, self.reader.paused():
                removed["compacted_bytes"] = self.store.compact()["bytes_after"]
        log.info("erased user %s", user_tag(user_id))
        return removed

    def _forget_in_models(self, user_id: str) -> int:
        """Drop the user from the model in memory and from every saved model folder; returns how many folders
        knew them."""
        with self._swap_lock:
            b = self.bundle
            active = Path(b.path).resolve() if b.path else None
            n = 0
            if b.path and (Path(b.path) / MODEL_FILE).is_file():
                n += bool(forget_in_model(b.model, b.path, [user_id]))
            else:
                b.model.forget_users([user_id])
            for arm in self.experiments.bundles():  # in memory; their folders are patched below
                arm.model.forget_users([user_id])
            root = self.settings.resolved_models_dir()
            for folder in model_folders(root) if root is not None else []:
                if folder.resolve() != active:
                    n += bool(forget_in_folder(folder, [user_id]))
            return n

    # ------------------------------------------------------------------ model versions
    def versions(self) -> list[str]:
        root = self.settings.resolved_models_dir()
        if root is None or not root.is_dir():
            return [self.bundle.version]
        found = sorted(p.name for p in root.iterdir() if (p / MODEL_FILE).is_file())
        return found or [self.bundle.version]

    def version_path(self, version: str) -> Path:
        """The folder of a model version of the registry; :class:`NotFoundError` when there is none."""
        root = self.settings.resolved_models_dir()
        if root is None or "/" in version or version.startswith("."):
            raise NotFoundError(f"unknown model version {version!r}")
        path = root / version
        if not (path / MODEL_FILE).is_file():
            raise NotFoundError(f"unknown model version {version!r}; available: {', '.join(self.versions())}")
        return path

    def load_version(self, version: str) -> ModelBundle:
        """Load a model version of the registry into a bundle, without serving it (yet)."""
        path = self.version_path(version)
        try:
            model = load_for_serving(path, self.settings.runtime)
        except ServingFormError as exc:
            raise CapabilityError(f"model version {version!r} cannot be served: {exc}") from None
        return build_bundle(model, version, path, self.store.items(), self.encoder, self.settings, self.store)

    def activate(self, version: str, announce: bool = True) -> ModelBundle:
        """Load model ``version`` fully, then swap it in with one reference assignment (no request fails).

        ``announce``: record it in the registry (``meta``) and tell the other replicas; ``False`` when this
        replica follows an activation made elsewhere."""
        self.version_path(version)
        with self._swap_lock:
            bundle = self.load_version(version)
            self._bundle = bundle  # atomic: requests already running finish on the old bundle
        if announce:
            self.store.set_meta(ACTIVE_MODEL_KEY, {"version": version, "path": str(bundle.path)})
            self.store.notify("model", version=version)
        if self._on_activate is not None:
            self._on_activate(bundle)
        self.experiments.refresh()  # an arm that named the version it replaced keeps a bundle of its own
        log.info("activated model version %s", version)
        return bundle

    def close(self) -> None:
        """Commit queued events and experiment answers, and stop the background writers."""
        self.experiments.close()
        self.writer.close()
        self.reader.close()

    def status(self) -> dict[str, Any]:
        b = self.bundle
        return {"model_version": b.version, "model": b.model.name, "catalogue_size": b.n_items,
                "users_in_memory": len(self.overlay), "text_features": b.text_index is not None,
                "ann": bool(b.factor_index is not None and b.factor_index.uses_ann),
                "behaviour": "vectors" if b.behaviour_index is not None else
                ("co-occurrence" if b.cooc is not None else "none"),
                "prediction_heads": heads.available_heads(b.model),
                "runtimes": runtimes_of(b.model),
                "events_committed": self.writer.committed,
                "loaded_at": b.loaded_at, "started_at": self.started_at}
