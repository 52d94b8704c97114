"""The store on both backends (a DuckDB file, a PostgreSQL database on a real server): idempotent,
all-or-nothing imports, upserts, ordered reads, export and erasure."""

from __future__ import annotations

import polars as pl
import pytest

from lmrec.data.cleaning import CleaningConfig, DataError
from lmrec.data.loaders import open_source
from lmrec.data.loaders.base import Source, with_row_numbers
from lmrec.store import Store
from lmrec.store.duckdb_store import SCHEMA_VERSION


def _events(n: int = 30, users: int = 3, start: int = 1_600_000_000) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [f"u{k % users}" for k in range(n)],
            "item_id": [f"i{k % 7}" for k in range(n)],
            "timestamp": [str(start + k) for k in range(n)],
            "event_type": ["view"] * n,
        }
    )


def _items() -> pl.DataFrame:
    return pl.DataFrame({"item_id": [f"i{k}" for k in range(7)], "title": [f"Item {k}" for k in range(7)]})


def _source(
    events: pl.DataFrame, items: pl.DataFrame | None = None, users: pl.DataFrame | None = None
) -> Source:
    return Source("test", events=with_row_numbers(events), items=items, users=users, origin="test.csv")


def _snapshot(st: Store) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return st.events(), st.items(), st.users()


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request, tmp_path):
    target = tmp_path / "s.duckdb" if request.param == "duckdb" else request.getfixturevalue("pg_url")
    with Store(target) as st:
        assert st.backend == request.param
        yield st


def test_import_then_reimport_adds_nothing(store):
    src = _source(_events(), _items(), pl.DataFrame({"user_id": ["u0"], "profile": ["likes hats"]}))
    first = store.import_source(src, chunk_rows=7)
    assert first.events_inserted == 30 and first.events_already_present == 0
    assert first.items_upserted == 7 and first.users_upserted == 1
    before = _snapshot(store)
    again = store.import_source(src, chunk_rows=11)
    assert again.events_inserted == 0 and again.events_already_present == 30
    assert again.report.dropped["duplicate"] == 30
    after = _snapshot(store)
    assert all(a.equals(b) for a, b in zip(before, after, strict=True))
    assert store.counts() == {"events": 30, "items": 7, "users": 1}


def test_duplicates_inside_one_batch_are_stored_once(store):
    ev = pl.concat([_events(5), _events(5)])
    res = store.append_events(ev)
    assert res.events_inserted == 5 and res.events_already_present == 5
    ids = pl.DataFrame(
        {
            "event_id": ["e1", "e1", "e2"],
            "user_id": ["a", "b", "c"],
            "item_id": ["x", "y", "z"],
            "timestamp": [1, 2, 3],
        }
    )
    assert store.append_events(ids).events_inserted == 2
    assert store.events("event_id = 'e1'")["user_id"].to_list() == ["a"]  # the first occurrence wins


@pytest.mark.parametrize("how", ["strict_error", "keyboard_interrupt"])
def test_interrupted_import_leaves_the_store_as_before(store, how):
    store.import_source(_source(_events(10, start=1), _items()))
    store.upsert_users(pl.DataFrame({"user_id": ["u0"], "profile": ["before"]}))
    before = _snapshot(store)
    events = _events(50, users=5, start=2_000_000_000)
    if how == "strict_error":
        events = events.with_columns(pl.when(pl.int_range(pl.len()) == 37).then(pl.lit("never"))
                                     .otherwise(pl.col("timestamp")).alias("timestamp"))
    new_items = _items().with_columns(pl.lit("renamed").alias("title"))
    new_users = pl.DataFrame({"user_id": ["u0", "u9"], "profile": ["after", "new"]})
    src = _source(events, new_items, new_users)
    chunks = []

    def on_chunk(n: int) -> None:
        chunks.append(n)
        if how == "keyboard_interrupt" and len(chunks) == 3:
            raise KeyboardInterrupt

    expected = DataError if how == "strict_error" else KeyboardInterrupt
    with pytest.raises(expected) as err:
        store.import_source(src, CleaningConfig(strict=True), chunk_rows=10, on_chunk=on_chunk)
    if how == "strict_error":
        assert err.value.row == 38 and err.value.field == "timestamp"
    assert len(chunks) == 3  # three chunks were written before the failure...
    after = _snapshot(store)
    assert all(
        a.equals(b) for a, b in zip(before, after, strict=True)
    )  # ...and rolled back with items and users
    # the store still works after the rollback
    assert store.append_events(_events(3, start=5)).events_inserted == 3


def test_unknown_items_dropped_against_the_source_catalogue(store):
    ev = _events(8).with_columns(pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("ghost"))
                                 .otherwise(pl.col("item_id")).alias("item_id"))
    res = store.import_source(_source(ev, _items()))
    assert res.events_inserted == 7 and res.report.dropped["unknown_item"] == 1
    assert res.report.first_row["unknown_item"] == 3
    with pytest.raises(DataError, match="row 3.*item_id"):
        store.import_source(_source(ev, _items()), CleaningConfig(strict=True))


def test_upserts_insert_and_replace(store):
    assert store.upsert_items(_items()) == 7
    changed = pl.DataFrame({"item_id": ["i1", "new"], "title": ["Renamed", "Brand new"],
                            "categories": [["a", "b"], None], "attributes": ['{"price": 3}', None]})
    assert store.upsert_items(changed) == 2
    assert store.get_item("i1") == {"item_id": "i1", "title": "Renamed", "description": None,
                                    "categories": ["a", "b"], "attributes": '{"price": 3}'}
    assert store.get_item("i2")["title"] == "Item 2" and store.get_item("nope") is None
    assert store.counts()["items"] == 8
    store.upsert_users(pl.DataFrame({"user_id": ["a", "a"], "profile": ["old", "new"]}))  # last row wins
    assert store.users().to_dicts() == [{"user_id": "a", "profile": "new", "attributes": None}]


