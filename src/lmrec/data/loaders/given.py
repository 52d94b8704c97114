"""Data that carries its own split: a folder written by ``lmrec data split`` (:func:`lmrec.data.split_io.
write_split`), and the helper that marks each user's last events (a sequence file read with a stated
protocol).

A split travels as the events' ``split`` column (``train`` / ``valid`` / ``test``); the ``given`` protocol
(:func:`lmrec.data.splits.given`) evaluates on exactly that split.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from lmrec.data.cleaning import ROW, DataError
from lmrec.data.loaders.base import Source
from lmrec.data.loaders.registry import register_detector, register_format
from lmrec.data.schema import IMPRESSION, SPLIT_COLUMN

#: Stated protocols a file without a split column can be read with (``-o split=...``).
STATED_SPLITS = ("none", "leave-one-out")
_STATED_ALIASES = {"loo": "leave-one-out", "last-two": "leave-one-out", "": "none"}
#: Users with fewer events stay wholly in training under a stated leave-one-out (as in SASRec's code).
LOO_MIN_EVENTS = 3


def stated_split(split: str | None) -> str:
    """The canonical name of a stated protocol (``none`` or ``leave-one-out``)."""
    name = _STATED_ALIASES.get((split or "none").strip().lower(), (split or "none").strip().lower())
    if name not in STATED_SPLITS:
        raise ValueError(f"split must be one of {', '.join(STATED_SPLITS)} (the protocol the file was "
                         f"written with), got {split!r}")
    return name


def mark_last_two(events: pl.DataFrame, min_events: int = LOO_MIN_EVENTS) -> pl.DataFrame:
    """Add the ``split`` column of a stated leave-one-out to events in each user's order (file order): a
    user's last event is ``test``, the one before ``valid``, the rest ``train``; a user with fewer than
    ``min_events`` events is all ``train``."""
    from_end = pl.len().over("user_id") - 1 - pl.int_range(pl.len()).over("user_id")
    evaluated = pl.len().over("user_id") >= min_events
    part = (pl.when(evaluated & (from_end == 0)).then(pl.lit("test"))
            .when(evaluated & (from_end == 1)).then(pl.lit("valid"))
            .otherwise(pl.lit("train")))
    return events.with_columns(part.alias(SPLIT_COLUMN))


def _is_split_folder(path: Path) -> bool:
    needed = ("split.json", "train.parquet", "test.parquet")
    return path.is_dir() and all((path / f).is_file() for f in needed)


def load_split_folder(path: str | Path, *, name: str | None = None) -> Source:
    """A folder written by :func:`~lmrec.data.split_io.write_split` (``train.parquet`` events,
    ``valid.parquet`` / ``test.parquet`` targets, ``split.json``) as events with their ``split`` column.

    Targets without a timestamp are placed right after the user's training events (validation targets) or
    training and validation events (test targets), which is what the folder means; the ``given`` protocol
    then gives back the same training events, targets and histories per user.
    """
    folder = Path(path).expanduser()
    if not _is_split_folder(folder):
        raise FileNotFoundError(f"{folder}: not a split folder (expected split.json, train.parquet, "
                                "valid.parquet, test.parquet, as `lmrec data split` writes)")
    meta = json.loads((folder / "split.json").read_text())
    train = pl.read_parquet(folder / "train.parquet").with_columns(pl.lit("train").alias(SPLIT_COLUMN))
    parts = [train]
    for part in ("valid", "test"):
        file = folder / f"{part}.parquet"
        if not file.is_file():
            continue
        targets = pl.read_parquet(file)
        missing = [c for c in ("user_id", "item_id") if c not in targets.columns]
        if missing:
            raise DataError("missing column", source=str(file), field=missing[0],
                            expected="user_id and item_id (the targets of each user)")
        if "timestamp" not in targets.columns:
            # Right after everything the user did before: ties keep input order, so after those events.
            before = pl.concat(parts, how="diagonal_relaxed").group_by("user_id").agg(
                pl.col("timestamp").max().alias("timestamp"))
            targets = targets.join(before, on="user_id", how="left", maintain_order="left").with_columns(
                pl.col("timestamp").fill_null(0))
        if "event_id" not in targets.columns:
            # Their own ids, so that a target never counts as a duplicate of a training event it ties with.
            targets = targets.with_columns(pl.concat_str(
                [pl.lit(part), pl.col("user_id"), pl.col("item_id"), pl.int_range(pl.len()).cast(pl.String)],
                separator="|").alias("event_id"))
        parts.append(targets.with_columns(pl.lit(part).alias(SPLIT_COLUMN)))
    events = pl.concat(parts, how="diagonal_relaxed")
    if "event_type" in events.columns:
        # Targets are interactions: the commonest type of training's events, never its impressions.
        acted = train.filter(pl.col("event_type") != IMPRESSION)
        events = events.with_columns(pl.col("event_type").fill_null(acted["event_type"].mode().first()
                                                                     if acted.height else "view"))
    events = events.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))
    source = Source(name or str(meta.get("dataset") or folder.name), events=events, origin=str(folder),
                    has_split=True)
    source.notes.append(f"the split written by lmrec ({meta.get('protocol', '?')}): use --protocol given to "
                        "evaluate on it")
    return source


register_format("lmrec-split", load_split_folder)
register_detector("lmrec-split", _is_split_folder)

__all__ = ["STATED_SPLITS", "load_split_folder", "mark_last_two", "stated_split"]
