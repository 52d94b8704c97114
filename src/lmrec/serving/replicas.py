"""Several ``lmrec serve`` processes on one PostgreSQL store behaving as one service.

What each replica keeps in memory, and how it stays true when another replica changes the store:

* **Histories** (the overlay) are read through: with a shared store, every recommendation reloads the user's
  newest events from the database (one indexed query) plus this replica's own uncommitted ones, so an event
  acknowledged by replica A shapes replica B's very next answer. No notice is waited for.
* **Erasures** are read through as well (the tombstone is checked in the database); the ``erase`` notice also
  drops the user from this replica's caches and from its in-memory model.
* **API keys**: a ``keys`` notice (sent when a key is created or revoked, by any replica or ``lmrec keys``)
  drops this replica's cached verifications at once; without it they expire after ``key_cache_seconds``.
* **Rate limits** are one token bucket per key in the database (:meth:`PostgresStore.take_token`), shared by
  every replica.
* **The active model** is a registry row (``meta.serving.active_model``): an activation on any replica sends
  a ``model`` notice and every other replica loads that version; a replica that starts (or reconnects)
  later reads the row and follows it.
* **Experiments** are rows of the store (:mod:`lmrec.store.experiments`): creating or stopping one on any
  replica (or with ``lmrec experiments``) sends an ``experiments`` notice and every replica re-reads the
  running ones, so a user is bucketed into the same arm whichever replica answers; each replica writes the
  answers it served, and a report read on any replica joins them all.

Notices travel by PostgreSQL's ``LISTEN``/``NOTIFY`` on a connection of their own; a lost connection is
reopened after a pause, and the registry is read again then, so a missed notice costs no correctness for
histories, erasures or keys (all read through or expiring) and at most the reconnect delay for a model swap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("lmrec.serving")

#: The registry row naming the model every replica serves.
ACTIVE_MODEL_KEY = "serving.active_model"


def shares_store(store: Any) -> bool:
    """Whether other processes may write this store at the same time (a database server, not a file)."""
    return getattr(store, "backend", "duckdb") != "duckdb"


class ReplicaSync:
    """Follows the other replicas' changes for one engine (a background thread).

    Parameters
    ----------
    engine:
        The :class:`~lmrec.serving.engine.Engine` of this process.
    on_keys:
        Called when API keys changed somewhere (drops the authenticator's cache).
    """

    def __init__(self, engine: Any, on_keys: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.on_keys = on_keys
        self.notices = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lmrec-replica-sync", daemon=True)

    def start(self) -> ReplicaSync:
        self.follow_registry()
        self._thread.start()
        return self

    def follow_registry(self) -> None:
        """Serve the version the registry names, when it is another one than this replica's."""
        entry = self.engine.store.get_meta(ACTIVE_MODEL_KEY)
        version = entry.get("version") if isinstance(entry, dict) else None
        if version and version != self.engine.bundle.version:
            try:
                self.engine.activate(version, announce=False)
            except Exception:  # noqa: BLE001 - a version this replica cannot load: keep serving, say so
                log.exception("the registry names model version %s, which this replica could not load",
                              version)

    def handle(self, notice: dict[str, Any]) -> None:
        self.notices += 1
        kind = notice.get("kind")
        if kind == "events":
            for user in notice.get("ids", []):
                self.engine.overlay.forget(user)
        elif kind == "erase":
            for user in notice.get("ids", []):
                self.engine.forget_erased(user)
        elif kind == "keys" and self.on_keys is not None:
            self.on_keys()
        elif kind == "model":
            self.follow_registry()
        elif kind == "experiments":
            self.engine.experiments.refresh()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for notice in self.engine.store.listen():
                    if self._stop.is_set():
                        return
                    if notice is not None:
                        self.handle(notice)
            except Exception:  # noqa: BLE001 - the server went away: reconnect, then catch up
                if self._stop.is_set():
                    return
                log.warning("lost the change notices of the other replicas; reconnecting", exc_info=True)
                self._stop.wait(1.0)
                if self.on_keys is not None:
                    self.on_keys()
                try:
                    self.follow_registry()
                    self.engine.experiments.refresh()
                except Exception:  # noqa: BLE001
                    log.debug("the registry could not be read yet", exc_info=True)

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
