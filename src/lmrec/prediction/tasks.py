"""Labelled examples for the prediction heads, cut from a :class:`~lmrec.data.dataset.Dataset` without
leakage.

Three protocols, each stated with the numbers it produces:

* :func:`per_user_cut` — each user's last ``fraction`` of events (by time) is the future; the rest is history.
  Used for ratings on MovieLens (the rating of every held-out event, given the history before the cut).
* :func:`time_cut` — one global cut time; events before it are history, events in ``[cut, cut + horizon)`` the
  future. Used for user value and the next action type.
* :func:`value_labels` — at a cut, every user with history gets the value of their future window (total amount
  of their purchases, or their number of events, in the next ``horizon_days``), plus RFM features computed
  from the history only.

Nothing after a cut ever enters the features of that cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset

DAY = 86_400

#: RFM feature names, in column order of :attr:`ValueSet.features`.
RFM_FEATURES: tuple[str, ...] = (
    "recency_days",  # days from the last event to the cut
    "frequency",  # events in the observation window
    "n_active_days",  # distinct days with an event
    "n_purchases",  # purchase events (0 for logs without them)
    "monetary",  # total value of the user's purchase events (or of all valued events, see value_labels)
    "last_period_value",  # the target quantity over the horizon just before the cut
    "last_period_events",  # events in the horizon just before the cut
    "tenure_days",  # days from the first event to the cut
)


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
    return ds.with_events(before), after


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


def _valued(ev: pl.DataFrame, target_kind: str) -> pl.Expr:
    """Per event: what it adds to the user's value (purchase amount, or 1 per event)."""
    if target_kind == "count":
        return pl.lit(1.0)
    if target_kind == "amount":
        has_purchases = ev.height > 0 and bool((ev["event_type"] == "purchase").any())
        is_money = (pl.col("event_type") == "purchase") if has_purchases else pl.col("value").is_not_null()
        return pl.when(is_money).then(pl.col("value").fill_null(0.0)).otherwise(0.0)
    raise ValueError(f"target_kind must be 'amount' or 'count', got {target_kind!r}")


def rfm_frame(events: pl.DataFrame, cut: int, horizon_days: float = 30.0, target_kind: str = "amount",
              observation_days: float | None = None) -> pl.DataFrame:
    """RFM features at ``cut`` from an events table (``user_idx``, ``timestamp``, ``event_type``, ``value``)
    and each user's value in ``[cut, cut + horizon_days)``; one row per user with an event before the cut.

    Returns a frame with ``user_idx``, the :data:`RFM_FEATURES` columns and ``target`` (0 for users with no
    future event, or when ``events`` holds nothing after the cut).
    """
    horizon_s = int(horizon_days * DAY)
    valued = _valued(events, target_kind)
    hist = events.filter(pl.col("timestamp") < cut)
    if observation_days is not None:
        hist = hist.filter(pl.col("timestamp") >= cut - int(observation_days * DAY))
    hist = hist.with_columns(valued.alias("_v"))
    fut = events.filter((pl.col("timestamp") >= cut) & (pl.col("timestamp") < cut + horizon_s))
    fut = fut.with_columns(valued.alias("_v")).group_by("user_idx").agg(pl.col("_v").sum().alias("target"))
    last = pl.col("timestamp") >= cut - horizon_s
    return (hist.group_by("user_idx").agg(
        ((cut - pl.col("timestamp").max()) / DAY).alias("recency_days"),
        pl.len().cast(pl.Float64).alias("frequency"),
        (pl.col("timestamp") // DAY).n_unique().cast(pl.Float64).alias("n_active_days"),
        (pl.col("event_type") == "purchase").sum().cast(pl.Float64).alias("n_purchases"),
        pl.col("_v").sum().cast(pl.Float64).alias("monetary"),
        pl.col("_v").filter(last).sum().cast(pl.Float64).alias("last_period_value"),
        last.sum().cast(pl.Float64).alias("last_period_events"),
        ((cut - pl.col("timestamp").min()) / DAY).alias("tenure_days"),
    ).join(fut, on="user_idx", how="left").with_columns(pl.col("target").fill_null(0.0).cast(pl.Float64))
        .sort("user_idx"))


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


def value_cuts(ds: Dataset, horizon_days: float = 30.0, n_train_cuts: int = 4, step_days: float = 7.0,
               ) -> tuple[int, list[int]]:
    """The test cut (``horizon_days`` before the last event) and ``n_train_cuts`` earlier training cuts.

    Training cuts end their future window at or before the test cut (``cut + horizon <= test_cut``), so no
    training label overlaps the test window; they are spaced ``step_days`` apart, latest first.
    """
    if ds.n_events == 0:
        raise ValueError("the dataset has no events")
    end = int(ds.events["timestamp"].max()) + 1  # type: ignore[arg-type]
    horizon_s = int(horizon_days * DAY)
    test_cut = end - horizon_s
    train_cuts = [test_cut - horizon_s - int(k * step_days * DAY) for k in range(n_train_cuts)]
    start = int(ds.events["timestamp"].min())  # type: ignore[arg-type]
    train_cuts = [c for c in train_cuts if c > start]
    if not train_cuts:
        raise ValueError(f"the log is too short for a {horizon_days}-day horizon with a training cut "
                         "before it")
    return test_cut, train_cuts


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


__all__ = ["RFM_FEATURES", "RatingSet", "TypeSet", "ValueSet", "per_user_cut", "rating_pairs", "rfm_frame",
           "time_cut", "type_examples", "value_cuts", "value_labels"]
