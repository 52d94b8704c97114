"""Streaming readers shared by the loaders: text that may be gzip-compressed, JSON lines, separated tables and
Parquet, always read a bounded number of rows at a time.

Nothing here reads a whole file: every reader yields chunks of at most ``chunk_rows`` rows together with the
1-based data row number of the chunk's first row, which the loaders turn into the ``_row`` column used in
error messages.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import polars as pl
import pyarrow as pa

from lmrec.data.cleaning import ROW, DataError

_GZIP_MAGIC = b"\x1f\x8b"

#: Bytes pyarrow's CSV reader parses at once; rows are then regrouped into chunks of the requested size.
CSV_BLOCK_BYTES = 8 << 20


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes (whatever its name says)."""
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def open_text(path: Path, encoding: str = "utf-8") -> TextIO:
    """Open a text file for reading, decompressing gzip transparently; undecodable bytes become U+FFFD."""
    if is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, errors="replace")
    return open(path, encoding=encoding, errors="replace")  # noqa: SIM115 - the caller closes it


def base_suffix(path: Path) -> str:
    """The extension that names the format, ignoring a trailing ``.gz`` (``reviews.jsonl.gz`` →
    ``.jsonl``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def first_line(path: Path, limit: int = 1 << 16) -> str:
    """The first non-empty line of a (possibly compressed) text file, or ``""``; reads at most ``limit``
    chars."""
    try:
        with open_text(path) as f:
            while True:
                line = f.readline(limit)
                if not line:
                    return ""
                if line.strip():
                    return line.strip()
    except (OSError, EOFError, UnicodeError):
        return ""


def iter_line_chunks(path: Path, chunk_rows: int, *, skip: int = 0) -> Iterator[tuple[int, list[str]]]:
    """Lines of a text file (newline stripped) in chunks; yields ``(row number of the first line, lines)``.

    ``skip`` lines (a header) are read and not yielded; row numbers count from the first line after them.
    """
    _check_chunk_rows(chunk_rows)
    with open_text(path) as f:
        for _ in range(skip):
            f.readline()
        start, buf = 1, []
        for line in f:
            buf.append(line.rstrip("\r\n"))
            if len(buf) >= chunk_rows:
                yield start, buf
                start, buf = start + len(buf), []
        if buf:
            yield start, buf


def parse_json_line(line: str) -> dict[str, Any] | None:
    """One JSON object, or a Python-literal dict (the 2014 Amazon metadata dumps); ``None`` when neither."""
    text = line.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        if not text.startswith("{"):
            return None
        try:
            obj = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return obj if isinstance(obj, dict) else None


class BadLines:
    """Counts lines a reader could not parse, for the cleaning report's notes."""

    def __init__(self, path: Path, what: str = "JSON object") -> None:
        self.path, self.what = path, what
        self.count = 0
        self.first: int | None = None

    def add(self, row: int) -> None:
        self.count += 1
        if self.first is None:
            self.first = row

    def note(self) -> str | None:
        if not self.count:
            return None
        return (f"{self.path}: {self.count:,} line(s) were not a {self.what} and were read as empty rows "
                f"(first at row {self.first})")


def iter_json_chunks(path: Path, chunk_rows: int,
                     bad: BadLines | None = None) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """JSON-lines records in chunks. An unparseable line becomes ``{}`` (so the row still exists, fails
    cleaning with its row number, and is counted) and is recorded in ``bad``; blank lines are skipped but
    counted as rows."""
    for start, lines in iter_line_chunks(path, chunk_rows):
        records: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            if not line.strip():
                records.append({})
                continue
            obj = parse_json_line(line)
            if obj is None:
                if bad is not None:
                    bad.add(start + i)
                obj = {}
            records.append(obj)
        yield start, records


#: Lines parsed into Python objects at once; larger chunks are assembled from compact frames of this size,
#: so a chunk of a million JSON records never exists as a million Python dicts.
PARSE_ROWS = 50_000


def regroup(frames: Iterable[tuple[int, pl.DataFrame]],
            chunk_rows: int) -> Iterator[tuple[int, pl.DataFrame]]:
    """Regroup consecutive ``(first row, frame)`` pieces into frames of exactly ``chunk_rows`` rows (the last
    one may be shorter), keeping the first row number of each."""
    _check_chunk_rows(chunk_rows)
    pending: list[pl.DataFrame] = []
    n, start = 0, 1
    for first, df in frames:
        if not pending:
            start = first
        if df.height == 0:
            continue
        pending.append(df)
        n += df.height
        while n >= chunk_rows:
            whole = pl.concat(pending, how="diagonal_relaxed") if len(pending) > 1 else pending[0]
            yield start, whole.slice(0, chunk_rows)
            rest = whole.slice(chunk_rows)
            pending, n, start = ([rest] if rest.height else []), rest.height, start + chunk_rows
    if n:
        yield start, pl.concat(pending, how="diagonal_relaxed") if len(pending) > 1 else pending[0]


