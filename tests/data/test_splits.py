"""Splits never leak: nothing a model is tested on is in what it trained on, and the same seed gives the same
split."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.split_io import write_split
from lmrec.data.splits import cold_item, leave_one_out, make_split, temporal


@pytest.fixture(scope="module")
def ds() -> Dataset:
    rng = np.random.default_rng(7)
    n = 3000
    users = rng.integers(0, 120, n)
    items = rng.integers(0, 200, n)
    ts = rng.integers(1_600_000_000, 1_600_000_000 + 10_000_000, n)
    ts[:10] = 1_600_000_000  # ties in time
    return Dataset.build(
        pl.DataFrame(
            {
                "event_id": [f"e{k}" for k in range(n)],
                "user_id": [f"u{u}" for u in users],
                "item_id": [f"i{i}" for i in items],
                "timestamp": ts,
                "event_type": ["view"] * n,
            }
        ),
        name="synthetic",
    )


def _event_ids(d: Dataset) -> set[str]:
    return set(d.events["event_id"].to_list())


def test_leave_one_out_never_leaks(ds):
    sp = leave_one_out(ds, min_events=3)
    by_user = {u: g for (u,), g in ds.events.group_by(["user_idx"], maintain_order=True)}
    train_ids = _event_ids(sp.train)
    tv_ids = _event_ids(sp.train_valid)
    assert len(sp.test) == len(sp.valid) > 0
    for row, u in enumerate(sp.test.users):
        events = by_user[int(u)]  # sorted by time, ties in input order
        last, before = events.row(-1, named=True), events.row(-2, named=True)
        assert sp.test.targets[row].tolist() == [last["item_idx"]]
        assert sp.valid.targets[row].tolist() == [before["item_idx"]]
        assert (
            last["event_id"] not in train_ids and last["event_id"] not in tv_ids
        )  # test event not in training
        assert (
            before["event_id"] not in train_ids and before["event_id"] in tv_ids
        )  # valid only in train_valid
        assert sp.valid.history[row].tolist() == events["item_idx"].to_list()[:-2]
        assert sp.test.history[row].tolist() == events["item_idx"].to_list()[:-1]
    # users below min_events stay whole in training and are not evaluated
    small = [u for u, g in by_user.items() if g.height < 3]
    assert not set(small) & set(sp.test.users.tolist())
    assert sp.train.n_events == ds.n_events - 2 * len(sp.test)
    with pytest.raises(ValueError, match="at least 3"):
        leave_one_out(ds, min_events=2)


def test_temporal_has_no_future_in_training(ds):
    sp = temporal(ds, valid_frac=0.1, test_frac=0.2)
    t_valid, t_test = sp.params["t_valid"], sp.params["t_test"]
    assert sp.train.events["timestamp"].max() < t_valid
    assert sp.train_valid.events["timestamp"].max() < t_test
    assert t_valid <= t_test
    # targets are items the user touched in the window and not before (exclude_seen_targets)
    seen = {(u, i) for u, i in sp.train_valid.events.select("user_idx", "item_idx").iter_rows()}
    for row, u in enumerate(sp.test.users):
        assert sp.test.history[row].tolist() == sp.train_valid.sequences[int(u)].tolist()
        assert len(sp.test.history[row]) > 0
        for item in sp.test.targets[row]:
            assert (int(u), int(item)) not in seen
    window = ds.events.filter(pl.col("timestamp") >= t_test)
    assert window.height >= int(0.2 * ds.n_events) - 1
    with pytest.raises(ValueError):
        temporal(ds, valid_frac=0.6, test_frac=0.5)


def test_cold_item_test_items_have_no_training_event(ds):
    sp = cold_item(ds, cold_frac=0.1, seed=3)
    train_items = set(sp.train.events["item_idx"].to_list())
    test_items = set(np.concatenate([sp.test.targets[r] for r in range(len(sp.test))]).tolist())
    valid_items = set(np.concatenate([sp.valid.targets[r] for r in range(len(sp.valid))]).tolist())
    assert test_items and valid_items
    assert not test_items & train_items and not valid_items & train_items
    assert not test_items & valid_items
    assert sp.params["n_test_items"] == sp.params["n_valid_items"] == 20  # 10% of 200 active items
    for row in range(len(sp.test)):
        assert not set(sp.test.history[row].tolist()) & test_items


def test_splits_are_deterministic_with_a_seed(ds):
    a, b, c = cold_item(ds, seed=1), cold_item(ds, seed=1), cold_item(ds, seed=2)
    assert a.test.targets.to_lists() == b.test.targets.to_lists()
    assert a.test.users.tolist() == b.test.users.tolist()
    assert a.test.targets.to_lists() != c.test.targets.to_lists()
    l1, l2 = leave_one_out(ds), leave_one_out(ds)
    assert l1.test.targets.to_lists() == l2.test.targets.to_lists()
    assert l1.train.events.equals(l2.train.events)


def test_make_split_by_name_and_write(tmp_path, ds):
    sp = make_split(ds, "loo")
    assert sp.protocol == "leave-one-out" and "valid" in sp.describe()
    with pytest.raises(ValueError, match="unknown protocol"):
        make_split(ds, "random")
    folder = write_split(sp, tmp_path / "split")
    test = pl.read_parquet(folder / "test.parquet")
    train = pl.read_parquet(folder / "train.parquet")
    assert test.height == len(sp.test) and train.height == sp.train.n_events
    assert set(test["user_id"]) == set(ds.user_map.raws(sp.test.users).tolist())
    assert test["item_id"].to_list() == ds.item_map.raws(sp.test.targets.values).tolist()
    assert not set(test["user_id"] + "|" + test["item_id"]) - set(
        ds.events["user_id"] + "|" + ds.events["item_id"]
    )
    assert json.loads((folder / "split.json").read_text())["protocol"] == "leave-one-out"


def test_splits_share_vocabularies(ds):
    for sp in (leave_one_out(ds), temporal(ds), cold_item(ds)):
        assert sp.train.item_map is ds.item_map and sp.train.user_map is ds.user_map
        assert sp.train.n_items == ds.n_items


def test_cold_mixed_holds_items_out_and_states_its_shares(ds):
    from lmrec.data.splits import cold_mixed, cold_targets

    sp = cold_mixed(ds, cold_frac=0.2, seed=3)
    assert sp.protocol == "cold-mixed"
    assert make_split(ds, "cold-mixed", cold_frac=0.2, seed=3).params == sp.params
    assert sp.train.item_map is ds.item_map and sp.train.user_map is ds.user_map  # the vocabulary contract
    active = np.flatnonzero(ds.item_popularity > 0)
    held = set(active.tolist()) - set(sp.train.events["item_idx"].to_list())
    assert sp.params["n_cold_items"] == 40  # 20% of 200 active items ...
    assert len(held) >= 40  # ... never in training (plus any item whose only events were targets)
    # the cold part never leaks: no held-out item in training, in train_valid or in any history
    sampled = set(np.random.default_rng(3).permutation(active)[:40].tolist())  # the items held out
    assert sampled <= held and not sampled & set(sp.train_valid.events["item_idx"].to_list())
    for es in (sp.valid, sp.test):
        assert len(es) == len(sp.test) > 0 and (es.targets.lengths == 1).all()  # one target per user
        for row in range(len(es)):
            assert not set(es.history[row].tolist()) & held
    cold_test = cold_targets(sp.test, sp.train)
    test_items = sp.test.targets.values
    assert set(test_items[cold_test].tolist()) <= held
    assert not set(test_items[~cold_test].tolist()) & held
    assert not set(test_items[cold_test].tolist()) & set(sp.train_valid.events["item_idx"].to_list())
    # targets are a mix, and the shares reported are the shares
    assert 0 < cold_test.mean() < 1
    assert sp.params["test_cold_share"] == round(float(cold_test.mean()), 4)
    assert sp.params["valid_cold_share"] == round(float(cold_targets(sp.valid, sp.train).mean()), 4)
    # each user's test target is their last event whatever the item, as in leave-one-out
    loo = leave_one_out(ds)
    assert sp.test.users.tolist() == loo.test.users.tolist()
    assert sp.test.targets.to_lists() == loo.test.targets.to_lists()
    assert sp.valid.targets.to_lists() == loo.valid.targets.to_lists()
    # deterministic given the seed
    again, other = cold_mixed(ds, cold_frac=0.2, seed=3), cold_mixed(ds, cold_frac=0.2, seed=4)
    assert again.train.events.equals(sp.train.events) and again.params == sp.params
    assert not other.train.events.equals(sp.train.events)
    with pytest.raises(ValueError):
        cold_mixed(ds, cold_frac=0.0)


def test_the_experiment_config_accepts_cold_mixed():
    from lmrec.experiment.config import validate

    cfg = validate({"split": {"protocol": "cold-mixed", "params": {"cold_frac": 0.2, "seed": 1}}})
    assert cfg.split.protocol == "cold-mixed" and cfg.split_params() == {"cold_frac": 0.2, "seed": 1}
