"""Cleaning raw event tables, with a report that counts every dropped row by reason.

Row-level rules (missing or unparseable fields, unknown event types) run chunk by chunk, so a large file never
has to be held whole; table-level rules (duplicates, events for unknown items, minimum counts / k-core) run
once on the assembled events. In strict mode the first problem raises a :class:`DataError` naming the file,
the row, the field and what was expected, instead of dropping the row.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from lmrec.data.schema import (
    EVENT_TYPE_ALIASES,
    IMPRESSION,
    KNOWN_EVENT_TYPES,
    SPLIT_ALIASES,
    SPLIT_COLUMN,
    SPLIT_NAMES,
    normalise_event_type,
)

#: Numeric timestamps above this are taken as milliseconds when the unit is "auto" (1e11 s is the year 5138).
_MS_THRESHOLD = 100_000_000_000

ROW = "_row"  # 1-based data row in the source file, carried through cleaning for error messages

# ---------------------------------------------------------------------- what every path accepts
# The importer (vectorised, in ``clean_rows``), the events API (``check_id`` and friends, per event) and the
# service's writer apply these same rules, so an event one path accepts can always be stored by the others.

#: Longest id (user, item, event) in characters, after trimming surrounding spaces.
MAX_ID_CHARS = 256
#: Timestamps are seconds since the epoch in [0, MAX_TIMESTAMP] once milliseconds are converted.
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z
#: Characters no id may contain: control characters (C0, DEL, C1) and, from JSON, lone surrogates (they
#: cannot be written as UTF-8).
_BAD_ID_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_ID_CHARS_POLARS = r"[\x00-\x1f\x7f-\x9f]"
#: What is trimmed around ids: Unicode White_Space, the same set on every path (Python's ``str.strip()``
#: would also trim the control characters \x1c-\x1f, which the importer refuses).
ID_WHITESPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                 "\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
ID_RULE = f"1 to {MAX_ID_CHARS} characters, no control characters"
#: Positions in a shown list are whole numbers in [0, MAX_POSITION] (0 is the first item shown).
MAX_POSITION = 2**31 - 1
POSITION_RULE = f"a whole number from 0 (the first item shown) to {MAX_POSITION}, or empty"
TIMESTAMP_RULE = (f"seconds (or milliseconds, above 1e11) since the epoch, between 0 and {MAX_TIMESTAMP} "
                  "(9999-12-31), or ISO-8601 text")


def id_problem(value: str) -> str | None:
    """Why ``value`` (already trimmed) is not a usable id, or ``None`` when it is."""
    if not value:
        return "missing id"
    if len(value) > MAX_ID_CHARS:
        return f"id too long ({len(value)} characters)"
    if _BAD_ID_CHARS.search(value):
        return "id has a control character"
    return None


def timestamp_seconds(value: int | float) -> int | None:
    """Seconds since the epoch for a numeric timestamp (numbers above 1e11 are milliseconds, as
    ``timestamp_unit="auto"``), or ``None`` when it is not finite or out of range."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = math.floor(value / 1000.0) if abs(value) > _MS_THRESHOLD else math.floor(value)
    elif abs(value) > _MS_THRESHOLD:
        value = value // 1000
    return int(value) if 0 <= value <= MAX_TIMESTAMP else None


def position_problem(value: int | None) -> str | None:
    """Why a list position is unusable, or ``None`` (empty is fine)."""
    return None if value is None or 0 <= value <= MAX_POSITION else "position out of range"


def list_suffix(list_id: str | None, position: int | None) -> str:
    """What an event's list adds to its derived id: ``|LIST|POSITION`` when it has either, else nothing (so
    the ids of events without a list are as they always were). The importer and the events API agree on it."""
    if list_id is None and position is None:
        return ""
    return f"|{list_id or ''}|{'' if position is None else position}"


def value_problem(value: float | None) -> str | None:
    """Why an event value is unusable (not finite), or ``None``."""
    return None if value is None or math.isfinite(value) else "value is not a finite number"


class DataError(ValueError):
    """Bad input, located: which file, which row, which field, and what was expected."""

    def __init__(self, message: str, *, source: str = "", row: int | None = None, field: str | None = None,
                 expected: str | None = None, got: object = None) -> None:
        where = ", ".join(p for p in (source and f"file {source}", row is not None and f"row {row}",
                                      field and f"field {field!r}") if p)
        detail = message
        if expected:
            detail += f"; expected {expected}"
        if got is not None:
            detail += f", got {got!r}"
        super().__init__(f"{where}: {detail}" if where else detail)
        self.source, self.row, self.field, self.expected, self.got = source, row, field, expected, got


