"""Serving's SQL: API keys (stored hashed), erasure tombstones, and the small lookups the service needs.

An API key reads ``lmrec_<key_id>_<secret>``. Only ``sha256(salt || secret)`` and the salt are stored; the
secret is 32 random bytes, so a fast hash is safe (slow hashes such as scrypt protect low-entropy passwords,
and would cost tens of milliseconds on every request). Verification compares digests in constant time.

An erased user leaves no row with their id: the tombstone that keeps a trained model from serving their
training history again holds only ``HMAC(erasure secret, id)`` (:mod:`lmrec.privacy`). The secret is never
in the store, so the store alone does not let anyone test candidate ids against its tombstones. Stores
written before keyed tombstones kept a salt in ``meta``; their old tombstones are still honoured, new ones
are keyed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lmrec.data.schema import IMPRESSION
from lmrec.privacy import erasure_secret, keyed_hash
from lmrec.store.duckdb_store import Store
from lmrec.store.embeddings import EmbeddingTable

#: Scopes a key can hold. ``admin`` implies ``write``, which implies ``read``.
SCOPES: tuple[str, ...] = ("read", "write", "admin")
_IMPLIED = {"read": {"read"}, "write": {"read", "write"}, "admin": {"read", "write", "admin"}}
KEY_PREFIX = "lmrec"

_DDL = [
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, scopes VARCHAR[] NOT NULL, salt VARCHAR NOT NULL,
        digest VARCHAR NOT NULL, created_at TIMESTAMP DEFAULT current_timestamp, revoked_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS erased_users (
        user_hash VARCHAR PRIMARY KEY, erased_at TIMESTAMP DEFAULT current_timestamp)""",
]


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime | None
    revoked_at: datetime | None
    rate_limit: float | None = None  # requests per second; None: the service's default

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Whether this key grants ``scope`` (``admin`` grants everything, ``write`` also grants ``read``)."""
        return self.active and any(scope in _IMPLIED[s] for s in self.scopes if s in _IMPLIED)


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, ``None`` otherwise."""
    parts = key.strip().split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class KeyStore:
    """API keys and erasure tombstones in an lmrec :class:`~lmrec.store.Store`.

    Parameters
    ----------
    store:
        An open, writable store; the tables are created when missing.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        for ddl in _DDL:
            store.execute(ddl)
        store.execute("ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS rate_limit DOUBLE")
        store.execute("ALTER TABLE erased_users ADD COLUMN IF NOT EXISTS keyed BOOLEAN DEFAULT false")
        legacy = store.get_meta("erasure_salt")  # stores from before keyed tombstones
        self._legacy_salt = None if legacy is None else str(legacy)

    # ------------------------------------------------------------------ keys
    def create(self, name: str, scopes: list[str] | tuple[str, ...],
               rate_limit: float | None = None) -> tuple[str, ApiKey]:
        """Create a key; returns ``(the full key, shown only now, its record)``. ``rate_limit``: requests per
        second this key may send (``None``: the service's default)."""
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise ValueError(f"scopes must be a non-empty subset of {list(SCOPES)}, got {list(scopes)}")
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"a rate limit must be a positive number of requests per second, "
                             f"got {rate_limit}")
        key_id, salt = secrets.token_hex(6), secrets.token_hex(16)
        secret = secrets.token_urlsafe(32).replace("_", "-")  # "_" separates the parts of a key
        self.store.execute(
            "INSERT INTO api_keys (key_id, name, scopes, salt, digest, rate_limit) VALUES (?, ?, ?, ?, ?, ?)",
            [key_id, name, list(dict.fromkeys(scopes)), salt, _digest(salt, secret), rate_limit])
        record = self.get(key_id)
        assert record is not None
        self.store.notify("keys")
        return f"{KEY_PREFIX}_{key_id}_{secret}", record

    def get(self, key_id: str) -> ApiKey | None:
        rows = self.store.execute(
            "SELECT key_id, name, scopes, created_at, revoked_at, rate_limit FROM api_keys WHERE key_id = ?",
            [key_id])
        return ApiKey(rows[0][0], rows[0][1], tuple(rows[0][2]), rows[0][3], rows[0][4], rows[0][5]) \
            if rows else None

    def list(self) -> list[ApiKey]:
        rows = self.store.execute(
            "SELECT key_id, name, scopes, created_at, revoked_at, rate_limit FROM api_keys "
            "ORDER BY created_at, key_id")
        return [ApiKey(r[0], r[1], tuple(r[2]), r[3], r[4], r[5]) for r in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; ``False`` when no active key has this id."""
        rows = self.store.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = ? AND revoked_at IS NULL RETURNING key_id",
            [key_id])
        if rows:
            self.store.notify("keys")  # replicas drop their cached verifications now, not in a few seconds
        return bool(rows)

    def verify(self, key: str) -> ApiKey | None:
        """The active key record for a presented key, or ``None`` (malformed, unknown, revoked or wrong
        secret)."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        key_id, secret = parsed
        rows = self.store.execute(
            "SELECT salt, digest, name, scopes, created_at, revoked_at, rate_limit FROM api_keys "
            "WHERE key_id = ?", [key_id])
        if not rows:
            return None
        salt, digest, name, scopes, created, revoked, rate = rows[0]
        if revoked is not None or not hmac.compare_digest(_digest(salt, secret), digest):
            return None
        return ApiKey(key_id, name, tuple(scopes), created, revoked, rate)

    # ------------------------------------------------------------------ erasure tombstones
    @staticmethod
    def _user_hash(user_id: str) -> str:
        return keyed_hash(erasure_secret(), str(user_id), "tombstone")

    def _hashes(self, user_id: str) -> list[str]:
        found = [self._user_hash(user_id)]
        if self._legacy_salt is not None:
            found.append(hashlib.sha256(f"{self._legacy_salt}:{user_id}".encode()).hexdigest())
        return found

    def erase_user(self, user_id: str) -> dict[str, int]:
        """Erase a user from the store: events and profile row (one transaction), the cached vector of their
        profile text, and a keyed tombstone. Returns the rows removed per table (``events``, ``users``) and
        ``vectors``. The file still holds the deleted bytes until :meth:`Store.compact`."""
        _, profile = user_profile(self.store, user_id)
        removed = self.store.delete_user(user_id)
        self.mark_erased(user_id)
        removed["vectors"] = EmbeddingTable(self.store).forget_texts([profile]) if profile else 0
        return removed

    def mark_erased(self, user_id: str) -> None:
        self.store.execute("INSERT OR IGNORE INTO erased_users (user_hash, keyed) VALUES (?, true)",
                           [self._user_hash(user_id)])

    def is_erased(self, user_id: str, via: ReadCursor | None = None) -> bool:
        """Whether the user has a tombstone (read through ``via``, a second connection, when given)."""
        hashes = self._hashes(user_id)
        marks = ", ".join("?" * len(hashes))
        return bool((via or self.store).execute(f"SELECT 1 FROM erased_users WHERE user_hash IN ({marks})",
                                                hashes))


class ReadCursor:
    """A second connection to a store's database file, for the service's point reads.

    DuckDB runs readers concurrently with a writer (MVCC), but a :class:`Store` serialises every statement on
    its one connection; reads through this cursor do not wait for a batch of events being committed. An
    in-memory store has no file to share, so reads then go through the store itself.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._con: Any = None
        self._lock = threading.Lock()
        self.reopen()

    def reopen(self) -> None:
        """(Re)connect to the store's file, e.g. after :meth:`Store.compact`."""
        import duckdb

        with self._lock:
            if self._con is None and self.store.path != ":memory:":
                try:
                    self._con = self.store.cursor()  # the same database instance, its own connection
                except duckdb.Error:
                    self._con = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Read through the store itself while the block runs (:meth:`Store.compact` needs every other
        connection closed), then reconnect."""
        self.close()
        try:
            yield
        finally:
            self.reopen()

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        if self._con is None:
            return self.store.execute(sql, params)
        with self._lock:
            return self._con.execute(sql, params or []).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def existing_event_ids(store: Store | ReadCursor, event_ids: list[str]) -> set[str]:
    """Which of these event ids the store already holds (primary-key lookups, in chunks of 500)."""
    found: set[str] = set()
    ids = list(dict.fromkeys(event_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = store.execute(f"SELECT event_id FROM events WHERE event_id IN ({marks})", chunk)
        found.update(r[0] for r in rows)
    return found


def user_events(store: Store | ReadCursor, user_id: str, limit: int) -> list[tuple[str, str]]:
    """A user's newest ``limit`` interactions as ``(item_id, event_type)``, oldest first (ties in insertion
    order); impressions are not history and are left out."""
    rows = store.execute(
        "SELECT item_id, event_type FROM events WHERE user_id = ? AND event_type <> ? "
        "ORDER BY timestamp DESC, rowid DESC LIMIT ?",
        [str(user_id), IMPRESSION, int(limit)])
    return [(r[0], r[1]) for r in reversed(rows)]


def recent_histories(store: Store, max_users: int, per_user: int) -> dict[str, list[tuple[str, str]]]:
    """The newest ``per_user`` interactions ``(item_id, event_type)``, oldest first, of the ``max_users`` most
    recently active users, in one scan: the service loads them at start, so first requests need no query.
    Impressions are not history and are left out."""
    rows = store.execute(
        """WITH active AS (
               SELECT user_id FROM events WHERE event_type <> ?
               GROUP BY user_id ORDER BY max(timestamp) DESC LIMIT ?),
           ranked AS (
               SELECT e.user_id, e.item_id, e.event_type, e.timestamp, e.rowid AS rid,
                      row_number() OVER (PARTITION BY e.user_id ORDER BY e.timestamp DESC, e.rowid DESC) AS r
               FROM events e JOIN active USING (user_id) WHERE e.event_type <> ?)
           SELECT user_id, item_id, event_type FROM ranked WHERE r <= ?
           ORDER BY user_id, timestamp, rid""",
        [IMPRESSION, int(max_users), IMPRESSION, int(per_user)])
    out: dict[str, list[tuple[str, str]]] = {}
    for user, item, etype in rows:
        out.setdefault(user, []).append((item, etype))
    return out


def user_profile(store: Store | ReadCursor, user_id: str) -> tuple[bool, str | None]:
    """``(has a users row, profile text)`` for one user."""
    rows = store.execute("SELECT profile FROM users WHERE user_id = ?", [str(user_id)])
    return (True, rows[0][0]) if rows else (False, None)


def user_row_counts(store: Store, user_id: str) -> dict[str, int]:
    """Rows that name this user, per table (erasure checks: all zero afterwards)."""
    return {t: int(store.execute(f"SELECT count(*) FROM {t} WHERE user_id = ?", [str(user_id)])[0][0])
            for t in ("events", "users")}


def user_timeline(store: Store | ReadCursor, user_id: str, limit: int) -> list[dict[str, Any]]:
    """A user's newest ``limit`` events, newest first, with the item's title: ``timestamp, event_type,
    item_id, title, value`` (the dashboard's timeline)."""
    rows = store.execute(
        "SELECT e.timestamp, e.event_type, e.item_id, i.title, e.value FROM events e "
        "LEFT JOIN items i USING (item_id) WHERE e.user_id = ? "
        "ORDER BY e.timestamp DESC, e.rowid DESC LIMIT ?",
        [str(user_id), int(limit)])
    return [dict(zip(("timestamp", "event_type", "item_id", "title", "value"), r, strict=True)) for r in rows]


def event_activity(store: Store | ReadCursor, since: int, bucket_s: int) -> list[tuple[int, str, int]]:
    """Events per time bucket and type since ``since`` (event time, epoch seconds): ``(bucket start, type,
    count)``, oldest first."""
    rows = store.execute(
        "SELECT (timestamp // ?) * ? AS b, event_type, count(*) FROM events WHERE timestamp >= ? "
        "GROUP BY ALL ORDER BY b, event_type", [int(bucket_s), int(bucket_s), int(since)])
    return [(int(b), str(t), int(n)) for b, t, n in rows]
