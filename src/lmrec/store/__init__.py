"""The embedded store: the only module in lmrec that speaks SQL."""

from lmrec.store.duckdb_store import (
    DatasetMismatchError,
    ImportResult,
    Store,
    StoreLockedError,
    is_store_file,
    open_read,
)

__all__ = ["DatasetMismatchError", "ImportResult", "Store", "StoreLockedError", "is_store_file", "open_read"]
