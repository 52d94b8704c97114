"""Event ingestion off the request path: validated in Python, written to the store in batches.

A request is answered once its events are validated, de-duplicated and applied to the in-memory history
overlay (so the next recommendation reflects them); a background thread commits the queued events to the store
every ``flush_ms`` milliseconds in one transaction. One DuckDB transaction per request would cost tens of
milliseconds; one per batch costs about the same for hundreds of events. With ``sync=True`` each request waits
for its commit.

What is acknowledged but not yet committed is lost if the process is killed (a normal shutdown commits it
first); clients that resend on failure lose nothing, since ingestion is idempotent by event id.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import polars as pl

from lmrec.data.cleaning import CleaningConfig, DataError
from lmrec.data.schema import normalise_event_type
from lmrec.store.duckdb_store import Store

log = logging.getLogger("lmrec.serving")

#: Numeric timestamps above this are milliseconds (as the importer decides with timestamp_unit="auto").
_MS_THRESHOLD = 100_000_000_000
_ACCEPTED = CleaningConfig().accepted_event_types


@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: str
    item_id: str
    timestamp: int
    event_type: str
    value: float | None


def _value_text(value: float | None) -> str:
    # The importer derives ids with Polars' float-to-text; use the same so both paths agree on an event's id.
    return "" if value is None else str(pl.Series([value], dtype=pl.Float64).cast(pl.String)[0])


def prepare(events: list[dict[str, Any]], now: int | None = None) -> list[Event]:
    """Validate and normalise request events the way the importer does, without a DataFrame per request.

    Event types are normalised (``addtocart`` → ``cart``) and must be known; timestamps default to now, and
    values above 1e11 are read as milliseconds; an event without an id gets the importer's derived id
    ``user|item|timestamp|type|value``. Raises :class:`~lmrec.data.cleaning.DataError` naming the row and
    field.
    """
    now = int(time.time()) if now is None else now
    out = []
    for row, e in enumerate(events):
        user, item = str(e["user_id"]).strip(), str(e["item_id"]).strip()
        for name, val in (("user_id", user), ("item_id", item)):
            if not val:
                raise DataError("missing id", source="request body", row=row, field=name,
                                expected="a non-empty id")
        etype = normalise_event_type(str(e.get("event_type") or "view"))
        if etype not in _ACCEPTED:
            raise DataError("unknown event type", source="request body", row=row, field="event_type",
                            expected=f"one of {sorted(_ACCEPTED)}", got=etype)
        ts = e.get("timestamp")
        ts = now if ts is None else int(ts)
        if abs(ts) > _MS_THRESHOLD:
            ts //= 1000
        value = e.get("value")
        value = None if value is None else float(value)
        eid = (e.get("event_id") or "").strip() or f"{user}|{item}|{ts}|{etype}|{_value_text(value)}"
        out.append(Event(eid, user, item, ts, etype, value))
    return out


class EventWriter:
    """Queues events and commits them to the store in batches from a background thread.

    Parameters
    ----------
    store:
        Where events are committed (``Store.append_events``: idempotent by event id).
    flush_ms:
        Longest time an acknowledged event waits before its commit starts.
    sync:
        Commit within :meth:`submit` instead (each request waits for its transaction).
    """

    def __init__(self, store: Store, flush_ms: int = 50, sync: bool = False) -> None:
        self.store = store
        self.flush_s = flush_ms / 1000
        self.sync = sync
        self._queue: list[Event] = []
        self._pending: dict[str, Event] = {}  # queued or being committed, by event id
        self._lock = threading.Lock()  # guards the queue and pending
        self.commit_lock = threading.RLock()  # held while a batch is committed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.committed = 0
        self.failures = 0
        self._thread: threading.Thread | None = None
        if not sync:
            self._thread = threading.Thread(target=self._run, name="lmrec-event-writer", daemon=True)
            self._thread.start()

    def pending_ids(self, ids: list[str]) -> set[str]:
        with self._lock:
            return {i for i in ids if i in self._pending}

    def pending_for(self, user_id: str) -> list[Event]:
        """Queued events of one user, oldest first. Call under :attr:`commit_lock` to see a consistent
        state."""
        with self._lock:
            return [e for e in self._pending.values() if e.user_id == user_id]

    def submit(self, events: list[Event]) -> None:
        if not events:
            return
        with self._lock:
            self._queue.extend(events)
            for e in events:
                self._pending[e.event_id] = e
        if self.sync:
            self.flush()
        else:
            self._wake.set()

    def drop_user(self, user_id: str) -> int:
        """Forget a user's queued events (erasure); returns how many. Waits for a commit in progress."""
        with self.commit_lock, self._lock:
            before = len(self._queue)
            self._queue = [e for e in self._queue if e.user_id != user_id]
            for eid in [k for k, e in self._pending.items() if e.user_id == user_id]:
                del self._pending[eid]
            return before - len(self._queue)

    def flush(self) -> int:
        """Commit everything queued now; returns the number of events written."""
        with self.commit_lock:
            with self._lock:
                batch, self._queue = self._queue, []
            if not batch:
                return 0
            df = pl.DataFrame([vars(e) for e in batch], schema={
                "event_id": pl.String, "user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64,
                "event_type": pl.String, "value": pl.Float64})
            try:
                self.store.append_events(df, CleaningConfig(), source="events API")
            except Exception:
                self.failures += 1
                with self._lock:  # keep them for the next attempt
                    self._queue = batch + self._queue
                raise
            with self._lock:
                for e in batch:
                    self._pending.pop(e.event_id, None)
            self.committed += len(batch)
            return len(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.wait(self.flush_s):  # gather a batch
                break
            try:
                self.flush()
            except Exception:
                log.exception("committing events failed; retrying with the next batch")
                time.sleep(min(1.0, self.flush_s * 10))
                self._wake.set()
        self.flush()

    def close(self) -> None:
        """Commit what is queued and stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
