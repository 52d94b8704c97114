"""What every loader provides, and how raw tables become a cleaned :class:`Dataset`.

A loader turns one real format into lmrec's column names. It does not clean: it yields raw event chunks (with
a 1-based ``_row`` for error messages) and, where the format has them, item and user tables. Cleaning and id
mapping happen once, in :func:`read_dataset` (in memory) or in :meth:`lmrec.store.Store.import_source` (chunk
by chunk, for files larger than memory).
"""

from __future__ import annotations

import json

import polars as pl

from lmrec.data.cleaning import ROW, CleaningConfig, CleaningReport, clean_rows, clean_table
from lmrec.data.dataset import Dataset
from lmrec.data.source import DEFAULT_CHUNK_ROWS, Source, with_row_numbers

__all__ = ["DEFAULT_CHUNK_ROWS", "Source", "attributes_json", "known_item_ids", "read_dataset",
           "with_row_numbers"]

def attributes_json(df: pl.DataFrame, columns: list[str]) -> pl.Series:
    """Pack free columns into one JSON object per row (the ``attributes`` column of items and users)."""
    if not columns:
        return pl.Series("attributes", [None] * df.height, dtype=pl.String)
    rows = df.select(columns).to_dicts()
    return pl.Series(
        "attributes",
        [
            json.dumps({k: v for k, v in r.items() if v is not None}, ensure_ascii=False, default=str)
            for r in rows
        ],
        dtype=pl.String,
    )


def read_dataset(source: Source, cleaning: CleaningConfig | None = None,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[Dataset, CleaningReport]:
    """Clean a source's events and build a :class:`Dataset`; returns the dataset and the cleaning report."""
    cfg = cleaning or CleaningConfig(default_event_type=source.default_event_type)
    if cleaning is not None and "default_event_type" not in _explicit(cleaning):
        from dataclasses import replace

        cfg = replace(cleaning, default_event_type=source.default_event_type)
    report = CleaningReport(source=source.origin or source.name)
    kept = [clean_rows(chunk, cfg, report) for chunk in source.iter_events(chunk_rows)]
    events = pl.concat(kept, how="diagonal_relaxed") if kept else clean_rows(pl.DataFrame(), cfg, report)
    item_ids = known_item_ids(source)
    events = clean_table(events, cfg, report, item_ids=item_ids)
    report.notes.extend(source.notes)
    ds = Dataset.build(events.drop(ROW), source.items, source.users, name=source.name)
    return ds, report


def known_item_ids(source: Source) -> pl.Series | None:
    """The item ids events must refer to, or ``None`` when the source has no complete catalogue."""
    if source.items is None or source.items.height == 0 or not source.items_complete:
        return None
    return source.items["item_id"].cast(pl.String)


def _explicit(cfg: CleaningConfig) -> set[str]:
    """Fields of ``cfg`` that differ from the defaults (so a loader's default event type is not overridden by
    a default the user never chose)."""
    default = CleaningConfig()
    return {f for f in cfg.__dataclass_fields__ if getattr(cfg, f) != getattr(default, f)}
