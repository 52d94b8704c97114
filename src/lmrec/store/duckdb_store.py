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
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from lmrec.data.cleaning import ROW, CleaningConfig, CleaningReport, DataError, clean_rows, clean_table
from lmrec.data.dataset import Dataset, conform
from lmrec.data.loaders.base import DEFAULT_CHUNK_ROWS, Source, known_item_ids
from lmrec.data.schema import EVENTS_SCHEMA, ITEMS_SCHEMA, USERS_SCHEMA

SCHEMA_VERSION = 1

_DDL = [
    """CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS events (
        event_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, item_id VARCHAR NOT NULL,
        timestamp BIGINT NOT NULL, event_type VARCHAR NOT NULL, value DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS items (
        item_id VARCHAR PRIMARY KEY, title VARCHAR, description VARCHAR, categories VARCHAR[], attributes
        VARCHAR, updated_at TIMESTAMP DEFAULT current_timestamp, seq BIGINT)""",
    """CREATE TABLE IF NOT EXISTS users (
        user_id VARCHAR PRIMARY KEY, profile VARCHAR, attributes VARCHAR,
        updated_at TIMESTAMP DEFAULT current_timestamp, seq BIGINT)""",
]
#: Columns the store keeps for itself and never returns.
_INTERNAL = ("updated_at", "seq")


@dataclass
class ImportResult:
    """What an import did: the cleaning report, and how many rows were new versus already in the store."""

    report: CleaningReport
    events_inserted: int = 0
    events_already_present: int = 0
    items_upserted: int = 0
    users_upserted: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Store:
    """An lmrec store in a DuckDB file (``":memory:"`` for a throw-away one).

    Parameters
    ----------
    path:
        The database file, created if missing. A ``duckdb://`` prefix is accepted.
    read_only:
        Open without write access (several readers may share a file).
    memory_limit:
        DuckDB's memory limit, e.g. ``"2GB"``; larger operations spill to disk.
    """

    def __init__(self, path: str | Path = "lmrec.duckdb", *, read_only: bool = False,
                 memory_limit: str | None = "2GB") -> None:
        import duckdb

        p = str(path)
        if p.startswith("duckdb://"):
            p = p[len("duckdb://"):]
        if p != ":memory:":
            Path(p).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.path = p
        self._con = duckdb.connect(p, read_only=read_only)
        # One connection, used from one thread at a time: DuckDB connections are not safe to share unguarded.
        self._lock = threading.RLock()
        if memory_limit:
            self._con.execute(f"SET memory_limit='{memory_limit}'")
        if not read_only:
            with self._lock:
                for ddl in _DDL:
                    self._con.execute(ddl)
                self._migrate()
                self._con.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
                )

    def _migrate(self) -> None:
        """Bring a store written by an older lmrec up to date (adds ``seq`` to the items and users of
        schema-1 stores)."""
        for table in ("items", "users"):
            cols = {
                r[0]
                for r in self._con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
                ).fetchall()
            }
            if "seq" not in cols:
                self._con.execute(f"ALTER TABLE {table} ADD COLUMN seq BIGINT")
                self._con.execute(f"UPDATE {table} SET seq = rowid")

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        batch = (
            events.select(list(EVENTS_SCHEMA.names))
            .unique("event_id", keep="first", maintain_order=True)
            .to_arrow()
            .cast(EVENTS_SCHEMA)
        )
        batch = batch.append_column("_pos", pa.array(np.arange(batch.num_rows, dtype=np.int64)))
        self._register("_lmrec_batch", batch)
        try:
            # One hash anti-join against the stored ids: linear, bounded memory. The join does not keep row
            # order, so the rows are put back in input order: ties in time are read back in insertion order.
            rows = self._con.execute(
                "INSERT INTO events SELECT * EXCLUDE (_pos) FROM _lmrec_batch b "
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
                rows = self._con.execute("INSERT INTO events SELECT * FROM _lmrec_new").fetchall()
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
                      on_chunk: Callable[[int], None] | None = None) -> ImportResult:
        """Import a loader's source chunk by chunk in one transaction (all or nothing).

        Row-level cleaning runs per chunk; duplicate events (same id, within the file or already stored) are
        skipped by the primary key and counted. ``on_chunk(rows)`` is called after each chunk (for
        progress bars).
        """
        cfg = cleaning or CleaningConfig(default_event_type=source.default_event_type)
        report = CleaningReport(source=source.origin or source.name)
        result = ImportResult(report)

        def run() -> None:
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

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a user: every event and the profile row. Returns the rows removed per table."""
        def run() -> dict[str, int]:
            n_ev = self._con.execute("DELETE FROM events WHERE user_id = ?", [str(user_id)]).fetchall()[0][0]
            n_us = self._con.execute("DELETE FROM users WHERE user_id = ?", [str(user_id)]).fetchall()[0][0]
            return {"events": int(n_ev), "users": int(n_us)}

        return self.transaction(run)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ reads
    def counts(self) -> dict[str, int]:
        return {t: int(self.execute(f"SELECT count(*) FROM {t}")[0][0]) for t in ("events", "items", "users")}

    def user_sequence(self, user_id: str, limit: int | None = None) -> pl.DataFrame:
        """A user's events, oldest first (ties in insertion order); only the newest ``limit`` when given."""
        cols = ", ".join(EVENTS_SCHEMA.names)
        newest = (
            f"SELECT {cols}, rowid AS _rid FROM events WHERE user_id = ? ORDER BY timestamp DESC, _rid DESC"
        )
        if limit is not None:
            newest += f" LIMIT {int(limit)}"
        return self.query(f"SELECT {cols} FROM ({newest}) ORDER BY timestamp, _rid", [str(user_id)])

    def events(self, where: str = "", params: list[Any] | None = None) -> pl.DataFrame:
        """Events in insertion order (optionally filtered by a SQL ``where`` clause on the events columns)."""
        cols = ", ".join(EVENTS_SCHEMA.names)
        return self.query(f"SELECT {cols} FROM events {('WHERE ' + where) if where else ''} ORDER BY rowid",
                          params)

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
            "FROM (SELECT DISTINCT item_id FROM events) e LEFT JOIN items i USING (item_id)"
        )[0]
        return int(row[0]), int(row[1])

    def to_dataset(self, name: str = "store", cleaning: CleaningConfig | None = None) -> Dataset:
        """Build a :class:`Dataset` from everything in the store (table-level cleaning, e.g. k-core,
        applies)."""
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

    # ------------------------------------------------------------------ key-value metadata
    def set_meta(self, key: str, value: Any) -> None:
        self.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     [key, json.dumps(value)])

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self.execute("SELECT value FROM meta WHERE key = ?", [key])
        return json.loads(rows[0][0]) if rows else default

    def __repr__(self) -> str:
        return f"Store({self.path!r})"


def chunks_of(df: pl.DataFrame, size: int) -> Iterable[pl.DataFrame]:
    for start in range(0, df.height, size):
        yield df.slice(start, size)
