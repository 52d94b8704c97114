"""The multi-task model: heads that fit the data, predictions of every kind, save/load, the config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.synthetic_ecommerce import DAY, generate_ecommerce
from lmrec.models import load_model
from lmrec.models.multitask import MultiTask, MultiTaskConfig
from lmrec.prediction import tasks

pytestmark = pytest.mark.slow

TINY = {"d_model": 16, "n_layers": 1, "max_len": 12, "epochs": 2, "batch_size": 64, "value_cuts": 2,
        "progress": False}


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return generate_ecommerce(n_users=120, n_items=60, days=120, seed=7).dataset()


@pytest.fixture(scope="module")
def fitted(shop: Dataset) -> MultiTask:
    return MultiTask(**TINY).fit(shop)


def _ratings() -> Dataset:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        for k, i in enumerate(rng.choice(30, 12, replace=False)):
            rows.append((f"e{u}-{k}", f"u{u}", f"i{i}", 1000 * u + k, "rating", float(1 + (i + u) % 5)))
    ev = pl.DataFrame(rows, schema=["event_id", "user_id", "item_id", "timestamp", "event_type", "value"],
                      orient="row")
    return Dataset.build(ev)


def test_heads_follow_the_data(fitted: MultiTask) -> None:
    # the shop has types and money but no ratings: the rating head is dropped, the others kept
    assert fitted.heads == ("next_item", "next_type", "value")
    assert fitted.event_types == ("view", "cart", "purchase")
    with pytest.raises(ValueError, match="no rating head"):
        fitted.predict_ratings(np.array([1]), np.array([1]))
    ratings = MultiTask(**{**TINY, "heads": ("next_item", "rating", "next_type")}).fit(_ratings())
    assert ratings.heads == ("next_item", "rating")  # one event type: no type head; short log: no value


def test_predictions_are_well_formed(fitted: MultiTask, shop: Dataset) -> None:
    users = np.arange(1, 21)
    p = fitted.predict_next_type(users)
    assert p.shape == (20, 3) and np.allclose(p.sum(1), 1.0) and (p >= 0).all()
    v = fitted.predict_value(users)
    assert v.shape == (20,) and (v >= 0).all() and np.isfinite(v).all()
    out = fitted.predict(["u1", "u5"], k=4)
    assert [o["user"] for o in out] == ["u1", "u5"]
    assert len(out[0]["next_items"]) == 4 and set(out[0]["next_type"]) == {"view", "cart", "purchase"}
    assert out[0]["value"]["kind"] == "amount" and out[0]["value"]["horizon_days"] == 30.0
    seen = set(shop.user_sequence("u1"))
    assert not seen.intersection(i["item"] for i in out[0]["next_items"])


def test_value_at_a_cut_reads_only_the_past(fitted: MultiTask, shop: Dataset) -> None:
    cut = int(shop.events["timestamp"].min()) + 60 * DAY  # type: ignore[arg-type]
    hist, _ = tasks.time_cut(shop, cut)
    users = np.flatnonzero(hist.sequences.lengths > 0)[:10]
    a = fitted.predict_value(users, context=hist, at=cut)
    b = fitted.predict_value(users, context=shop, at=cut)  # later events exist but must not matter
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_type_prediction_along_a_sequence_is_causal(fitted: MultiTask, shop: Dataset) -> None:
    ex = tasks.type_examples(shop, 0, min_position=3)
    rows = np.arange(min(30, len(ex)))
    full = fitted.predict_next_type(ex.users[rows], context=shop, ends=ex.positions[rows])
    cut = shop.with_events(shop.events.with_columns(pl.int_range(pl.len()).over("user_idx").alias("_p"))
                           .filter(pl.col("_p") < 3).drop("_p"))
    short = fitted.predict_next_type(ex.users[rows], context=cut, ends=np.full(len(rows), 3))
    first3 = ex.positions[rows] == 3
    np.testing.assert_allclose(full[first3], short[first3], rtol=1e-5, atol=1e-6)


def test_ratings_and_save_load(tmp_path: Path) -> None:
    ds = _ratings()
    m = MultiTask(**{**TINY, "heads": ("next_item", "rating"), "weighting": "uncertainty"}).fit(ds)
    r = m.predict_ratings(np.array([1, 2, 3]), np.array([4, 5, 6]))
    assert r.shape == (3,) and (r >= 1).all() and (r <= 5).all()
    out = m.predict("u3", items=["i4", "i7"], k=3)
    assert set(out[0]["ratings"]) == {"i4", "i7"}
    loaded = load_model(m.save(tmp_path / "mt"))
    assert isinstance(loaded, MultiTask) and loaded.config == m.config
    np.testing.assert_allclose(loaded.predict_ratings(np.array([1, 2, 3]), np.array([4, 5, 6])), r, rtol=1e-5)
    assert loaded.predict("u3", items=["i4", "i7"], k=3) == out


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="heads"):
        MultiTaskConfig(heads=("next_item", "mood"))
    with pytest.raises(ValueError, match="weighting"):
        MultiTaskConfig(weighting="magic")
    assert MultiTaskConfig(heads=["rating"]).heads == ("rating",)  # a JSON list comes back as a tuple
