"""Impressions (items shown, in a list at a position) are data of their own: imported, kept, never history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.data.cleaning import CleaningConfig, DataError, clean_events
from lmrec.data.dataset import Dataset
from lmrec.data.loaders import load_dataset
from lmrec.data.schema import IMPRESSION, normalise_event_type
from lmrec.data.splits import cold_item, cold_mixed, given, leave_one_out, temporal
from lmrec.data.synthetic_ecommerce import generate_ecommerce


def _log() -> pl.DataFrame:
    """Two users; each view follows a shown list of three items; ``a`` also has an impression-only item."""
    rows = []
    t = 1_700_000_000
    for user, viewed in (("a", ["1", "2", "3", "4"]), ("b", ["2", "3", "5"])):
        for k, item in enumerate(viewed):
            lid = f"{user}-L{k}"
            shown = [item, "9", "8"] if k % 2 else ["8", item, "9"]
            for pos, s in enumerate(shown):
                rows.append({"user_id": user, "item_id": s, "timestamp": t, "event_type": "impression",
                             "list_id": lid, "position": pos})
            rows.append({"user_id": user, "item_id": item, "timestamp": t + 1, "event_type": "click",
                         "list_id": lid, "position": shown.index(item)})
            t += 10
    return pl.DataFrame(rows)


def _clean() -> pl.DataFrame:
    return clean_events(_log())[0]


def test_impression_is_its_own_event_type() -> None:
    assert normalise_event_type("Impression") == IMPRESSION == "impression"
    assert normalise_event_type("exposure") == normalise_event_type("shown") == IMPRESSION
    assert normalise_event_type("page_view") == "view"  # the other aliases stay


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_imported_impressions_keep_list_and_position(kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"log.{kind}"
    log = _log()
    log.write_csv(path) if kind == "csv" else log.write_parquet(path)
    ds, _ = load_dataset(path)
    assert ds.n_impressions == 21 and ds.n_events == 7
    assert set(ds.events["event_type"]) == {"click"} and ds.event_types == ("click",)
    imp = ds.impressions
    assert set(imp["event_type"]) == {IMPRESSION}
    assert imp.filter(pl.col("list_id") == "a-L1").sort("position")["item_id"].to_list() == ["2", "9", "8"]
    assert imp["position"].dtype == pl.Int32 and imp["user_idx"].null_count() == 0
    # clicks carry the list they came from: each joins to the impression of the same item in that list
    joined = ds.events.join(imp, on=["user_id", "list_id", "item_id", "position"], how="inner")
    assert joined.height == ds.n_events


def test_impressions_never_enter_histories_or_counts() -> None:
    ds = Dataset.build(_clean())
    # sequences, popularity and the interaction matrix read the clicks only
    assert ds.user_sequence("a") == ["1", "2", "3", "4"] and ds.user_sequence("b") == ["2", "3", "5"]
    assert ds.item_popularity[ds.item_map.index("9")] == 0 and ds.item_popularity[ds.item_map.index("8")] == 0
    assert ds.interaction_matrix().nnz == 7
    assert IMPRESSION not in ds.event_types
    stats = ds.stats()
    assert stats.n_events == 7 and stats.n_impressions == 21 and IMPRESSION not in stats.events_by_type
    # an item only ever shown is still in the vocabulary (a ranker needs its index), after the others
    assert ds.item_map.raw_ids[-2:] == ["8", "9"]  # first-shown order
    # a declared vocabulary never gives impressions a type index
    assert Dataset.build(_clean(), event_types=("impression", "click")).event_types == ("click",)


def test_splits_never_target_impressions_nor_leak_the_target_list() -> None:
    ds = Dataset.build(_clean())
    for split in (leave_one_out(ds), temporal(ds, 0.2, 0.2), cold_mixed(ds, 0.3, seed=1)):
        for part in (split.train, split.train_valid):
            assert IMPRESSION not in set(part.events["event_type"])
        shown_only = {ds.item_map.index("9"), ds.item_map.index("8")}
        for es in (split.valid, split.test):
            assert not shown_only & set(es.targets.values.tolist())
    loo = leave_one_out(ds)
    # training sees only the lists shown before each user's last training click: the lists of the held-out
    # clicks (each shown a second before its click, and holding the target) never reach it
    assert set(loo.train.impressions["list_id"]) == {"a-L0", "a-L1", "b-L0"}
    assert set(loo.train_valid.impressions["list_id"]) == {"a-L0", "a-L1", "a-L2", "b-L0", "b-L1"}
    tmp = temporal(ds, 0.2, 0.2)
    assert (tmp.train.impressions["timestamp"] < tmp.params["t_valid"]).all()
    later = ds.events.filter(pl.col("timestamp") >= tmp.params["t_valid"])
    assert not set(later["list_id"]) & set(tmp.train.impressions["list_id"])
    cold = cold_item(ds, 0.2, seed=0)
    held = set(cold.valid.targets.values.tolist()) | set(cold.test.targets.values.tolist())
    assert not held & set(cold.train.impressions["item_idx"].to_list())


def test_given_split_keeps_marked_impressions_only() -> None:
    log = _log().with_columns(pl.when(pl.col("timestamp") >= 1_700_000_030).then(pl.lit("test"))
                              .when(pl.col("timestamp") >= 1_700_000_020).then(pl.lit("valid"))
                              .otherwise(pl.lit("train")).alias("split"))
    ds = Dataset.build(clean_events(log)[0])
    g = given(ds)
    assert set(g.train.impressions["split"]) == {"train"}
    assert set(g.train_valid.impressions["split"]) == {"train", "valid"}


def test_save_load_round_trip_keeps_impressions(tmp_path: Path) -> None:
    ds = Dataset.build(_clean(), name="shown")
    back = Dataset.load(ds.save(tmp_path / "ds"))
    assert back.n_impressions == ds.n_impressions and back.n_events == ds.n_events
    cols = ["user_idx", "item_idx", "timestamp", "list_id", "position"]
    assert back.impressions.select(cols).equals(ds.impressions.select(cols))
    assert back.item_map.raw_ids == ds.item_map.raw_ids


def test_cleaning_checks_positions_and_derives_distinct_ids() -> None:
    raw = pl.DataFrame({"user_id": ["u"] * 5, "item_id": ["i"] * 5, "timestamp": [5] * 5,
                        "event_type": ["impression"] * 5, "list_id": ["A", "B", "C", " ", "D"],
                        "position": ["0", "0", "-1", "2", "1.5"]})
    ev, report = clean_events(raw)
    # the same item shown at the same second in two lists is two impressions; bad positions are dropped
    assert ev["list_id"].to_list() == ["A", "B", None] and report.dropped["bad_position"] == 2
    assert ev["event_id"].to_list() == ["u|i|5|impression||A|0", "u|i|5|impression||B|0",
                                        "u|i|5|impression|||2"]
    # an event without a list keeps the id it always had
    plain, _ = clean_events(pl.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [5]}))
    assert plain["event_id"].to_list() == ["u|i|5|view|"] and plain["list_id"].null_count() == 1
    with pytest.raises(DataError, match="position"):
        clean_events(raw, CleaningConfig(strict=True))


def test_minimum_counts_count_interactions_only() -> None:
    log = _log()
    ev, _ = clean_events(log, CleaningConfig(min_user_events=4))
    # user b has 3 clicks (and 9 impressions): dropped with their impressions; a keeps everything
    assert set(ev["user_id"]) == {"a"} and ev.height == 16


def test_synthetic_shop_stream_is_the_same_with_impressions_on_or_off() -> None:
    on = generate_ecommerce(n_users=120, n_items=60, days=60, seed=5)
    off = generate_ecommerce(n_users=120, n_items=60, days=60, seed=5, impressions=False)
    assert on.events.equals(off.events) and on.items.equals(off.items)
    assert off.impressions.height == 0 and off.view_lists.height == 0
    n_views = on.events.filter(pl.col("event_type") == "view").height
    assert on.impressions.height == 10 * n_views and on.view_lists.height == n_views
    ds_on, ds_off = on.dataset(), off.dataset()
    assert ds_on.item_map.raw_ids == ds_off.item_map.raw_ids
    assert ds_on.user_map.raw_ids == ds_off.user_map.raw_ids
    assert np.array_equal(ds_on.sequences.values, ds_off.sequences.values)
    assert np.array_equal(ds_on.sequences.offsets, ds_off.sequences.offsets)
    imp = ds_on.impressions
    # each list holds ten distinct items, shown a second before the view, which sits at its own position
    assert imp.group_by("list_id").agg(pl.col("item_id").n_unique())["item_id"].min() == 10
    views = ds_on.events.filter(pl.col("event_type") == "view")
    hit = views.join(imp.with_columns(pl.col("timestamp") + 1), on=["user_id", "item_id", "timestamp",
                                                                   "list_id", "position"], how="inner")
    assert hit.height == views.height
    # the top of a list is likelier to be viewed (the position bias the generator puts in)
    at = on.view_lists["position"].to_numpy()
    assert (at == 0).mean() > 2 * (at == 9).mean()
    assert generate_ecommerce(n_users=120, n_items=60, days=60, seed=5).impressions.equals(on.impressions)


def test_the_builtin_shop_takes_its_options_as_text() -> None:
    from lmrec.data.loaders import open_source

    off = open_source("synthetic-ecommerce", n_users="40", n_items="30", impressions="false")
    on = open_source("synthetic-ecommerce", n_users="40", n_items="30", list_size="4")
    assert IMPRESSION not in set(off.events["event_type"])
    shown = on.events.filter(pl.col("event_type") == IMPRESSION)
    assert shown.height == 4 * on.events.filter(pl.col("event_type") == "view").height
    with pytest.raises(ValueError, match="true or false"):
        open_source("synthetic-ecommerce", impressions="maybe")


def test_a_written_split_keeps_trainings_impressions(tmp_path: Path) -> None:
    from lmrec.data.split_io import write_split

    ds = Dataset.build(_clean(), name="shown")
    loo = leave_one_out(ds)
    back, _ = load_dataset(write_split(loo, tmp_path / "split"))
    again = given(back)
    assert set(again.train.impressions["list_id"]) == set(loo.train.impressions["list_id"])
    assert set(back.events["event_type"]) == {"click"}  # targets take training's type, not "impression"
    for mine, theirs in ((loo.test, again.test), (loo.valid, again.valid)):
        expected = ds.item_map.raws(mine.targets.values).tolist()
        assert back.item_map.raws(theirs.targets.values).tolist() == expected
