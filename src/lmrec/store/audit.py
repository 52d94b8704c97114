"""The audit log: one append-only row per write or admin call (who, what, on what, with what result).

A row holds the time, the key id (never the secret), the method and route, the target (a user, item, model
version or key id), the HTTP status, how many records the call carried and the request id. Rows are only ever
inserted: nothing in lmrec updates or deletes them, and backups carry them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from lmrec.store.duckdb_store import Store

DDL = """CREATE TABLE IF NOT EXISTS audit_log (
    logged_at TIMESTAMP NOT NULL, key_id VARCHAR, method VARCHAR NOT NULL, route VARCHAR NOT NULL,
    target VARCHAR,
    status INTEGER NOT NULL, count BIGINT, request_id VARCHAR)"""

_COLUMNS = ("logged_at", "key_id", "method", "route", "target", "status", "count", "request_id")


@dataclass
class AuditEntry:
    """One audited call; ``recorded`` is set once it is in the store (or queued to be)."""

    method: str
    route: str
    key_id: str | None = None
    target: str | None = None
    status: int = 0
    count: int | None = None
    request_id: str | None = None
    logged_at: datetime = field(default_factory=datetime.now)
    recorded: bool = False

    def row(self) -> list[Any]:
        return [self.logged_at, self.key_id, self.method, self.route, self.target, self.status, self.count,
                self.request_id]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("recorded")
        return d


class AuditLog:
    """Appends and queries the ``audit_log`` table of a store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.execute(DDL)

    def append(self, entries: list[AuditEntry]) -> None:
        """Insert entries (inside the caller's transaction when there is one: the store's lock is
        re-entrant)."""
        if not entries:
            return
        marks = ", ".join("?" * len(_COLUMNS))
        values = ", ".join(f"({marks})" for _ in entries)
        params = [v for e in entries for v in e.row()]
        self.store.execute(f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) VALUES {values}", params)

    def query(self, *, key_id: str | None = None, route: str | None = None, target: str | None = None,
              since: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Entries, newest first, filtered by key id, route (substring), target and time."""
        where, params = [], []  # type: ignore[var-annotated]
        if key_id:
            where.append("key_id = ?")
            params.append(key_id)
        if route:
            where.append("strpos(route, ?) > 0")
            params.append(route)
        if target:
            where.append("target = ?")
            params.append(target)
        if since is not None:
            where.append("logged_at >= ?")
            params.append(since)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY logged_at DESC, rowid DESC LIMIT {int(limit)}"
        return [dict(zip(_COLUMNS, r, strict=True)) for r in self.store.execute(sql, params)]

    def per_hour(self, since: datetime) -> list[dict[str, Any]]:
        """Calls per hour, method and route since ``since``, with the records they carried (events ingested,
        items upserted) and how many failed: the dashboard's ingestion and update activity."""
        rows = self.store.execute(
            "SELECT date_trunc('hour', logged_at) AS hour, method, route, count(*) AS calls, "
            "coalesce(sum(count) FILTER (WHERE status < 400), 0) AS records, "
            "count(*) FILTER (WHERE status >= 400) AS failed FROM audit_log WHERE logged_at >= ? "
            "GROUP BY ALL ORDER BY hour, route, method", [since])
        return [dict(zip(("hour", "method", "route", "calls", "records", "failed"), r, strict=True))
                for r in rows]
