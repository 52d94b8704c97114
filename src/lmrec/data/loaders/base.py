"""What every loader provides, and how raw tables become a cleaned :class:`Dataset`.

A loader turns one real format into lmrec's column names. It does not clean: it yields raw event chunks (with
a 1-based ``_row`` for error messages) and, where the format has them, item and user tables. Cleaning and id
mapping happen once, in :func:`read_dataset` (in memory) or in :meth:`lmrec.store.Store.import_source` (chunk
by chunk, for files larger than memory).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lmrec.data.cleaning import ROW, CleaningConfig, CleaningReport, clean_rows, clean_table
from lmrec.data.dataset import Dataset

#: Rows per chunk when a loader streams a file.
DEFAULT_CHUNK_ROWS = 1_000_000


@dataclass
class Source:
    """A loaded (or streamable) source of events, items and users with lmrec's column names.

    ``events`` is either a whole table or a callable returning an iterator of chunks; in both cases rows carry
    ``_row`` (1-based position in the source file) so that errors can point at them.

    ``items_complete`` says whether ``items`` is the whole catalogue. When it is (the default), events for
    items missing from it are dropped as ``unknown_item`` (if cleaning asks for it); a loader whose item table
    only adds text to some items (an item-text file) sets it to ``False`` so that no event is lost for a
    missing title.
    """

    name: str
    events: pl.DataFrame | None = None
    event_chunks: Any = None  # Callable[[int], Iterator[pl.DataFrame]] for streaming sources
    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    default_event_type: str = "view"
    origin: str = ""  # file, folder or URL it came from
    notes: list[str] = field(default_factory=list)
    items_complete: bool = True
    n_rows: int | None = None  # event rows, when known without reading them (Parquet metadata); for progress

    def iter_events(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pl.DataFrame]:
        if self.event_chunks is not None:
            yield from self.event_chunks(chunk_rows)
            return
        ev = self.events if self.events is not None else pl.DataFrame()
        if ROW not in ev.columns:
            ev = with_row_numbers(ev)
        for start in range(0, max(ev.height, 1), chunk_rows):
            yield ev.slice(start, chunk_rows)


def with_row_numbers(df: pl.DataFrame, offset: int = 1) -> pl.DataFrame:
    """Add the 1-based ``_row`` column the cleaning report refers to."""
    return df.with_row_index(ROW, offset=offset).with_columns(pl.col(ROW).cast(pl.Int64))


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
    events = pl.concat(kept) if kept else clean_rows(pl.DataFrame(), cfg, report)
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
