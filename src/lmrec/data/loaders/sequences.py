"""Research sequence formats: the plain-text files sequential-recommendation papers publish.

* **sequence** layout (S3-Rec, ICLRec, DuoRec): one line per user, ``user item item item ...``, items oldest
  first.
* **pairs** layout (SASRec, BERT4Rec): one ``user item`` pair per line, each user's lines in time order.
* **item text** (optional): ``item_id<TAB>text`` per line, giving each item its title (the text a language
  model reads).

These files hold no times. Each interaction gets a synthetic timestamp: its position in the file (1, 2, 3...),
which keeps every user's order, so leave-one-out splits are exact; a *temporal* split on such data is
meaningless and the source's notes say so. The files are read ``chunk_rows`` events at a time, never whole,
unless read with the protocol they were published with (``split="leave-one-out"``: the events then carry
their part for ``--protocol given``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from lmrec.data.cleaning import DataError
from lmrec.data.loaders._io import PARSE_ROWS, base_suffix, first_line, iter_line_chunks, open_text, regroup
from lmrec.data.loaders.base import Source
from lmrec.data.loaders.generic import _stem
from lmrec.data.loaders.given import mark_last_two, stated_split
from lmrec.data.loaders.items import read_item_text, read_items
from lmrec.data.loaders.registry import register_detector, register_format

_ID = re.compile(r"^[\w\-.:/@#+]+$")
_SUFFIXES = (".txt", ".seq", ".inter_seq", ".dat", "")
_LAYOUTS = ("auto", "sequence", "pairs")
_SCHEMA = {"_row": pl.Int64, "user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64}


def _split(line: str, separator: str | None) -> list[str]:
    return [t for t in (line.split(separator) if separator else line.split()) if t]


def detect_layout(path: Path, separator: str | None = None, probe_lines: int = 1000) -> str:
    """``"sequence"`` when some line among the first ``probe_lines`` has more than two fields, else
    ``"pairs"``."""
    with open_text(path) as f:
        for i, line in enumerate(f):
            if i >= probe_lines:
                break
            if len(_split(line, separator)) > 2:
                return "sequence"
    return "pairs"


def load_sequences(path: str | Path, *, layout: str = "auto", items: str | Path | None = None,
                   separator: str | None = None, event_type: str = "view", split: str = "none",
                   name: str | None = None) -> Source:
    """A sequence or pairs file (and optional item-text file) as a streaming :class:`Source`.

    Parameters
    ----------
    path:
        The interactions file (plain or gzip-compressed).
    layout:
        ``"sequence"`` (``user item item ...``), ``"pairs"`` (``user item``) or ``"auto"`` (look at the first
        lines).
    items:
        An ``item_id<TAB>text`` file (the text becomes the item's title), or any item file
        :func:`~lmrec.data.loaders.items.read_items` reads.
    separator:
        Field separator; any run of whitespace by default.
    event_type:
        The type of every interaction (these formats do not say; ``view`` by default).
    split:
        The protocol the file was published with, which the events then carry (``--protocol given``):
        ``"none"`` (default) or ``"leave-one-out"`` (S3-Rec's and SASRec's: each user's last item is test, the
        one before validation, the rest training; users with fewer than 3 items are all training). The file is
        then read whole, since a user's last item is known only at the end.
    name:
        The dataset's name (the file's stem by default, e.g. ``Beauty``).
    """
    split = stated_split(split)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    if layout == "auto":
        layout = detect_layout(path, separator)

    def pieces(piece_rows: int) -> Iterator[tuple[int, pl.DataFrame]]:
        # One line may hold a long sequence: lines are read in small groups and their events cut into frames
        # of piece_rows, which chunks() assembles into chunks (so Python lists stay small).
        position = 0
        buf: dict[str, list] = {k: [] for k in _SCHEMA}
        for start, lines in iter_line_chunks(path, max(1, min(piece_rows, 10_000))):
            for offset, line in enumerate(lines):
                fields = _split(line, separator)
                if not fields:
                    continue
                row = start + offset
                if layout == "pairs" and len(fields) != 2:
                    raise DataError("malformed line", source=str(path), row=row,
                                    expected="'user item' (two fields)", got=line[:200])
                if len(fields) < 2:
                    raise DataError(
                        "malformed line",
                        source=str(path),
                        row=row,
                        expected="'user item item ...' (a user and at least one item)",
                        got=line[:200],
                    )
                user = fields[0]
                for item in fields[1:]:
                    position += 1
                    buf["_row"].append(row)
                    buf["user_id"].append(user)
                    buf["item_id"].append(item)
                    buf["timestamp"].append(position)
                if len(buf["_row"]) >= piece_rows:
                    yield from ((0, df) for df in _emit(buf, piece_rows))
        if buf["_row"]:
            yield 0, pl.DataFrame(buf, schema=_SCHEMA)

    marked: list[pl.DataFrame] = []

    def chunks(chunk_rows: int) -> Iterator[pl.DataFrame]:
        if split == "leave-one-out":
            if not marked:
                frames = [df for _, df in pieces(PARSE_ROWS)]
                marked.append(mark_last_two(pl.concat(frames) if frames else pl.DataFrame(schema=_SCHEMA)))
            for offset in range(0, max(marked[0].height, 1), chunk_rows):
                yield marked[0].slice(offset, chunk_rows)
            return
        # Row numbers travel in the _row column (a line's number), so regroup's own numbering is not used.
        for _, df in regroup(pieces(min(chunk_rows, PARSE_ROWS)), chunk_rows):
            yield df

    item_table, complete = read_items(items) if items is not None else (None, False)
    # An item-text file names items, it does not bound the catalogue: an item without text keeps its events.
    source = Source(name or _stem(path), event_chunks=chunks, items=item_table, default_event_type=event_type,
                    origin=str(path), items_complete=complete, has_split=split != "none")
    source.notes.append(f"{layout} layout; timestamps are positions in the file (order only, not real times: "
                        "use leave-one-out, not a temporal split)")
    if split != "none":
        source.notes.append("the stated leave-one-out split (each user's last item test, the one before "
                            "valid): use --protocol given to evaluate on it")
    return source


def _emit(buf: dict[str, list], chunk_rows: int) -> Iterator[pl.DataFrame]:
    """Yield full chunks from the buffer, leaving the remainder in it."""
    while len(buf["_row"]) >= chunk_rows:
        yield pl.DataFrame({k: v[:chunk_rows] for k, v in buf.items()}, schema=_SCHEMA)
        for v in buf.values():
            del v[:chunk_rows]


def load_item_text(path: str | Path, name: str | None = None) -> Source:
    """An item file alone (``item_id<TAB>text`` lines or any kind :func:`read_items` reads), as a source with
    items and no events (to add titles to a store)."""
    path = Path(path).expanduser()
    items, complete = read_items(path)
    return Source(name or _stem(path), events=pl.DataFrame(), items=items, origin=str(path),
                  items_complete=complete)


def _detect(path: Path) -> bool:
    """A text file whose first line is two or more id-like fields (and no header or tab-separated text)."""
    if not path.is_file() or base_suffix(path) not in _SUFFIXES:
        return False
    line = first_line(path)
    fields = line.split()
    return len(fields) >= 2 and all(_ID.match(f) for f in fields) and not any(":" in f for f in fields[:2])


register_format("sequences", load_sequences)
register_format("item-text", load_item_text)
register_detector("sequences", _detect)

__all__ = ["detect_layout", "load_item_text", "load_sequences", "read_item_text"]
