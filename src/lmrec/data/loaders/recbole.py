"""RecBole atomic files: ``.inter`` (interactions), ``.item`` and ``.user``.

Zhao et al., "RecBole: Towards a Unified, Comprehensive and Efficient Framework for Recommendation
Algorithms", CIKM 2021. Each file is tab-separated with a typed header, ``name:type`` where the type is
``token``, ``token_seq`` (space-separated tokens), ``float`` or ``float_seq``::

    user_id:token   item_id:token   rating:float    timestamp:float
    196             242             3               881250949

Sequential benchmark files hold one *history plus target* per row instead of one interaction::

    session_id:token    item_id_list:token_seq  item_id:token
    1                   1193 661 914            3408

The rows of one user (``a → b``, ``a b → c``, histories often cut at the last N items) are rebuilt into one
chronological sequence per user, checked row by row: a row whose history contradicts the sequence so far is
an error naming the file and the row. Events are timestamped by their position in the user's sequence, or by
``timestamp_list:float_seq`` and ``timestamp:float`` when present.

A folder holding ``X.train.inter``, ``X.valid.inter`` and ``X.test.inter`` (RecBole's
``benchmark_filename``) is a *given split*: each event carries the part of its file (a ``split`` column), and
``--protocol given`` evaluates on exactly that split. Prefix rows of the three files are merged into one
sequence per user (a test row's full history restores the oldest events of long users), each target marked
with its file's part; events seen only in histories belong to training.

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
    """One chunk of plain ``.inter`` rows (one interaction each) as raw events."""
    df = number_rows(df, start)
    keep = {dst: src for dst, src in cols.items() if dst not in ("timestamp_list", "item_id_list")}
    return df.select(["_row", *[pl.col(src).alias(dst) for dst, src in keep.items()]])


class _History:
    """One user's sequence rebuilt from prefix rows: items, times, values, split marks and the file row that
    first showed each event."""

    __slots__ = ("items", "times", "values", "parts", "rows")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.times: list[str | None] = []
        self.values: list[str | None] = []
        self.parts: list[str | None] = []
        self.rows: list[int] = []


def _tokens(text: str | None) -> list[str]:
    return [t for t in (text or "").split(" ") if t]


def _show(items: list[str], limit: int = 6) -> str:
    return " ".join(items) if len(items) <= limit else "... " + " ".join(items[-limit:])


def rebuild_sequences(files: list[tuple[Path, str | None]], cols: dict[str, str],
                      rows_per_read: int = 100_000) -> pl.DataFrame:
    """Prefix rows (``history → target``) of one or more files, in order, as one chronological sequence per
    user: raw events with ``_row`` (the row of its file that first showed the event), a ``split`` column
    when the files are the parts of a given split, and timestamps from ``timestamp_list``/``timestamp`` or,
    without them, each event's position in its user's sequence.

    Each row must extend its user's sequence so far: its history is the sequence's last items (a history cut
    at N items shows the last N), or, when longer than what is known, ends with the whole sequence so far and
    reveals older events (a test file's full histories). Anything else is a :class:`DataError` naming the
    file and the row. Events seen only in histories belong to training.
    """
    users: dict[str, _History] = {}
    timed = "timestamp_list" in cols and "timestamp" in cols
    hist_col, user_col = cols["item_id_list"], cols["user_id"]
    for path, part in files:
        history_part = "train" if part is not None else None
        for start, df, _ in _read_atomic(path, rows_per_read):
            user_ids = df[user_col].to_list()
            hists = df[hist_col].to_list()
            targets = df[cols["item_id"]].to_list() if "item_id" in cols else [None] * df.height
            values = df[cols["value"]].to_list() if "value" in cols else [None] * df.height
            t_lists = df[cols["timestamp_list"]].to_list() if timed else None
            t_targets = df[cols["timestamp"]].to_list() if timed else None
            for i, user in enumerate(user_ids):
                row = start + i
                if user is None or not str(user).strip():
                    raise DataError("missing id", source=str(path), row=row, field=user_col,
                                    expected="a user id")
                h = _tokens(hists[i])
                times: list[str | None] = [None] * len(h)
                if timed:
                    assert t_lists is not None
                    times = list(_tokens(t_lists[i]))
                    if len(times) != len(h):
                        raise DataError("history and timestamps differ in length", source=str(path), row=row,
                                        field=cols["timestamp_list"], expected="one timestamp per item in "
                                        f"{hist_col}", got=f"{len(h)} items, {len(times)} timestamps")
                seq = users.get(user)
                if seq is None:
                    seq = users[user] = _History()
                n, m = len(seq.items), len(h)
                if m <= n:
                    if seq.items[n - m:] != h:
                        raise DataError(
                            "history contradicts the user's sequence so far", source=str(path), row=row,
                            field=hist_col,
                            expected=f"user {user}'s last {m} item(s) ({_show(seq.items[n - m:])}); the rows "
                                     "of one user must extend one sequence, oldest row first",
                            got=_show(h))
                else:
                    if seq.items != h[m - n:]:
                        raise DataError(
                            "history contradicts the user's sequence so far", source=str(path), row=row,
                            field=hist_col,
                            expected=f"a history ending with user {user}'s {n} known item(s) "
                                     f"({_show(seq.items)}); the rows of one user must extend one sequence, "
                                     "oldest row first",
                            got=_show(h))
                    older = m - n  # events only this row shows: before everything known so far
                    seq.items[:0] = h[:older]
                    seq.times[:0] = times[:older]
                    seq.values[:0] = [None] * older
                    seq.parts[:0] = [history_part] * older
                    seq.rows[:0] = [row] * older
                target = targets[i]
                if target is None or not str(target).strip():
                    continue
                seq.items.append(str(target))
                seq.times.append(t_targets[i] if t_targets is not None else None)
                seq.values.append(values[i])
                seq.parts.append(part)
                seq.rows.append(row)
    out: dict[str, list] = {k: [] for k in ("_row", "user_id", "item_id", "timestamp", "value", "split")}
    for user, seq in users.items():
        n = len(seq.items)
        out["_row"].extend(seq.rows)
        out["user_id"].extend([user] * n)
        out["item_id"].extend(seq.items)
        out["timestamp"].extend(seq.times if timed else [str(k) for k in range(1, n + 1)])
        out["value"].extend(seq.values)
        out["split"].extend(seq.parts)
    df = pl.DataFrame(out, schema={"_row": pl.Int64, "user_id": pl.String, "item_id": pl.String,
                                   "timestamp": pl.String, "value": pl.String, "split": pl.String})
    if all(part is None for _, part in files):
        df = df.drop("split")
    if "value" not in cols:
        df = df.drop("value")
    return df


def load_recbole(path: str | Path, *, mapping: Mapping[str, str] | None = None,
                 item_mapping: Mapping[str, str] | None = None, default_event_type: str | None = None,
                 name: str | None = None) -> Source:
    """RecBole atomic files as a :class:`Source`.

    Parameters
    ----------
    path:
        An ``.inter`` file (its ``.item`` and ``.user`` siblings of the same stem are read too) or a folder
        holding ``<folder name>.inter``, a single ``.inter`` file, or the parts of a given split,
        ``X.train.inter``, ``X.valid.inter`` and ``X.test.inter`` (RecBole's ``benchmark_filename``), whose
        events then carry their part (the ``given`` protocol).
    mapping:
        lmrec field → header name (without ``:type``) for interactions, when they differ from RecBole's
        defaults.
    item_mapping:
        The same for the ``.item`` file (``title``, ``description``, ``categories``).
    default_event_type:
        The type of every interaction: ``rating`` when the file has ratings, ``view`` otherwise.
    name:
        The dataset's name (the file's stem by default, e.g. ``ml-1m``).

    Rows with an ``item_id_list`` (history + target, RecBole's sequential benchmark files) are rebuilt into
    one chronological sequence per user (:func:`rebuild_sequences`), read whole; plain rows stream.
    """
    files = _inter_files(Path(path).expanduser())
    inter = files[0][0]
    fields = parse_header(first_line(inter), inter)
    cols = _resolve(fields, mapping, DEFAULTS, inter)
    for other, _ in files[1:]:
        other_fields = parse_header(first_line(other), other)
        if list(other_fields) != list(fields):
            raise DataError("the parts of the split have different headers", source=str(other), row=0,
                            expected=f"the header of {inter.name} ({list(fields)})", got=list(other_fields))
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
    given = files[0][1] is not None
    stem = inter.name[: -len(".inter")]
    head, _, part_name = stem.rpartition(".")
    # ml-1m.train.inter → ml-1m.item (and amazon.beauty.test.inter → amazon.beauty.item)
    base = head if head and part_name in SPLIT_PARTS else stem.split(".")[0]
    rebuilt: list[pl.DataFrame] = []

    def chunks(chunk_rows: int) -> Iterator[pl.DataFrame]:
        if sequential:
            if not rebuilt:  # read once, whatever the number of passes over the source
                rebuilt.append(rebuild_sequences(files, cols))
            events = rebuilt[0]
            for offset in range(0, max(events.height, 1), chunk_rows):
                yield events.slice(offset, chunk_rows)
            return
        for file, part in files:
            for start, df, _ in _read_atomic(file, chunk_rows):
                events = _events(df, cols, start)
                yield events if part is None else events.with_columns(pl.lit(part).alias("split"))

    stems = (base,) if given else (stem, base)
    item_file = _sibling(inter, stems, ".item")
    user_file = _sibling(inter, stems, ".user")
    item_table = read_item_file(item_file, item_mapping) if item_file else None
    users = _catalogue(user_file, None, USER_DEFAULTS, "user_id") if user_file else None
    event_type = default_event_type or ("rating" if "value" in cols else "view")
    source = Source(
        name or base,
        event_chunks=chunks,
        items=item_table,
        users=users,
        default_event_type=event_type,
        origin=str(inter.parent if given else inter),
        has_split=given,
    )
    if given:
        source.notes.append("the given split: " + ", ".join(f"{p} ← {f.name}" for f, p in files)
                            + " (row numbers count within each file); use --protocol given to evaluate on it")
    elif (siblings := _split_parts(inter.parent, base)) and inter in [f for f, _ in siblings]:
        names = ", ".join(f.name for f, _ in siblings)
        source.notes.append(f"{inter.name} is one part of a given split ({names}): read the folder "
                            f"{inter.parent} to load the whole split")
    if sequential:
        source.notes.append("rows of history + target (item_id_list) rebuilt into one sequence per user")
        if "timestamp_list" not in cols:
            source.notes.append(
                "timestamps are positions in each user's sequence (order only, not real times)"
            )
    return source


#: The parts of a split in RecBole's file names (``X.train.inter``...), in the order they are read.
SPLIT_PARTS = ("train", "valid", "test")


def _split_parts(folder: Path, base: str | None = None) -> list[tuple[Path, str]]:
    """``[(X.train.inter, "train"), (X.valid.inter, "valid"), (X.test.inter, "test")]`` in ``folder`` (one
    stem ``X``; ``valid`` may be absent), or ``[]``."""
    stems: dict[str, dict[str, Path]] = {}
    for f in sorted(folder.glob("*.inter")):
        stem = f.name[: -len(".inter")]
        head, _, part = stem.rpartition(".")
        if head and part in SPLIT_PARTS:
            stems.setdefault(head, {})[part] = f
    found = {k: v for k, v in stems.items() if "train" in v and "test" in v and (base is None or k == base)}
    if len(found) != 1:
        if len(found) > 1:
            raise FileNotFoundError(f"{folder}: the parts of several splits ({', '.join(sorted(found))}); "
                                    "give one file to read it alone")
        return []
    parts = next(iter(found.values()))
    return [(parts[p], p) for p in SPLIT_PARTS if p in parts]


def _inter_files(path: Path) -> list[tuple[Path, str | None]]:
    """The ``.inter`` file(s) to read with the split part each holds (``None``: no given split)."""
    if path.is_dir():
        own = path / f"{path.name}.inter"
        if own.is_file():
            return [(own, None)]
        parts = _split_parts(path)
        if parts:
            return [(f, p) for f, p in parts]
    return [(_inter_file(path), None)]


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
            raise FileNotFoundError(f"{path}: several .inter files ({', '.join(f.name for f in found)}) that "
                                    "are not the parts of a split (X.train.inter, X.valid.inter, "
                                    "X.test.inter); give the one to read")
        raise FileNotFoundError(f"{path}: no .inter file in the folder")
    raise FileNotFoundError(f"{path}: no such file or folder")


def _sibling(inter: Path, stems: tuple[str, ...], suffix: str) -> Path | None:
    return next((p for s in stems if (p := inter.with_name(s + suffix)).is_file()), None)


def read_item_file(path: Path, mapping: Mapping[str, str] | None = None) -> pl.DataFrame:
    """A RecBole ``.item`` file (or any file with a typed ``name:type`` header: a ``.text`` file) as items:
    ``title``, ``description`` (``text``), ``categories``; other fields become ``attributes``."""
    return _catalogue(path, mapping, ITEM_DEFAULTS, "item_id")


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
        inter = _inter_files(path)[0][0]
        parse_header(first_line(inter), inter)
    except (FileNotFoundError, DataError):
        return False
    return True


register_format("recbole", load_recbole)
register_detector("recbole", _detect)

__all__: list[Any] = ["load_recbole", "parse_header", "read_item_file", "rebuild_sequences"]
