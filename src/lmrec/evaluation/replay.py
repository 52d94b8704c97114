"""A replay simulator: a dataset's events replayed in time order, day by day, against recommenders.

Offline checks of what only live traffic shows otherwise: does updating a model every day help on the next
day's events, does an experiment's arm beat another, do new users get useful lists from their first events.

How a replay runs (:func:`replay`)
----------------------------------
The events before ``start`` are the past: the arms' models were fitted on them, and they are every user's
history when the replay begins. Then, for each simulated day ``d`` (``day_seconds`` long):

1. The users active on day ``d`` (at least one event) are split between the arms: by ``assign`` (a user id →
   arm name, e.g. an experiment's hash buckets), or, without it, every arm serves every user (a paired,
   counterfactual comparison: the arms see the same users and histories).
2. Each arm recommends ``k`` items to each of its users from their history before day ``d`` (items already
   seen are excluded): these are the day's *impressions*.
3. The lists are scored against what the users really did on day ``d``: NDCG@k and HR@k with the distinct
   items they interacted with that day and had not seen before as targets (full ranking, the metric
   functions of :mod:`lmrec.data.ranking`). With a :class:`ClickModel` (the synthetic shop's ground-truth
   tastes, :class:`ShopClicks`), every impression also gets a click probability and a synthetic click,
   drawn from a uniform number fixed by ``(seed, day, user, item)``: arms that show the same item to the
   same user on the same day draw the same click (common random numbers).
4. The day's events join the histories, and each arm :meth:`~Arm.observe` s them (a :class:`ModelArm` with
   ``update_every=1`` updates its model on them, :class:`~lmrec.models.capabilities.IncrementalUpdates`).

:class:`Arm` is the one interface the simulator needs (``recommend`` and ``observe``): a model with an update
policy (:class:`ModelArm`), or anything else that recommends from raw histories, such as a replica of the
service's engine or an onboarding policy.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl

from lmrec.data.ragged import Ragged
from lmrec.data.ranking import hit_matrix, hit_rate, ndcg
from lmrec.data.synthetic_ecommerce import GroundTruth
from lmrec.models.base import Recommender
from lmrec.models.capabilities import IncrementalUpdates

DAY = 86_400


def raw_ranking_metrics(ranked: Sequence[Sequence[str]], targets: Sequence[Sequence[str]],
                        k: int = 10) -> dict[str, np.ndarray]:
    """Per-row ``ndcg@k`` and ``hr@k`` of ranked raw item ids against target raw ids (binary relevance,
    duplicates counted once, ``""`` never hits). Rows may come from models with different vocabularies:
    ids are compared as strings, so a target a model does not know is a miss, never dropped."""
    vocab: dict[str, int] = {}

    def ids(rows: Sequence[Sequence[str]], width: int | None) -> Ragged | np.ndarray:
        out = [[vocab.setdefault(str(i), len(vocab) + 1) if str(i) else 0 for i in r] for r in rows]
        if width is None:
            return Ragged.from_lists(out)
        arr = np.zeros((len(out), width), dtype=np.int64)
        for r, row in enumerate(out):
            arr[r, : min(width, len(row))] = row[:width]
        return arr

    width = max(k, max((len(r) for r in ranked), default=0))
    ranked_idx = ids(ranked, width)
    target_idx = ids(targets, None)
    assert isinstance(ranked_idx, np.ndarray) and isinstance(target_idx, Ragged)
    hits, n_targets = hit_matrix(ranked_idx, target_idx)
    return {f"ndcg@{k}": ndcg(hits, n_targets, k), f"hr@{k}": hit_rate(hits, k)}


# ---------------------------------------------------------------------------------------------- arms
class Arm(Protocol):
    """Something the simulator can show to users: recommends from raw histories, sees each day's events."""

    name: str

    def recommend(self, users: list[str], histories: list[list[str]], k: int) -> list[list[str]]:
        """``k`` raw item ids per user (fewer, or ``""`` padding, when fewer can be ranked), items of the
        history excluded."""
        ...

    def observe(self, day: int, events: pl.DataFrame, items: pl.DataFrame | None) -> dict[str, Any]:
        """Called after day ``day`` with its events (every user's, lmrec's event columns); returns figures to
        record for that day (e.g. an update's CPU time), or ``{}``."""
        ...


