"""A DuckDB file holding events, items, users (and, from other modules' calls, embeddings and model versions).

Guarantees:

* **Idempotent events.** ``event_id`` is unique: every write skips ids already stored, so appending a batch
  twice adds it once. Events without an id get a stable one derived from their fields during cleaning.
  Uniqueness is kept by an anti-join at write time rather than a primary-key index: DuckDB maintains an ART
  index on text keys so slowly that it made a 10-million-event import five times slower (see
  ``benchmarks/import_events.py``); all writes go through this class, under its lock, so the check
  cannot race.
* **All or nothing.** An import runs in one transaction; an error, a Ctrl-C or a killed process leaves the
  store as it was before the import began.
* **Bounded memory.** Imports stream chunk by chunk; DuckDB spills to disk past ``memory_limit``.
* **One dataset per store.** The first import names the store's dataset (``meta.dataset``); importing a source
  of another name is refused (:class:`DatasetMismatchError`) instead of mixing two datasets' ids in one
  catalogue. More of the same data (a new month of clicks) is imported under the same name.
* **Readable while served.** DuckDB lets one process hold a file for writing and no other process open it,
  even read-only. :func:`open_read` opens the file read-only, and when a running service holds it, reads a
  snapshot copy taken now (checked against concurrent checkpoints) instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from lmrec.data.cleaning import ROW, CleaningConfig, CleaningReport, DataError, clean_rows, clean_table
from lmrec.data.dataset import Dataset, conform
from lmrec.data.loaders.base import DEFAULT_CHUNK_ROWS, Source, known_item_ids
from lmrec.data.schema import EVENTS_SCHEMA, IMPRESSION, ITEMS_SCHEMA, USERS_SCHEMA
from lmrec.privacy import store_key

#: 2: events carry ``list_id`` and ``position`` (impressions and the clicks on them); a schema-1 store gains
#: them, empty, when opened for writing, and reads as if it had them when opened read-only.
SCHEMA_VERSION = 2

_DDL = [
    """CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS events (
        event_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, item_id VARCHAR NOT NULL,
        timestamp BIGINT NOT NULL, event_type VARCHAR NOT NULL, value DOUBLE, list_id VARCHAR,
        position INTEGER)""",
    """CREATE TABLE IF NOT EXISTS items (
        item_id VARCHAR PRIMARY KEY, title VARCHAR, description VARCHAR, categories VARCHAR[], attributes
        VARCHAR, updated_at TIMESTAMP DEFAULT current_timestamp, seq BIGINT)""",
    """CREATE TABLE IF NOT EXISTS users (
        user_id VARCHAR PRIMARY KEY, profile VARCHAR, attributes VARCHAR,
        updated_at TIMESTAMP DEFAULT current_timestamp, seq BIGINT)""",
]
#: Columns the store keeps for itself and never returns.
_INTERNAL = ("updated_at", "seq")
#: Event columns added after schema 1, with their SQL types (see :meth:`Store._migrate`).
_ADDED_EVENT_COLUMNS = {"list_id": "VARCHAR", "position": "INTEGER"}
#: The events columns, in :data:`~lmrec.data.schema.EVENTS_SCHEMA` order, for inserts.
_EVENT_COLS = ", ".join(EVENTS_SCHEMA.names)


#: First bytes of a DuckDB database file (bytes 8-11 of its header).
_MAGIC = b"DUCK"
#: Suffixes taken for a store file without reading its header.
STORE_SUFFIXES = (".duckdb", ".ddb")


class DatasetMismatchError(ValueError):
    """An import would mix a second dataset into a store that holds another one."""


class StoreLockedError(RuntimeError):
    """Another process (a running ``lmrec serve``) holds the store file, and no snapshot could be read."""


def is_store_file(path: str | Path) -> bool:
    """Whether ``path`` names an lmrec store: a ``duckdb://`` address, a ``.duckdb`` file, or any file with a
    DuckDB header."""
    p = str(path)
    if p.startswith("duckdb://") or any(matches(p) for matches, _ in Store.backends):
        return True
    f = Path(p).expanduser()
    if f.suffix in STORE_SUFFIXES:
        return True
    try:
        with open(f, "rb") as fh:
            return fh.read(12)[8:12] == _MAGIC
    except OSError:
        return False


def _plain_path(path: str | Path) -> str:
    p = str(path)
    return p[len("duckdb://"):] if p.startswith("duckdb://") else p


def is_lock_error(exc: BaseException) -> bool:
    """A DuckDB error saying that another process holds the file."""
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def lock_holder(exc: BaseException) -> str:
    """``" (PID 1234)"`` from DuckDB's lock message, or ``""``."""

    m = re.search(r"PID (\d+)", str(exc))
    return f" (pid {m.group(1)})" if m else ""