@dataclass(frozen=True)
class CleaningConfig:
    """What counts as a usable event.

    Parameters
    ----------
    strict:
        Raise :class:`DataError` on the first bad row instead of dropping it.
    timestamp_unit:
        ``"s"``, ``"ms"`` or ``"auto"`` (numbers above 1e11 are milliseconds). ISO-8601 text is always
        accepted.
    event_types:
        Extra event types to accept besides :data:`~lmrec.data.schema.KNOWN_EVENT_TYPES`.
    allow_any_event_type:
        Accept every event type (an open vocabulary with no check).
    default_event_type:
        The type of events whose table has no ``event_type`` column (``"rating"`` for MovieLens).
    drop_duplicates:
        Drop repeated events: the same ``event_id``, or the same (user, item, timestamp, type, value).
    drop_unknown_items:
        Drop events whose item is not in the items table (only when an items table is given).
    min_user_events / min_item_events:
        Drop users / items with fewer events. With ``kcore`` the filter repeats until both hold at once
        (the k-core of the bipartite graph, as papers do); without it, users then items are filtered once.
    """

    strict: bool = False
    timestamp_unit: str = "auto"
    event_types: tuple[str, ...] = ()
    allow_any_event_type: bool = False
    default_event_type: str = "view"
    drop_duplicates: bool = True
    drop_unknown_items: bool = True
    min_user_events: int = 0
    min_item_events: int = 0
    kcore: bool = False

    def __post_init__(self) -> None:
        if self.timestamp_unit not in ("s", "ms", "auto"):
            raise ValueError(f"timestamp_unit must be 's', 'ms' or 'auto', got {self.timestamp_unit!r}")
        if self.min_user_events < 0 or self.min_item_events < 0:
            raise ValueError("minimum counts must be >= 0")

    @property
    def accepted_event_types(self) -> frozenset[str]:
        return frozenset(KNOWN_EVENT_TYPES) | {normalise_event_type(t) for t in self.event_types}


@dataclass
class CleaningReport:
    """Rows read, rows kept, and rows dropped per reason (with the first row number of each reason)."""

    source: str = ""
    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    first_row: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def drop(self, reason: str, rows: pl.Series | None, count: int | None = None) -> None:
        n = count if count is not None else (len(rows) if rows is not None else 0)
        if n <= 0:
            return
        self.dropped[reason] += n
        if reason not in self.first_row and rows is not None and len(rows):
            first = rows.min()
            if first is not None:
                self.first_row[reason] = int(first)  # type: ignore[arg-type]

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def merge(self, other: CleaningReport) -> None:
        self.rows_read += other.rows_read
        self.dropped.update(other.dropped)
        for k, v in other.first_row.items():
            self.first_row.setdefault(k, v)
        self.notes.extend(other.notes)

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
                "rows_dropped": self.rows_dropped, "dropped": dict(self.dropped), "first_row": self.first_row,
                "notes": self.notes}

    def lines(self) -> list[str]:
        out = [f"{self.source or 'input'}: read {self.rows_read:,} rows, kept {self.rows_kept:,}, "
               f"dropped {self.rows_dropped:,}"]
        for reason, n in sorted(self.dropped.items(), key=lambda kv: -kv[1]):
            first = self.first_row.get(reason)
            out.append(f"  {reason}: {n:,}" + (f" (first at row {first})" if first is not None else ""))
        out.extend(f"  note: {n}" for n in self.notes)
        return out


# ---------------------------------------------------------------------- row-level rules
def _fail_or_drop(df: pl.DataFrame, bad: pl.Series, reason: str, cfg: CleaningConfig, report: CleaningReport,
                  field_name: str, expected: str, raw: pl.Series | None = None) -> pl.DataFrame:
    if not bad.any():
        return df
    if cfg.strict:
        pos = int(bad.arg_true()[0])
        got = raw[pos] if raw is not None else None
        raise DataError(reason.replace("_", " "), source=report.source, row=int(df[ROW][pos]),
                        field=field_name, expected=expected, got=got)
    report.drop(reason, df.filter(bad)[ROW])
    return df.filter(~bad)


def iso_seconds(s: str | None) -> float | None:
    """Seconds since the epoch from ISO-8601 text (``Z``, offsets and bare dates allowed; naive means UTC);
    ``None`` when the text is not ISO-8601."""
    if s is None:
        return None
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        return None
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()


