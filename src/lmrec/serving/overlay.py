"""Per-user recent history held in memory, so that an ingested event shapes the very next recommendation.

The store is the record; the overlay is a bounded cache of each active user's newest events, loaded once from
the store (or from the model's training history when the store has nothing for the user) and then updated in
place on every ingest. Negative feedback (:data:`~lmrec.data.schema.NEGATIVE_EVENT_TYPES`) moves an item out
of the positive history into a set of items never to recommend again; a later positive event brings it back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lmrec.data.schema import IMPRESSION, NEGATIVE_EVENT_TYPES


@dataclass
class UserState:
    """One user's recent behaviour: positive items (oldest first, with their event type) and rejected
    items."""

    items: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    negatives: set[str] = field(default_factory=set)
    profile: str | None = None  # free text about the user, for cold starts

    def apply(self, item_id: str, event_type: str, limit: int) -> None:
        """Add one event in time order (``limit`` bounds the positive history). An impression (the item was
        shown) is not behaviour and changes nothing."""
        if event_type == IMPRESSION:
            return
        if event_type in NEGATIVE_EVENT_TYPES:
            self.negatives.add(item_id)
            if item_id in self.items:
                keep = [i for i, it in enumerate(self.items) if it != item_id]
                self.items = [self.items[i] for i in keep]
                self.types = [self.types[i] for i in keep]
            return
        self.negatives.discard(item_id)
        self.items.append(item_id)
        self.types.append(event_type)
        if len(self.items) > limit:
            del self.items[: len(self.items) - limit]
            del self.types[: len(self.types) - limit]

    def copy(self) -> UserState:
        return UserState(list(self.items), list(self.types), set(self.negatives), self.profile)


Loader = Callable[[str], UserState | None]


class HistoryOverlay:
    """A thread-safe LRU of :class:`UserState` per user id.

    Parameters
    ----------
    loader:
        Builds a user's state on first use (``None`` when the user is unknown everywhere).
    max_users:
        Users kept in memory; the least recently used is dropped first (it reloads from the store).
    limit:
        Newest positive events kept per user.
    """

    def __init__(self, loader: Loader, max_users: int = 100_000, limit: int = 200) -> None:
        self._loader = loader
        self._max = max_users
        self.limit = limit
        self._users: OrderedDict[str, UserState] = OrderedDict()
        self._lock = threading.RLock()
        self._stripes = [threading.Lock() for _ in range(64)]

    def __len__(self) -> int:
        return len(self._users)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._users

    def _stripe(self, user_id: str) -> threading.Lock:
        return self._stripes[hash(user_id) % len(self._stripes)]

    def user_lock(self, user_id: str) -> threading.Lock:
        """The lock that orders loading, storing and applying one user's events (held by the ingest path)."""
        return self._stripe(user_id)

    def get(self, user_id: str) -> UserState | None:
        """A snapshot of the user's state (loaded on first use), or ``None`` for an unknown user."""
        with self._lock:
            state = self._users.get(user_id)
            if state is not None:
                self._users.move_to_end(user_id)
                return state.copy()
        with self._stripe(user_id):
            return self.load_locked(user_id)

    def load_locked(self, user_id: str) -> UserState | None:
        """A snapshot, loading it if needed. The caller holds :meth:`user_lock`, so that no ingest interleaves
        between reading the store and caching the state."""
        with self._lock:
            state = self._users.get(user_id)
            if state is not None:
                return state.copy()
        loaded = self._loader(user_id)
        if loaded is None:
            return None
        with self._lock:
            self._users[user_id] = loaded
            self._evict()
            return loaded.copy()

    def ensure_loaded(self, user_id: str) -> None:
        """Load a user's state before new events are stored. The caller holds :meth:`user_lock`."""
        if self.load_locked(user_id) is None:
            with self._lock:
                self._users.setdefault(user_id, UserState())

    def apply(self, user_id: str, events: Iterable[tuple[str, str]]) -> None:
        """Apply ``(item_id, event_type)`` events, oldest first. The caller holds :meth:`user_lock` and called
        :meth:`ensure_loaded` before storing the events (otherwise a load would count them twice)."""
        with self._lock:
            state = self._users.setdefault(user_id, UserState())
            for item_id, event_type in events:
                state.apply(item_id, event_type, self.limit)
            self._users.move_to_end(user_id)
            self._evict()

    def preload(self, histories: dict[str, list[tuple[str, str]]]) -> int:
        """Fill the cache with users' events ``(item_id, event_type)``, oldest first (users already cached are
        kept as they are). Returns how many users were added."""
        added = 0
        with self._lock:
            for user_id, events in histories.items():
                if user_id in self._users or len(self._users) >= self._max:
                    continue
                state = UserState()
                for item_id, event_type in events:
                    state.apply(item_id, event_type, self.limit)
                self._users[user_id] = state
                added += 1
        return added

    def forget(self, user_id: str) -> bool:
        """Drop a user's state (erasure); ``True`` when there was one."""
        with self._lock:
            return self._users.pop(user_id, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._users.clear()

    def _evict(self) -> None:
        while len(self._users) > self._max:
            self._users.popitem(last=False)