#: The catalogue name an encrypted store is attached under (a plain store keeps DuckDB's default name).
_ATTACHED = "lmrec_store"
#: Opt-in for DuckDB's built-in (MbedTLS) crypto when the OpenSSL-backed httpfs extension cannot be loaded.
UNSAFE_CRYPTO_ENV = "LMREC_STORE_ENCRYPTION_UNSAFE_MBEDTLS"


class StoreKeyError(RuntimeError):
    """The store's encryption key is missing, wrong, or cannot be used."""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _key_option(read_only: bool = False) -> str:
    key = store_key()
    opts = []
    if key is not None:
        opts.append(f"ENCRYPTION_KEY {_quote(key)}")
    if read_only:
        opts.append("READ_ONLY")
    return f" ({', '.join(opts)})" if opts else ""


def _load_crypto(con: Any) -> None:
    """Make DuckDB able to write encrypted files: its httpfs extension brings OpenSSL. Tried in order: an
    installed extension, the ``duckdb-extension-httpfs`` PyPI package built for this DuckDB version, and, only
    with ``LMREC_STORE_ENCRYPTION_UNSAFE_MBEDTLS=1``, DuckDB's built-in MbedTLS (which DuckDB itself calls not
    secure for writing)."""
    import duckdb

    try:
        con.execute("LOAD httpfs")
        return
    except duckdb.Error:
        pass
    try:
        import duckdb_extension_httpfs  # type: ignore[import-not-found]

        ext = (Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}"
               / "httpfs.duckdb_extension")
        if ext.is_file():
            con.execute(f"LOAD {_quote(str(ext))}")
            return
    except ImportError:
        pass
    if os.environ.get(UNSAFE_CRYPTO_ENV, "").lower() in ("1", "true", "yes"):
        con.execute("SET force_mbedtls_unsafe = 'true'")
        return
    raise StoreKeyError(
        f"an encrypted store needs DuckDB's httpfs extension (OpenSSL) for DuckDB {duckdb.__version__}: run "
        "`INSTALL httpfs` once with network access, or `pip install duckdb-extension-httpfs` built for this "
        f"DuckDB version; or set {UNSAFE_CRYPTO_ENV}=1 to accept DuckDB's built-in crypto, which DuckDB "
        "does not consider secure for writing (docs/privacy.md)")


def parquet_encryption(con: Any) -> tuple[str, str]:
    """For files that copy an encrypted store (backups): ``(COPY option, read_parquet argument)`` that encrypt
    and decrypt Parquet with a key derived from the store key, registered on ``con``; two empty strings for a
    plain store."""
    import base64
    import hashlib

    key = store_key()
    if key is None:
        return "", ""
    _load_crypto(con)
    derived = base64.b64encode(hashlib.sha256(f"lmrec-backup\0{key}".encode()).digest()).decode()
    con.execute(f"PRAGMA add_parquet_key('lmrec_backup', {_quote(derived)})")
    return (", ENCRYPTION_CONFIG {footer_key: 'lmrec_backup'}",
            ", encryption_config = {footer_key: 'lmrec_backup'}")


def connect(path: str, *, read_only: bool = False, memory_limit: str | None = None) -> Any:
    """A DuckDB connection to an lmrec store file, encrypted when a store key is configured
    (:func:`lmrec.privacy.store_key`). A wrong or missing key is a :class:`StoreKeyError`, never a new empty
    store."""
    import duckdb

    key = store_key()
    if key is None or path == ":memory:":
        try:
            con = duckdb.connect(path, read_only=read_only)
        except duckdb.Error as exc:
            if "encrypt" in str(exc).lower():
                raise StoreKeyError(f"{path} is an encrypted lmrec store: set LMREC_STORE_KEY or "
                                    "LMREC_STORE_KEY_FILE to its key") from None
            raise
    else:
        con = duckdb.connect()
        if not read_only:
            _load_crypto(con)
        try:
            con.execute(f"ATTACH {_quote(path)} AS {_ATTACHED}{_key_option(read_only)}")
        except duckdb.Error as exc:
            con.close()
            text = str(exc).lower()
            if "key" in text or "encrypt" in text or "decrypt" in text or "not a valid" in text:
                raise StoreKeyError(f"cannot open {path} with the configured store key: the key is wrong, or "
                                    f"the file is not an encrypted lmrec store ({exc})") from None
            raise
        con.execute(f"USE {_ATTACHED}")
    if memory_limit:
        con.execute(f"SET memory_limit='{memory_limit}'")
    return con