def _parse_timestamps(col: pl.Series, unit: str) -> pl.Series:
    """Seconds since the epoch (Int64) from numbers (s or ms), ISO-8601 text or datetimes; null where
    unparseable.

    The unit applies to numbers only: ISO text and datetimes carry their own. Values outside the Int64 range
    of seconds are unparseable, not an overflow error.
    """
    if col.dtype == pl.Datetime or col.dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Int64)
    iso: pl.Series | None = None
    if col.dtype.is_numeric():
        num = col.cast(pl.Float64)
    else:
        text = col.cast(pl.String).str.strip_chars()
        num = text.cast(pl.Float64, strict=False)
        todo = num.is_null() & text.is_not_null() & (text.str.len_chars() > 0)
        if todo.any():
            # ISO-8601 text, parsed by the standard library (it handles 'Z', offsets and dates alone); only
            # the rows that are not numbers pay for the Python call.
            iso = pl.Series([iso_seconds(s) if t else None for s, t in zip(text.to_list(), todo.to_list(),
                                                                             strict=True)], dtype=pl.Float64)
    num = num.fill_nan(None)
    num = num.set(num.is_infinite(), None) if num.is_infinite().any() else num
    if unit == "ms":
        num = num / 1000.0
    elif unit == "auto":
        num = pl.select(pl.when(num.abs() > _MS_THRESHOLD).then(num / 1000.0).otherwise(num)).to_series()
    if iso is not None:
        num = pl.select(pl.coalesce(num, iso)).to_series()
    return num.floor().cast(pl.Int64, strict=False)


