"""Impressions in the store: kept with their list and position, apart from histories, through migration,
backup and restore."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from lmrec.data.schema import IMPRESSION
from lmrec.store import Store
from lmrec.store.backup import backup, restore

T = 1_700_000_000


def _shown_and_clicked() -> pl.DataFrame:
    rows = [{"user_id": "u", "item_id": i, "timestamp": T, "event_type": "impression", "list_id": "L1",
             "position": p} for p, i in enumerate(["a", "b", "c"])]
    rows.append({"user_id": "u", "item_id": "b", "timestamp": T + 5, "event_type": "click", "list_id": "L1",
                 "position": 1})
    rows.append({"user_id": "u", "item_id": "c", "timestamp": T + 9, "event_type": "view"})
    return pl.DataFrame(rows)


def test_impressions_round_trip_and_stay_out_of_histories(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as st:
        st.upsert_items(pl.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"]}))
        res = st.append_events(_shown_and_clicked())
        assert res.events_inserted == 5
        assert st.append_events(_shown_and_clicked()).events_inserted == 0  # idempotent, lists included
        ev = st.events()
        shown = ev.filter(pl.col("event_type") == IMPRESSION)
        assert shown.select("item_id", "list_id", "position").rows() == [("a", "L1", 0), ("b", "L1", 1),
                                                                         ("c", "L1", 2)]
        assert ev.filter(pl.col("event_type") == "click").select("list_id", "position").rows() == [("L1", 1)]
        # what a user did, not what they were shown
        assert st.user_sequence("u")["item_id"].to_list() == ["b", "c"]
        assert st.user_sequence("u", impressions=True).height == 5
        assert st.text_coverage() == (2, 2)  # "a" was only shown
        ds = st.to_dataset("shop")
        assert ds.n_events == 2 and ds.n_impressions == 3 and ds.user_sequence("u") == ["b", "c"]
        # export and import again: the lists survive
        folder = st.export_parquet(tmp_path / "export")["events"].parent
    with Store(tmp_path / "again.duckdb") as st2:
        from lmrec.data.loaders import open_source

        st2.import_source(open_source(folder), dataset="shop")
        again = st2.events().sort("event_id")
        assert again.equals(ev.sort("event_id"))


def _old_store(path: Path) -> None:
    """A store as lmrec wrote it before impressions (schema 1: events without list_id and position)."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("CREATE TABLE events (event_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, "
                "item_id VARCHAR NOT NULL, timestamp BIGINT NOT NULL, event_type VARCHAR NOT NULL, "
                "value DOUBLE)")
    con.execute(f"INSERT INTO events VALUES ('e1', 'u', 'a', {T}, 'view', NULL), "
                f"('e2', 'u', 'b', {T + 1}, 'purchase', 9.5)")
    con.execute("CREATE TABLE items (item_id VARCHAR PRIMARY KEY, title VARCHAR, description VARCHAR, "
                "categories VARCHAR[], attributes VARCHAR, updated_at TIMESTAMP DEFAULT current_timestamp, "
                "seq BIGINT)")
    con.execute("CREATE TABLE users (user_id VARCHAR PRIMARY KEY, profile VARCHAR, attributes VARCHAR, "
                "updated_at TIMESTAMP DEFAULT current_timestamp, seq BIGINT)")
    con.close()


def test_a_schema_1_store_reads_read_only_and_migrates_on_write(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _old_store(path)
    with Store(path, read_only=True) as ro:  # read-only: nothing changes, the new columns read as empty
        ev = ro.events()
        assert ev.height == 2 and ev["list_id"].null_count() == 2 and ev["position"].null_count() == 2
        assert ro.user_sequence("u")["item_id"].to_list() == ["a", "b"]
        assert ro.to_dataset("old").n_events == 2
    with Store(path) as st:  # opened for writing: migrated, old rows kept
        assert st.get_meta("schema_version") == 2
        st.append_events(pl.DataFrame({"user_id": ["u"], "item_id": ["c"], "timestamp": [T + 2],
                                       "event_type": ["impression"], "list_id": ["L"], "position": [0]}))
        ev = st.events()
        assert ev["event_id"].to_list()[:2] == ["e1", "e2"] and ev["value"].to_list()[:2] == [None, 9.5]
        assert ev.row(2, named=True)["list_id"] == "L" and st.to_dataset("old").n_impressions == 1


def test_backup_and_restore_keep_impressions(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as st:
        st.append_events(_shown_and_clicked())
        before = st.events()
        backup(st, tmp_path / "b")
    restore(tmp_path / "b", tmp_path / "r.duckdb")
    with Store(tmp_path / "r.duckdb") as back:
        assert back.events().equals(before)


def test_a_backup_of_a_schema_1_store_restores(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _old_store(path)
    with Store(path, read_only=True) as ro:
        manifest = backup(ro, tmp_path / "b")
    assert manifest["tables"]["events"]["rows"] == 2
    restore(tmp_path / "b", tmp_path / "r.duckdb")  # the backup's hash covers the columns it has
    with Store(tmp_path / "r.duckdb") as back:
        ev = back.events()
        assert ev["event_id"].to_list() == ["e1", "e2"] and ev["list_id"].null_count() == 2
