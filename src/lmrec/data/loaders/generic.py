"""Generic event tables: CSV, TSV, Parquet or JSON lines, with a column mapping, streamed in chunks.

The events file needs a user, an item and a time column; it may have an event type, a value (rating,
amount...), an event id and, for impressions and the clicks on them, a list id and a position. Columns
already named as lmrec names them (``user_id``, ``item_id``, ``timestamp``, ``event_type``, ``value``,
``event_id``, ``list_id``, ``position``) or with a common spelling (``userId``, ``visitorid``,
``itemid``, ``rating``...) are found without help; others are named by a mapping, from the command line
(``-m user_id=customer -m item_id=sku``) or from a config file::

    # loader.toml  →  lmrec data import clicks.csv --config loader.toml
    [loader]
    items = "products.csv"          # optional; relative to the config file
    default_event_type = "purchase" # when the file has no event type column
    [loader.mapping]
    user_id = "customer"
    item_id = "sku"
    timestamp = "ordered_at"
    [loader.item_mapping]
    title = "name"
    categories = "department"

A folder holding ``events.<ext>`` (and optionally ``items.<ext>``, ``users.<ext>``), such as the output of
``Dataset.save`` or ``Store.export_parquet``, is read the same way.

Events are never read whole: Parquet is read ``chunk_rows`` rows at a time, CSV/TSV in blocks of a few
megabytes regrouped into chunks, JSON lines line by line. Item and user tables are read whole (they are
catalogues).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from lmrec.data.cleaning import DataError
from lmrec.data.loaders._io import (
    PARSE_ROWS,
    BadLines,
    base_suffix,
    csv_batches,
    csv_columns,
    iter_json_chunks,
    number_rows,
    parquet_batches,
    parquet_columns,
    parquet_rows,
    rebatch,
    regroup,
)
from lmrec.data.loaders.base import Source, attributes_json
from lmrec.data.loaders.registry import register_detector, register_format

#: Table kinds by file extension (a trailing ``.gz`` is ignored).
KINDS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}

#: Spellings of lmrec's event columns found in public logs, tried in order when no mapping names the column.
EVENT_ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "userId", "userid", "user", "visitorid", "visitor_id", "customer_id", "UserId"),
    "item_id": ("item_id", "itemId", "itemid", "item", "product_id", "productId", "movieId", "sku", "ItemId"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "event_time", "date", "Timestamp"),
    "event_type": ("event_type", "event", "action", "behavior", "behaviour", "interaction"),
    "value": ("value", "rating", "score"),
    "event_id": ("event_id", "eventId"),
    "split": ("split",),  # a given split: train / valid / test per event (protocol ``given``)
    # the list an impression (or a click from it) belongs to, and its place there (0 = first shown)
    "list_id": ("list_id", "listId", "impression_id"),
    "position": ("position",),
}
ITEM_FIELDS = ("item_id", "title", "description", "categories")
USER_FIELDS = ("user_id", "profile")
ITEM_ALIASES: dict[str, tuple[str, ...]] = {
    "item_id": EVENT_ALIASES["item_id"],
    "title": ("title", "name", "product_name"),
    "description": ("description", "desc", "text"),
    "categories": ("categories", "category", "genres", "tags"),
}
USER_ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": EVENT_ALIASES["user_id"],
    "profile": ("profile", "bio"),
}
REQUIRED_EVENT_FIELDS = ("user_id", "item_id", "timestamp")


def table_kind(path: Path, kind: str | None = None) -> str:
    """``csv``, ``tsv``, ``parquet`` or ``jsonl``: the given kind, or the one the extension names."""
    if kind is not None:
        if kind not in ("csv", "tsv", "parquet", "jsonl"):
            raise ValueError(f"unknown table kind {kind!r}; choose csv, tsv, parquet or jsonl")
        return kind
    try:
        return KINDS[base_suffix(path)]
    except KeyError:
        raise ValueError(f"{path}: cannot tell the table kind from the extension; pass --format csv, tsv, "
                         "parquet or jsonl") from None


def resolve_columns(
    available: list[str],
    mapping: Mapping[str, str] | None,
    aliases: Mapping[str, tuple[str, ...]],
    required: tuple[str, ...],
    path: Path,
) -> dict[str, str]:
    """lmrec name → source column: the mapping first, then the first alias present. Raises :class:`DataError`
    for a mapped column the file lacks or a required field nobody supplies."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(aliases))
    if unknown:
        raise ValueError(f"mapping names unknown field(s) {unknown}; lmrec fields are {sorted(aliases)}")
    out: dict[str, str] = {}
    for name, col in mapping.items():
        if col not in available:
            raise DataError("mapped column not found", source=str(path), field=name,
                            expected=f"a column named {col!r} (the file has {available})")
        out[name] = col
    used = set(out.values())
    for name, candidates in aliases.items():
        if name in out:
            continue
        for cand in candidates:
            if cand in available and cand not in used:
                out[name] = cand
                used.add(cand)
                break
    missing = [n for n in required if n not in out]
    if missing:
        hint = " ".join(f"-m {n}=COLUMN" for n in missing)
        raise DataError("missing column", source=str(path), field=missing[0],
                        expected=f"a column for {missing} (the file has {available}); name it with {hint}")
    return out


