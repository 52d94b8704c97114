"""The embedded store: the only module in lmrec that speaks SQL."""

from lmrec.store.duckdb_store import ImportResult, Store

__all__ = ["ImportResult", "Store"]
