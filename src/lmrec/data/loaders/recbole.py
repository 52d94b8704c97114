"""RecBole atomic files: ``.inter`` (interactions), ``.item`` and ``.user``.

Zhao et al., "RecBole: Towards a Unified, Comprehensive and Efficient Framework for Recommendation
Algorithms", CIKM 2021. Each file is tab-separated with a typed header, ``name:type`` where the type is
``token``, ``token_seq`` (space-separated tokens), ``float`` or ``float_seq``::

    user_id:token   item_id:token   rating:float    timestamp:float
    196             242             3               881250949

Sequential benchmark files hold one *history plus target* per row instead of one interaction::

    session_id:token    item_id_list:token_seq  item_id:token
    1                   1193 661 914            3408

Such a row becomes the events ``history..., target`` of that user, timestamped by their position in the user's
sequence (or by ``timestamp_list:float_seq`` and ``timestamp:float`` when present). Prefix rows of the same
user (``a → b``, ``a b → c``) then describe the same events, which cleaning recognises as duplicates and keeps
once; this assumes the histories were written untruncated.

Field names follow RecBole's defaults (``user_id``, ``item_id``, ``rating``, ``timestamp``, ``item_id_list``,
``session_id``); a ``mapping`` names others (``{"user_id": "visitor"}``, header names without their type).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from lmrec.data.cleaning import DataError
from lmrec.data.loaders._io import csv_batches, first_line, number_rows, rebatch
from lmrec.data.loaders.base import Source, attributes_json
from lmrec.data.loaders.registry import register_detector, register_format

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
#: lmrec field → RecBole names tried in order.
DEFAULTS: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "session_id", "uid"),
    "item_id": ("item_id", "iid"),
    "timestamp": ("timestamp",),
    "value": ("rating", "value"),
    "event_type": ("event_type",),
    "item_id_list": ("item_id_list",),
    "timestamp_list": ("timestamp_list",),
}
ITEM_DEFAULTS: dict[str, tuple[str, ...]] = {
    "item_id": ("item_id", "iid"),
    "title": ("title", "movie_title", "name", "item_name"),
    "description": ("description", "desc", "text"),
    "categories": ("categories", "genre", "genres", "category", "class"),
}
USER_DEFAULTS: dict[str, tuple[str, ...]] = {"user_id": ("user_id", "uid"), "profile": ("profile",)}
#: How many input rows to read at once from a sequence file, per requested event (histories expand ~50×).
_SEQ_EXPANSION = 64


def parse_header(line: str, path: Path) -> dict[str, str]:
    """``{"user_id": "token", ...}`` from a RecBole header line; :class:`DataError` when a field is
    untyped."""
    fields: dict[str, str] = {}
    for i, raw in enumerate(line.rstrip("\r\n").split("\t")):
        name, sep, ftype = raw.strip().rpartition(":")
        if not sep or ftype not in FIELD_TYPES or not name:
            raise DataError("bad header field", source=str(path), row=0, field=raw.strip() or f"#{i + 1}",
                            expected=f"name:type with type one of {FIELD_TYPES} (RecBole atomic file header)")
        fields[name] = ftype
    return fields


def _resolve(fields: Mapping[str, str], mapping: Mapping[str, str] | None,
             defaults: Mapping[str, tuple[str, ...]], path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, col in (mapping or {}).items():
        if name not in defaults:
            raise ValueError(f"mapping names unknown field {name!r}; known: {sorted(defaults)}")
        if col not in fields:
            raise DataError("mapped field not found", source=str(path), field=name,
                            expected=f"a header field named {col!r} (the header has {list(fields)})")
        out[name] = col
    for name, candidates in defaults.items():
        if name not in out:
            hit = next((c for c in candidates if c in fields and c not in out.values()), None)
            if hit is not None:
                out[name] = hit
    return out


def _read_atomic(path: Path, chunk_rows: int) -> Iterator[tuple[int, pl.DataFrame, dict[str, str]]]:
    """Chunks of an atomic file with plain column names (types stripped), all text; ``(first row, frame,
    types)``."""
    fields = parse_header(first_line(path), path)
    names = list(fields)
    start = 1
    for table in rebatch(csv_batches(path, "\t", quote_char=False), chunk_rows):
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        yield start, df.rename(dict(zip(df.columns, names, strict=True))), fields
        start += table.num_rows


def _events(df: pl.DataFrame, cols: dict[str, str], start: int) -> pl.DataFrame:
    """One chunk of ``.inter`` rows as raw events; sequence rows are expanded into history + target."""
    df = number_rows(df, start)
    if "item_id_list" not in cols:
        keep = {dst: src for dst, src in cols.items() if dst not in ("timestamp_list",)}
        return df.select(["_row", *[pl.col(src).alias(dst) for dst, src in keep.items()]])
    hist = cols["item_id_list"]
    items = pl.concat_list(
        pl.col(hist).fill_null("").str.split(" ").list.eval(pl.element().filter(pl.element() != "")),
        pl.col(cols["item_id"]).cast(pl.String)
        if "item_id" in cols
        else pl.lit([], dtype=pl.List(pl.String)),
    ).alias("item_id")
    out = df.select("_row", pl.col(cols["user_id"]).alias("user_id"), items)
    if "timestamp_list" in cols and "timestamp" in cols:
        times = pl.concat_list(
            df[cols["timestamp_list"]].fill_null("").str.split(" ")
            .list.eval(pl.element().filter(pl.element() != "")),
            df[cols["timestamp"]].cast(pl.String),
        )
        out = out.with_columns(times.alias("timestamp"))
    else:
        # Position in the user's sequence: the same for a history item in every prefix row of that user.
        out = out.with_columns(pl.int_ranges(1, pl.col("item_id").list.len() + 1).alias("timestamp"))
    lengths_ok = out.select(pl.col("item_id").list.len() == pl.col("timestamp").list.len()).to_series()
    if not lengths_ok.all():
        row = int(out["_row"].filter(~lengths_ok)[0])
        raise DataError("history and timestamps differ in length", field=cols.get("timestamp_list"), row=row,
                        expected="one timestamp per item in item_id_list")
    out = out.explode(["item_id", "timestamp"]).with_columns(pl.col("timestamp").cast(pl.String))
    if "value" in cols:  # a rating belongs to the target only
        out = out.with_columns(pl.lit(None, dtype=pl.String).alias("value"))
    return out


def load_recbole(path: str | Path, *, mapping: Mapping[str, str] | None = None,
                 item_mapping: Mapping[str, str] | None = None, default_event_type: str | None = None,
                 name: str | None = None) -> Source:
    """RecBole atomic files as a streaming :class:`Source`.

    Parameters
    ----------
    path:
        An ``.inter`` file (its ``.item`` and ``.user`` siblings of the same stem are read too) or a folder
        holding ``<folder name>.inter`` (or a single ``.inter`` file).
    mapping:
        lmrec field → header name (without ``:type``) for interactions, when they differ from RecBole's
        defaults.
    item_mapping:
        The same for the ``.item`` file (``title``, ``description``, ``categories``).
    default_event_type:
        The type of every interaction: ``rating`` when the file has ratings, ``view`` otherwise.
    name:
        The dataset's name (the file's stem by default, e.g. ``ml-1m``).
    """
    inter = _inter_file(Path(path).expanduser())
    fields = parse_header(first_line(inter), inter)
    cols = _resolve(fields, mapping, DEFAULTS, inter)
    missing = [f for f in ("user_id",) if f not in cols]
    if "item_id" not in cols and "item_id_list" not in cols:
        missing.append("item_id")
    if missing:
        raise DataError("missing field", source=str(inter), row=0, field=missing[0],
                        expected=f"a header field for {missing} (the header has {list(fields)}); "
                                 "name it with mapping")
    sequential = "item_id_list" in cols
    if not sequential and "timestamp" not in cols:
        raise DataError(
            "missing field",
            source=str(inter),
            row=0,
            field="timestamp",
            expected=f"timestamp:float (the header has {list(fields)}); lmrec orders events by time",
        )
    stem = inter.name[: -len(".inter")]
    base = stem.split(".")[0]  # ml-1m.train.inter → ml-1m.item

    def chunks(chunk_rows: int) -> Iterator[pl.DataFrame]:
        rows_in = max(1, chunk_rows // _SEQ_EXPANSION) if sequential else chunk_rows
        for start, df, _ in _read_atomic(inter, rows_in):
            events = _events(df, cols, start)
            for offset in range(0, events.height, chunk_rows):
                yield events.slice(offset, chunk_rows)

    item_file = _sibling(inter, (stem, base), ".item")
    user_file = _sibling(inter, (stem, base), ".user")
    items = _catalogue(item_file, item_mapping, ITEM_DEFAULTS, "item_id") if item_file else None
    users = _catalogue(user_file, None, USER_DEFAULTS, "user_id") if user_file else None
    event_type = default_event_type or ("rating" if "value" in cols else "view")
    source = Source(
        name or base,
        event_chunks=chunks,
        items=items,
        users=users,
        default_event_type=event_type,
        origin=str(inter),
    )
    if sequential:
        source.notes.append("sequence rows (history + target) expanded into events; the prefixes repeated "
                            "across rows of one user are counted as duplicates and kept once")
        if "timestamp_list" not in cols:
            source.notes.append(
                "timestamps are positions in each user's sequence (order only, not real times)"
            )
    return source


def _inter_file(path: Path) -> Path:
    if path.is_file():
        if not path.name.endswith(".inter"):
            raise DataError(
                "not a RecBole interaction file", source=str(path), expected="a file named *.inter"
            )
        return path
    if path.is_dir():
        own = path / f"{path.name}.inter"
        if own.is_file():
            return own
        found = sorted(path.glob("*.inter"))
        if len(found) == 1:
            return found[0]
        if found:
            raise FileNotFoundError(f"{path}: several .inter files ({', '.join(f.name for f in found)}); "
                                    "give the one to read")
        raise FileNotFoundError(f"{path}: no .inter file in the folder")
    raise FileNotFoundError(f"{path}: no such file or folder")


def _sibling(inter: Path, stems: tuple[str, ...], suffix: str) -> Path | None:
    return next((p for s in stems if (p := inter.with_name(s + suffix)).is_file()), None)


def _catalogue(path: Path, mapping: Mapping[str, str] | None, defaults: Mapping[str, tuple[str, ...]],
               key: str) -> pl.DataFrame:
    """A ``.item`` / ``.user`` file in lmrec's columns; other fields become typed ``attributes``."""
    frames = [df for _, df, _ in _read_atomic(path, 200_000)]
    fields = parse_header(first_line(path), path)
    raw = pl.concat(frames) if frames else pl.DataFrame(schema=dict.fromkeys(fields, pl.String))
    cols = _resolve(fields, mapping, defaults, path)
    if key not in cols:
        raise DataError("missing field", source=str(path), row=0, field=key,
                        expected=f"{key}:token (the header has {list(fields)})")
    out = raw.select([pl.col(src).alias(dst) for dst, src in cols.items()])
    if "categories" in out.columns:
        # token_seq is space-separated; a category name with spaces is written with underscores or quotes
        split = pl.col("categories").fill_null("").str.split(" ").list.eval(
            pl.element().str.strip_chars("'\",[]").filter(pl.element().str.strip_chars("'\",[]") != ""))
        out = out.with_columns(split.alias("categories"))
    rest = [c for c in raw.columns if c not in set(cols.values())]
    if rest:
        typed = raw.select([_typed(c, fields[c]) for c in rest])
        out = out.with_columns(attributes_json(typed, rest))
    return out.unique(key, keep="last", maintain_order=True)


def _typed(col: str, ftype: str) -> pl.Expr:
    e = pl.col(col)
    if ftype == "float":
        return e.cast(pl.Float64, strict=False)
    if ftype == "token_seq":
        return e.str.split(" ")
    if ftype == "float_seq":
        return e.str.split(" ").list.eval(pl.element().cast(pl.Float64, strict=False))
    return e


def _detect(path: Path) -> bool:
    try:
        inter = _inter_file(path)
        parse_header(first_line(inter), inter)
    except (FileNotFoundError, DataError):
        return False
    return True


register_format("recbole", load_recbole)
register_detector("recbole", _detect)

__all__: list[Any] = ["load_recbole", "parse_header"]