def test_user_sequence_ordering_and_limit(store):
    ev = pl.DataFrame({"user_id": ["a"] * 5 + ["b"], "item_id": ["x1", "x2", "x3", "x4", "x5", "y"],
                       "timestamp": ["50", "10", "30", "30", "20", "1"]})
    store.append_events(ev)
    assert store.user_sequence("a")["item_id"].to_list() == [
        "x2",
        "x5",
        "x3",
        "x4",
        "x1",
    ]  # ties: insertion order
    assert store.user_sequence("a", limit=3)["item_id"].to_list() == [
        "x3",
        "x4",
        "x1",
    ]  # the newest 3, oldest first
    assert store.user_sequence("a", limit=0).height == 0
    assert store.user_sequence("nobody").height == 0


def test_export_parquet_round_trips(store, tmp_path):
    store.import_source(
        _source(_events(), _items(), pl.DataFrame({"user_id": ["u1"], "attributes": ['{"a": 1}']}))
    )
    paths = store.export_parquet(tmp_path / "export's")  # a quote in the folder name
    ev = pl.read_parquet(paths["events"])
    assert ev.height == 30 and set(ev.columns) == {
        "event_id",
        "user_id",
        "item_id",
        "timestamp",
        "event_type",
        "value",
        "list_id",
        "position",
    }
    assert (
        pl.read_parquet(paths["items"]).height == 7
        and "updated_at" not in pl.read_parquet(paths["items"]).columns
    )
    # the export folder is itself a source: importing it into a new store gives the same data
    with Store(tmp_path / "copy.duckdb") as copy:
        copy.import_source(open_source(tmp_path / "export's"))
        assert copy.events().sort("event_id").equals(store.events().sort("event_id"))
        assert copy.counts() == store.counts()
        assert copy.items().equals(store.items())
        assert copy.users().equals(store.users())  # the attributes JSON merged, not nested


def test_delete_user_leaves_no_row(store):
    store.import_source(
        _source(_events(), _items(), pl.DataFrame({"user_id": ["u1", "u2"], "profile": ["p", "q"]}))
    )
    removed = store.delete_user("u1")
    assert removed == {"events": 10, "users": 1}
    for table, col in (("events", "user_id"), ("users", "user_id")):
        assert store.execute(f"SELECT count(*) FROM {table} WHERE {col} = 'u1'")[0][0] == 0
    assert store.user_sequence("u1").height == 0 and store.counts()["events"] == 20
    assert store.delete_user("u1") == {"events": 0, "users": 0}


def test_to_dataset_and_meta(store, tmp_path):
    store.import_source(_source(_events(), _items()))
    ds = store.to_dataset("s")
    assert ds.n_events == 30 and ds.n_items == 7 and ds.item_titles()[1] == "Item 0"
    core = store.to_dataset("s", CleaningConfig(min_user_events=11))
    assert core.n_events == 0 or core.events["user_id"].n_unique() < 3
    store.set_meta("model", {"name": "ease", "version": 2})
    assert store.get_meta("model") == {"name": "ease", "version": 2} and store.get_meta("missing", 5) == 5
    assert store.get_meta("schema_version") == SCHEMA_VERSION == 2


def test_store_persists_and_opens_read_only(tmp_path):
    path = tmp_path / "p.duckdb"
    with Store(f"duckdb://{path}") as st:
        st.append_events(_events(4))
    with Store(path, read_only=True) as ro:
        assert ro.counts()["events"] == 4


def test_streaming_generic_import(store, tmp_path):
    _events(1000, users=10).write_csv(tmp_path / "ev.csv")
    seen: list[int] = []
    with store as st:
        res = st.import_source(open_source(tmp_path / "ev.csv"), chunk_rows=300, on_chunk=seen.append)
        assert seen == [300, 300, 300, 100] and res.events_inserted == 1000
        assert res.report.rows_read == 1000 and res.report.rows_kept == 1000


def test_insertion_order_is_kept_for_catalogues_and_events(store):
    ids = [f"item{k:04d}" for k in range(3000)][::-1]
    store.upsert_items(pl.DataFrame({"item_id": ids, "title": ids}))
    assert store.items()["item_id"].to_list() == ids  # catalogue order = input order, on any thread count
    store.upsert_items(pl.DataFrame({"item_id": ["zzz", ids[5], "aaa"], "title": ["z", "changed", "a"]}))
    assert store.items()["item_id"].to_list() == [*ids, "zzz", "aaa"]
    assert store.get_item(ids[5])["title"] == "changed"
    n = 20_000
    ev = pl.DataFrame({"user_id": ["u"] * n, "item_id": [f"i{k}" for k in range(n)], "timestamp": ["7"] * n})
    store.append_events(ev)
    assert store.user_sequence("u")["item_id"].to_list() == ev["item_id"].to_list()  # same time: input order


def test_schema_1_store_is_migrated(tmp_path):
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE items (item_id VARCHAR PRIMARY KEY, title VARCHAR, description VARCHAR, "
                "categories VARCHAR[], attributes VARCHAR, updated_at TIMESTAMP DEFAULT current_timestamp)")
    con.execute("INSERT INTO items (item_id, title) VALUES ('b', 'B'), ('a', 'A')")
    con.close()
    with Store(path) as st:
        assert st.items()["item_id"].to_list() == ["b", "a"]
        st.upsert_items(pl.DataFrame({"item_id": ["c"], "title": ["C"]}))
        assert st.items()["item_id"].to_list() == ["b", "a", "c"]
