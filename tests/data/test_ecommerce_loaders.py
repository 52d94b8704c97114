"""RetailRocket and Taobao loaders on small fixtures written here, and the built-in synthetic shop."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmrec.data.cleaning import CleaningConfig, DataError
from lmrec.data.loaders import detect_format, load_dataset, open_source

RR_EVENTS = """timestamp,visitorid,event,itemid,transactionid
1433221332117,257597,view,355908,
1433224214164,992329,view,248676,
1433221955914,257597,addtocart,355908,
1433222000000,257597,transaction,355908,4000
1433223236124,111016,view,318965,
1433223236125,111016,bogus,318965,
"""
RR_PROPS = """timestamp,itemid,property,value
1435460400000,355908,categoryid,1338
1441508400000,355908,categoryid,1173
1439089200000,248676,categoryid,491
1439089200000,248676,888,1116173 n552.000
"""
RR_TREE = """categoryid,parentid
1173,805
805,
491,679
"""
TAOBAO = """1,2268318,2520377,pv,1511544070
1,2333346,2520771,pv,1511561733
1,2268318,2520377,cart,1511572885
1,2268318,2520377,buy,1511573000
2,3830808,4181361,fav,1511593493
2,2268318,2520377,pv,1511600000
"""


@pytest.fixture()
def retailrocket(tmp_path: Path) -> Path:
    folder = tmp_path / "retailrocket"
    folder.mkdir()
    (folder / "events.csv").write_text(RR_EVENTS)
    (folder / "item_properties_part1.csv").write_text(RR_PROPS)
    (folder / "category_tree.csv").write_text(RR_TREE)
    return folder


def test_retailrocket_folder(retailrocket: Path) -> None:
    assert detect_format(retailrocket) == "retailrocket"
    assert detect_format(retailrocket / "events.csv") == "retailrocket"
    ds, report = load_dataset(retailrocket)
    assert ds.n_events == 5 and report.dropped["unknown_event_type"] == 1
    assert report.first_row["unknown_event_type"] == 6  # the 'bogus' row, counted from the first data row
    by_user = ds.events.filter(ds.events["user_id"] == "257597").sort("timestamp")
    assert by_user["event_type"].to_list() == ["view", "cart", "purchase"]
    assert by_user["timestamp"].to_list() == [1433221332, 1433221955, 1433222000]  # ms → s
    cats = dict(zip(ds.items["item_id"], ds.items["categories"].to_list(), strict=True))
    assert cats["355908"] == ["1173", "805"]  # the latest categoryid, then its ancestors
    assert cats["248676"] == ["491", "679"]


def test_retailrocket_items_without_properties(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(RR_EVENTS)
    src = open_source(tmp_path / "events.csv", "retailrocket")
    assert src.items is None and any("categories" in n for n in src.notes)


def test_retailrocket_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "events.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="RetailRocket"):
        open_source(bad, "retailrocket")


def test_taobao_streamed_in_chunks(tmp_path: Path) -> None:
    f = tmp_path / "UserBehavior.csv"
    f.write_text(TAOBAO)
    assert detect_format(f) == "taobao"
    src = open_source(f)
    chunks = list(src.iter_events(chunk_rows=2))
    assert sum(c.height for c in chunks) == 6
    assert chunks[-1]["_row"].to_list()[-1] == 6  # row numbers run across chunks
    ds, report = load_dataset(f, cleaning=CleaningConfig())
    assert report.rows_kept == 6
    assert sorted(ds.event_types) == ["cart", "fav", "purchase", "view"]
    assert ds.user_sequence("1") == ["2268318", "2333346", "2268318", "2268318"]
    cats = dict(zip(ds.items["item_id"], ds.items["categories"].to_list(), strict=True))
    assert cats["3830808"] == ["4181361"]
    head = open_source(f, max_rows=3)
    assert sum(c.height for c in head.iter_events()) == 3


def test_taobao_bad_first_line(tmp_path: Path) -> None:
    f = tmp_path / "UserBehavior.csv"
    f.write_text("1,2,3,jump,5\n")
    with pytest.raises(DataError, match="Taobao"):
        open_source(f, "taobao")


def test_synthetic_shop_is_built_in() -> None:
    ds, report = load_dataset("synthetic-ecommerce", n_users=50, n_items=40, days=60, seed=5)
    assert report.rows_dropped == 0 and ds.n_events > 0
    assert {"view", "cart", "purchase"} >= set(ds.event_types)
