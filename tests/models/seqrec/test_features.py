"""SeqRec's side features: item and user features and event context, fitted, used in scoring, saved, checked
at load, and given to new items."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.splits import leave_one_out
from lmrec.models import create_model, load_model
from lmrec.models.seqrec import SeqRec
from lmrec.models.seqrec.features import (
    UNK,
    Feature,
    FeatureError,
    FeatureSet,
    context_ids,
    fit_feature,
    parse_names,
)

TEAMS = ("red", "green", "blue", "gold")
PER_TEAM = 8
FAST = {"d_model": 16, "n_layers": 1, "max_len": 8, "epochs": 30, "batch_size": 16, "lr": 1e-2,
        "dropout": 0.0, "progress": False, "num_threads": 1, "eval_every": 10, "patience": 0}
FEATURES = {"item_features": "category,brand,price", "user_features": ["team", "age"],
            "context_features": "hour,weekday"}


def team_dataset(n_users: int = 64, length: int = 8, seed: int = 0) -> Dataset:
    """Users of four teams; each user's events are random items of their team's category. Items have a
    category, a brand and a price (the attributes JSON); users a team and an age."""
    rng = np.random.default_rng(seed)
    items = pl.DataFrame({
        "item_id": [f"i{t}-{k}" for t in range(len(TEAMS)) for k in range(PER_TEAM)],
        "title": [f"{TEAMS[t]} thing {k}" for t in range(len(TEAMS)) for k in range(PER_TEAM)],
        "categories": [[TEAMS[t]] for t in range(len(TEAMS)) for _ in range(PER_TEAM)],
        "attributes": [json.dumps({"brand": f"b{k % 3}", "price": float(5 + 10 * t + k)})
                       for t in range(len(TEAMS)) for k in range(PER_TEAM)],
    })
    rows, users = [], []
    for u in range(n_users):
        team = u % len(TEAMS)
        users.append((f"u{u}", json.dumps({"team": TEAMS[team], "age": int(18 + u % 40)})))
        t = 1_600_000_000 + int(rng.integers(10_000))
        for j, k in enumerate(rng.choice(PER_TEAM, size=length, replace=False)):
            t += int(rng.integers(600, 86_400))
            rows.append((f"e{u}-{j}", f"u{u}", f"i{team}-{k}", t, "view", None))
    events = pl.DataFrame(rows, schema=["event_id", "user_id", "item_id", "timestamp", "event_type", "value"],
                          orient="row")
    users_tbl = pl.DataFrame(users, schema=["user_id", "attributes"], orient="row")
    return Dataset.build(events, items, users_tbl, name="teams")


@pytest.fixture(scope="module")
def data():
    ds = team_dataset()
    return ds, leave_one_out(ds)


@pytest.fixture(scope="module")
def model(data) -> SeqRec:
    _, split = data
    m = create_model("seqrec", item_repr="id", **FEATURES, **FAST)
    return m.fit(split.train, split.valid)  # type: ignore[return-value]


def _test_rows(split) -> tuple[Ragged, np.ndarray]:
    return split.test.history, np.asarray(split.test.users, dtype=np.int64)


def test_names_parse_from_text_and_lists() -> None:
    assert parse_names("category, brand,,category") == ("category", "brand")
    assert parse_names(["age", "gender,zip"]) == ("age", "gender", "zip")
    cfg = create_model("seqrec", item_features=["category", "price:4"]).config
    assert cfg.item_features == ("category", "price:4") and cfg.has_features
    with pytest.raises(ValueError, match="context_features"):
        create_model("seqrec", context_features="moon")
    with pytest.raises(ValueError, match="buckets"):
        create_model("seqrec", item_features="price:x")


def test_fitting_vocabularies_buckets_and_unknown_values() -> None:
    values = ["a", "a", "b", "c", "c", None, "rare"]
    f = fit_feature("brand", values, np.arange(6), n_buckets=4, min_count=2)  # "rare" is not a fit row
    assert f.kind == "categorical" and f.vocabulary == ("a", "c")  # b appears once: below min_count
    assert f.local_ids("a") == [2] and f.local_ids("b") == [UNK] and f.local_ids("never") == [UNK]
    assert f.local_ids(None) == [] and f.local_ids(["a", "c"]) == [2]  # width 1: lists are truncated
    prices = [float(p) for p in range(100)]
    p = fit_feature("price", prices, np.arange(100), n_buckets=4, min_count=2)
    assert p.kind == "numeric" and len(p.edges) == 3 and p.size == 2 + 4
    assert p.local_ids(0.0) == [2] and p.local_ids(99.0) == [5] and p.local_ids("n/a") == [UNK]
    ages = [18, 25, 18, 35]  # few distinct numbers: categorical, unless buckets are asked for
    assert fit_feature("age", ages, np.arange(4), 8, 1).kind == "categorical"
    assert fit_feature("age:2", ages, np.arange(4), 8, 1).kind == "numeric"
    multi = fit_feature("category", [["x", "y"], ["x"], []], np.arange(3), 8, 1)
    assert multi.width == 2
    fs = FeatureSet((multi, f), ())
    ids, w = fs.encode_values("item", {"category": [["x", "y"], ["zz"], None], "brand": ["a", None, "q"]}, 3)
    assert ids.shape == (3, 3) and fs.table_size("item") == 1 + (multi.size - 1) + (f.size - 1)
    np.testing.assert_allclose(w[0], [0.5, 0.5, 1.0])  # two categories averaged, one brand
    assert ids[1, 0] == fs.bases("item")[0] + UNK - 1 and ids[2, 2] == fs.bases("item")[1] + UNK - 1
    assert ids[1, 2] == 0 and w[1, 2] == 0.0  # no brand: padding, contributes nothing


def test_context_ids() -> None:
    ts = np.array([[0, 3600 * 13 + 86_400 * 4]])  # Thursday 00:00, then Monday 13:00 (UTC)
    valid = np.array([[False, True]])
    assert context_ids(ts, "hour", valid).tolist() == [[0, 14]]
    assert context_ids(ts, "weekday", valid).tolist() == [[0, 1]]


def test_features_reach_the_network_and_change_scores(model: SeqRec, data) -> None:
    _, split = data
    hist, users = _test_rows(split)
    base = model.score(hist, users)
    assert model.features_ is not None and [f.name for f in model.features_.user] == ["team", "age"]
    # the same histories as anonymous rows: no user features, other scores
    assert not np.allclose(base[:, 1:], model.score(hist, np.zeros_like(users))[:, 1:])
    # an item's category moves its score (output side) and the scores after it (input side)
    i = model.item_map.index("i0-0")
    before = model.score(Ragged.from_lists([[i]]))
    model.set_item_categories(np.array([i]), [["blue"]])
    after = model.score(Ragged.from_lists([[i]]))
    model.set_item_categories(np.array([i]), [["red"]])
    assert not np.allclose(before[:, 1:], after[:, 1:])
    np.testing.assert_allclose(model.score(Ragged.from_lists([[i]]))[:, 1:], before[:, 1:], rtol=1e-5,
                               atol=1e-5)


def test_save_load_round_trip_scores_equal(model: SeqRec, data, tmp_path: Path) -> None:
    _, split = data
    hist, users = _test_rows(split)
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "features.json").read_text())
    assert [f["name"] for f in saved["item"]] == ["category", "brand", "price"]
    assert saved["context"] == ["hour", "weekday"]
    loaded = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.score(hist, users)[:, 1:], model.score(hist, users)[:, 1:],
                               rtol=1e-5, atol=1e-5)


def test_load_refuses_missing_or_corrupt_feature_definitions(model: SeqRec, tmp_path: Path) -> None:
    folder = model.save(tmp_path / "m")
    file = folder / "features.json"
    good = file.read_text()
    file.unlink()
    with pytest.raises(FeatureError, match="features.json is missing"):
        load_model(folder)
    file.write_text("{not json")
    with pytest.raises(FeatureError, match="not valid JSON"):
        load_model(folder)
    broken = json.loads(good)
    del broken["item"][1]["vocabulary"]
    file.write_text(json.dumps(broken))
    with pytest.raises(FeatureError, match="vocabulary of feature 'brand'"):
        load_model(folder)
    broken = json.loads(good)
    broken["user"] = broken["user"][:1]
    file.write_text(json.dumps(broken))
    with pytest.raises(FeatureError, match="user feature 'age'"):
        load_model(folder)
    broken = json.loads(good)
    broken["item"][0]["vocabulary"].append("extra")
    file.write_text(json.dumps(broken))
    with pytest.raises(FeatureError, match="does not belong to these weights"):
        load_model(folder)


def test_data_without_a_configured_feature_is_refused_by_name(model: SeqRec, data, tmp_path: Path) -> None:
    ds, split = data
    no_brand = ds.items.with_columns(
        pl.Series("attributes", [json.dumps({"price": 3.0})] * ds.items.height))
    other = Dataset.build(ds.events.select("event_id", "user_id", "item_id", "timestamp", "event_type",
                                           "value"), no_brand.drop("item_idx"), ds.users.drop("user_idx"))
    loaded = load_model(model.save(tmp_path / "m"))
    with pytest.raises(FeatureError, match="item feature 'brand'"):
        loaded.use_features_of(other)
    with pytest.raises(FeatureError, match="user feature 'team'"):
        create_model("seqrec", user_features="team", **FAST).fit(
            Dataset.build(other.events.select("event_id", "user_id", "item_id", "timestamp", "event_type",
                                              "value")))
    # the same data with an updated catalogue is accepted: new values become unknown
    renamed = ds.items.with_columns(pl.Series("categories", [["purple"]] * ds.items.height))
    loaded.use_features_of(Dataset.build(other.events.select(*other.events.columns[:6]),
                                         renamed.drop("item_idx"), ds.users.drop("user_idx")))
    cat = loaded.features_.item[0]
    first = loaded.features_.bases("item")[0]
    ids = loaded.network_.item_encoder.features.ids[1:, 0]
    assert cat.name == "category" and bool((ids == first + UNK - 1).all())


def test_new_items_get_their_features_and_the_matching_one_ranks_higher(model: SeqRec, data) -> None:
    _, split = data
    idx = model.add_items(["new-red", "new-gold", "new-odd"], [["red"], ["gold"], ["violet"]],
                          attributes=[{"brand": "b1", "price": 9.0}, '{"brand": "b2"}', None])
    feats = model.network_.item_encoder.features.ids[idx].tolist()
    base = model.features_.bases("item")
    red = model.features_.item[0].local_ids("red")[0]
    assert feats[0][0] == base[0] + red - 1 and feats[2] == [base[0] + UNK - 1, 0, 0]
    assert feats[1][2] == 0  # no price given: no price bucket
    hist, users = _test_rows(split)
    teams = [TEAMS[int(model.user_map.raw(int(u))[1:]) % len(TEAMS)] for u in users]
    s = model.score(hist, users, items=idx)
    assert np.isfinite(s).all()  # new items are represented by their features, not ranked last
    reds = [r for r, t in enumerate(teams) if t == "red"]
    golds = [r for r, t in enumerate(teams) if t == "gold"]
    assert np.mean(s[reds, 0] > s[reds, 1]) >= 0.75
    assert np.mean(s[golds, 1] > s[golds, 0]) >= 0.75


def test_erased_users_lose_their_features(data) -> None:
    _, split = data
    m = create_model("seqrec", user_features="team", **{**FAST, "epochs": 2})
    m.fit(split.train)
    u = m.user_map.index("u3")
    assert m.network_.sequence_encoder.user_features.ids[u].sum() > 0
    m.forget_users(["u3"])
    assert m.network_.sequence_encoder.user_features.ids[u].sum() == 0


def test_feature_definitions_round_trip(tmp_path: Path) -> None:
    fs = FeatureSet((Feature("brand", "categorical", ("a", "b")),
                     Feature("price", "numeric", edges=(1.0, 2.0))),
                    (Feature("age", "numeric", edges=(30.0,)),), ("hour",))
    fs.write(tmp_path)
    assert FeatureSet.read(tmp_path, ["brand", "price:3"], ["age"], ["hour"]) == fs


def test_cli_trains_with_side_features_named_in_set(tmp_path: Path) -> None:
    team_dataset(n_users=24).save(tmp_path / "data")
    out = tmp_path / "model"
    r = CliRunner().invoke(app, ["train", "seqrec", "--data", str(tmp_path / "data"), "--out", str(out),
                                 "--set", "item_features=category,brand", "--set", "user_features=team",
                                 "--set", "epochs=2", "--set", "d_model=8", "--set", "n_layers=1",
                                 "--set", "max_len=8", "--set", "progress=false"])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "features.json").read_text())
    assert [f["name"] for f in saved["item"]] == ["category", "brand"]
    assert [f["name"] for f in saved["user"]] == ["team"]
    assert load_model(out).config.item_features == ("category", "brand")
