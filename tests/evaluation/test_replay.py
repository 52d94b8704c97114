"""The replay simulator: hand-worked metrics, determinism for a seed, arms by assignment, shop clicks."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.synthetic_ecommerce import DAY, generate_ecommerce
from lmrec.evaluation.replay import (
    ModelArm,
    ReplayConfig,
    ShopClicks,
    past_events,
    raw_ranking_metrics,
    replay,
)
from lmrec.models import create_model


def test_raw_ranking_metrics_hand_worked() -> None:
    m = raw_ranking_metrics([["a", "b", "c"], ["x", "", "y"], ["p", "q", "r"]],
                            [["b"], ["y", "z"], ["nope"]], k=3)
    # row 0: hit at rank 2 → 1/log2(3); row 1: hit at rank 3 of 2 targets → (1/2) / (1 + 1/log2(3))
    assert m["ndcg@3"][0] == pytest.approx(1 / np.log2(3))
    assert m["ndcg@3"][1] == pytest.approx(0.5 / (1 + 1 / np.log2(3)))
    assert m["ndcg@3"][2] == 0.0 and m["hr@3"].tolist() == [1.0, 1.0, 0.0]


@pytest.fixture(scope="module")
def shop():
    return generate_ecommerce(n_users=120, n_items=60, n_categories=6, days=40, seed=3)


def _arms(shop, cfg: ReplayConfig) -> list[ModelArm]:
    past, _ = past_events(shop.events, cfg)
    ds = Dataset.build(past, shop.items.filter(pl.col("item_id").is_in(past["item_id"].unique().to_list())))
    return [ModelArm("never", create_model("itemknn").fit(ds)),
            ModelArm("daily", create_model("als", factors=8, iterations=3).fit(ds), update_every=1)]


def test_replay_is_deterministic_for_a_seed(shop) -> None:
    cfg = ReplayConfig(days=4, seed=5, keep_impressions=True)
    clicks = ShopClicks(shop.truth, shop.meta["start_timestamp"], shop.config.seasonality)
    runs = [replay(shop.events, _arms(shop, cfg), cfg, items=shop.items, clicks=clicks) for _ in range(2)]
    drop = ["update_seconds", "update_cpu_seconds"]  # times differ from run to run; nothing else may
    a, b = (r.days.drop([c for c in drop if c in r.days.columns]) for r in runs)
    assert a.equals(b)
    assert runs[0].impressions is not None and runs[0].impressions.equals(runs[1].impressions)
    days = runs[0].days
    assert days.height == 8 and set(days["arm"]) == {"never", "daily"}
    assert (days["scored"] <= days["users"]).all() and days["users"].sum() > 0
    # the daily arm updated after each day; the first day is scored before any update
    daily = days.filter(pl.col("arm") == "daily").sort("day")
    assert daily["update_events"].drop_nulls().len() == 4 and (daily["update_events"] > 0).all()
    assert days.filter(pl.col("day") == 0)["users"].n_unique() == 1  # both arms served the same users
    assert 0.0 < runs[0].impressions["clicked"].mean() < 1.0
    summary = runs[0].summary()
    assert summary["arm"].to_list() == ["never", "daily"] and summary["cpu_s_per_update"][1] >= 0.0


def test_assignment_splits_users_between_arms(shop) -> None:
    cfg = ReplayConfig(days=3, seed=0, keep_impressions=True)
    arms = _arms(shop, cfg)
    result = replay(shop.events, arms, cfg, items=shop.items,
                    assign=lambda u: "never" if int(u[1:]) % 2 else "daily")
    imp = result.impressions
    assert imp is not None
    per_user = imp.group_by("user_id").agg(pl.col("arm").n_unique().alias("arms"), pl.col("arm").first())
    assert (per_user["arms"] == 1).all()
    odd = per_user["user_id"].str.slice(1).cast(pl.Int64) % 2 == 1
    assert (per_user.filter(odd)["arm"] == "never").all() and (per_user.filter(~odd)["arm"] == "daily").all()


def test_replay_scores_only_the_day_it_has_not_seen() -> None:
    """A model that knows the future would score perfectly; the replay gives each day's lists before the day's
    events join the histories, so an arm recommending the day's own targets is impossible to build from the
    history alone. Here an oracle arm that peeks at the events proves the metric can reach 1."""
    rows = [("u1", "a", 0), ("u1", "b", DAY + 10), ("u2", "a", 5), ("u2", "c", DAY + 20)]
    events = pl.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                           "timestamp": [r[2] for r in rows], "event_type": ["view"] * 4})

    class Oracle:
        name = "oracle"

        def recommend(self, users, histories, k):
            future = {"u1": ["b"], "u2": ["c"]}
            return [future[u] for u in users]

        def observe(self, day, events, items):
            return {}

    result = replay(events, [Oracle()], ReplayConfig(days=1, start=DAY, k=3))
    row = result.days.row(0, named=True)
    assert row["users"] == 2 and row["scored"] == 2 and row["ndcg@3"] == pytest.approx(1.0)


def test_shop_clicks_follow_tastes(shop) -> None:
    clicks = ShopClicks(shop.truth, shop.meta["start_timestamp"], shop.config.seasonality)
    t = shop.truth
    u = int(np.argmax(t.user_taste.max(axis=1)))  # the user with the most concentrated taste
    liked, disliked = int(np.argmax(t.user_taste[u])), int(np.argmin(t.user_taste[u]))
    item_liked = f"i{int(np.flatnonzero(t.item_category == liked)[0])}"
    item_disliked = f"i{int(np.flatnonzero(t.item_category == disliked)[0])}"
    p = clicks.probabilities([f"u{u}"], [[item_liked, item_disliked, ""]], shop.meta["start_timestamp"])
    assert p.shape == (1, 3) and p[0, 2] == 0.0 and p[0, 0] > p[0, 1]
    assert clicks.probabilities(["stranger"], [[item_liked]], 0)[0, 0] == 0.0
