"""The :class:`Dataset`: validated event, item and user tables with dense ids and per-user sequences."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from lmrec.data.idmap import IdMap
from lmrec.data.ragged import Ragged
from lmrec.data.schema import (
    EVENT_COLUMNS,
    EVENTS_SCHEMA,
    IMPRESSION,
    ITEMS_SCHEMA,
    SPLIT_COLUMN,
    USERS_SCHEMA,
)

FORMAT_VERSION = 1


def _empty(schema: pa.Schema) -> pl.DataFrame:
    return pl.from_arrow(schema.empty_table())  # type: ignore[return-value]


def conform(df: pl.DataFrame | pa.Table | None, schema: pa.Schema, what: str) -> pl.DataFrame:
    """Cast a table to lmrec's schema for ``what`` (events/items/users): required columns must be present,
    optional ones are added as nulls, extra columns are kept after the known ones."""
    if df is None:
        return _empty(schema)
    if isinstance(df, pa.Table):
        df = pl.from_arrow(df)  # type: ignore[assignment]
    assert isinstance(df, pl.DataFrame)
    required = [f.name for f in schema if not f.nullable]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} table is missing required column(s) {missing}; it has {df.columns}")
    target = pl.from_arrow(schema.empty_table()).schema
    exprs = []
    for name, dtype in target.items():
        if name in df.columns:
            exprs.append(pl.col(name).cast(dtype))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    extra = [c for c in df.columns if c not in target]
    return df.select(exprs + [pl.col(c) for c in extra])


def empty_impressions() -> pl.DataFrame:
    """An impressions table with no rows: :data:`~lmrec.data.schema.EVENT_COLUMNS` plus ``user_idx`` and
    ``item_idx``."""
    return _empty(EVENTS_SCHEMA).with_columns(pl.lit(None, dtype=pl.Int32).alias("user_idx"),
                                              pl.lit(None, dtype=pl.Int32).alias("item_idx"))


def _index_of(col: str, vocabulary: list[str], first: int, dtype: pl.DataType) -> pl.Expr:
    """``col``'s position in ``vocabulary`` (counting from ``first``) as ``dtype``.

    An empty vocabulary (an empty dataset) gives a typed null column: polars 2.1 ignores ``return_dtype`` (and
    a following cast) when ``replace_strict`` gets an empty mapping, which would leave a text column behind.
    """
    if not vocabulary:
        return pl.lit(None, dtype=dtype)
    return pl.col(col).replace_strict(vocabulary, range(first, first + len(vocabulary)), return_dtype=dtype)


def text_coverage_line(with_text: int, total: int) -> str:
    """``text for 2,380 of 2,420 items with events (98 %)``: how many items text-based models can tell apart
    by their text."""
    share = f" ({100 * with_text / total:.0f} %)" if total else ""
    return f"text for {with_text:,} of {total:,} items with events{share}"


@dataclass(frozen=True)
class DatasetStats:
    """Summary statistics, printed by ``lmrec data stats``."""

    name: str
    n_users: int
    n_items: int
    n_events: int
    n_items_with_events: int
    density: float
    events_by_type: dict[str, int]
    sequence_length: dict[str, float]  # min / median / mean / max events per user
    item_popularity: dict[str, float]  # min / median / mean / max events per item with events
    first_timestamp: int | None
    last_timestamp: int | None
    value: dict[str, float] = field(default_factory=dict)  # min / mean / max of non-null values
    n_impressions: int = 0  # items shown (kept apart from the events above)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Events, items and users with dense ids, immutable after :meth:`build`.

    ``events`` holds :data:`~lmrec.data.schema.EVENT_COLUMNS` plus ``user_idx``, ``item_idx`` and
    ``type_idx``, sorted by user, then time, ties in input order. ``items`` and ``users`` hold one row per
    vocabulary entry in index order (row ``i`` is index ``i + 1``). Splits produce new datasets that share the
    vocabularies, so a model trained on one split scores the items of another.

    ``impressions`` holds the ``impression`` events (items shown to a user, in list ``list_id`` at
    ``position``, 0 first) with the same columns plus ``user_idx`` and ``item_idx``, sorted by user, time,
    list and position. They are never in ``events``: sequences, interaction matrices, popularity, splits'
    targets and every model's training history are interactions only, and impressions stay here for a ranker
    to read as negatives (shown, not clicked). A click from a list carries the same ``list_id``.
    """

    events: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    user_map: IdMap
    item_map: IdMap
    event_types: tuple[str, ...]
    name: str = "dataset"
    impressions: pl.DataFrame = field(default_factory=empty_impressions)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        events: pl.DataFrame | pa.Table,
        items: pl.DataFrame | pa.Table | None = None,
        users: pl.DataFrame | pa.Table | None = None,
        *,
        name: str = "dataset",
        user_map: IdMap | None = None,
        item_map: IdMap | None = None,
        event_types: tuple[str, ...] | None = None,
    ) -> Dataset:
        """Assemble a dataset from clean tables (see :mod:`lmrec.data.cleaning` for cleaning raw ones).

        Items and users that appear only in their own table (a catalogue item nobody touched yet) are part
        of the vocabulary; so are ids that appear only in events. Passing ``user_map``/``item_map`` keeps the
        indices of an existing dataset (ids it lacks are appended).
        """
        ev = conform(events, EVENTS_SCHEMA, "events")
        # Impressions go to a table of their own before anything else: they are not interactions.
        shown = ev["event_type"] == IMPRESSION
        imp, ev = (ev.filter(shown), ev.filter(~shown)) if shown.any() else (ev.clear(), ev)
        it = conform(items, ITEMS_SCHEMA, "items").unique("item_id", keep="last", maintain_order=True)
        us = conform(users, USERS_SCHEMA, "users").unique("user_id", keep="last", maintain_order=True)

        # Vocabularies: table ids first (catalogue order), then ids seen only in events (first-seen order),
        # then ids seen only in impressions (so data without impressions gets the same indices either way).
        item_ids = list(dict.fromkeys(it["item_id"].to_list() + ev["item_id"].unique(maintain_order=True)
                                      .to_list() + imp["item_id"].unique(maintain_order=True).to_list()))
        user_ids = list(dict.fromkeys(us["user_id"].to_list() + ev["user_id"].unique(maintain_order=True)
                                      .to_list() + imp["user_id"].unique(maintain_order=True).to_list()))
        imap = item_map.extend(item_ids) if item_map is not None else IdMap(item_ids, kind="item")
        umap = user_map.extend(user_ids) if user_map is not None else IdMap(user_ids, kind="user")
        types = tuple(t for t in event_types if t != IMPRESSION) if event_types is not None else ()
        types = types + tuple(
            t for t in ev["event_type"].unique(maintain_order=True).to_list() if t not in types
        )

        ev = (
            ev.with_row_index("_order")
            .with_columns(
                _index_of("user_id", umap.raw_ids, 1, pl.Int32).alias("user_idx"),
                _index_of("item_id", imap.raw_ids, 1, pl.Int32).alias("item_idx"),
                _index_of("event_type", list(types), 0, pl.Int16).alias("type_idx"),
            )
            .sort(["user_idx", "timestamp", "_order"])
            .drop("_order")
        )
        imp = (
            imp.with_row_index("_order")
            .with_columns(
                _index_of("user_id", umap.raw_ids, 1, pl.Int32).alias("user_idx"),
                _index_of("item_id", imap.raw_ids, 1, pl.Int32).alias("item_idx"),
            )
            .sort(["user_idx", "timestamp", "list_id", "position", "_order"], nulls_last=True)
            .drop("_order")
        )
        it = cls._complete(it, imap, "item_id", ITEMS_SCHEMA).with_columns(
            pl.int_range(1, len(imap) + 1, dtype=pl.Int32).alias("item_idx")
        )
        us = cls._complete(us, umap, "user_id", USERS_SCHEMA).with_columns(
            pl.int_range(1, len(umap) + 1, dtype=pl.Int32).alias("user_idx")
        )
        return cls(ev, it, us, umap, imap, types, name, imp)

    @staticmethod
    def _complete(table: pl.DataFrame, idmap: IdMap, key: str, schema: pa.Schema) -> pl.DataFrame:
        """One row per vocabulary entry, in index order; entries absent from ``table`` get null fields."""
        order = pl.DataFrame({key: idmap.raw_ids}, schema={key: pl.String})  # typed even when empty
        return order.join(table, on=key, how="left", maintain_order="left")

    def with_events(self, events: pl.DataFrame, name: str | None = None,
                    impressions: pl.DataFrame | None = None) -> Dataset:
        """The same vocabularies, items and users with another set of events (already indexed and sorted),
        used by splits; ``impressions`` (indexed and sorted too) replace this dataset's when given."""
        return Dataset(events, self.items, self.users, self.user_map, self.item_map, self.event_types,
                       name or self.name, self.impressions if impressions is None else impressions)

    # ------------------------------------------------------------------ sizes and views
    @property
    def has_split(self) -> bool:
        """Whether the events carry a given split (a ``split`` column: train / valid / test)."""
        return SPLIT_COLUMN in self.events.columns

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    @property
    def n_events(self) -> int:
        """Interactions (impressions are apart: :attr:`n_impressions`)."""
        return self.events.height

    @property
    def n_impressions(self) -> int:
        return self.impressions.height

    @cached_property
    def sequences(self) -> Ragged:
        """Each user's chronological item indices; row ``u`` is user index ``u`` (row 0, padding, is
        empty)."""
        return Ragged.from_groups(
            self.events["user_idx"].to_numpy(), self.events["item_idx"].to_numpy().astype(np.int64),
            self.user_map.size,
        )

    @cached_property
    def timestamps(self) -> Ragged:
        """Each user's event times, aligned with :attr:`sequences`."""
        return Ragged(self.sequences.offsets, self.events["timestamp"].to_numpy())

    @cached_property
    def type_sequences(self) -> Ragged:
        """Each user's event type indices (into :attr:`event_types`), aligned with :attr:`sequences`."""
        return Ragged(self.sequences.offsets, self.events["type_idx"].to_numpy().astype(np.int64))

    @cached_property
    def item_popularity(self) -> np.ndarray:
        """Events per item index, ``(n_items + 1,)`` with 0 for padding."""
        return np.bincount(self.events["item_idx"].to_numpy(), minlength=self.item_map.size).astype(np.int64)

    def interaction_matrix(self, binary: bool = True):  # -> scipy.sparse.csr_matrix
        """A ``(n_users + 1, n_items + 1)`` CSR matrix; row/column 0 is padding and stays empty."""
        m = self.sequences.to_csr(self.item_map.size)
        if binary:
            m.data[:] = 1.0
        return m

    def user_sequence(self, user_id: str) -> list[str]:
        """A user's items as raw ids, oldest first."""
        return self.item_map.raws(self.sequences[self.user_map.index(user_id)]).tolist()

    def text_coverage(self) -> tuple[int, int]:
        """``(items with text, items)`` among the items that have events: text is a non-empty title or
        description, what text-based models read (:func:`text_coverage_line` words it)."""
        active = self.item_popularity[1:] > 0
        has_text = np.zeros(len(active), dtype=bool)
        for col in ("title", "description"):
            values = self.items[col].cast(pl.String).str.strip_chars().fill_null("")
            has_text |= (values.str.len_chars() > 0).to_numpy()
        return int((has_text & active).sum()), int(active.sum())

    def item_titles(self) -> list[str]:
        """Titles in index order, with ``""`` for padding (index 0) and for items without a title."""
        return [""] + [t or "" for t in self.items["title"].to_list()]

    # ------------------------------------------------------------------ statistics
    def stats(self) -> DatasetStats:
        ev = self.events
        lengths = self.sequences.lengths[1:]
        lengths = lengths[lengths > 0]
        pop = self.item_popularity[1:]
        pop = pop[pop > 0]
        by_type = {
            str(r[0]): int(r[1]) for r in ev.group_by("event_type").len().sort("event_type").iter_rows()
        }
        values = ev["value"].drop_nulls()
        n_active_users = int(len(lengths))

        def summary(a: np.ndarray) -> dict[str, float]:
            if len(a) == 0:
                return {"min": 0.0, "median": 0.0, "mean": 0.0, "max": 0.0}
            return {"min": float(a.min()), "median": float(np.median(a)), "mean": float(a.mean()),
                    "max": float(a.max())}

        return DatasetStats(
            name=self.name,
            n_users=self.n_users,
            n_items=self.n_items,
            n_events=self.n_events,
            n_items_with_events=int(len(pop)),
            density=self.n_events / max(1, n_active_users * max(1, len(pop))),
            events_by_type=by_type,
            sequence_length=summary(lengths),
            item_popularity=summary(pop),
            first_timestamp=int(ev["timestamp"].min()) if ev.height else None,  # type: ignore[arg-type]
            last_timestamp=int(ev["timestamp"].max()) if ev.height else None,  # type: ignore[arg-type]
            value={"min": float(values.min()), "mean": float(values.mean()), "max": float(values.max())}  # type: ignore[arg-type]
            if len(values) else {},
            n_impressions=self.n_impressions,
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the dataset as a folder of Parquet tables and a JSON manifest (no pickles)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        keep = [*EVENT_COLUMNS, *([SPLIT_COLUMN] if self.has_split else [])]
        imp = self.impressions.select([c for c in keep if c in self.impressions.columns])
        # Impressions travel with the events (``build`` sets them apart again).
        pl.concat([self.events.select(keep), imp], how="diagonal_relaxed").write_parquet(
            path / "events.parquet")
        self.items.drop("item_idx").write_parquet(path / "items.parquet")
        self.users.drop("user_idx").write_parquet(path / "users.parquet")
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "event_types": list(self.event_types),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_events": self.n_events,
            "n_impressions": self.n_impressions,
        }
        (path / "dataset.json").write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        path = Path(path)
        manifest_path = path / "dataset.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{path} is not a saved lmrec dataset (no dataset.json)")
        manifest = json.loads(manifest_path.read_text())
        items = pl.read_parquet(path / "items.parquet")
        users = pl.read_parquet(path / "users.parquet")
        # Items/users tables list every vocabulary entry in index order, so indices survive the round trip.
        return cls.build(
            pl.read_parquet(path / "events.parquet"),
            items,
            users,
            name=manifest["name"],
            item_map=IdMap(items["item_id"].to_list(), kind="item"),
            user_map=IdMap(users["user_id"].to_list(), kind="user"),
            event_types=tuple(manifest["event_types"]),
        )

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, users={self.n_users:,}, items={self.n_items:,}, "
                f"events={self.n_events:,}, event_types={list(self.event_types)}"
                + (f", impressions={self.n_impressions:,})" if self.n_impressions else ")"))