def _columns(path: Path, kind: str, separator: str | None) -> list[str]:
    if kind == "parquet":
        return parquet_columns(path)
    if kind in ("csv", "tsv"):
        return csv_columns(path, separator or ("," if kind == "csv" else "\t"))
    # JSON lines: the keys of the first object (later objects may add keys, which are ignored).
    for _, records in iter_json_chunks(path, 1):
        for rec in records:
            if rec:
                return list(rec)
    raise DataError("empty file", source=str(path), expected="at least one JSON object per line")


def iter_table(
    path: Path,
    kind: str,
    chunk_rows: int,
    columns: list[str] | None = None,
    separator: str | None = None,
    bad: BadLines | None = None,
) -> Iterator[tuple[int, pl.DataFrame]]:
    """Chunks of a table file as ``(row number of the first row, DataFrame)``; never the whole file at
    once."""
    if kind == "jsonl":

        def pieces() -> Iterator[tuple[int, pl.DataFrame]]:
            for start, records in iter_json_chunks(path, min(chunk_rows, PARSE_ROWS), bad):
                cols = columns or sorted({k for r in records for k in r})
                data = {c: [_json_cell(r.get(c)) for r in records] for c in cols}
                yield start, pl.DataFrame(data, schema=dict.fromkeys(cols, pl.String))

        yield from regroup(pieces(), chunk_rows)
        return
    if kind == "parquet":
        batches = parquet_batches(path, chunk_rows, columns)
    else:
        batches = csv_batches(path, separator or ("," if kind == "csv" else "\t"), columns)
    start = 1
    for table in rebatch(batches, chunk_rows):
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        yield start, df
        start += table.num_rows


