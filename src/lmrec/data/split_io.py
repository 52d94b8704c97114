"""Writing a split to disk, so other tools (or a later run) can use exactly the same train/valid/test."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from lmrec.data.schema import EVENT_COLUMNS
from lmrec.data.splits import EvalSet, Split


def _targets_table(es: EvalSet, split: Split) -> pl.DataFrame:
    rows = es.targets.row_ids()
    return pl.DataFrame({
        "user_id": split.train.user_map.raws(es.users[rows]).tolist(),
        "item_id": split.train.item_map.raws(es.targets.values).tolist(),
    }, schema={"user_id": pl.String, "item_id": pl.String})


def write_split(split: Split, folder: str | Path) -> Path:
    """``train.parquet`` (events and impressions), ``valid.parquet`` / ``test.parquet`` (user, target item)
    and ``split.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cols = list(EVENT_COLUMNS)
    # Training's impressions travel with its events (already cut so that no held-out list is among them).
    pl.concat([split.train.events.select(cols), split.train.impressions.select(cols)],
              how="vertical_relaxed").write_parquet(folder / "train.parquet")
    _targets_table(split.valid, split).write_parquet(folder / "valid.parquet")
    _targets_table(split.test, split).write_parquet(folder / "test.parquet")
    (folder / "split.json").write_text(json.dumps({"protocol": split.protocol, "params": split.params,
                                                   "dataset": split.train.name}, indent=2, default=str))
    return folder
