"""The same store on a PostgreSQL server, for several service replicas (``--store postgresql://…``).

:class:`PostgresStore` is a :class:`~lmrec.store.duckdb_store.Store`: it keeps the store's interface (and its
backend-neutral logic: cleaning, dataset naming, import bookkeeping) and replaces what speaks SQL. The rest of
lmrec's SQL (API keys, tombstones, audit log, embedding cache) is written once; a small translation turns the
few DuckDB spellings it uses into PostgreSQL's (``?`` placeholders, ``DOUBLE``, ``BLOB``,
``INSERT OR IGNORE``, ``rowid``), so no module keeps two copies of a query.

Differences from the DuckDB store:

* **Idempotent events by a real unique index.** ``events.event_id`` is the primary key; every write is
  ``INSERT … ON CONFLICT (event_id) DO NOTHING``, so two replicas writing the same id store it once.
* **Imports stream with COPY** into a temporary table per chunk, then one insert moves the new rows; the whole
  import is one transaction, as with DuckDB.
* **Insertion order** is an identity column ``rid`` on ``events`` and ``audit_log`` (DuckDB's ``rowid``).
* **Change notices.** Every commit that stores events sends ``NOTIFY lmrec`` with the users it touched (and
  erasures, model activations, key changes send theirs), so replicas can drop what they cached.
* **Not applicable:** store-file encryption (``LMREC_STORE_KEY``) encrypts DuckDB files; a PostgreSQL store is
  protected by the server (TLS, disk encryption), and opening one with a store key set is a
  :class:`~lmrec.store.duckdb_store.StoreKeyError`. Backups are ``pg_dump``'s job (:func:`lmrec.store.backup`
  refuses a PostgreSQL store), and :meth:`compact` is ``VACUUM FULL`` of the tables that held user data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
import threading
import zlib
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from lmrec.data.dataset import conform
from lmrec.data.schema import EVENTS_SCHEMA, IMPRESSION, ITEMS_SCHEMA, USERS_SCHEMA
from lmrec.privacy import store_key
from lmrec.store.duckdb_store import SCHEMA_VERSION, Store, StoreKeyError, event_batch

#: URL schemes that name a PostgreSQL store.
SCHEMES = ("postgresql://", "postgres://")
#: The channel replicas listen on (:meth:`PostgresStore.notify`).
CHANNEL = "lmrec"
#: Event batches up to this many rows are inserted as one statement over arrays; larger ones are COPYed.
_ARRAY_ROWS = 2_000
#: Schema statements run one at a time across processes under this advisory lock: PostgreSQL's
#: ``CREATE TABLE IF NOT EXISTS`` is not safe against the same statement in a concurrent session (replicas
#: starting together: "duplicate key value violates unique constraint pg_type_typname_nsp_index").
_DDL_LOCK = 727001
#: First key of the advisory locks that let one process at a time run a job (:meth:`PostgresStore.exclusive`).
_JOB_LOCKS = 727002
_DDL_STATEMENT = re.compile(r"\s*(CREATE|ALTER)\s", re.IGNORECASE)
#: The largest NOTIFY payload PostgreSQL accepts is 8000 bytes; larger notices are split.
_MAX_PAYLOAD = 7000

_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE IF NOT EXISTS events (
        rid BIGINT GENERATED ALWAYS AS IDENTITY, event_id TEXT NOT NULL PRIMARY KEY, user_id TEXT NOT NULL,
        item_id TEXT NOT NULL, timestamp BIGINT NOT NULL, event_type TEXT NOT NULL,
        value DOUBLE PRECISION, list_id TEXT, position INTEGER)""",
    # schema 2 (impressions): a store created before gains the list columns, empty
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS list_id TEXT",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS position INTEGER",
    "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, timestamp, rid)",
    "CREATE INDEX IF NOT EXISTS events_rid ON events (rid)",
    """CREATE TABLE IF NOT EXISTS items (
        item_id TEXT PRIMARY KEY, title TEXT, description TEXT, categories TEXT[], attributes TEXT,
        updated_at TIMESTAMP DEFAULT current_timestamp, seq BIGINT)""",
    """CREATE TABLE IF NOT EXISTS users (
        user_id TEXT PRIMARY KEY, profile TEXT, attributes TEXT,
        updated_at TIMESTAMP DEFAULT current_timestamp, seq BIGINT)""",
    # created here rather than by lmrec.store.audit, so that the log has its insertion order column
    """CREATE TABLE IF NOT EXISTS audit_log (
        rid BIGINT GENERATED ALWAYS AS IDENTITY, logged_at TIMESTAMP NOT NULL, key_id TEXT,
        method TEXT NOT NULL, route TEXT NOT NULL, target TEXT, status INTEGER NOT NULL, count BIGINT,
        request_id TEXT)""",
    # a shared token bucket per API key, so that a key's rate holds across replicas
    """CREATE TABLE IF NOT EXISTS rate_buckets (
        key_id TEXT PRIMARY KEY, tokens DOUBLE PRECISION NOT NULL, at TIMESTAMPTZ NOT NULL,
        granted BOOLEAN NOT NULL)""",
]
_ARROW_TO_PG = {
    pa.string(): "TEXT", pa.large_string(): "TEXT", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE PRECISION", pa.float32(): "REAL", pa.binary(): "BYTEA", pa.large_binary(): "BYTEA",
    pa.bool_(): "BOOLEAN", pa.list_(pa.string()): "TEXT[]", pa.large_list(pa.string()): "TEXT[]",
}
#: PostgreSQL type OIDs → Arrow types of query results (anything else is inferred from the values).
_OID_TO_ARROW = {
    25: pa.string(), 1043: pa.string(), 19: pa.string(), 20: pa.int64(), 23: pa.int32(), 21: pa.int16(),
    701: pa.float64(), 700: pa.float32(), 17: pa.binary(), 16: pa.bool_(), 1009: pa.list_(pa.string()),
    1015: pa.list_(pa.string()), 1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
}


