"""The Dataset on real data (MovieLens) and on small hand-made tables."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.loaders import load_dataset
from lmrec.data.schema import PAD


def test_movielens_100k_has_the_published_sizes(ml100k):
    assert (ml100k.n_users, ml100k.n_items, ml100k.n_events) == (943, 1682, 100_000)
    assert ml100k.event_types == ("rating",)
    st = ml100k.stats()
    assert st.n_items_with_events == 1682 and st.sequence_length["min"] == 20  # every user rated at least 20
    assert st.value == {"min": 1.0, "mean": pytest.approx(3.52986), "max": 5.0}
    assert ml100k.item_titles()[ml100k.item_map.index("1")] == "Toy Story (1995)"
    users = ml100k.users.filter(pl.col("user_id") == "1")["attributes"][0]
    assert json.loads(users)["occupation"] == "technician"
    ts = ml100k.timestamps
    for u in (1, 100, 943):
        assert np.all(np.diff(ts[u]) >= 0)  # chronological


def test_movielens_latest_small_with_tags(ml_latest_small_path):
    ds, report = load_dataset(ml_latest_small_path)
    ratings = pl.read_csv(ml_latest_small_path / "ratings.csv")
    movies = pl.read_csv(ml_latest_small_path / "movies.csv")
    assert ds.n_events == ratings.height == report.rows_kept
    assert ds.n_users == ratings["userId"].n_unique()
    assert ds.n_items == movies.height
    toy = ds.items.filter(pl.col("item_id") == "1").to_dicts()[0]
    assert toy["title"] == "Toy Story (1995)" and "Animation" in toy["categories"]
    tags = pl.read_csv(ml_latest_small_path / "tags.csv", schema_overrides={"tag": pl.String})
    tagged = str(tags["movieId"][0])
    attrs = json.loads(ds.items.filter(pl.col("item_id") == tagged)["attributes"][0])
    assert tags["tag"][0].lower() in attrs["tags"]
    with_tags = ds.items["attributes"].drop_nulls().map_elements(lambda a: bool(json.loads(a).get("tags")),
                                                                 return_dtype=pl.Boolean).sum()
    assert with_tags == tags["movieId"].n_unique()


def test_build_indices_ties_and_catalogue_only_items():
    ev = pl.DataFrame(
        {
            "event_id": ["a", "b", "c", "d"],
            "user_id": ["u2", "u1", "u1", "u1"],
            "item_id": ["x", "y", "x", "z"],
            "timestamp": [5, 10, 10, 3],
            "event_type": ["view"] * 4,
        }
    )
    items = pl.DataFrame({"item_id": ["w", "x"], "title": ["W", "X"]})
    ds = Dataset.build(ev, items)
    assert ds.item_map.raw_ids == ["w", "x", "y", "z"]  # catalogue first, then first seen in events
    assert ds.user_sequence("u1") == ["z", "y", "x"]  # time order, the 10-10 tie kept in input order
    assert ds.sequences[PAD].tolist() == [] and ds.item_popularity.tolist() == [0, 0, 2, 1, 1]
    assert ds.item_titles() == ["", "W", "X", "", ""]
    m = ds.interaction_matrix()
    assert m.shape == (3, 5) and m[ds.user_map.index("u1"), ds.item_map.index("y")] == 1


def test_save_load_round_trip_keeps_indices(tmp_path, ml100k):
    small = Dataset.build(ml100k.events.head(500).select("event_id", "user_id", "item_id", "timestamp",
                                                         "event_type", "value"),
                          ml100k.items.drop("item_idx"), ml100k.users.drop("user_idx"), name="small")
    back = Dataset.load(small.save(tmp_path / "ds"))
    assert back.item_map == small.item_map and back.user_map == small.user_map
    assert back.events.equals(small.events) and back.name == "small"
    assert back.sequences.to_lists() == small.sequences.to_lists()
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        Dataset.load(tmp_path)


def test_build_rejects_missing_columns():
    with pytest.raises(ValueError, match="missing required column"):
        Dataset.build(pl.DataFrame({"user_id": ["u"], "item_id": ["i"]}))


def test_empty_dataset_builds():
    ds = Dataset.build(pl.DataFrame(schema={"event_id": pl.String, "user_id": pl.String, "item_id": pl.String,
                                            "timestamp": pl.Int64, "event_type": pl.String}))
    assert ds.n_events == 0 and ds.n_users == 0 and ds.stats().first_timestamp is None