@dataclass
class ModelArm:
    """A fitted model with an update policy: never (``update_every=0``) or every ``update_every`` days,
    on the events since its last update (the model must have
    :class:`~lmrec.models.capabilities.IncrementalUpdates`).

    ``passes`` and ``seed`` go to :meth:`~lmrec.models.capabilities.IncrementalUpdates.update`.
    """

    name: str
    model: Recommender
    update_every: int = 0
    passes: int | None = None
    seed: int = 0
    _pending: list[pl.DataFrame] = field(default_factory=list, repr=False)
    _days: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.update_every < 0:
            raise ValueError(f"update_every must be >= 0 (0: never), got {self.update_every}")
        if self.update_every and not isinstance(self.model, IncrementalUpdates):
            raise TypeError(f"{type(self.model).__name__} cannot be updated incrementally (no "
                            "IncrementalUpdates); use update_every=0")

    def recommend(self, users: list[str], histories: list[list[str]], k: int) -> list[list[str]]:
        ids, _ = self.model.recommend(users, k, histories=histories, unknown="popular")
        return [list(r) for r in np.asarray(ids).reshape(len(users), -1)]

    def observe(self, day: int, events: pl.DataFrame, items: pl.DataFrame | None) -> dict[str, Any]:
        if not self.update_every:
            return {}
        self._pending.append(events)
        self._days += 1
        if self._days < self.update_every:
            return {}
        batch = pl.concat(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._days = [], 0
        if batch.height == 0:
            return {}
        assert isinstance(self.model, IncrementalUpdates)
        report = self.model.update(batch, items, passes=self.passes, seed=self.seed + day)
        return {f"update_{k}": v for k, v in report.to_dict().items()}


# ---------------------------------------------------------------------------------------------- clicks
class ClickModel(Protocol):
    """Click probabilities of impressions from a held-out truth (never a model input)."""

    def probabilities(self, users: list[str], lists: list[list[str]], timestamp: int) -> np.ndarray:
        """``(len(users), k)`` the probability that each user clicks each shown item at ``timestamp``
        (0 for ``""`` padding and for ids the truth does not know)."""
        ...


@dataclass(frozen=True)
class ShopClicks:
    """Clicks of the synthetic shop's users (:mod:`lmrec.data.synthetic_ecommerce`), from its ground truth.

    ``p = sigmoid(base + taste_weight · log(n_categories · taste) + appeal_weight · log(appeal))`` where
    ``taste`` is the user's seasonal taste for the item's category (their taste times the category's yearly
    wave, renormalised, as the generator draws sessions) and ``appeal`` the item's latent appeal: a user
    clicks items of categories they like, at the time of year they like them, and appealing items more.
    ``base`` sets the click rate of an average item in an average category (-2: about 12 %).
    """

    truth: GroundTruth
    start_timestamp: int
    seasonality: float = 0.5
    base: float = -2.0
    taste_weight: float = 1.0
    appeal_weight: float = 0.4

    @staticmethod
    def _index(raw: str, prefix: str) -> int:
        return int(raw[1:]) if raw.startswith(prefix) and raw[1:].isdigit() else -1

    def probabilities(self, users: list[str], lists: list[list[str]], timestamp: int) -> np.ndarray:
        t = self.truth
        k = max((len(r) for r in lists), default=0)
        out = np.zeros((len(users), k), dtype=np.float64)
        day = (timestamp - self.start_timestamp) / DAY
        wave = 1.0 + self.seasonality * np.sin(2 * np.pi * day / 365.0 + t.category_phase)  # (n_cat,)
        n_cat = len(t.categories)
        for r, (user, row) in enumerate(zip(users, lists, strict=True)):
            u = self._index(user, "u")
            if not 0 <= u < len(t.user_taste):
                continue
            taste = t.user_taste[u] * wave
            taste = taste / taste.sum()
            for c, item in enumerate(row):
                j = self._index(item, "i") if item else -1
                if not 0 <= j < len(t.item_category):
                    continue
                logit = (self.base + self.taste_weight * np.log(n_cat * taste[t.item_category[j]] + 1e-12)
                         + self.appeal_weight * np.log(t.item_appeal[j]))
                out[r, c] = 1.0 / (1.0 + np.exp(-logit))
        return out


def _uniform(seed: int, day: int, user: str, items: Sequence[str]) -> np.ndarray:
    """A uniform number per (seed, day, user, item), the same whichever arm shows the item."""
    return np.array([zlib.crc32(f"{seed}|{day}|{user}|{i}".encode()) / 2**32 for i in items])


# ---------------------------------------------------------------------------------------------- replay
@dataclass(frozen=True)
class ReplayConfig:
    """How a replay runs.

    ``start``: timestamp where the replay begins (events before it are the past the models were fitted on);
    ``None`` starts ``days`` days before the last event. ``max_users_per_day`` (0: all) samples the active
    users of each day with ``seed``, to bound the cost of a long replay.
    """

    days: int = 7
    start: int | None = None
    day_seconds: int = DAY
    k: int = 10
    seed: int = 0
    max_users_per_day: int = 0
    keep_impressions: bool = False

    def __post_init__(self) -> None:
        if self.days < 1 or self.day_seconds < 1 or self.k < 1 or self.max_users_per_day < 0:
            raise ValueError("days, day_seconds and k must be positive and max_users_per_day >= 0")


def replay_start(events: pl.DataFrame, config: ReplayConfig) -> int:
    """The first replayed moment: ``config.start``, else ``config.days`` days before the last event (at the
    start of the day that contains that moment, counted from the first event)."""
    if config.start is not None:
        return int(config.start)
    first, last = int(events["timestamp"].min()), int(events["timestamp"].max())  # type: ignore[arg-type]
    span_days = (last - first) // config.day_seconds + 1
    return first + max(0, span_days - config.days) * config.day_seconds


@dataclass
class ReplayResult:
    """Per day and arm: users shown lists, users scored (with targets), NDCG@k, HR@k, click figures, and
    whatever the arm's ``observe`` reported (update times)."""

    days: pl.DataFrame
    impressions: pl.DataFrame | None
    config: ReplayConfig
    start: int

    def summary(self) -> pl.DataFrame:
        """Mean of each arm's daily figures (NDCG and HR weighted by users scored)."""
        k = self.config.k
        d = self.days
        cols = [pl.len().alias("days"), pl.col("users").sum(), pl.col("scored").sum(),
                ((pl.col(f"ndcg@{k}") * pl.col("scored")).sum() / pl.col("scored").sum()).alias(f"ndcg@{k}"),
                ((pl.col(f"hr@{k}") * pl.col("scored")).sum() / pl.col("scored").sum()).alias(f"hr@{k}")]
        if "ctr" in d.columns:
            cols += [pl.col("clicks").sum(),
                     (pl.col("clicks").sum() / pl.col("impressions").sum()).alias("ctr")]
        if "update_cpu_seconds" in d.columns:
            cols += [pl.col("update_cpu_seconds").mean().alias("cpu_s_per_update")]
        return d.group_by("arm", maintain_order=True).agg(cols)


def replay(events: pl.DataFrame, arms: Sequence[Arm], config: ReplayConfig | None = None, *,
           items: pl.DataFrame | None = None, clicks: ClickModel | None = None,
           assign: Callable[[str], str] | None = None,
           on_day: Callable[[int, pl.DataFrame], None] | None = None) -> ReplayResult:
    """Replay ``events`` (lmrec's event columns) day by day against ``arms`` (see the module docstring).

    ``items`` (the catalogue) is passed to the arms' updates, for new items' categories and text.
    ``assign`` maps a user id to an arm's name (an experiment); without it every arm serves every active user.
    ``on_day(day, rows)`` is called with each day's rows (progress).
    """
    cfg = config or ReplayConfig()
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be distinct, got {names}")
    ev = (events.with_columns(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
          .with_row_index("_order").sort(["timestamp", "_order"]).drop("_order"))
    start = replay_start(ev, cfg)
    past = ev.filter(pl.col("timestamp") < start)
    histories: dict[str, list[str]] = {}
    for user, item in zip(past["user_id"].to_list(), past["item_id"].to_list(), strict=True):
        histories.setdefault(user, []).append(item)
    rng = np.random.default_rng(cfg.seed)
    rows: list[dict[str, Any]] = []
    shown: list[pl.DataFrame] = []
    for day in range(cfg.days):
        lo, hi = start + day * cfg.day_seconds, start + (day + 1) * cfg.day_seconds
        today = ev.filter((pl.col("timestamp") >= lo) & (pl.col("timestamp") < hi))
        active = today["user_id"].unique(maintain_order=True).to_list()
        if cfg.max_users_per_day and len(active) > cfg.max_users_per_day:
            active = sorted(rng.choice(active, cfg.max_users_per_day, replace=False).tolist(),
                            key=active.index)
        done: dict[str, list[str]] = {}
        for user, item in zip(today["user_id"].to_list(), today["item_id"].to_list(), strict=True):
            done.setdefault(user, []).append(item)
        day_rows: list[dict[str, Any]] = []
        for arm in arms:
            users = [u for u in active if assign is None or assign(u) == arm.name]
            hist = [histories.get(u, []) for u in users]
            lists = arm.recommend(users, hist, cfg.k) if users else []
            targets = [sorted(set(done.get(u, [])) - set(h)) for u, h in zip(users, hist, strict=True)]
            scored = [i for i, t in enumerate(targets) if t]
            row: dict[str, Any] = {"day": day, "date": lo, "arm": arm.name, "users": len(users),
                                   "scored": len(scored)}
            if scored:
                m = raw_ranking_metrics([lists[i] for i in scored], [targets[i] for i in scored], cfg.k)
                row[f"ndcg@{cfg.k}"] = float(m[f"ndcg@{cfg.k}"].mean())
                row[f"hr@{cfg.k}"] = float(m[f"hr@{cfg.k}"].mean())
            else:
                row[f"ndcg@{cfg.k}"] = row[f"hr@{cfg.k}"] = 0.0
            n_imp = sum(1 for r in lists for i in r if i)
            clicked: list[np.ndarray] = []
            if clicks is not None:
                middle = lo + cfg.day_seconds // 2
                p = clicks.probabilities(users, lists, middle) if users else np.zeros((0, 0))
                clicked = [_uniform(cfg.seed, day, u, r) < p[n, : len(r)] for n, (u, r) in
                           enumerate(zip(users, lists, strict=True))]
                row["impressions"] = n_imp
                row["expected_clicks"] = float(p.sum())
                row["clicks"] = int(sum(int(c.sum()) for c in clicked))
                row["ctr"] = row["clicks"] / n_imp if n_imp else 0.0
            if cfg.keep_impressions and users:
                flat = [(u, pos, i) for u, r in zip(users, lists, strict=True)
                        for pos, i in enumerate(r) if i]
                frame = pl.DataFrame({"day": [day] * len(flat), "arm": [arm.name] * len(flat),
                                      "user_id": [f[0] for f in flat], "position": [f[1] for f in flat],
                                      "item_id": [f[2] for f in flat]},
                                     schema={"day": pl.Int64, "arm": pl.String, "user_id": pl.String,
                                             "position": pl.Int64, "item_id": pl.String})
                if clicks is not None:
                    frame = frame.with_columns(pl.Series("clicked", [bool(c[pos]) for c, r in
                                                                     zip(clicked, lists, strict=True)
                                                                     for pos, i in enumerate(r) if i]))
                shown.append(frame)
            day_rows.append(row)
        for user, items_done in done.items():
            histories.setdefault(user, []).extend(items_done)
        for arm, row in zip(arms, day_rows, strict=True):
            row.update(arm.observe(day, today, items))
        rows.extend(day_rows)
        if on_day is not None:
            on_day(day, pl.DataFrame(day_rows))
    frame = pl.from_dicts(rows, infer_schema_length=None) if rows else pl.DataFrame()
    return ReplayResult(frame, pl.concat(shown) if shown else None, cfg, start)


def past_events(events: pl.DataFrame, config: ReplayConfig) -> tuple[pl.DataFrame, int]:
    """The events before the replay starts (what the arms' models are fitted on) and the start."""
    start = replay_start(events, config)
    return events.filter(pl.col("timestamp") < start), start