def _is_text(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ)


def is_postgres_url(path: object) -> bool:
    return str(path).startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL without its password (for messages and ``repr``)."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


@lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """The PostgreSQL spelling of a statement written for DuckDB: ``?`` → ``%s`` (a literal ``%`` doubled),
    ``DOUBLE`` → ``DOUBLE PRECISION``, ``BLOB`` → ``BYTEA``, ``INSERT OR IGNORE`` → ``… ON CONFLICT DO
    NOTHING``, ``rowid`` → ``rid``. Statements must not hold a ``?`` inside a string literal."""
    out = sql.replace("%", "%%").replace("?", "%s")
    out = re.sub(r"\bDOUBLE\b(?!\s+PRECISION)", "DOUBLE PRECISION", out, flags=re.IGNORECASE)
    out = re.sub(r"\bBLOB\b", "BYTEA", out, flags=re.IGNORECASE)
    out = re.sub(r"\browid\b", "rid", out)
    if re.match(r"\s*INSERT\s+OR\s+IGNORE\s+INTO\b", out, flags=re.IGNORECASE):
        out = re.sub(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", "INSERT INTO", out, flags=re.IGNORECASE)
        out = out.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return out


def _to_arrow(cur: Any) -> pa.Table:
    """The rows of an executed psycopg cursor as an Arrow table, typed by the result's column types."""
    desc = cur.description
    rows = cur.fetchall()
    names = [d.name for d in desc]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for d, values in zip(desc, columns, strict=True):
        typ = _OID_TO_ARROW.get(d.type_code)
        values = list(values)
        if d.type_code == 1700:  # numeric (sums): as float
            values = [None if v is None else float(v) for v in values]
            typ = pa.float64()
        if d.type_code == 1184:
            values = [None if v is None else v.astimezone(dt.UTC) for v in values]
        arrays.append(pa.array(values, type=typ if typ is not None or values else pa.null()))
    return pa.table(dict(zip(names, arrays, strict=True))) if names else pa.table({})


class _Result:
    """DuckDB's ``execute(...).fetchall()`` shape over a psycopg cursor: a statement without a result set
    returns one row with the number of rows it changed, as DuckDB's do."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


class PgConnection:
    """One psycopg connection that takes lmrec's (DuckDB-spelled) SQL: ``execute(sql, params).fetchall()``.

    Used as the store's own connection and as the second connections of :meth:`PostgresStore.cursor`.
    """

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql: str, params: list[Any] | tuple[Any, ...] | None = None) -> _Result:
        with self.conn.cursor() as cur:
            ddl = _DDL_STATEMENT.match(sql) is not None
            if ddl:  # CREATE ... IF NOT EXISTS races a twin from another replica starting at the same time
                cur.execute("SELECT pg_advisory_lock(%s)", [_DDL_LOCK])
            try:
                cur.execute(translate(sql), list(params or ()))  # always a list: "%%" is unescaped then
                if cur.description is None:
                    return _Result([(cur.rowcount,)])
                return _Result(cur.fetchall())
            finally:
                if ddl:
                    with contextlib.suppress(Exception):  # an aborted transaction: the session keeps it
                        cur.execute("SELECT pg_advisory_unlock(%s)", [_DDL_LOCK])

    def arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        with self.conn.cursor() as cur:
            cur.execute(translate(sql), list(params or ()))  # always a list: "%%" is unescaped then
            return _to_arrow(cur)

    def cursor(self) -> PgConnection:
        return PgConnection(self.url)

    def close(self) -> None:
        self.conn.close()


class PostgresStore(Store):
    """An lmrec store in a PostgreSQL database, named by a ``postgresql://`` URL.

    ``Store("postgresql://…")`` and :func:`lmrec.store.connect` return one. Every process (each ``lmrec
    serve`` replica, the CLI) may open the same database at once; PostgreSQL orders their writes.

    Parameters
    ----------
    url:
        A libpq connection URL (``postgresql://user@host:port/db``; ``?host=/socket/dir`` for a Unix socket).
    read_only:
        Open a session that refuses writes (``default_transaction_read_only``).
    memory_limit:
        Ignored (the server's settings apply); accepted for the interface.
    """

    backend = "postgresql"

    def __init__(self, url: str | Path = "", *, read_only: bool = False,
                 memory_limit: str | None = None) -> None:
        url = str(url)
        if not is_postgres_url(url):
            raise ValueError(f"not a PostgreSQL URL: {url!r} (postgresql://user@host:port/database)")
        if store_key() is not None:
            raise StoreKeyError(
                "store encryption (LMREC_STORE_KEY / LMREC_STORE_KEY_FILE) encrypts DuckDB store files and "
                "does not apply to a PostgreSQL store: protect the server with its own means (TLS, disk "
                "encryption) and unset the store key for this store")
        self.path = url
        self.url = url
        self.snapshot_of = None
        self._tmpdir = None
        self.read_only = read_only
        self._memory_limit = None
        self.encrypted = False
        self._lock = threading.RLock()
        self._in_tx = False
        self._con = PgConnection(url)
        self._event_select = ", ".join(EVENTS_SCHEMA.names)  # what the inherited reads select
        if read_only:
            self._con.execute("SET default_transaction_read_only = on")
            return
        with self._lock:
            # one DDL run at a time across processes (replicas starting together)
            self._con.execute("SELECT pg_advisory_lock(?)", [_DDL_LOCK])
            try:
                for ddl in _DDL:
                    self._con.execute(ddl)
                self._con.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                                  [str(SCHEMA_VERSION)])
            finally:
                self._con.execute("SELECT pg_advisory_unlock(?)", [_DDL_LOCK])

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        with self._lock:
            self._con.close()

    def cursor(self) -> PgConnection:
        """A second connection to the same database."""
        return self._con.cursor()

    def compact(self) -> dict[str, int]:
        """``VACUUM FULL`` of the tables that hold user data, so that erased rows leave no bytes behind in
        their files (PostgreSQL rewrites each table). Returns their total size before and after, in bytes."""
        if self.read_only:
            raise PermissionError("this store is open read-only; it cannot be compacted")
        tables = [t for t in ("events", "users", "embeddings", "erased_users", "rate_buckets")
                  if self._has_table(t)]

        def size() -> int:
            return sum(int(self.execute("SELECT pg_total_relation_size(?::regclass)", [t])[0][0])
                       for t in tables)

        with self._lock:
            before = size()
            for t in tables:
                self._con.execute(f"VACUUM FULL {t}")
            return {"bytes_before": before, "bytes_after": size()}

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this process may run the job ``name`` now, alone among every process on this database: a
        session-level advisory lock (``pg_try_advisory_lock``) on a connection of its own, held until the
        block ends (then unlocked). The server also releases it when that connection closes, so a killed
        process never leaves it taken."""
        con = self._con.cursor()
        key = zlib.crc32(name.encode()) - 2**31  # two int4 keys: a space apart from _DDL_LOCK's bigint
        got = False
        try:
            got = bool(con.execute("SELECT pg_try_advisory_lock(?, ?)", [_JOB_LOCKS, key]).fetchall()[0][0])
            yield got
        finally:
            try:
                if got:  # released now, not when the server notices the closed connection
                    con.execute("SELECT pg_advisory_unlock(?, ?)", [_JOB_LOCKS, key])
            finally:
                con.close()

    def set_threads(self, n: int) -> None:
        """DuckDB's per-process query threads have no PostgreSQL counterpart (the server plans its own
        parallelism): nothing to set."""

    def _has_table(self, table: str) -> bool:
        return bool(self.execute("SELECT 1 FROM information_schema.tables WHERE table_name = ? "
                                 "AND table_schema = current_schema()", [table]))

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    def query_arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        with self._lock:
            return self._con.arrow(sql, params)

    def query(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        return pl.from_arrow(self.query_arrow(sql, params))  # type: ignore[return-value]

    def transaction(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` inside one transaction: committed if it returns, rolled back if it raises (Ctrl-C
        too). A transaction inside a transaction joins the outer one."""
        with self._lock:
            if self._in_tx:
                return fn()
            self._con.execute("BEGIN")
            self._in_tx = True
            try:
                out = fn()
            except BaseException:
                self._in_tx = False
                with contextlib.suppress(Exception):
                    self._con.execute("ROLLBACK")
                raise
            self._in_tx = False
            self._con.execute("COMMIT")
            return out

    def _register(self, name: str, table: pa.Table | pl.DataFrame) -> None:
        """Copy a table into a temporary table ``name`` (DuckDB registers it as a view instead)."""
        arrow = table.to_arrow() if isinstance(table, pl.DataFrame) else table
        self._unregister(name)
        cols = []
        for f in arrow.schema:
            typ = _ARROW_TO_PG.get(f.type)
            if typ is None and pa.types.is_timestamp(f.type):
                typ = "TIMESTAMP"
            if typ is None and _is_text(f.type):
                typ = "TEXT"
            if typ is None and (pa.types.is_list(f.type) or pa.types.is_large_list(f.type)
                                or pa.types.is_list_view(f.type)) and _is_text(f.type.value_type):
                typ = "TEXT[]"
            if typ is None:
                raise TypeError(f"no PostgreSQL column type for {f.name}: {f.type}")
            cols.append(f'"{f.name}" {typ}')
        self._con.execute(f"CREATE TEMP TABLE {name} ({', '.join(cols)})")
        self._copy(name, arrow)

    def _copy(self, name: str, arrow: pa.Table) -> None:
        names = ", ".join(f'"{c}"' for c in arrow.column_names)
        with self._con.conn.cursor() as cur, cur.copy(f"COPY {name} ({names}) FROM STDIN") as cp:
            for batch in arrow.to_batches(max_chunksize=50_000):
                for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                    cp.write_row(row)

    def _unregister(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self._con.execute(f"DROP TABLE IF EXISTS {name}")

    # ------------------------------------------------------------------ notices (replicas)
    def notify(self, kind: str, **fields: Any) -> None:
        """Tell every process listening on :data:`CHANNEL` what changed (sent when the current transaction
        commits, at once outside one). Long lists of ``ids`` are split over several notices."""
        ids = list(fields.pop("ids", []) or [])
        parts: list[list[str]] = [[]]
        size = 0
        for i in ids:
            if size + len(i) + 4 > _MAX_PAYLOAD and parts[-1]:
                parts.append([])
                size = 0
            parts[-1].append(i)
            size += len(i) + 4
        for part in parts:
            payload = json.dumps({"kind": kind, **fields, **({"ids": part} if ids else {})})
            self.execute("SELECT pg_notify(?, ?)", [CHANNEL, payload])

    def listen(self) -> Iterator[dict[str, Any] | None]:
        """Notices on :data:`CHANNEL` from every process, on a connection of its own; yields ``None`` about
        every second when nothing came (so the caller can check whether to stop)."""
        import psycopg

        conn = psycopg.connect(self.url, autocommit=True)
        try:
            conn.execute(f"LISTEN {CHANNEL}")
            while True:
                got = False
                for n in conn.notifies(timeout=1.0):
                    got = True
                    try:
                        yield json.loads(n.payload)
                    except ValueError:
                        continue
                if not got:
                    yield None
        finally:
            conn.close()

    def take_token(self, key_id: str, rate: float, capacity: float) -> float:
        """Spend one token of a key's shared bucket (``rate`` per second, at most ``capacity``): 0.0 when
        granted, else the seconds until a token is free. One statement; the bucket row is locked for its
        duration, so replicas never both spend the last token."""
        refill = "least(?::float8, b.tokens + extract(epoch FROM clock_timestamp() - b.at) * ?::float8)"
        rows = self.execute(
            "INSERT INTO rate_buckets AS b (key_id, tokens, at, granted) VALUES (?, ?::float8 - 1, "
            "clock_timestamp(), true) ON CONFLICT (key_id) DO UPDATE SET "
            f"tokens = {refill} - CASE WHEN {refill} >= 1 THEN 1 ELSE 0 END, "
            f"granted = {refill} >= 1, at = clock_timestamp() RETURNING tokens, granted",
            [key_id, float(capacity), capacity, rate, capacity, rate, capacity, rate])
        tokens, granted = float(rows[0][0]), bool(rows[0][1])
        return 0.0 if granted else (1.0 - tokens) / rate

    # ------------------------------------------------------------------ writes
    def _insert_events(self, events: pl.DataFrame) -> int:
        """Insert the rows whose id is new (the unique index decides, also against other processes'
        concurrent writes), in input order. A large batch (an import's chunk) is COPYed into a temporary table
        first; a small one (the service's group commit) goes as one statement over arrays. Caller holds the
        lock."""
        if events.height == 0:
            return 0
        batch = event_batch(events)
        cols = ", ".join(EVENTS_SCHEMA.names)
        with self._lock:
            if batch.num_rows <= _ARRAY_ROWS:
                types = ("text", "text", "text", "bigint", "text", "float8", "text", "int4")
                assert len(types) == len(EVENTS_SCHEMA.names)
                arrays = ", ".join(f"%s::{t}[]" for t in types)
                rows = self._con.conn.execute(
                    f"INSERT INTO events ({cols}) SELECT {cols} FROM unnest({arrays}) WITH ORDINALITY "
                    f"AS b({cols}, _pos) ORDER BY _pos ON CONFLICT (event_id) DO NOTHING RETURNING user_id",
                    [c.to_pylist() for c in batch.columns]).fetchall()
            else:
                batch = batch.append_column("_pos", pa.array(np.arange(batch.num_rows, dtype=np.int64)))
                self._register("_lmrec_batch", batch)
                try:
                    rows = self._con.conn.execute(
                        f"INSERT INTO events ({cols}) SELECT {cols} FROM _lmrec_batch ORDER BY _pos "
                        "ON CONFLICT (event_id) DO NOTHING RETURNING user_id").fetchall()
                finally:
                    self._unregister("_lmrec_batch")
            users = list(dict.fromkeys(r[0] for r in rows))
            if users:
                self.notify("events", ids=users)
        return len(rows)

    def insert_prepared_events(self, events: pl.DataFrame, known_new: bool = False) -> int:
        """Insert validated events; ids already stored (by any process) are skipped by the unique index, so
        ``known_new`` changes nothing here. Call inside :meth:`transaction`."""
        return self._insert_events(events)

    def _upsert(self, table: str, key: str, df: pl.DataFrame, schema: pa.Schema) -> int:
        if df.height == 0:
            return 0
        data = conform(df, schema, table).select(list(schema.names)).unique(key, keep="last",
                                                                            maintain_order=True)
        arrow = data.to_arrow().cast(schema)
        with self._lock:
            self._register("_lmrec_upsert",
                           arrow.append_column("_pos", pa.array(np.arange(arrow.num_rows, dtype=np.int64))))
            try:
                cols = ", ".join(schema.names)
                updates = ", ".join(f"{c} = excluded.{c}" for c in schema.names if c != key)
                if self._in_tx:  # replicas upserting at once must not hand out the same seq
                    self._con.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
                self._con.execute(
                    f"INSERT INTO {table} ({cols}, seq) SELECT {cols}, "
                    f"_pos + (SELECT coalesce(max(seq), -1) + 1 FROM {table}) FROM _lmrec_upsert "
                    "ORDER BY _pos "
                    f"ON CONFLICT ({key}) DO UPDATE SET {updates}, updated_at = now()")
            finally:
                self._unregister("_lmrec_upsert")
        return data.height

    def rekey_users(self, new_id: Callable[[str], str], marker: str) -> int:
        """Replace every user id by ``new_id(id)`` in one transaction (a pseudonym rotation), then
        :meth:`compact`. A store that already carries ``marker`` is left alone."""
        done = self.get_meta("pseudonym_rotations") or []
        if marker in done:
            return 0

        def run() -> int:
            ids = [r[0] for r in self.execute("SELECT user_id FROM events UNION SELECT user_id FROM users")]
            mapping = pa.table({"old": pa.array(ids, pa.string()),
                                "new": pa.array([new_id(u) for u in ids], pa.string())})
            self._register("_lmrec_rekey", mapping)
            try:
                for table in ("events", "users"):
                    self.execute(f"UPDATE {table} SET user_id = m.new FROM _lmrec_rekey m "
                                 f"WHERE {table}.user_id = m.old")
            finally:
                self._unregister("_lmrec_rekey")
            self.set_meta("pseudonym_rotations", [*done, marker])
            return len(ids)

        n = int(self.transaction(run))
        self.compact()
        return n

    def delete_user(self, user_id: str) -> dict[str, int]:
        out = super().delete_user(user_id)
        self.notify("erase", ids=[str(user_id)])
        return out

    # ------------------------------------------------------------------ reads
    def events(self, where: str = "", params: list[Any] | None = None) -> pl.DataFrame:
        """Events in insertion order (optionally filtered by a SQL ``where`` clause on the events columns).
        Large tables are read with ``COPY … TO STDOUT`` as CSV when unfiltered."""
        cols = ", ".join(EVENTS_SCHEMA.names)
        if where:
            return self._typed(self.query(f"SELECT {cols} FROM events WHERE {where} ORDER BY rid", params),
                               EVENTS_SCHEMA)
        buf = io.BytesIO()
        with self._lock, self._con.conn.cursor() as cur, cur.copy(
                f"COPY (SELECT {cols} FROM events ORDER BY rid) TO STDOUT (FORMAT csv, HEADER true)") as cp:
            for chunk in cp:
                buf.write(chunk)
        if buf.tell() == 0:
            return pl.DataFrame(schema=pl.from_arrow(EVENTS_SCHEMA.empty_table()).schema)
        buf.seek(0)
        schema = pl.from_arrow(EVENTS_SCHEMA.empty_table()).schema  # type: ignore[union-attr]
        return pl.read_csv(buf, schema=schema)

    @staticmethod
    def _typed(df: pl.DataFrame, schema: pa.Schema) -> pl.DataFrame:
        want = pl.from_arrow(schema.empty_table()).schema  # type: ignore[union-attr]
        return df.select([pl.col(c).cast(t) for c, t in want.items()])

    def items(self) -> pl.DataFrame:
        return self._typed(super().items(), ITEMS_SCHEMA)

    def users(self) -> pl.DataFrame:
        return self._typed(super().users(), USERS_SCHEMA)

    def text_coverage(self) -> tuple[int, int]:
        row = self.execute(
            "SELECT count(*) FILTER (WHERE coalesce(trim(i.title), '') <> '' "
            "OR coalesce(trim(i.description), '') <> ''), count(*) "
            "FROM (SELECT DISTINCT item_id FROM events WHERE event_type <> ?) e "
            "LEFT JOIN items i USING (item_id)", [IMPRESSION])[0]
        return int(row[0]), int(row[1])

    def export_parquet(self, folder: str | Path) -> dict[str, Path]:
        """Write ``events``, ``items`` and ``users`` as Parquet files in ``folder``, in insertion order."""
        import pyarrow.parquet as pq

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for table, df in (("events", self.events()), ("items", self.items()), ("users", self.users())):
            path = folder / f"{table}.parquet"
            pq.write_table(df.to_arrow(), path)
            out[table] = path
        return out

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"


Store.backends.append((is_postgres_url, PostgresStore))
