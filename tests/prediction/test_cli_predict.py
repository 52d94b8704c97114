"""``lmrec predict``: tables, JSON, and a clear error for an unknown user or a non-multitask model."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.synthetic_ecommerce import generate_ecommerce
from lmrec.models.multitask import MultiTask
from lmrec.models.popularity import MostPopular

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = generate_ecommerce(n_users=80, n_items=40, days=120, seed=2).dataset()
    path = tmp_path_factory.mktemp("mt") / "model"
    MultiTask(d_model=16, n_layers=1, max_len=8, epochs=1, value_cuts=2).fit(ds).save(path)
    MostPopular().fit(ds).save(path.parent / "pop")
    return path


def test_predict_json_and_table(model_dir: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["predict", "u3", "--model", str(model_dir), "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out[0]["user"] == "u3" and len(out[0]["next_items"]) == 3
    assert abs(sum(out[0]["next_type"].values()) - 1) < 1e-5 and out[0]["value"]["predicted"] >= 0
    res = runner.invoke(app, ["predict", "u3", "u4", "--model", str(model_dir), "-k", "2"])
    assert res.exit_code == 0 and "user u4" in res.output and "next action" in res.output


def test_predict_errors(model_dir: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["predict", "nobody", "--model", str(model_dir)])
    assert res.exit_code == 1 and "nobody" in res.output
    res = runner.invoke(app, ["predict", "u3", "--model", str(model_dir.parent / "pop")])
    assert res.exit_code == 1 and "multitask" in res.output


def test_items_without_a_rating_head_are_an_error_not_ignored(model_dir: Path) -> None:
    """The synthetic shop has no ratings, so the rating head was dropped at fit: --items says so."""
    from lmrec.models import load_model

    assert "rating" not in load_model(model_dir).heads
    res = CliRunner().invoke(app, ["predict", "u3", "--model", str(model_dir), "--items", "i1,i2"])
    assert res.exit_code == 1 and "no rating head" in res.output


def test_predict_reads_the_users_current_events_from_a_store(model_dir: Path, tmp_path: Path) -> None:
    """--store: the history is the user's events in the store (here: only their first two), not the
    training events in the model, so the predictions change; every head still answers."""
    from lmrec.store import Store

    shop = generate_ecommerce(n_users=80, n_items=40, days=120, seed=2)
    first_two = shop.events.filter(pl.col("user_id") == "u3").sort("timestamp").head(2)
    with Store(tmp_path / "s.duckdb") as st:
        st.append_events(first_two)
    runner = CliRunner()
    trained = json.loads(runner.invoke(app, ["predict", "u3", "--model", str(model_dir), "--json"]).output)
    res = runner.invoke(app, ["predict", "u3", "--model", str(model_dir), "--json", "--store",
                              str(tmp_path / "s.duckdb")])
    assert res.exit_code == 0, res.output
    current = json.loads(res.output)
    assert current[0]["next_type"] != trained[0]["next_type"]
    assert current[0]["next_items"] != trained[0]["next_items"]
    store = str(tmp_path / "s.duckdb")
    res = runner.invoke(app, ["predict", "u3", "--model", str(model_dir), "--store", store])
    assert res.exit_code == 0 and "data: store" in res.output, res.output
    res = runner.invoke(app, ["predict", "u4", "--model", str(model_dir), "--store", store])
    assert res.exit_code == 1 and "has events" in res.output
