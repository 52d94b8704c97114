"""Guarded incremental updates (:mod:`lmrec.experiment.updates`) and ``lmrec update``: a new version in the
registry with its figures, accepted when not worse, refused (and the serving version kept) when worse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.data.dataset import Dataset
from lmrec.data.synthetic_ecommerce import DAY, generate_ecommerce
from lmrec.experiment.updates import (
    ACTIVE_FILE,
    UPDATE_FILE,
    UpdatePolicy,
    last_trained_until,
    split_by_time,
    update_version,
)
from lmrec.models import create_model, load_model
from lmrec.models.itemknn import ItemKNN


@pytest.fixture(scope="module")
def shop():
    return generate_ecommerce(n_users=300, n_items=80, n_categories=6, days=60, seed=4)


@pytest.fixture
def registry(shop, tmp_path: Path) -> tuple[Path, pl.DataFrame, int]:
    """An ItemKNN fitted on the first 45 days, saved as ``v1`` in a registry; the later events; the cut."""
    cut = shop.meta["start_timestamp"] + 45 * DAY
    past = shop.events.filter(pl.col("timestamp") <= cut)
    ds = Dataset.build(past, shop.items.filter(pl.col("item_id").is_in(past["item_id"].unique().to_list())))
    root = tmp_path / "models"
    create_model("itemknn").fit(ds).save(root / "v1")
    return root, shop.events, cut


def test_split_by_time_never_splits_a_timestamp() -> None:
    ev = pl.DataFrame({"user_id": ["a"] * 5, "item_id": list("vwxyz"), "timestamp": [1, 2, 3, 3, 4]})
    learn, held, cut = split_by_time(ev, 0.5)
    assert cut == 3 and learn["timestamp"].to_list() == [1, 2] and held["timestamp"].to_list() == [3, 3, 4]
    learn, held, cut = split_by_time(ev, 0.0)
    assert cut is None and learn.height == 5 and held.height == 0


def test_update_writes_a_version_with_its_figures(registry, shop) -> None:
    root, events, cut = registry
    out = update_version(root / "v1", events, items=shop.items, since=cut,
                         policy=UpdatePolicy(holdout=0.2, tolerance=0.05), name="v2")
    assert out.path == root / "v2" and (out.path / "model.json").is_file()
    figures = json.loads((out.path / UPDATE_FILE).read_text())
    assert figures["parent"] == "v1" and figures["since"] == cut and figures["model"] == "itemknn"
    assert figures["events_learned"] + figures["events_held_back"] == events.filter(
        pl.col("timestamp") > cut).height
    assert figures["guard_users"] >= 5 and 0.0 <= figures["candidate_ndcg@10"] <= 1.0
    assert figures["accepted"] == out.accepted and figures["reason"] == out.reason
    assert last_trained_until(out.path) == figures["trained_until"] < figures["holdout_from"]
    # the new version knows the users that arrived after v1 and the serving folder is untouched
    v1, v2 = load_model(root / "v1"), load_model(out.path)
    assert len(v2.user_map) > len(v1.user_map) and figures["update"]["new_users"] == len(v2.user_map) - len(
        v1.user_map)
    assert not (root / ACTIVE_FILE).exists()  # marking active is the caller's decision


def test_guard_refuses_a_corrupted_candidate(registry, shop, monkeypatch) -> None:
    root, events, cut = registry
    real_update = ItemKNN.update

    def corrupted(self, *args, **kwargs):
        report = real_update(self, *args, **kwargs)
        # scramble the learned similarity: every item now points at arbitrary others
        sim = self.similarity_.tocoo()
        rng = np.random.default_rng(0)
        sim.col = rng.integers(1, sim.shape[1], len(sim.col)).astype(sim.col.dtype)
        self.similarity_ = sim.tocsr()
        return report

    monkeypatch.setattr(ItemKNN, "update", corrupted)
    out = update_version(root / "v1", events, items=shop.items, since=cut,
                         policy=UpdatePolicy(holdout=0.2, tolerance=0.0), name="bad")
    assert not out.accepted and "beyond the tolerance" in out.reason
    assert out.figures["candidate_ndcg@10"] < out.figures["serving_ndcg@10"]
    assert json.loads((root / "bad" / UPDATE_FILE).read_text())["accepted"] is False


def test_guard_needs_enough_users(registry, shop) -> None:
    root, events, cut = registry
    out = update_version(root / "v1", events, items=shop.items, since=cut,
                         policy=UpdatePolicy(holdout=0.2, min_users=10_000), name="few")
    assert not out.accepted and "cannot judge" in out.reason


def test_update_refuses_models_without_the_capability(shop, tmp_path) -> None:
    ds = shop.dataset()
    create_model("most-popular").fit(ds).save(tmp_path / "pop")
    with pytest.raises(TypeError, match="cannot be updated incrementally"):
        update_version(tmp_path / "pop", shop.events, since=0)


def test_cli_update_marks_an_accepted_version_active(registry, shop, tmp_path) -> None:
    from lmrec.cli import app

    root, _, cut = registry
    data = shop.dataset().save(tmp_path / "data")
    result = CliRunner().invoke(app, ["update", str(root / "v1"), "--since", str(cut), "--data", str(data),
                                      "--holdout", "0"])
    assert result.exit_code == 0, result.output
    versions = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert len(versions) == 2 and versions[0] == "v1" and versions[1].startswith("v1-u")
    assert "accepted" in result.output and (root / ACTIVE_FILE).read_text().strip() == versions[1]
    # the next update starts where this one stopped
    again = CliRunner().invoke(app, ["update", str(root / versions[1]), "--data", str(data),
                                     "--holdout", "0"])
    assert "no events after" in again.output and again.exit_code != 0
