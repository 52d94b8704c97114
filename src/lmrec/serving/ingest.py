"""Event ingestion: validated up front, committed with group commit, acknowledged once stored.

A request's events are validated by the rules every path shares (:mod:`lmrec.data.cleaning`: id length and
characters, timestamp range, finite values, known types), de-duplicated and handed to :class:`EventWriter`.
One background thread commits whatever is queued in one transaction; requests that arrive while a commit runs
share the next one (group commit), so throughput does not depend on one transaction per request. The request
is answered only after its transaction committed: **an acknowledged event is a stored event**.
``flush_ms`` is how long the writer waits to gather a batch once woken: a latency knob, not a durability one.

If a batch fails to commit, every event is retried in a transaction of its own; the events that still fail are
reported to their requests (503 naming their index) and no other event is lost. Ids are "pending" only while
their commit runs, and leave that state whatever the outcome, so a resend is never mistaken for a duplicate
of an event that was not stored.

``ack_before_commit=True`` (``LMREC_INGEST_ACK_BEFORE_COMMIT_MAY_LOSE_EVENTS``) answers before the commit:
faster, and a killed process loses what was acknowledged but not yet committed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lmrec.data.cleaning import (
    ID_RULE,
    ID_WHITESPACE,
    MAX_TIMESTAMP,
    POSITION_RULE,
    TIMESTAMP_RULE,
    CleaningConfig,
    DataError,
    id_problem,
    list_suffix,
    position_problem,
    timestamp_seconds,
    value_problem,
)
from lmrec.data.schema import normalise_event_type
from lmrec.store.audit import AuditEntry, AuditLog
from lmrec.store.duckdb_store import Store

log = logging.getLogger("lmrec.serving")

_ACCEPTED = CleaningConfig().accepted_event_types
_SCHEMA = {"event_id": pl.String, "user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64,
           "event_type": pl.String, "value": pl.Float64, "list_id": pl.String, "position": pl.Int32}


@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: str
    item_id: str
    timestamp: int
    event_type: str
    value: float | None
    list_id: str | None = None  # the list it was shown in or clicked from (a recommendation's list id)
    position: int | None = None  # its place in that list, 0 first


def _value_text(value: float | None) -> str:
    # The importer derives ids with Polars' float-to-text; use the same so both paths agree on an event's id.
    return "" if value is None else str(pl.Series([value], dtype=pl.Float64).cast(pl.String)[0])


def prepare(events: list[dict[str, Any]], now: int | None = None) -> list[Event]:
    """Validate and normalise request events by the importer's rules, without a DataFrame per request.

    Event types are normalised (``addtocart`` → ``cart``) and must be known; timestamps default to now, and
    values above 1e11 are read as milliseconds; an event without an id gets the importer's derived id
    ``user|item|timestamp|type|value`` (``|list|position`` added for an event with a list). ``list_id`` is
    checked as an id, ``position`` as a whole number from 0. Raises :class:`~lmrec.data.cleaning.DataError`
    naming the event index (``row``) and field.
    """
    now = int(time.time()) if now is None else now
    out = []
    for row, e in enumerate(events):
        ids = {}
        for name in ("user_id", "item_id", "event_id", "list_id"):
            raw = e.get(name)
            val = "" if raw is None else str(raw).strip(ID_WHITESPACE)
            ids[name] = val
            if name in ("event_id", "list_id") and not val:
                continue
            problem = id_problem(val)
            if problem:
                raise DataError(problem, source="request body", row=row, field=name, expected=ID_RULE)
        raw_type = e.get("event_type")
        etype = normalise_event_type("view" if raw_type is None else str(raw_type))
        if not etype:
            raise DataError("missing event type", source="request body", row=row, field="event_type",
                            expected=f"one of {sorted(_ACCEPTED)}")
        if etype not in _ACCEPTED:
            raise DataError("unknown event type", source="request body", row=row, field="event_type",
                            expected=f"one of {sorted(_ACCEPTED)}", got=etype[:64])
        raw_ts = e.get("timestamp")
        ts = now if raw_ts is None else timestamp_seconds(raw_ts)
        if ts is None or not 0 <= ts <= MAX_TIMESTAMP:
            raise DataError("timestamp out of range", source="request body", row=row, field="timestamp",
                            expected=TIMESTAMP_RULE)
        value = e.get("value")
        value = None if value is None else float(value)
        problem = value_problem(value)
        if problem:
            raise DataError(problem, source="request body", row=row, field="value",
                            expected="a finite number")
        position = e.get("position")
        if position is not None and (isinstance(position, bool) or not isinstance(position, int)
                                     or position_problem(position)):
            raise DataError("position out of range", source="request body", row=row, field="position",
                            expected=POSITION_RULE)
        user, item, list_id = ids["user_id"], ids["item_id"], ids["list_id"] or None
        eid = ids["event_id"] or (f"{user}|{item}|{ts}|{etype}|{_value_text(value)}"
                                  f"{list_suffix(list_id, position)}")
        out.append(Event(eid, user, item, ts, etype, value, list_id, position))
    return out


@dataclass
class Ticket:
    """One request's events on their way to the store; :meth:`wait` returns once they are committed (or
    failed)."""

    events: list[Event]
    audit: AuditEntry | None = None
    failed: dict[int, str] = field(default_factory=dict)  # position in ``events`` → why it was not stored
    stored: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)


def _frame(events: list[Event]) -> pl.DataFrame:
    return pl.DataFrame([vars(e) for e in events], schema=_SCHEMA)


class EventWriter:
    """Commits queued events (and audit entries) to the store from one background thread, in groups.

    Parameters
    ----------
    store:
        Where events are committed (idempotent by event id).
    flush_ms:
        How long the writer gathers a batch once woken (0: commit at once; requests arriving during a commit
        share the next one anyway).
    ack_before_commit:
        Fire-and-forget: :meth:`submit` callers do not wait (a killed process loses the uncommitted events).
    """

    def __init__(self, store: Store, flush_ms: float = 0, ack_before_commit: bool = False,
                 audit: AuditLog | None = None) -> None:
        self.store = store
        self.flush_s = flush_ms / 1000
        self.ack_before_commit = ack_before_commit
        self.audit = audit
        self._queue: list[Ticket] = []
        self._audit_queue: list[AuditEntry] = []
        self._pending: dict[str, Event] = {}  # queued or being committed, by event id
        self._lock = threading.Lock()  # guards the queues and pending
        self.commit_lock = threading.RLock()  # held while a batch is committed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.committed = 0
        self.failures = 0
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

    def submit(self, events: list[Event], audit: AuditEntry | None = None) -> Ticket:
        """Queue events (and the request's audit entry, committed in the same transaction)."""
        ticket = Ticket(list(events), audit)
        with self._lock:
            self._queue.append(ticket)
            for e in events:
                self._pending[e.event_id] = e
        self._wake.set()
        return ticket

    def record(self, entry: AuditEntry) -> None:
        """Queue an audit entry alone; committed with the next batch."""
        entry.recorded = True
        with self._lock:
            self._audit_queue.append(entry)
        self._wake.set()

    def drop_user(self, user_id: str) -> int:
        """Forget a user's queued events (erasure); returns how many. Waits for a commit in progress."""
        n = 0
        with self.commit_lock, self._lock:
            for t in self._queue:
                keep = [e for e in t.events if e.user_id != user_id]
                n += len(t.events) - len(keep)
                t.events = keep
            for eid in [k for k, e in self._pending.items() if e.user_id == user_id]:
                del self._pending[eid]
        return n

    def _commit(self, events: list[Event], audit: list[AuditEntry], known_new: bool = True) -> int:
        # The engine de-duplicates under its lock against the store and the pending ids, and every event
        # write of this process goes through here, so a batch holds only new ids (known_new); a retry of
        # one event after a failed batch checks the store again.
        def run() -> int:
            n = self.store.insert_prepared_events(_frame(events), known_new=known_new) if events else 0
            if self.audit is not None and audit:
                self.audit.append(audit)
            return n

        return int(self.store.transaction(run))

    def flush(self) -> int:
        """Commit everything queued now; returns the number of events handed to the store."""
        with self.commit_lock:
            with self._lock:
                tickets, self._queue = self._queue, []
                audit, self._audit_queue = self._audit_queue, []
            entries = audit + [t.audit for t in tickets if t.audit is not None]
            events = [e for t in tickets for e in t.events]
            if not events and not entries:
                for t in tickets:  # nothing to store (every event was a duplicate): answer at once
                    t.done.set()
                return 0
            try:
                self._commit(events, entries)
                for t in tickets:
                    t.stored = len(t.events)
            except Exception:
                self.failures += 1
                log.exception("committing %d events failed; retrying each on its own", len(events))
                self._one_by_one(tickets, entries)
            finally:
                with self._lock:  # pending ends whatever happened: a resend is never a false duplicate
                    for e in events:
                        self._pending.pop(e.event_id, None)
                for t in tickets:
                    t.done.set()
            self.committed += sum(t.stored for t in tickets)
            return len(events)

    def _one_by_one(self, tickets: list[Ticket], entries: list[AuditEntry]) -> None:
        for t in tickets:
            for pos, e in enumerate(t.events):
                try:
                    self._commit([e], [], known_new=False)
                    t.stored += 1
                except Exception as exc:  # noqa: BLE001 - reported to the request that sent it
                    t.failed[pos] = f"{type(exc).__name__}: {str(exc)[:200]}"
                    log.error("event %r could not be stored: %s", e.event_id[:80], exc)
        for entry in entries:
            try:
                self._commit([], [entry])
            except Exception:
                log.exception("an audit entry could not be stored")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self.flush_s > 0 and self._stop.wait(self.flush_s):  # gather a batch
                break
            try:
                self.flush()
            except Exception:
                log.exception("the event writer failed; retrying")
                time.sleep(0.05)
                self._wake.set()
        self.flush()

    def close(self) -> None:
        """Commit what is queued and stop the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()
