"""Labelled examples for the prediction heads, cut from a :class:`~lmrec.data.dataset.Dataset` without
leakage.

Three protocols, each stated with the numbers it produces:

* :func:`per_user_cut` — each user's last ``fraction`` of events (by time) is the future; the rest is history.
  Used for ratings on MovieLens (the rating of every held-out event, given the history before the cut).
* :func:`time_cut` — one global cut time; events before it are history, events in ``[cut, cut + horizon)`` the
  future. Used for user value and the next action type.
* :func:`value_labels` — at a cut, every user with history gets the value of their future window (total amount
  of their purchases, or their number of events, in the next ``horizon_days``), plus RFM features computed
  from the history only (:func:`~lmrec.data.rfm.rfm_frame`).

Nothing after a cut ever enters the features of that cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.rfm import DAY, RFM_FEATURES, rfm_frame, value_cuts


def per_user_cut(ds: Dataset, fraction: float = 0.2, min_history: int = 1) -> tuple[Dataset, pl.DataFrame]:
    """Split each user's chronological events: the last ``ceil(fraction * n)`` are the future.

    Users with fewer than ``min_history + 1`` events keep everything in the history (they have nothing to
    test).

    Returns
    -------
    (history, future)
        ``history`` is a :class:`Dataset` with the same vocabularies; ``future`` the held-out events (rows of
        ``ds.events``, sorted by user then time).
    """
    if not 0 < fraction < 1:
        raise ValueError("fraction must be in (0, 1)")
    ev = ds.events.with_columns(
        pl.len().over("user_idx").alias("_n"), pl.int_range(pl.len()).over("user_idx").alias("_pos"))
    n_future = pl.min_horizontal((pl.col("_n") * fraction).ceil().cast(pl.Int64),
                                 pl.col("_n") - min_history).clip(lower_bound=0)
    is_future = pl.col("_pos") >= pl.col("_n") - n_future
    cols = ds.events.columns
    return (ds.with_events(ev.filter(~is_future).select(cols)), ev.filter(is_future).select(cols))


def time_cut(ds: Dataset, cut: int, horizon_s: int | None = None) -> tuple[Dataset, pl.DataFrame]:
    """Events before ``cut`` (seconds) as a :class:`Dataset`, and the events in ``[cut, cut + horizon_s)``."""
    ev = ds.events
    before = ev.filter(pl.col("timestamp") < cut)
    after = ev.filter(pl.col("timestamp") >= cut)
    if horizon_s is not None:
        after = after.filter(pl.col("timestamp") < cut + horizon_s)
    return ds.with_events(before, impressions=ds.impressions.filter(pl.col("timestamp") < cut)), after


@dataclass(frozen=True)
class RatingSet:
    """Ratings to predict: ``users[i]`` rated ``items[i]`` with ``ratings[i]``."""

    users: np.ndarray  # (n,) int64 user indices
    items: np.ndarray  # (n,) int64 item indices
    ratings: np.ndarray  # (n,) float64

    def __len__(self) -> int:
        return len(self.users)


def rating_pairs(events: pl.DataFrame, event_type: str = "rating") -> RatingSet:
    """The (user, item, value) triples of the events of ``event_type`` that carry a value."""
    r = events.filter((pl.col("event_type") == event_type) & pl.col("value").is_not_null())
    return RatingSet(r["user_idx"].to_numpy().astype(np.int64), r["item_idx"].to_numpy().astype(np.int64),
                     r["value"].to_numpy().astype(np.float64))


@dataclass(frozen=True)
class ValueSet:
    """User value at one cut: features from the history, targets from the future window.

    ``target`` is on the original scale (an amount or a count); models regress ``log1p(target)``.
    """

    cut: int
    horizon_days: float
    target_kind: str  # "amount" or "count"
    users: np.ndarray  # (n,) user indices with at least one event before the cut
    target: np.ndarray  # (n,) future value
    features: np.ndarray  # (n, len(RFM_FEATURES)) float64

    def __len__(self) -> int:
        return len(self.users)


def value_labels(ds: Dataset, cut: int, horizon_days: float = 30.0, target_kind: str = "amount",
                 observation_days: float | None = None) -> ValueSet:
    """Features before ``cut`` and the value of the ``horizon_days`` after it, for every user with history.

    Parameters
    ----------
    cut:
        The observation/future boundary (seconds). Features use events with ``timestamp < cut`` only.
    horizon_days:
        The future window ``[cut, cut + horizon_days)``; also the length of the "last period" feature window.
    target_kind:
        ``"amount"``: total value of purchase events (of all valued events if the log has no purchases);
        ``"count"``: number of events of any type.
    observation_days:
        Keep only events in ``[cut - observation_days, cut)`` for the features (all history by default).
    """
    feats = rfm_frame(ds.events, cut, horizon_days, target_kind, observation_days)
    return ValueSet(cut, horizon_days, target_kind, feats["user_idx"].to_numpy().astype(np.int64),
                    feats["target"].to_numpy().astype(np.float64),
                    feats.select(list(RFM_FEATURES)).to_numpy().astype(np.float64))


@dataclass(frozen=True)
class TypeSet:
    """Next-action-type examples: the event at ``positions[i]`` of user ``users[i]``'s full sequence has type
    ``labels[i]``; ``previous[i]`` is the type of the event before it (``-1`` for a user's first event)."""

    users: np.ndarray
    positions: np.ndarray
    previous: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def type_examples(ds: Dataset, start: int, end: int | None = None, min_position: int = 1) -> TypeSet:
    """Every event with ``start <= timestamp < end`` that has at least ``min_position`` earlier events:
    predict its type from everything before it (teacher forcing: the true earlier events are the input)."""
    ev = ds.events.with_columns(
        pl.int_range(pl.len()).over("user_idx").alias("_pos"),
        pl.col("type_idx").shift(1).over("user_idx").fill_null(-1).alias("_prev"))
    sel = (pl.col("timestamp") >= start) & (pl.col("_pos") >= min_position)
    if end is not None:
        sel = sel & (pl.col("timestamp") < end)
    ev = ev.filter(sel)
    return TypeSet(ev["user_idx"].to_numpy().astype(np.int64), ev["_pos"].to_numpy().astype(np.int64),
                   ev["_prev"].to_numpy().astype(np.int64), ev["type_idx"].to_numpy().astype(np.int64))


# DAY, RFM_FEATURES, rfm_frame and value_cuts live in lmrec.data.rfm (the multitask model reads them too)
__all__ = ["DAY", "RFM_FEATURES", "RatingSet", "TypeSet", "ValueSet", "per_user_cut", "rating_pairs",
           "rfm_frame", "time_cut", "type_examples", "value_cuts", "value_labels"]