def clean_rows(df: pl.DataFrame, cfg: CleaningConfig, report: CleaningReport) -> pl.DataFrame:
    """Apply the row-level rules to one chunk of raw events with lmrec's column names.

    ``df`` must carry :data:`ROW`; ``event_type``, ``value`` and ``event_id`` may be missing. Returns the rows
    kept, typed (ids as text, timestamp as Int64 seconds, value as Float64) and with an ``event_id`` for every
    row. A ``split`` column (a given split) is kept, normalised to ``train``/``valid``/``test``; a row with
    another value is dropped as ``bad_split``.
    """
    report.rows_read += df.height
    have = [c for c in df.columns if c != ROW]
    if df.height == 0 and not have:
        return _typed_empty()  # an empty chunk (or an empty file) has nothing to check
    for col in ("user_id", "item_id", "timestamp"):
        if col not in df.columns:
            raise DataError("missing column", source=report.source, field=col,
                            expected=f"columns user_id, item_id, timestamp (have {have})")
    if df.height == 0:
        return _typed_empty(SPLIT_COLUMN in df.columns)
    for col in ("user_id", "item_id", "timestamp", "event_type", "value", "event_id", "list_id", "position"):
        if col in df.columns and (df[col].dtype.is_nested() or df[col].dtype == pl.Binary
                                  or df[col].dtype == pl.Object):
            raise DataError("wrongly typed column", source=report.source, row=int(df[ROW][0]), field=col,
                            expected="text, numbers or (for timestamp) dates", got=str(df[col].dtype))
    if "event_type" not in df.columns:
        df = df.with_columns(pl.lit(cfg.default_event_type).alias("event_type"))
    if "value" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias("value"))
    if "event_id" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias("event_id"))
    if "list_id" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias("list_id"))
    if "position" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Int32).alias("position"))

    # Ids: text, trimmed; a float-looking id from a spreadsheet ("12.0") is kept as written.
    df = df.with_columns(
        [pl.col(c).cast(pl.String).str.strip_chars(ID_WHITESPACE).alias(c)
         for c in ("user_id", "item_id", "event_id", "list_id")]
    )
    for col in ("user_id", "item_id"):
        bad = df[col].is_null() | (df[col].str.len_chars() == 0)
        df = _fail_or_drop(df, bad, f"missing_{col}", cfg, report, col, "a non-empty id")
    for col in ("user_id", "item_id", "event_id", "list_id"):
        ids = df[col]
        long = ids.str.len_chars().fill_null(0) > MAX_ID_CHARS
        df = _fail_or_drop(df, long, f"{col}_too_long", cfg, report, col, ID_RULE,
                           raw=ids.str.slice(0, 40) + "...")
        ids = df[col]
        ctrl = ids.str.contains(_BAD_ID_CHARS_POLARS).fill_null(False)
        df = _fail_or_drop(df, ctrl, f"bad_{col}", cfg, report, col, ID_RULE, raw=ids)
    # An empty event id means "derive one"; an empty list id, no list.
    df = df.with_columns([pl.when(pl.col(c).str.len_chars() > 0).then(pl.col(c)).otherwise(None).alias(c)
                          for c in ("event_id", "list_id")])

    raw_ts = df["timestamp"]
    missing_ts = raw_ts.is_null() | (raw_ts.cast(pl.String).str.strip_chars().str.len_chars() == 0)
    df = _fail_or_drop(df, missing_ts, "missing_timestamp", cfg, report, "timestamp", "a timestamp")
    ts = _parse_timestamps(df["timestamp"], cfg.timestamp_unit)
    df = _fail_or_drop(
        df.with_columns(ts.alias("_ts")),
        (ts.is_null() | (ts < 0) | (ts > MAX_TIMESTAMP)).fill_null(True),
        "bad_timestamp",
        cfg,
        report,
        "timestamp",
        TIMESTAMP_RULE,
        raw=df["timestamp"],
    )
    df = df.with_columns(pl.col("_ts").alias("timestamp")).drop("_ts")

    raw_value = df["value"]
    if raw_value.dtype.is_numeric():
        value = raw_value.cast(pl.Float64)
        bad_value = (value.is_nan() | value.is_infinite()).fill_null(False)
    else:
        txt = raw_value.cast(pl.String).str.strip_chars()
        value = txt.cast(pl.Float64, strict=False)
        bad_value = (txt.is_not_null() & (txt.str.len_chars() > 0) & value.is_null()) | \
            (value.is_nan() | value.is_infinite()).fill_null(False)
    df = df.with_columns(value.alias("value"))
    df = _fail_or_drop(df, bad_value, "bad_value", cfg, report, "value", "a number (finite) or empty",
                       raw=raw_value)

    raw_pos = df["position"]
    if raw_pos.dtype.is_integer():
        pos = raw_pos.cast(pl.Int64)
        bad_pos = pl.Series([False] * df.height)
    else:
        txt = raw_pos.cast(pl.String).str.strip_chars()
        num = txt.cast(pl.Float64, strict=False)
        pos = num.cast(pl.Int64, strict=False)
        given = txt.is_not_null() & (txt.str.len_chars() > 0)
        whole = (num == num.floor()).fill_null(False)
        bad_pos = (given & (num.is_null() | ~whole | pos.is_null())).fill_null(True)
    bad_pos = bad_pos | ((pos < 0) | (pos > MAX_POSITION)).fill_null(False)
    df = df.with_columns(pos.alias("position"))
    df = _fail_or_drop(df, bad_pos, "bad_position", cfg, report, "position", POSITION_RULE, raw=raw_pos)
    df = df.with_columns(pl.col("position").cast(pl.Int32))

    et = df["event_type"].cast(pl.String).str.strip_chars()
    missing_type = et.is_null() | (et.str.len_chars() == 0)
    df = df.with_columns(et.alias("event_type"))
    df = _fail_or_drop(df, missing_type, "missing_event_type", cfg, report, "event_type", "an event type")
    # Vectorised normalise_event_type: lower-case, then map aliases (addtocart → cart); no Python call per
    # row.
    df = df.with_columns(
        pl.col("event_type").str.to_lowercase().replace(EVENT_TYPE_ALIASES).alias("event_type"))
    if not cfg.allow_any_event_type:
        accepted = sorted(cfg.accepted_event_types)
        unknown = ~df["event_type"].is_in(accepted)
        df = _fail_or_drop(df, unknown, "unknown_event_type", cfg, report, "event_type",
                           f"one of {accepted} (declare others with event_types)", raw=df["event_type"])

    if SPLIT_COLUMN in df.columns:
        # A given split (train / valid / test per event): normalised, and a row without a known part is bad.
        part = df[SPLIT_COLUMN].cast(pl.String).str.strip_chars().str.to_lowercase().replace(SPLIT_ALIASES)
        df = df.with_columns(part.alias(SPLIT_COLUMN))
        unknown_part = ~part.is_in(list(SPLIT_NAMES)).fill_null(False)
        df = _fail_or_drop(df, unknown_part, "bad_split", cfg, report, SPLIT_COLUMN,
                           f"one of {list(SPLIT_NAMES)} (or {sorted(SPLIT_ALIASES)})", raw=df[SPLIT_COLUMN])

    # A stable id for events that come without one, so that importing the same file twice adds nothing. An
    # event shown or clicked in a list adds its list and position (:func:`list_suffix`): the same item shown
    # twice in one second, in two lists, is two impressions.
    in_list = pl.col("list_id").is_not_null() | pl.col("position").is_not_null()
    derived = pl.concat_str(
        [pl.col("user_id"), pl.col("item_id"), pl.col("timestamp").cast(pl.String), pl.col("event_type"),
         pl.col("value").cast(pl.String).fill_null("")],
        separator="|",
    ) + pl.when(in_list).then(pl.concat_str([pl.lit("|"), pl.col("list_id").fill_null(""), pl.lit("|"),
                                             pl.col("position").cast(pl.String).fill_null("")]))\
        .otherwise(pl.lit(""))
    df = df.with_columns(pl.coalesce(pl.col("event_id"), derived).alias("event_id"))
    split = [SPLIT_COLUMN] if SPLIT_COLUMN in df.columns else []
    return df.select(["event_id", "user_id", "item_id", "timestamp", "event_type", "value", "list_id",
                      "position", *split, ROW])


def _typed_empty(split: bool = False) -> pl.DataFrame:
    return pl.DataFrame(schema={"event_id": pl.String, "user_id": pl.String, "item_id": pl.String,
                                "timestamp": pl.Int64, "event_type": pl.String, "value": pl.Float64,
                                "list_id": pl.String, "position": pl.Int32,
                                **({SPLIT_COLUMN: pl.String} if split else {}), ROW: pl.Int64})


# ---------------------------------------------------------------------- table-level rules
def clean_table(df: pl.DataFrame, cfg: CleaningConfig, report: CleaningReport,
                item_ids: pl.Series | None = None) -> pl.DataFrame:
    """Apply the table-level rules (duplicates, unknown items, minimum counts) to row-cleaned events."""
    if cfg.drop_duplicates and df.height:
        dup = df.select(
            pl.col("event_id").is_duplicated() & ~pl.col("event_id").is_first_distinct()
        ).to_series()
        df = _fail_or_drop(df, dup, "duplicate", cfg, report, "event_id", "each event once")
    if item_ids is not None and cfg.drop_unknown_items and df.height:
        unknown = ~df["item_id"].is_in(item_ids.cast(pl.String).implode())
        df = _fail_or_drop(
            df,
            unknown,
            "unknown_item",
            cfg,
            report,
            "item_id",
            "an item present in the items table",
            raw=df["item_id"],
        )
    if cfg.min_user_events or cfg.min_item_events:
        df = filter_min_counts(df, cfg, report)
    report.rows_kept = df.height
    return df


def filter_min_counts(df: pl.DataFrame, cfg: CleaningConfig, report: CleaningReport) -> pl.DataFrame:
    """Drop users and items with too few events; repeat to a fixed point when ``cfg.kcore``.

    Only interactions count: impressions say what was shown, not what a user did, and go with their user and
    item."""
    interactions = (pl.col("event_type") != IMPRESSION).cast(pl.Int64)
    rounds = 0
    while True:
        rounds += 1
        before = df.height
        if cfg.min_user_events:
            small = interactions.sum().over("user_id") < cfg.min_user_events
            bad = df.select(small).to_series()
            if bad.any():
                report.drop("below_min_user_events", df.filter(bad)[ROW])
                df = df.filter(~bad)
        if cfg.min_item_events:
            small = interactions.sum().over("item_id") < cfg.min_item_events
            bad = df.select(small).to_series()
            if bad.any():
                report.drop("below_min_item_events", df.filter(bad)[ROW])
                df = df.filter(~bad)
        if not cfg.kcore or df.height == before or df.height == 0:
            break
    if cfg.kcore:
        report.notes.append(f"k-core (users ≥ {cfg.min_user_events}, items ≥ {cfg.min_item_events}) "
                            f"reached after {rounds} round(s)")
    return df


def clean_events(df: pl.DataFrame, cfg: CleaningConfig | None = None, *, source: str = "",
                 item_ids: pl.Series | None = None) -> tuple[pl.DataFrame, CleaningReport]:
    """Row- and table-level cleaning of a whole events table in memory. Adds :data:`ROW` if absent."""
    cfg = cfg or CleaningConfig()
    report = CleaningReport(source=source)
    if ROW not in df.columns:
        df = df.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))
    rows = clean_rows(df, cfg, report)
    out = clean_table(rows, cfg, report, item_ids=item_ids)
    return out, report
