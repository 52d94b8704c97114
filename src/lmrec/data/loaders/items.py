"""Item text from any file, for any format: ``--items FILE``.

:func:`read_items` reads an item file whatever its kind, by looking at it:

* a typed RecBole header (``item_id:token  title:token_seq ...``): a RecBole ``.item`` or ``.text`` file;
* ``.csv``, ``.tsv``, ``.parquet``, ``.jsonl`` / ``.json`` (``.gz`` allowed): a table with a header, columns
  found by their common names (``item_id``/``asin``/``sku``..., ``title``/``name``, ``description``/``text``,
  ``categories``) or named by ``item_mapping``;
* anything else: ``item_id<TAB>text`` lines (the S3-Rec/UniSRec item-text files), with or without a header
  line (``item_id<TAB>text``, ``item_id:token<TAB>text:token_seq``), which is never read as an item.

When the file names items by another id than the events (text keyed by ASIN, events by index), an id mapping
file (``item2index``: ``original_id<TAB>other_id`` per line) translates it: given with ``item_map``, or found
beside the item file (``*item2index*``) when the item file's ids do not match the events'. The direction is
the one that matches the most event ids. :func:`attach_items` does all this for
:func:`lmrec.data.loaders.open_source`, so every format takes ``items`` and ``item_map``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from lmrec.data.cleaning import DataError
from lmrec.data.loaders._io import base_suffix, first_line, iter_line_chunks, open_text
from lmrec.data.loaders.base import Source
from lmrec.data.loaders.generic import KINDS, read_item_table
from lmrec.data.loaders.recbole import FIELD_TYPES, read_item_file

#: First fields of a header line in an item text file (compared lower-case, without a ``:type`` suffix).
ID_HEADERS = frozenset({"item_id", "item", "itemid", "id", "iid", "item_idx", "item_index", "asin",
                        "parent_asin", "movieid", "movie_id", "product_id", "productid", "sku"})
#: Events read to tell which ids an item file and an id mapping use.
SAMPLE_ROWS = 200_000
#: Below this share of the events' item ids found in the item file, a mapping file is looked for.
MATCH_SHARE = 0.5


def _plain(field: str) -> str:
    name, sep, ftype = field.strip().rpartition(":")
    return (name if sep and ftype in FIELD_TYPES else field.strip()).lower()


def _is_recbole_header(line: str) -> bool:
    fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
    return bool(fields) and all(f.rpartition(":")[1] and f.rpartition(":")[2] in FIELD_TYPES
                                and f.rpartition(":")[0] for f in fields)


def read_item_text(path: Path) -> pl.DataFrame:
    """``item_id<TAB>text`` lines as items with a title. A first line whose first field is an id's name
    (``item_id``, ``item_id:token``, ``asin``...) is a header, not an item."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such item text file")
    ids: list[str] = []
    titles: list[str | None] = []
    for start, lines in iter_line_chunks(path, 100_000):
        for offset, line in enumerate(lines):
            if not line.strip():
                continue
            item, sep, text = line.partition("\t")
            row = start + offset
            if not ids and _plain(item) in ID_HEADERS:
                continue  # the header line
            if not sep:
                raise DataError("malformed line", source=str(path), row=row,
                                expected="item_id<TAB>text", got=line[:200])
            ids.append(item.strip())
            titles.append(text.strip() or None)
    return pl.DataFrame(
        {"item_id": ids, "title": titles}, schema={"item_id": pl.String, "title": pl.String}
    ).unique("item_id", keep="last", maintain_order=True)


def _header_fields(path: Path) -> list[str]:
    with open_text(path) as f:
        for line in f:
            if line.strip():
                return line.rstrip("\r\n").split("\t")
    return []