def _json_cell(v: Any) -> str | None:
    """JSON values as text (cleaning parses numbers and timestamps): lists and objects as JSON."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v, ensure_ascii=False)


def read_table(path: Path, kind: str | None = None, separator: str | None = None) -> pl.DataFrame:
    """A whole (small) table file: an item or user catalogue."""
    kind = table_kind(path, kind)
    if kind == "parquet":
        return pl.read_parquet(path)
    if kind == "jsonl":
        frames = [df for _, df in iter_table(path, kind, 100_000)]
        return pl.concat(frames, how="diagonal") if frames else pl.DataFrame()
    batches = list(csv_batches(path, separator or ("," if kind == "csv" else "\t")))
    if not batches:
        return pl.DataFrame(schema=dict.fromkeys(csv_columns(path, separator or ","), pl.String))
    df = pl.from_arrow(pa.Table.from_batches(batches))
    assert isinstance(df, pl.DataFrame)
    return df


def _catalogue(
    path: Path,
    mapping: Mapping[str, str] | None,
    aliases: Mapping[str, tuple[str, ...]],
    fields: tuple[str, ...],
    key: str,
    separator: str | None,
    category_separator: str,
    kind: str | None = None,
) -> pl.DataFrame:
    """An item or user table in lmrec's columns; every other column goes into the ``attributes`` JSON."""
    raw = read_table(path, kind, separator)
    cols = resolve_columns(raw.columns, mapping, aliases, (key,), path)
    out = raw.select([pl.col(src).alias(dst) for dst, src in cols.items() if dst in fields])
    out = out.with_columns(pl.col(key).cast(pl.String).str.strip_chars())
    for text in ("title", "description", "profile"):
        if text in out.columns and out.schema[text] != pl.String:
            out = out.with_columns(pl.col(text).cast(pl.String))
    if "categories" in out.columns:
        out = out.with_columns(_categories(out["categories"], category_separator).alias("categories"))
    rest = [c for c in raw.columns if c not in set(cols.values()) and c != "attributes"]
    if "attributes" in raw.columns:  # lmrec's own layout (an export): merge, do not nest, its JSON object
        out = out.with_columns(_merge_attributes(raw["attributes"], raw.select(rest)))
    elif rest:
        out = out.with_columns(attributes_json(raw, rest))
    bad = out[key].is_null() | (out[key].str.len_chars() == 0)
    if bad.any():
        row = int(bad.arg_true()[0]) + 1
        raise DataError("missing id", source=str(path), row=row, field=cols[key], expected="a non-empty id")
    return out


def read_item_table(path: Path, mapping: Mapping[str, str] | None = None, *, kind: str | None = None,
                    separator: str | None = None, category_separator: str = "|") -> pl.DataFrame:
    """An item table (CSV/TSV/Parquet/JSON lines, with a header) in lmrec's columns: ``item_id``, ``title``,
    ``description``, ``categories`` found by their common names or named by ``mapping``; other columns become
    the ``attributes`` JSON."""
    return _catalogue(path, mapping, ITEM_ALIASES, ITEM_FIELDS, "item_id", separator, category_separator,
                      kind)


def _merge_attributes(existing: pl.Series, extra: pl.DataFrame) -> pl.Series:
    """An ``attributes`` column already holding JSON objects, with the other free columns added to each."""
    merged: list[str | None] = []
    extras = extra.to_dicts() if extra.width else [{}] * len(existing)
    for text, more in zip(existing.cast(pl.String).to_list(), extras, strict=True):
        try:
            obj = json.loads(text) if text else {}
        except json.JSONDecodeError:
            obj = {"attributes": text}
        if not isinstance(obj, dict):
            obj = {"attributes": obj}
        obj.update({k: v for k, v in more.items() if v is not None})
        merged.append(json.dumps(obj, ensure_ascii=False, default=str) if obj else None)
    return pl.Series("attributes", merged, dtype=pl.String)


def _categories(col: pl.Series, separator: str) -> pl.Series:
    """A list of category names from a list column, a JSON list in text, or text split on ``separator``."""
    if isinstance(col.dtype, pl.List):
        return col.cast(pl.List(pl.String))

    def parse(v: str | None) -> list[str]:
        if v is None:
            return []
        s = v.strip()
        if s.startswith("["):
            try:
                parsed = json.loads(s)
                if isinstance(parsed, list):
                    return [str(x).strip() for x in parsed if str(x).strip()]
            except json.JSONDecodeError:
                pass
        return [p.strip() for p in s.split(separator) if p.strip()]

    return pl.Series("categories", [parse(v) for v in col.cast(pl.String).to_list()],
                     dtype=pl.List(pl.String))