def _check_chunk_rows(chunk_rows: int) -> None:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")


def rebatch(batches: Iterable[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.Table]:
    """Regroup record batches of any size into tables of exactly ``chunk_rows`` rows (the last one may be
    shorter).

    Slices are zero-copy, so at most about two chunks are alive at once.
    """
    _check_chunk_rows(chunk_rows)
    pending: list[pa.RecordBatch] = []
    n = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        n += batch.num_rows
        while n >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, n = rest.to_batches(), rest.num_rows
    if n:
        yield pa.Table.from_batches(pending)


#: Where a table's bytes come from: a path (plain or gzip) or a function opening a binary stream
#: (a zip member).
ByteSource = Path | Callable[[], BinaryIO]


def open_binary(source: ByteSource) -> BinaryIO:
    """A binary stream of the (decompressed) bytes of ``source``."""
    if callable(source):
        return source()
    return gzip.open(source, "rb") if is_gzip(source) else open(source, "rb")  # noqa: SIM115


def csv_columns(source: ByteSource, separator: str, label: str | None = None) -> list[str]:
    """The header of a CSV/TSV file (gzip allowed), read without touching the rest of the file."""
    import csv

    with io.TextIOWrapper(open_binary(source), encoding="utf-8-sig", errors="replace") as f:
        header = f.readline()
    if not header.strip():
        raise DataError("empty file", source=label or str(source),
                        expected="a header line naming the columns")
    names = next(csv.reader([header], delimiter=separator))
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError("a column is named twice in the header", source=label or str(source), row=0,
                            field=name, expected="each column name once")
        seen.add(name)
    return names


def _first_bad_utf8(source: ByteSource, separator: str, names: list[str]) -> tuple[int, str] | None:
    """(data row, column) of the first field that is not UTF-8 text, scanning the raw lines."""
    with open_binary(source) as f:
        for line_no, raw in enumerate(f):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                fields = raw.split(separator.encode())
                for col, value in enumerate(fields):
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        return line_no, names[col] if col < len(names) else f"column {col + 1}"
                return line_no, names[0] if names else ""
    return None


def csv_batches(source: ByteSource, separator: str, columns: list[str] | None = None,
                quote_char: str | bool = '"', label: str | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of a CSV/TSV file (gzip allowed) or stream, all columns as text, a block at a time.

    Text keeps ids exactly as written and lets cleaning report a non-number in a numeric column row by row,
    instead of the reader failing half-way through when a later block does not match the types guessed from
    the first.
    """
    import pyarrow.csv as pacsv

    label = label or str(source)
    names = csv_columns(source, separator, label)
    parse = pacsv.ParseOptions(delimiter=separator, quote_char=quote_char, newlines_in_values=False)
    read = pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    wanted = names if columns is None else [c for c in names if c in set(columns)]
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in names}, include_columns=wanted,
                                   strings_can_be_null=True, quoted_strings_can_be_null=False)
    stream = open_binary(source)
    try:
        with pacsv.open_csv(stream, read_options=read, parse_options=parse,
                            convert_options=convert) as reader:
            yield from reader
    except pa.ArrowInvalid as exc:
        if "utf8" in str(exc).lower() or "utf-8" in str(exc).lower():
            where = _first_bad_utf8(source, separator, names)
            raise DataError("text that is not UTF-8", source=label, row=where[0] if where else None,
                            field=where[1] if where else None,
                            expected="UTF-8 text (convert the file, e.g. iconv -f latin1 -t utf-8)") from None
        raise DataError(f"malformed table ({exc})", source=label,
                        expected="the same number of fields on every line") from None
    finally:
        stream.close()


def parquet_batches(
    path: Path, chunk_rows: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Record batches of a Parquet file, ``chunk_rows`` at a time, only the listed columns."""
    import pyarrow.parquet as pq

    _check_chunk_rows(chunk_rows)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a Parquet file ({exc})", source=str(path), expected="a Parquet file") from None
    with pf:
        cols = None if columns is None else [c for c in pf.schema_arrow.names if c in set(columns)]
        yield from pf.iter_batches(batch_size=chunk_rows, columns=cols)


def parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a Parquet file ({exc})", source=str(path), expected="a Parquet file") from None


def parquet_rows(path: Path) -> int:
    """The number of rows of a Parquet file, from its footer (nothing else is read)."""
    import pyarrow.parquet as pq

    try:
        return int(pq.read_metadata(path).num_rows)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a Parquet file ({exc})", source=str(path), expected="a Parquet file") from None


def number_rows(df: pl.DataFrame, start: int) -> pl.DataFrame:
    """Prepend the ``_row`` column (``start``, ``start + 1``, ...)."""
    return df.with_row_index(ROW, offset=start).with_columns(pl.col(ROW).cast(pl.Int64))
