"""The synthetic shop: deterministic, well-formed, and its behaviour follows its ground truth."""

from __future__ import annotations

import numpy as np
import polars as pl

from lmrec.data.synthetic_ecommerce import DAY, EPOCH_START, generate_ecommerce


def test_seeded_and_well_formed() -> None:
    a = generate_ecommerce(n_users=150, n_items=80, days=90, seed=3)
    b = generate_ecommerce(n_users=150, n_items=80, days=90, seed=3)
    c = generate_ecommerce(n_users=150, n_items=80, days=90, seed=4)
    assert a.events.equals(b.events) and a.items.equals(b.items)
    assert not a.events.equals(c.events)
    ev = a.events
    assert set(ev["event_type"].unique()) == {"view", "cart", "purchase"}
    assert ev["timestamp"].min() >= EPOCH_START and ev["timestamp"].max() < EPOCH_START + 91 * DAY
    # views carry no value; carts and purchases carry the item's price
    assert ev.filter(pl.col("event_type") == "view")["value"].null_count() == ev.filter(
        pl.col("event_type") == "view").height
    priced = ev.filter(pl.col("event_type") != "view")
    price = dict(zip(a.items["item_id"], a.truth.item_price, strict=True))
    assert np.allclose(priced["value"].to_numpy(), [price[i] for i in priced["item_id"]])
    ds = a.dataset()
    assert ds.event_types == ("view", "cart", "purchase")
    # titles read like products: colour, material, noun, brand
    assert all(" by " in t for t in a.items["title"].to_list())
    assert a.users.columns == ["user_id"]  # no latent leaks into the user table


def test_funnel_order_and_churn_follow_truth() -> None:
    shop = generate_ecommerce(n_users=400, n_items=150, days=120, seed=0)
    ds = shop.dataset()
    # every purchase is preceded by a cart of the same item by the same user
    ev = ds.events.with_columns(pl.col("event_type").shift(1).over("user_idx").alias("prev"),
                                pl.col("item_idx").shift(1).over("user_idx").alias("prev_item"))
    bought = ev.filter(pl.col("event_type") == "purchase")
    assert (bought["prev"] == "cart").all() and (bought["prev_item"] == bought["item_idx"]).all()
    # nobody shops after their churn day
    last_day = ev.group_by("user_id").agg(((pl.col("timestamp").max() - EPOCH_START) / DAY).alias("d"))
    churn = {f"u{u}": d for u, d in enumerate(shop.truth.user_churn_day)}
    assert all(d <= churn[u] for u, d in last_day.iter_rows())


def test_behaviour_reflects_taste_and_activity() -> None:
    shop = generate_ecommerce(n_users=500, n_items=200, days=150, seed=1)
    t = shop.truth
    ev = shop.events.with_columns(pl.col("user_id").str.slice(1).cast(pl.Int64).alias("u"),
                                  pl.col("item_id").str.slice(1).cast(pl.Int64).alias("i"))
    u, i = ev["u"].to_numpy(), ev["i"].to_numpy()
    # users look mostly at their favourite categories: viewed-category share correlates with taste
    counts = np.zeros_like(t.user_taste)
    np.add.at(counts, (u, t.item_category[i]), 1.0)
    active = counts.sum(1) > 20
    share = counts[active] / counts[active].sum(1, keepdims=True)
    assert np.corrcoef(share.ravel(), t.user_taste[active].ravel())[0, 1] > 0.6
    # more active users (per active day of life) produce more events
    life = np.minimum(t.user_churn_day, 150) - t.user_start_day
    rate = np.bincount(u, minlength=500) / np.maximum(life, 1)
    ok = life > 20
    assert np.corrcoef(np.log1p(rate[ok]), np.log(t.user_activity[ok]))[0, 1] > 0.5
