"""Predictions from a multi-task model's heads, over HTTP, reflecting ingested events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.models import create_model, model_class
from lmrec.store import Store
from tests.serving.serving_helpers import make_events

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def multitask_dir(models_dir: Path) -> Path:
    """A small MultiTask model (next item, rating, next action type) saved as version ``mt``."""
    rng = np.random.default_rng(0)
    views = make_events()
    ratings = views.sample(fraction=0.5, seed=0).with_columns(
        pl.lit("rating").alias("event_type"),
        pl.col("timestamp") + 1,
        pl.Series("value", rng.integers(1, 6, views.height // 2).astype(float)))
    with Store(":memory:") as st:
        st.append_events(pl.concat([views.with_columns(pl.lit(None, pl.Float64).alias("value")), ratings]))
        ds = st.to_dataset()
    create_model("multitask", **model_class("multitask").fast_config).fit(ds).save(models_dir / "mt")
    return models_dir / "mt"


def test_predictions_from_the_heads_the_model_has(start, multitask_dir: Path) -> None:
    s = start(version="mt")
    r = s.get("/v1/users/u0/predictions", params={"items": ["toy", "heat"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "mt" and set(body["ratings"]) == {"toy", "heat"}
    assert all(1.0 <= v <= 5.0 for v in body["ratings"].values())
    assert set(body["next_action"]) == {"view", "rating"}
    assert sum(body["next_action"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["value"] is None

    r = s.get("/v1/users/u0/predictions", params={"heads": "value"})
    assert r.status_code == 404 and "no value head" in r.json()["detail"]
    r = s.get("/v1/users/u0/predictions", params={"heads": "rating"})
    assert r.status_code == 422 and "need items" in r.json()["detail"]
    assert s.get("/v1/users/u0/predictions", params={"items": ["nope"]}).status_code == 404
    assert s.get("/v1/users/nobody/predictions").status_code == 404

    # A user the model never saw is predicted from their ingested events.
    event = {"user_id": "newcomer", "item_id": "heat", "event_type": "rating", "value": 5,
             "timestamp": 2_000_000}
    s.client.post("/v1/events", json={"events": [event]})
    r = s.get("/v1/users/newcomer/predictions", params={"items": ["ronin"]})
    assert r.status_code == 200 and 1.0 <= r.json()["ratings"]["ronin"] <= 5.0
    # ...and the same model still recommends.
    assert s.get("/v1/users/newcomer/recommendations", params={"k": 3}).status_code == 200
