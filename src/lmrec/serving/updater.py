"""The service's background updater, and the engine as a replay arm.

The updater: every ``update_interval_s`` (off by default), the events stored since the
serving model's training continue its training in a background thread, and the result is swapped in through
the ordinary activation path when the guard accepts it (:mod:`lmrec.experiment.updates`).

Requests never wait for an update: the update works on its own copy of the model loaded from the active
version's folder, reads the store through short queries, and takes the engine's swap lock only in
:meth:`~lmrec.serving.engine.Engine.activate`, as a manual hot swap does. One update runs at a time; a run
asked for while one is running is skipped, in this process and, on a shared database, in every replica
(:meth:`~lmrec.store.duckdb_store.Store.exclusive`): one replica trains, and the others follow the version it
activates; the next run of any replica starts from what that version was trained until.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from lmrec.experiment.updates import UpdateOutcome, UpdatePolicy, last_trained_until, update_version
from lmrec.serving.engine import Engine, RecRequest

log = logging.getLogger("lmrec.serving")

#: ``update_version``'s signature, replaceable in tests.
UpdateFn = Callable[..., UpdateOutcome]


class BackgroundUpdater:
    """Runs :func:`~lmrec.experiment.updates.update_version` on the active model, on a timer or on demand.

    Parameters
    ----------
    engine:
        The serving engine (store, active bundle, activation).
    policy:
        The guard's settings.
    interval_s:
        Seconds between runs of the timer (0: no timer; :meth:`trigger` still works).
    min_events:
        Fewer new events than this and a run does nothing (waits for more).
    since:
        Events after this time are new for the first run; default: the active folder's ``update.json``, else
        the moment the service started.
    """

    def __init__(self, engine: Engine, policy: UpdatePolicy, interval_s: float = 0.0, min_events: int = 1,
                 since: int | None = None, update_fn: UpdateFn = update_version) -> None:
        self.engine = engine
        self.policy = policy
        self.interval_s = interval_s
        self.min_events = min_events
        self._since = since
        self._update_fn = update_fn
        self._running = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self.runs = 0
        self.last: dict[str, Any] | None = None  # the last run's outcome (or error, or why it did nothing)

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self.interval_s > 0 and self._timer is None:
            self._timer = threading.Thread(target=self._loop, name="lmrec-updater", daemon=True)
            self._timer.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the timer and wait (up to ``timeout`` s per thread) for a run in progress."""
        self._stop.set()
        for t in [self._timer, *self._workers]:
            if t is not None:
                t.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()

    def trigger(self) -> bool:
        """Start a run in a background thread now; ``False`` when one is already running."""
        if self._running.locked():
            return False
        t = threading.Thread(target=self.run_once, name="lmrec-update-run", daemon=True)
        self._workers = [w for w in self._workers if w.is_alive()] + [t]
        t.start()
        return True

    @property
    def busy(self) -> bool:
        return self._running.locked()

    def status(self) -> dict[str, Any]:
        return {"enabled": self.interval_s > 0, "interval_s": self.interval_s, "running": self.busy,
                "runs": self.runs, "since": self._since, "last": self.last}

    # ------------------------------------------------------------------ one run
    def _since_for(self, path: Path | None) -> int:
        """Events after this are new: the latest of the start (``since``, else when the service started) and
        what the active version was trained until (its ``update.json``: also when another replica's update
        made it the active one)."""
        recorded = last_trained_until(path) if path is not None else None
        if self._since is None:
            return recorded if recorded is not None else int(self.engine.started_at)
        return self._since if recorded is None else max(self._since, recorded)

    def run_once(self) -> UpdateOutcome | None:
        """One update of the active model; returns its outcome (``None`` when skipped or nothing to do)."""
        if not self._running.acquire(blocking=False):
            return None
        try:
            with self.engine.store.exclusive("lmrec.updater") as alone:
                if not alone:  # replicas on one database: one updates, the others follow its activation
                    self.last = {"skipped": "another process on this store is running an update"}
                    return None
                return self._run()
        finally:
            self._running.release()

    def _run(self) -> UpdateOutcome | None:
        t0 = time.perf_counter()
        try:
            self.runs += 1
            b = self.engine.bundle
            if b.path is None:
                self.last = {"skipped": "the active model has no folder to update from"}
                return None
            since = self._since_for(Path(b.path))
            store = self.engine.store
            events = store.events("timestamp > ?", [since])
            if events.height < self.min_events:
                self.last = {"skipped": f"{events.height} new event(s) since {since} (< {self.min_events})"}
                return None
            out = self._update_fn(b.path, events, items=store.items(), since=since,
                                  registry=self.engine.settings.resolved_models_dir(), policy=self.policy)
            if out.accepted:
                self.engine.activate(out.version)
                self._since = int(out.figures["trained_until"])
            self.last = {**out.to_dict(), "activated": out.accepted,
                         "seconds": round(time.perf_counter() - t0, 3)}
            log.info("background update %s: %s (%s)", out.version,
                     "activated" if out.accepted else "not activated", out.reason)
            return out
        except Exception as exc:  # noqa: BLE001 - a failed update must not stop the service or the timer
            log.exception("background update failed")
            self.last = {"error": f"{type(exc).__name__}: {exc}"}
            return None


class EngineArm:
    """The service's engine as an arm of :func:`lmrec.evaluation.replay.replay`.

    Each user's list is what ``GET /v1/users/{id}/recommendations`` answers (the engine's own view of the
    user: stored events plus everything ingested; the replay's ``histories`` are not used, so the engine's
    store must hold the events before the replay starts), and each day's events are ingested through
    :meth:`~lmrec.serving.engine.Engine.ingest`, as live traffic would be. With an ``updater`` (its ``since``
    set to the replay's start), every ``update_every`` days an update runs and the guard decides whether it is
    swapped in; its figures are the day's record.
    """

    def __init__(self, name: str, engine: Engine, request: RecRequest | None = None,
                 updater: BackgroundUpdater | None = None, update_every: int = 0) -> None:
        self.name = name
        self.engine = engine
        self.request = request or RecRequest(unknown="popular")
        self.updater = updater
        self.update_every = update_every
        self._days = 0

    def recommend(self, users: list[str], histories: list[list[str]], k: int) -> list[list[str]]:
        req = replace(self.request, k=k)
        return [[i.item_id for i in self.engine.user_recommendations(u, req).items] for u in users]

    def observe(self, day: int, events: pl.DataFrame, items: pl.DataFrame | None) -> dict[str, Any]:
        cols = [c for c in ("event_id", "user_id", "item_id", "timestamp", "event_type", "value")
                if c in events.columns]
        rows = events.select(cols).to_dicts()
        for start in range(0, len(rows), self.engine.settings.max_batch):
            self.engine.ingest(rows[start:start + self.engine.settings.max_batch])
        if self.updater is None or not self.update_every:
            return {}
        self._days += 1
        if self._days < self.update_every:
            return {}
        self._days = 0
        out = self.updater.run_once()
        if out is None:
            return {"update_skipped": str((self.updater.last or {}).get("skipped", "busy"))}
        return {"update_accepted": out.accepted, "update_version": out.version,
                "update_cpu_seconds": out.figures["update"]["cpu_seconds"]}