def read_items(path: str | Path, *, mapping: Mapping[str, str] | None = None,
               category_separator: str = "|") -> tuple[pl.DataFrame, bool]:
    """An item file of any kind (see the module) as lmrec's items table; also whether it is a whole
    catalogue (a table or a RecBole ``.item`` file: events on other items are dropped as ``unknown_item``) or
    only text for some items (a ``.text`` or ``item_id<TAB>text`` file: no event is lost for a missing
    title)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such item file")
    suffix = base_suffix(path)
    kind = KINDS.get(suffix)
    if kind in ("parquet", "jsonl"):
        return read_item_table(path, mapping, kind=kind, category_separator=category_separator), True
    head = first_line(path)
    if _is_recbole_header(head):
        return read_item_file(path, mapping), suffix == ".item"  # a .text file is text for some items
    if kind in ("csv", "tsv"):
        return read_item_table(path, mapping, kind=kind, category_separator=category_separator), True
    fields = _header_fields(path)
    if len(fields) > 2 and _plain(fields[0]) in ID_HEADERS:
        # A tab-separated table with a header (item_id, title, description...).
        return read_item_table(path, mapping, kind="tsv", category_separator=category_separator), True
    if mapping:
        raise ValueError(f"{path}: an item_id<TAB>text file has no columns to map (item_mapping given)")
    return read_item_text(path), False


def read_id_map(path: str | Path) -> pl.DataFrame:
    """An id mapping file (``item2index``: ``id<TAB>other id`` per line; tabs, spaces or commas) as columns
    ``a`` and ``b``; a header line (``item_id<TAB>index``) is skipped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such id mapping file")
    a: list[str] = []
    b: list[str] = []
    for start, lines in iter_line_chunks(path, 100_000):
        for offset, line in enumerate(lines):
            if not line.strip():
                continue
            sep = "\t" if "\t" in line else ("," if "," in line else None)
            fields = [f.strip() for f in (line.split(sep) if sep else line.split())]
            if not a and (_plain(fields[0]) in ID_HEADERS or fields[-1].lower() in ("index", "idx", "id")):
                continue
            if len(fields) != 2 or not all(fields):
                raise DataError("malformed line", source=str(path), row=start + offset,
                                expected="two ids: id<TAB>other id", got=line[:200])
            a.append(fields[0])
            b.append(fields[1])
    return pl.DataFrame({"a": a, "b": b}, schema={"a": pl.String, "b": pl.String})


def _found_map(items_path: Path | None) -> Path | None:
    if items_path is None:
        return None
    found = sorted(p for p in items_path.parent.glob("*item2index*") if p.is_file())
    return found[0] if len(found) == 1 else None


def translate_ids(items: pl.DataFrame, id_map: pl.DataFrame, event_ids: set[str],
                  label: str) -> tuple[pl.DataFrame, str | None]:
    """Items renamed through ``id_map`` in the direction that matches the most of ``event_ids`` (or not at
    all when their own ids match best); a note saying what was done."""
    own = set(items["item_id"].to_list())

    def hits(ids: set[str]) -> int:
        return len(ids & event_ids)

    forward = dict(zip(id_map["a"].to_list(), id_map["b"].to_list(), strict=True))
    backward = dict(zip(id_map["b"].to_list(), id_map["a"].to_list(), strict=True))
    options = [(hits(own), None), (hits({forward[i] for i in own if i in forward}), forward),
               (hits({backward[i] for i in own if i in backward}), backward)]
    best, table = max(options, key=lambda o: o[0])
    if table is None or best <= options[0][0]:
        return items, None
    renamed = items.with_columns(pl.col("item_id").replace(table)).unique("item_id", keep="last",
                                                                          maintain_order=True)
    mapped = sum(1 for i in own if i in table)
    return renamed, (f"item ids translated by {label}: {mapped:,} of {len(own):,} items renamed, "
                     f"{best:,} of the {len(event_ids):,} item ids of the first events now have an item row")


def _event_item_ids(source: Source) -> set[str]:
    for chunk in source.iter_events(SAMPLE_ROWS):
        if "item_id" in chunk.columns:
            return set(chunk["item_id"].cast(pl.String).str.strip_chars().drop_nulls().to_list())
        return set()
    return set()


def attach_items(source: Source, items: str | Path | None = None, *, item_map: str | Path | None = None,
                 mapping: Mapping[str, str] | None = None, category_separator: str = "|") -> Source:
    """Give ``source`` the items of ``items`` (any kind, :func:`read_items`), with ids translated by
    ``item_map`` (or a ``*item2index*`` file beside ``items`` when the ids do not match the events') and a
    note of what was read. With only ``item_map``, the source's own items are translated."""
    items_path = Path(items).expanduser() if items is not None else None
    if items_path is not None:
        table, complete = read_items(items_path, mapping=mapping, category_separator=category_separator)
        source.notes.append(f"items from {items_path}: {table.height:,} rows"
                            + ("" if complete else " of item text (no event is dropped for a missing one)"))
    elif source.items is not None:
        table, complete = source.items, source.items_complete
    else:
        raise ValueError("item_map needs items to translate: give an item file (--items)")
    map_path = Path(item_map).expanduser() if item_map is not None else None
    event_ids: set[str] | None = None
    if map_path is None and items_path is not None:
        candidate = _found_map(items_path)
        if candidate is not None:
            event_ids = _event_item_ids(source)
            own = set(table["item_id"].to_list())
            if event_ids and len(own & event_ids) < MATCH_SHARE * len(event_ids):
                map_path = candidate
    if map_path is not None:
        event_ids = event_ids if event_ids is not None else _event_item_ids(source)
        table, note = translate_ids(table, read_id_map(map_path), event_ids, str(map_path))
        source.notes.append(note or f"{map_path} not used: the item file's ids already match the events'")
    source.items = table
    source.items_complete = complete
    return source


__all__ = ["attach_items", "read_id_map", "read_item_text", "read_items", "translate_ids"]
