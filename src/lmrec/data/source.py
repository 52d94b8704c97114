"""A source of events, items and users with lmrec's column names: what every loader yields (see
:mod:`lmrec.data.loaders`). Its own module, outside the loaders package, so that data generators
(:mod:`lmrec.data.synthetic_ecommerce`) can build one without importing every loader.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from lmrec.data.cleaning import ROW
from lmrec.privacy import pseudonymiser

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
    #: Whether the events carry a given split (a ``split`` column: train / valid / test), which the ``given``
    #: protocol (:func:`lmrec.data.splits.given`) evaluates on.
    has_split: bool = False

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


def pseudonymised(source: Source) -> Source:
    """``source`` with every user id replaced by its pseudonym when pseudonyms are on
    (:func:`lmrec.privacy.pseudonymiser`), unchanged otherwise: what a loader hands on never holds a raw
    id."""
    p = pseudonymiser()
    if p is None:
        return source
    chunks = source.event_chunks

    def keyed_chunks(chunk_rows: int) -> Iterator[pl.DataFrame]:
        for chunk in chunks(chunk_rows):
            yield p.frame(chunk)

    return replace(source, events=p.frame(source.events), users=p.frame(source.users),
                   event_chunks=keyed_chunks if chunks is not None else None)