def load_table(
    path: str | Path,
    mapping: Mapping[str, str] | None = None,
    *,
    kind: str | None = None,
    separator: str | None = None,
    items: str | Path | None = None,
    users: str | Path | None = None,
    item_mapping: Mapping[str, str] | None = None,
    user_mapping: Mapping[str, str] | None = None,
    default_event_type: str = "view",
    category_separator: str = "|",
    name: str | None = None,
) -> Source:
    """A generic events table (and optional item and user tables) as a streaming :class:`Source`.

    Parameters
    ----------
    path:
        The events file (``.csv``, ``.tsv``, ``.parquet``, ``.jsonl``; ``.gz`` for the text ones), or a folder
        holding ``events.<ext>`` and optionally ``items.<ext>`` and ``users.<ext>``.
    mapping:
        lmrec field → column name for events (``{"user_id": "customer"}``); unnamed fields are looked up among
        common spellings (:data:`EVENT_ALIASES`).
    kind:
        ``csv``, ``tsv``, ``parquet`` or ``jsonl``; from the extension when omitted.
    separator:
        Field separator of a text table (``,`` for csv, tab for tsv by default).
    items, users:
        Optional catalogue files; ``item_mapping`` / ``user_mapping`` name their columns (``title``,
        ``description``, ``categories`` / ``profile``); other columns become JSON ``attributes``.
    default_event_type:
        The event type of every row when the file has no event type column.
    category_separator:
        Separator inside a text ``categories`` cell (``"Books|Fiction"``); JSON lists are also accepted.
    name:
        The dataset's name (the file's stem by default).

    Returns
    -------
    Source
        Events stream in chunks (``Source.iter_events(chunk_rows)``), each with a 1-based ``_row``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path, found_items, found_users = _folder_files(path)
        items = items if items is not None else found_items
        users = users if users is not None else found_users
        name = name or path.parent.name
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    kind = table_kind(path, kind)
    columns = resolve_columns(
        _columns(path, kind, separator), mapping, EVENT_ALIASES, REQUIRED_EVENT_FIELDS, path
    )
    bad = BadLines(path)

    def chunks(chunk_rows: int) -> Iterator[pl.DataFrame]:
        for start, df in iter_table(path, kind, chunk_rows, list(columns.values()), separator, bad):
            present = {dst: src for dst, src in columns.items() if src in df.columns}
            out = df.select([pl.col(src).alias(dst) for dst, src in present.items()])
            if "user_id" not in out.columns and out.height:  # a JSON chunk without the key at all
                out = out.with_columns(pl.lit(None, dtype=pl.String).alias("user_id"))
            yield number_rows(out, start)
        if (note := bad.note()) is not None and note not in source.notes:
            source.notes.append(note)

    item_table = (_catalogue(Path(items), item_mapping, ITEM_ALIASES, ITEM_FIELDS, "item_id", None,
                             category_separator) if items is not None else None)
    user_table = (_catalogue(Path(users), user_mapping, USER_ALIASES, USER_FIELDS, "user_id", None,
                             category_separator) if users is not None else None)
    source = Source(name or _stem(path), event_chunks=chunks, items=item_table, users=user_table,
                    default_event_type=default_event_type, origin=str(path),
                    n_rows=parquet_rows(path) if kind == "parquet" else None, has_split="split" in columns)
    mapped = ", ".join(f"{dst}←{src}" for dst, src in columns.items() if dst != src)
    if mapped:
        source.notes.append(f"columns: {mapped}")
    return source


def _stem(path: Path) -> str:
    name = path.name
    for suffix in reversed(path.suffixes):
        name = name.removesuffix(suffix)
    return name or path.name


def _table_file(folder: Path, stem: str) -> Path | None:
    for ext in KINDS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _folder_files(folder: Path) -> tuple[Path, Path | None, Path | None]:
    events = _table_file(folder, "events")
    if events is None:
        raise FileNotFoundError(
            f"{folder}: expected an events file (events.parquet, events.csv, ...) in the folder"
        )
    return events, _table_file(folder, "items"), _table_file(folder, "users")


def _is_table(path: Path) -> bool:
    if path.is_dir():
        return _table_file(path, "events") is not None
    return base_suffix(path) in KINDS


register_format("generic", load_table)
for _kind in ("csv", "tsv", "parquet", "jsonl"):
    register_format(_kind, partial(load_table, kind=_kind))
# Last resort: any other format recognising a file first wins (Amazon JSON lines, RecBole files...).
register_detector("generic", _is_table, fallback=True)

__all__ = ["EVENT_ALIASES", "KINDS", "load_table", "read_item_table", "read_table", "resolve_columns",
           "table_kind"]