@dataclass
class ImportResult:
    """What an import did: the cleaning report, and how many rows were new versus already in the store."""

    report: CleaningReport
    events_inserted: int = 0
    events_already_present: int = 0
    items_upserted: int = 0
    users_upserted: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def event_batch(events: pl.DataFrame) -> pa.Table:
    """Cleaned events as the Arrow batch a store inserts: lmrec's event columns and types, each event id once
    (its first occurrence, input order kept)."""
    return (
        events.select(list(EVENTS_SCHEMA.names))
        .unique("event_id", keep="first", maintain_order=True)
        .to_arrow()
        .cast(EVENTS_SCHEMA)
    )


class Store:
    """An lmrec store in a DuckDB file (``":memory:"`` for a throw-away one), or, given a ``postgresql://``
    URL, on a PostgreSQL server (:class:`lmrec.store.postgres_store.PostgresStore`, the same interface).

    Parameters
    ----------
    path:
        The database file, created if missing. A ``duckdb://`` prefix is accepted.
    read_only:
        Open without write access (several readers may share a file).
    memory_limit:
        DuckDB's memory limit, e.g. ``"2GB"``; larger operations spill to disk.
    """

    #: Which engine holds the data; other backends override it.
    backend = "duckdb"
    #: ``(matches(path), class)`` of the other backends, registered by their modules (``lmrec.store`` imports
    #: them): ``Store(target)`` returns the first whose test accepts ``target``, else a DuckDB store.
    backends: list[tuple[Callable[[object], bool], type[Store]]] = []

    def __new__(cls, path: str | Path = "lmrec.duckdb", *args: Any, **kwargs: Any) -> Store:
        if cls is Store:
            for matches, backend in Store.backends:
                if matches(path):
                    return object.__new__(backend)
        return object.__new__(cls)

    def __init__(self, path: str | Path = "lmrec.duckdb", *, read_only: bool = False,
                 memory_limit: str | None = "2GB") -> None:
        p = str(path)
        if p.startswith("duckdb://"):
            p = p[len("duckdb://"):]
        if p != ":memory:":
            Path(p).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.path = p
        #: The store file this one is a snapshot copy of (see :func:`open_read`), else ``None``.
        self.snapshot_of: str | None = None
        self._tmpdir: str | None = None
        self.read_only = read_only
        self._memory_limit = memory_limit
        self._threads: int | None = None
        self.encrypted = store_key() is not None and p != ":memory:"
        self._con = connect(p, read_only=read_only, memory_limit=memory_limit)
        # One connection, used from one thread at a time: DuckDB connections are not safe to share unguarded.
        self._lock = threading.RLock()
        if not read_only:
            with self._lock:
                for ddl in _DDL:
                    self._con.execute(ddl)
                self._migrate()
                self._con.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET "
                    "value = excluded.value", [str(SCHEMA_VERSION)])
        with self._lock:
            have = self._table_columns("events")
        # What reads select: a read-only schema-1 store lacks the list columns, which then read as empty.
        self._event_select = ", ".join(
            c if c in have or not have else f"CAST(NULL AS {_ADDED_EVENT_COLUMNS[c]}) AS {c}"
            for c in EVENTS_SCHEMA.names)

    def _table_columns(self, table: str) -> set[str]:
        return {r[0] for r in self._con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND table_catalog = current_database()", [table]).fetchall()}

    def _migrate(self) -> None:
        """Bring a store written by an older lmrec up to date: ``seq`` for the items and users of early
        schema-1 stores, ``list_id`` and ``position`` for the events of schema-1 stores (empty for the events
        already there). Adding nullable columns rewrites no row."""
        for table in ("items", "users"):
            if "seq" not in self._table_columns(table):
                self._con.execute(f"ALTER TABLE {table} ADD COLUMN seq BIGINT")
                self._con.execute(f"UPDATE {table} SET seq = rowid")
        have = self._table_columns("events")
        for col, sql_type in _ADDED_EVENT_COLUMNS.items():
            if col not in have:
                self._con.execute(f"ALTER TABLE events ADD COLUMN {col} {sql_type}")

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        with self._lock:
            self._con.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def cursor(self) -> Any:
        """A second connection to the same database (DuckDB runs its reads concurrently with this store's
        writes, MVCC). Close every cursor before :meth:`compact`."""
        with self._lock:
            con = self._con.cursor()
            if self.encrypted:
                con.execute(f"USE {_ATTACHED}")
            return con

    def compact(self) -> dict[str, int]:
        """Rewrite the database file so that deleted rows leave no bytes behind.

        DuckDB reuses the blocks of deleted rows but does not wipe them, so after an erasure the old bytes
        (ids, texts) stay readable in the file until overwritten. Compaction copies every table into a fresh
        file (``COPY FROM DATABASE``), swaps it in atomically and removes the write-ahead log; the store is
        locked meanwhile (writes wait, nothing is lost). Every :meth:`cursor` must be closed first (the
        service pauses its reader). Returns the file sizes before and after, in bytes.
        """
        if self.path == ":memory:":
            return {"bytes_before": 0, "bytes_after": 0}
        if self.read_only:
            raise PermissionError(f"{self.path} is open read-only; it cannot be compacted")
        path = Path(self.path)
        tmp = path.with_name(path.name + ".compact")
        with self._lock:
            for leftover in (tmp, Path(str(tmp) + ".wal")):
                leftover.unlink(missing_ok=True)
            self._con.execute("CHECKPOINT")
            before = path.stat().st_size
            src = self._con.execute("SELECT current_database()").fetchall()[0][0]
            self._con.execute(f"ATTACH {_quote(str(tmp))} AS lmrec_compact{_key_option()}")
            try:
                self._con.execute(f'COPY FROM DATABASE "{src}" TO lmrec_compact')
                self._con.execute("DETACH lmrec_compact")
            except BaseException:
                with contextlib.suppress(Exception):
                    self._con.execute("DETACH lmrec_compact")
                tmp.unlink(missing_ok=True)
                raise
            self._con.close()
            os.replace(tmp, path)
            Path(str(path) + ".wal").unlink(missing_ok=True)
            self._con = connect(self.path, read_only=False, memory_limit=self._memory_limit)
            if self._threads:
                self._con.execute(f"SET threads={self._threads}")
            return {"bytes_before": before, "bytes_after": path.stat().st_size}

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_threads(self, n: int) -> None:
        """Let DuckDB use ``n`` threads for this store's queries from now on (also after :meth:`compact`).

        The service's queries are small (one commit of a few events, one user's history): with one thread a
        commit costs ~1.5 ms of CPU instead of ~2.2 ms with two, the rest being the other threads waking up
        for nothing (``benchmarks/serve_load.py``'s store, 100k items)."""
        with self._lock:
            self._threads = int(n)
            self._con.execute(f"SET threads={self._threads}")

    def ping(self) -> None:
        """Raise if the database does not answer (readiness probes)."""
        self.execute("SELECT 1")

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement and fetch all rows (DuckDB 2.0: a partly fetched result keeps the
        connection busy)."""
        with self._lock:
            return self._con.execute(sql, params or []).fetchall()

    def query_arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        with self._lock:
            return self._con.sql(sql, params=params or None).to_arrow_table()

    def query(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        return pl.from_arrow(self.query_arrow(sql, params))  # type: ignore[return-value]

    def transaction(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` inside one transaction: committed if it returns, rolled back if it raises
        (Ctrl-C too)."""
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                out = fn()
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")
            return out

    def _register(self, name: str, table: pa.Table | pl.DataFrame) -> None:
        self._con.register(name, table.to_arrow() if isinstance(table, pl.DataFrame) else table)

    def _unregister(self, name: str) -> None:
        import duckdb

        # An aborted transaction refuses it; the view dies with the rollback anyway.
        with contextlib.suppress(duckdb.Error):
            self._con.unregister(name)

    # ------------------------------------------------------------------ writes
    def _insert_events(self, events: pl.DataFrame) -> int:
        """Insert cleaned events (lmrec columns), skipping ids already stored or repeated in the batch (the
        first occurrence wins). Returns the number inserted. Caller holds the lock."""
        if events.height == 0:
            return 0
        batch = event_batch(events)
        batch = batch.append_column("_pos", pa.array(np.arange(batch.num_rows, dtype=np.int64)))
        self._register("_lmrec_batch", batch)
        try:
            # One hash anti-join against the stored ids: linear, bounded memory. The join does not keep row
            # order, so the rows are put back in input order: ties in time are read back in insertion order.
            rows = self._con.execute(
                f"INSERT INTO events ({_EVENT_COLS}) SELECT {_EVENT_COLS} FROM _lmrec_batch b "
                "WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = b.event_id) ORDER BY _pos"
            ).fetchall()
        finally:
            self._unregister("_lmrec_batch")
        return int(rows[0][0]) if rows else 0

    def insert_prepared_events(self, events: pl.DataFrame, known_new: bool = False) -> int:
        """Insert events that are already validated and typed (the service's writer), skipping stored ids.
        Call inside :meth:`transaction`; returns the number inserted.

        ``known_new``: the caller has established (under its own lock, as the service does) that no id is
        stored or repeated, so the anti-join against the whole table is skipped: a commit then costs
        milliseconds instead of a scan of every event id.
        """
        with self._lock:
            if not known_new:
                return self._insert_events(events)
            if events.height == 0:
                return 0
            table = events.select(list(EVENTS_SCHEMA.names)).to_arrow().cast(EVENTS_SCHEMA)
            self._register("_lmrec_new", table)
            try:
                rows = self._con.execute(
                    f"INSERT INTO events ({_EVENT_COLS}) SELECT {_EVENT_COLS} FROM _lmrec_new").fetchall()
            finally:
                self._unregister("_lmrec_new")
            return int(rows[0][0]) if rows else 0

    def append_events(self, events: pl.DataFrame | pa.Table, cleaning: CleaningConfig | None = None,
                      source: str = "append") -> ImportResult:
        """Clean and append events in one transaction; rows already present (same ``event_id``)
        are skipped."""
        df = pl.from_arrow(events) if isinstance(events, pa.Table) else events
        assert isinstance(df, pl.DataFrame)
        cfg = cleaning or CleaningConfig()
        report = CleaningReport(source=source)
        if ROW not in df.columns:
            df = df.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))
        clean = clean_rows(df, cfg, report)
        inserted = self.transaction(lambda: self._insert_events(clean))
        report.rows_kept = clean.height
        return ImportResult(report, events_inserted=inserted, events_already_present=clean.height - inserted)

    def _upsert(self, table: str, key: str, df: pl.DataFrame, schema: pa.Schema) -> int:
        if df.height == 0:
            return 0
        data = (
            conform(df, schema, table)
            .select(list(schema.names))
            .unique(key, keep="last", maintain_order=True)
        )
        arrow = data.to_arrow().cast(schema)
        self._register(
            "_lmrec_upsert", arrow.append_column("_pos", pa.array(np.arange(arrow.num_rows, dtype=np.int64)))
        )
        try:
            cols = ", ".join(schema.names)
            updates = ", ".join(f"{c} = excluded.{c}" for c in schema.names if c != key)
            # ``seq`` records the order rows were first added (a dataset's catalogue order). Neither rowid nor
            # insertion order is stable here: DuckDB rewrites an updated row and runs ON CONFLICT on threads.
            self._con.execute(
                f"INSERT INTO {table} ({cols}, seq) SELECT {cols}, "
                f"_pos + (SELECT coalesce(max(seq), -1) + 1 FROM {table}) FROM _lmrec_upsert "
                f"ON CONFLICT ({key}) DO UPDATE SET {updates}, updated_at = now()")
        finally:
            self._unregister("_lmrec_upsert")
        return data.height

    def upsert_items(self, items: pl.DataFrame) -> int:
        """Insert new items and replace the fields of existing ones (by ``item_id``)."""
        return int(self.transaction(lambda: self._upsert("items", "item_id", items, ITEMS_SCHEMA)))

    def upsert_users(self, users: pl.DataFrame) -> int:
        return int(self.transaction(lambda: self._upsert("users", "user_id", users, USERS_SCHEMA)))

    def import_source(self, source: Source, cleaning: CleaningConfig | None = None, *,
                      chunk_rows: int = DEFAULT_CHUNK_ROWS,
                      on_chunk: Callable[[int], None] | None = None,
                      dataset: str | None = None) -> ImportResult:
        """Import a loader's source chunk by chunk in one transaction (all or nothing).

        ``dataset`` names the data (default: the source's name). A store holds one dataset: importing a
        different name into a store that holds another is refused (:class:`DatasetMismatchError`) before
        anything is written.

        Row-level cleaning runs per chunk; duplicate events (same id, within the file or already stored) are
        skipped by the primary key and counted. ``on_chunk(rows)`` is called after each chunk (for
        progress bars).
        """
        cfg = cleaning or CleaningConfig(default_event_type=source.default_event_type)
        report = CleaningReport(source=source.origin or source.name)
        result = ImportResult(report)

        name = dataset or source.name

        def run() -> None:
            self._claim_dataset(name, named=dataset is not None)
            if source.items is not None:
                result.items_upserted = self._upsert("items", "item_id", source.items, ITEMS_SCHEMA)
            if source.users is not None:
                result.users_upserted = self._upsert("users", "user_id", source.users, USERS_SCHEMA)
            known_items = None
            if cfg.drop_unknown_items and (ids := known_item_ids(source)) is not None:
                known_items = ids.implode()
            for chunk in source.iter_events(chunk_rows):
                rows = clean_rows(chunk, cfg, report)
                if known_items is not None and rows.height:
                    unknown = ~rows["item_id"].is_in(known_items)
                    if unknown.any():
                        if cfg.strict:
                            pos = int(unknown.arg_true()[0])
                            raise DataError("unknown item", source=report.source, row=int(rows[ROW][pos]),
                                            field="item_id", expected="an item in the items table",
                                            got=rows["item_id"][pos])
                        report.drop("unknown_item", rows.filter(unknown)[ROW])
                        rows = rows.filter(~unknown)
                inserted = self._insert_events(rows)
                result.events_inserted += inserted
                result.events_already_present += rows.height - inserted
                if on_chunk is not None:
                    on_chunk(chunk.height)
            report.drop("duplicate", None, count=result.events_already_present)
            report.rows_kept = result.events_inserted

        self.transaction(run)
        report.notes.extend(source.notes)
        return result

    def dataset_name(self) -> str | None:
        """The name of the dataset this store holds (set by its first import), or ``None``."""
        return self.get_meta("dataset")  # type: ignore[no-any-return]

    def check_dataset(self, name: str, *, named: bool = False) -> None:
        """Raise :class:`DatasetMismatchError` when importing dataset ``name`` would mix it with another one
        (:meth:`import_source` checks again inside its transaction; this lets a caller fail before it
        starts). ``named``: the caller named the dataset itself, which may then claim a store filled without
        a name."""
        held = self.dataset_name()
        if held == name:
            return
        where = "the store" if self.path == ":memory:" else self.path
        other = Path(self.path).with_name(f"{_safe_stem(name)}.duckdb") if self.path != ":memory:" else None
        own = f" (--store {other})" if other is not None else ""
        if held is not None:
            raise DatasetMismatchError(
                f"{where} holds dataset {held!r}; importing {name!r} would mix two datasets in one store. "
                f"Import it into a store of its own{own}, or, if it is more of {held!r}, pass --name {held}")
        counts = self.counts()
        if not named and (counts["events"] or counts["items"]):
            raise DatasetMismatchError(
                f"{where} already holds {counts['events']:,} events and {counts['items']:,} items of an "
                f"unnamed dataset; import {name!r} into a store of its own{own}, or pass --name NAME to add "
                "it to this one under that name")

    def _claim_dataset(self, name: str, named: bool) -> None:
        """Record ``name`` as the store's dataset, or refuse when the store holds another one. Caller holds
        the lock (inside the import's transaction)."""
        self.check_dataset(name, named=named)
        if self.dataset_name() == name:
            return
        self.set_meta("dataset", name)

    def rekey_users(self, new_id: Callable[[str], str], marker: str) -> int:
        """Replace every user id in events and users by ``new_id(id)`` in one transaction (a pseudonym
        rotation), then compact so that the old ids leave the file. ``marker`` names the rotation: a store
        that already carries it is left alone, so an interrupted rotation can be run again. Returns the users
        re-keyed."""
        done = self.get_meta("pseudonym_rotations") or []
        if marker in done:
            return 0

        def run() -> int:
            ids = [r[0] for r in self._con.execute(
                "SELECT user_id FROM events UNION SELECT user_id FROM users").fetchall()]
            mapping = pa.table({"old": pa.array(ids, pa.string()),
                                "new": pa.array([new_id(u) for u in ids], pa.string())})
            self._register("_lmrec_rekey", mapping)
            try:
                self._con.execute("UPDATE events SET user_id = m.new FROM _lmrec_rekey m "
                                  "WHERE events.user_id = m.old")
                # user_id is the users' primary key, which DuckDB does not update in place: rewrite the rows
                self._con.execute("CREATE TEMP TABLE _lmrec_users AS SELECT u.* REPLACE (m.new AS user_id) "
                                  "FROM users u JOIN _lmrec_rekey m ON u.user_id = m.old")
                self._con.execute("DELETE FROM users")
                self._con.execute("INSERT INTO users SELECT * FROM _lmrec_users")
                self._con.execute("DROP TABLE _lmrec_users")
            finally:
                self._unregister("_lmrec_rekey")
            self._con.execute("INSERT INTO meta VALUES ('pseudonym_rotations', ?) ON CONFLICT (key) "
                              "DO UPDATE SET value = excluded.value", [json.dumps([*done, marker])])
            return len(ids)

        n = int(self.transaction(run))
        self.compact()
        return n

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a user: every event, the profile row and the experiment answers served to them. Returns the
        events and profile rows removed."""
        def run() -> dict[str, int]:
            n_ev = self._con.execute("DELETE FROM events WHERE user_id = ?", [str(user_id)]).fetchall()[0][0]
            n_us = self._con.execute("DELETE FROM users WHERE user_id = ?", [str(user_id)]).fetchall()[0][0]
            # the answers an online experiment served them (lmrec.store.experiments), when the table exists
            if self._con.execute("SELECT 1 FROM information_schema.tables "
                                 "WHERE table_name = 'experiment_exposures'").fetchall():
                self._con.execute("DELETE FROM experiment_exposures WHERE user_id = ?", [str(user_id)])
            return {"events": int(n_ev), "users": int(n_us)}

        return self.transaction(run)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ reads
    def counts(self) -> dict[str, int]:
        return {t: int(self.execute(f"SELECT count(*) FROM {t}")[0][0]) for t in ("events", "items", "users")}

    def user_sequence(self, user_id: str, limit: int | None = None,
                      impressions: bool = False) -> pl.DataFrame:
        """A user's interactions, oldest first (ties in insertion order); only the newest ``limit`` when
        given. Impressions (what they were shown) are not part of it unless ``impressions``."""
        cols = ", ".join(EVENTS_SCHEMA.names)
        shown = "" if impressions else "AND event_type <> ? "
        newest = (f"SELECT {self._event_select}, rowid AS _rid FROM events WHERE user_id = ? {shown}"
                  "ORDER BY timestamp DESC, _rid DESC")
        if limit is not None:
            newest += f" LIMIT {int(limit)}"
        return self.query(f"SELECT {cols} FROM ({newest}) AS n ORDER BY timestamp, _rid",
                          [str(user_id)] + ([] if impressions else [IMPRESSION]))

    def events(self, where: str = "", params: list[Any] | None = None) -> pl.DataFrame:
        """Events in insertion order (optionally filtered by a SQL ``where`` clause on the events columns),
        impressions included (:meth:`to_dataset` sets them apart)."""
        return self.query(f"SELECT {self._event_select} FROM events {('WHERE ' + where) if where else ''} "
                          "ORDER BY rowid", params)

    def items(self) -> pl.DataFrame:
        """Every item, in the order they were first added."""
        return self.query(f"SELECT {', '.join(ITEMS_SCHEMA.names)} FROM items ORDER BY seq")

    def users(self) -> pl.DataFrame:
        """Every user with a profile row, in the order they were first added."""
        return self.query(f"SELECT {', '.join(USERS_SCHEMA.names)} FROM users ORDER BY seq")

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        rows = self.query(
            f"SELECT {', '.join(ITEMS_SCHEMA.names)} FROM items WHERE item_id = ?", [str(item_id)]
        )
        return rows.to_dicts()[0] if rows.height else None

    def text_coverage(self) -> tuple[int, int]:
        """``(items with text, items)`` among the items that have events, as
        :meth:`lmrec.data.dataset.Dataset.text_coverage` counts them (a non-empty title or description)."""
        row = self.execute(
            "SELECT count(*) FILTER (WHERE coalesce(trim(i.title), '') <> '' "
            "OR coalesce(trim(i.description), '') <> ''), count(*) "
            "FROM (SELECT DISTINCT item_id FROM events WHERE event_type <> ?) e "
            "LEFT JOIN items i USING (item_id)",
            [IMPRESSION])[0]
        return int(row[0]), int(row[1])

    def to_dataset(self, name: str | None = None, cleaning: CleaningConfig | None = None) -> Dataset:
        """Build a :class:`Dataset` from everything in the store (table-level cleaning, e.g. k-core,
        applies), named ``name`` or the store's dataset name."""
        name = name or self.dataset_name() or Path(self.snapshot_of or self.path).stem or "store"
        ev = self.events()
        if cleaning is not None and (cleaning.min_user_events or cleaning.min_item_events):
            report = CleaningReport(source=self.path)
            ev = clean_table(ev.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64)),
                             cleaning, report).drop(ROW)
        return Dataset.build(ev, self.items(), self.users(), name=name)

    def export_parquet(self, folder: str | Path) -> dict[str, Path]:
        """Write ``events``, ``items`` and ``users`` as Parquet files in ``folder`` (streamed by DuckDB, not
        through Python memory), in insertion order. The folder can be imported again as a source."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for table in ("events", "items", "users"):
            path = folder / f"{table}.parquet"
            literal = (
                "'" + str(path).replace("'", "''") + "'"
            )  # a SQL string literal; COPY takes no parameter
            if table == "events":
                select = "SELECT * FROM events ORDER BY rowid"
            else:
                select = f"SELECT * EXCLUDE ({', '.join(_INTERNAL)}) FROM {table} ORDER BY seq"
            self.execute(f"COPY ({select}) TO {literal} (FORMAT PARQUET)")
            out[table] = path
        return out

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this process may run the job ``name`` now, alone among the processes sharing the store
        (held until the block ends). A DuckDB file has one writing process: always ``True``; a server-backed
        store asks the server (:meth:`lmrec.store.postgres_store.PostgresStore.exclusive`)."""
        yield True

    def notify(self, kind: str, **fields: Any) -> None:
        """Tell other processes on this store what changed (``kind``: ``events``, ``erase``, ``keys``,
        ``model``, ``experiments``). A DuckDB file has one writing process, so there is no one to tell; a
        server-backed store sends it (:meth:`lmrec.store.postgres_store.PostgresStore.notify`)."""

    # ------------------------------------------------------------------ key-value metadata
    def set_meta(self, key: str, value: Any) -> None:
        self.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     [key, json.dumps(value)])

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self.execute("SELECT value FROM meta WHERE key = ?", [key])
        return json.loads(rows[0][0]) if rows else default

    def __repr__(self) -> str:
        return f"Store({self.path!r})"


