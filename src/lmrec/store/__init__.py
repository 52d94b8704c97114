"""The store: the only package in lmrec that speaks SQL. An embedded DuckDB file by default; a PostgreSQL
database when named by a ``postgresql://`` URL (several service replicas on one database)."""

from pathlib import Path

from lmrec.store.duckdb_store import (
    DatasetMismatchError,
    ImportResult,
    Store,
    StoreLockedError,
    is_store_file,
    open_read,
)
from lmrec.store.postgres_store import PostgresStore, is_postgres_url


def connect(target: str | Path = "lmrec.duckdb", *, read_only: bool = False) -> Store:
    """Open the store ``target`` names: a ``postgresql://`` URL (:class:`PostgresStore`) or a DuckDB file
    (created if missing). The same as ``Store(target)``."""
    return Store(target, read_only=read_only)


__all__ = ["DatasetMismatchError", "ImportResult", "PostgresStore", "Store", "StoreLockedError", "connect",
           "is_postgres_url", "is_store_file", "open_read"]
