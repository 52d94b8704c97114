"""RFM features of an event log at a cut time, and the cut times of the value task.

Recency, frequency, monetary value (and a few relatives) of every user before a cut, with the user's value in
the ``horizon_days`` after it. Pure functions of the events table, so that both the value protocols
(:mod:`lmrec.prediction.tasks`) and the value head of :mod:`lmrec.models.multitask` read the same features.
"""

from __future__ import annotations

import polars as pl

from lmrec.data.dataset import Dataset

DAY = 86_400

#: RFM feature names, in column order of :attr:`lmrec.prediction.tasks.ValueSet.features`.
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


__all__ = ["DAY", "RFM_FEATURES", "rfm_frame", "value_cuts"]