def _safe_stem(name: str) -> str:

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "dataset"


def open_read(path: str | Path, *, memory_limit: str | None = "2GB", attempts: int = 3) -> Store:
    """Open a store for reading, also while another process (a running ``lmrec serve``) holds it.

    The file is opened read-only. When another process holds it for writing, DuckDB refuses any other
    connection, so a snapshot is read instead: the file and its write-ahead log are copied to a temporary
    folder (removed on :meth:`Store.close`) and the copy is opened; a copy during which the file changed (a
    checkpoint) is taken again. The returned store's ``snapshot_of`` names the original. A missing file is a
    :class:`FileNotFoundError`; a snapshot that cannot be read, a :class:`StoreLockedError`.
    """
    import duckdb

    p = _plain_path(path)
    if any(matches(p) for matches, _ in Store.backends):  # a server: no file to hold, readers never wait
        return Store(p, read_only=True, memory_limit=memory_limit)
    if p != ":memory:" and not Path(p).expanduser().exists():
        raise FileNotFoundError(f"no store at {p}: run `lmrec data import ...` first, or give --data")
    try:
        return Store(p, read_only=True, memory_limit=memory_limit)
    except duckdb.Error as exc:
        if not is_lock_error(exc):
            raise
        held = exc
    src = Path(p).expanduser()
    wal = src.with_name(src.name + ".wal")
    last: BaseException = held
    for _ in range(attempts):
        tmp = tempfile.mkdtemp(prefix="lmrec-snapshot-")
        try:
            before = _stamp(src), _stamp(wal)
            copy = Path(tmp) / src.name
            shutil.copyfile(src, copy)
            if wal.exists():
                shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
            if (_stamp(src), _stamp(wal)) != before:
                raise OSError("the store changed while it was copied")
            st = Store(copy, read_only=True, memory_limit=memory_limit)
        except (OSError, duckdb.Error) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            last = exc
            continue
        st.snapshot_of, st._tmpdir = p, tmp
        return st
    raise StoreLockedError(
        f"{p} is held by another process{lock_holder(held)}, a running `lmrec serve` most likely, and no "
        f"snapshot of it could be read ({str(last).splitlines()[0]}); stop the service or ask it "
        "(--url http://HOST:PORT)")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def chunks_of(df: pl.DataFrame, size: int) -> Iterable[pl.DataFrame]:
    for start in range(0, df.height, size):
        yield df.slice(start, size)
