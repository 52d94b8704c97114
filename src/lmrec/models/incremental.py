"""What every incremental update does before its model-specific training: absorb new events.

:func:`absorb_events` grows a fitted model's vocabularies with the users and items of new events (new items
through :meth:`~lmrec.models.base.Recommender.add_items`, so text models start them from their text),
appends the events to the users' histories, adds them to the item counts, and returns the merged training
data as a :class:`~lmrec.data.dataset.Dataset` in the model's index space, which the model then trains on
(:class:`~lmrec.models.capabilities.IncrementalUpdates`).

The model keeps its training histories as item sequences only (no times or types), so the merged dataset's
older events carry their order, not their times: every older event is dated just before the first new one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset, conform
from lmrec.data.idmap import IdMap
from lmrec.data.ragged import Ragged
from lmrec.data.schema import IMPRESSION, ITEMS_SCHEMA, PAD
from lmrec.models.base import Recommender
from lmrec.text import ItemTemplate

#: The event type older events are given in the merged dataset (their types are not kept by the model).
PAST_EVENT_TYPE = "past"


@dataclass(frozen=True)
class Absorbed:
    """The merged training data after :func:`absorb_events`."""

    dataset: Dataset  # every known history plus the new events, in the model's (grown) index space
    touched: np.ndarray  # user indices with new events (sorted)
    n_events: int
    new_users: int
    new_items: int


def _new_item_texts(model: Recommender, ids: list[str], items: pl.DataFrame | None) -> list[str] | None:
    """Texts of new items for a text model, rendered with the template its vectors were made with; ``None``
    when the model reads no text or no catalogue row was given (new rows are then zero vectors)."""
    if model.item_vectors_ is None or items is None or model.text_space_ is None:
        return None
    if not model.text_space_.encoder:
        return None  # vectors from an unnamed source: the model cannot encode more of them
    rows = conform(items, ITEMS_SCHEMA, "items").unique("item_id", keep="last", maintain_order=True)
    frame = pl.DataFrame({"item_id": ids}).join(rows, on="item_id", how="left", maintain_order="left")
    return ItemTemplate.parse(model.text_space_.template or None).render(frame)


def _categories(ids: list[str], items: pl.DataFrame | None) -> list[list[str]]:
    if items is None or "categories" not in items.columns:
        return [[] for _ in ids]
    cats = dict(zip(items["item_id"].cast(pl.String).to_list(), items["categories"].to_list(), strict=True))
    return [list(cats.get(i) or []) for i in ids]


def absorb_events(model: Recommender, events: pl.DataFrame, items: pl.DataFrame | None = None) -> Absorbed:
    """Grow ``model``'s vocabularies and histories with ``events`` (see the module docstring).

    Events are taken in time order (ties in input order); ids are read as strings. Raises ``ValueError``
    when ``events`` lack ``user_id``, ``item_id`` or ``timestamp``.
    """
    model._check_fitted()
    assert model.item_map is not None and model.user_map is not None
    assert model.user_histories_ is not None and model.popularity_ is not None
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in events.columns]
    if missing:
        raise ValueError(f"new events lack column(s) {missing}; they have {events.columns}")
    ev = (events.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String),
                        pl.col("timestamp").cast(pl.Int64),
                        (pl.col("event_type").cast(pl.String) if "event_type" in events.columns
                         else pl.lit("interaction")).alias("event_type"))
          .with_row_index("_order").sort(["timestamp", "_order"]).drop("_order")
          .filter(pl.col("event_type") != IMPRESSION))  # what was shown is not an interaction
    item_ids = ev["item_id"].unique(maintain_order=True).to_list()
    new_items = [i for i in item_ids if i not in model.item_map]
    if new_items:
        model.add_items(new_items, _categories(new_items, items),
                        texts=_new_item_texts(model, new_items, items))
    user_ids = ev["user_id"].unique(maintain_order=True).to_list()
    new_users = [u for u in user_ids if u not in model.user_map]
    if new_users:
        model.user_map = model.user_map.extend(new_users)
    uidx = model.user_map.indices(ev["user_id"].to_list())
    iidx = model.item_map.indices(ev["item_id"].to_list())

    # Merged histories: each user's known sequence, then their new events in time order.
    old = model.user_histories_
    n_users = model.user_map.size
    old_lists = [old[u] if u < len(old) else np.zeros(0, dtype=np.int64) for u in range(n_users)]
    order = np.argsort(uidx, kind="stable")  # stable: keeps time order within a user
    new_by_user = Ragged.from_groups(uidx[order], iidx[order], n_users)
    merged = Ragged.from_lists([np.concatenate([old_lists[u], new_by_user[u]]).astype(np.int64)
                                for u in range(n_users)])
    model.user_histories_ = merged
    pop = np.zeros(model.item_map.size, dtype=np.int64)
    pop[: len(model.popularity_)] = model.popularity_
    model.popularity_ = pop + np.bincount(iidx, minlength=len(pop)).astype(np.int64)

    dataset = _merged_dataset(model.user_map, model.item_map, merged, new_by_user,
                              ev["timestamp"].to_numpy(), ev["event_type"].to_numpy()[order],
                              ev["timestamp"].to_numpy()[order], model.item_categories_)
    touched = np.flatnonzero(new_by_user.lengths > 0).astype(np.int64)
    return Absorbed(dataset, touched, ev.height, len(new_users), len(new_items))


def _merged_dataset(user_map: IdMap, item_map: IdMap, merged: Ragged, new_by_user: Ragged,
                    all_times: np.ndarray, new_types: np.ndarray, new_times: np.ndarray,
                    categories: list[list[str]] | None = None) -> Dataset:
    """A :class:`Dataset` over the model's vocabularies whose sequences are ``merged`` (older events dated one
    second before the first new event and typed :data:`PAST_EVENT_TYPE`); its items table holds the ids and
    categories (index-aligned ``categories``, row 0 padding), enough to refit a model on it."""
    lengths = merged.lengths
    n_new = new_by_user.lengths
    rows = merged.row_ids()
    # position of each event within its user's merged sequence, and whether it is one of the new ones
    pos = np.arange(len(merged.values)) - merged.offsets[rows]
    is_new = pos >= (lengths - n_new)[rows]
    before = int(all_times.min()) - 1 if len(all_times) else 0
    ts = np.full(len(merged.values), before, dtype=np.int64)
    ts[is_new] = new_times  # new events are laid out user by user, in time order, like merged's new part
    type_names = tuple(dict.fromkeys([PAST_EVENT_TYPE, *new_types.tolist()]))
    type_index = {t: i for i, t in enumerate(type_names)}
    type_idx = np.zeros(len(merged.values), dtype=np.int16)  # 0: PAST_EVENT_TYPE
    type_idx[is_new] = np.fromiter((type_index[t] for t in new_types.tolist()), dtype=np.int16,
                                   count=len(new_types))
    events = pl.DataFrame({
        "user_id": user_map.raws(rows).astype(str) if len(rows) else np.zeros(0, dtype=str),
        "item_id": item_map.raws(merged.values).astype(str) if len(rows) else np.zeros(0, dtype=str),
        "timestamp": ts,
        "event_type": np.asarray(type_names, dtype=object)[type_idx].astype(str),
        "value": np.full(len(rows), np.nan),
        "user_idx": rows.astype(np.int32),
        "item_idx": merged.values.astype(np.int32),
        "type_idx": type_idx,
    }, schema_overrides={"user_id": pl.String, "item_id": pl.String, "event_type": pl.String})
    events = events.select(pl.format("m{}", pl.int_range(pl.len())).alias("event_id"), pl.all())
    cats = (categories or [])[1:]
    cats = [list(c) for c in cats] + [[] for _ in range(len(item_map) - len(cats))]
    items = pl.DataFrame({"item_id": item_map.raw_ids, "categories": cats[: len(item_map)],
                          "item_idx": np.arange(1, item_map.size, dtype=np.int32)},
                         schema={"item_id": pl.String, "categories": pl.List(pl.String),
                                 "item_idx": pl.Int32})
    users = pl.DataFrame({"user_id": user_map.raw_ids,
                          "user_idx": np.arange(1, user_map.size, dtype=np.int32)},
                         schema={"user_id": pl.String, "user_idx": pl.Int32})
    return Dataset(events, items, users, user_map, item_map, type_names, "merged")


def replay_users(absorbed: Absorbed, ratio: float, seed: int, min_length: int = 2) -> np.ndarray:
    """The users an update trains on: every user with new events, plus ``ratio`` times as many others
    (drawn at random among users with at least ``min_length`` events) so that the model keeps what it knew
    (rehearsal against catastrophic forgetting)."""
    lengths = absorbed.dataset.sequences.lengths
    others = np.setdiff1d(np.flatnonzero(lengths >= min_length), absorbed.touched)
    others = others[others != PAD]
    n = int(min(len(others), round(ratio * len(absorbed.touched))))
    rng = np.random.default_rng(seed)
    sample = rng.choice(others, size=n, replace=False) if n else np.zeros(0, dtype=np.int64)
    return np.union1d(absorbed.touched, sample).astype(np.int64)


class UpdateClock:
    """Wall and process CPU time of an update (CPU time counts every thread of the process)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def seconds(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu
