"""Item text from any file, for any format (``--items FILE``), id mapping files, and the text coverage."""

from __future__ import annotations

import json

import polars as pl
import pytest

from lmrec.data.cleaning import DataError
from lmrec.data.dataset import text_coverage_line
from lmrec.data.loaders import load_dataset, open_source
from lmrec.data.loaders.items import read_id_map, read_items

INTER = "user_id:token\titem_id:token\ttimestamp:float\n1\t1\t10\n1\t2\t20\n2\t2\t10\n2\t3\t30\n"


def titles(ds) -> dict[str, str]:
    return dict(zip(ds.item_map.raw_ids, ds.item_titles()[1:], strict=True))


def texts(ds) -> dict[str, str]:
    rows = ds.items.select("item_id", "title", "description").to_dicts()
    return {r["item_id"]: r["title"] or r["description"] or "" for r in rows}


@pytest.mark.parametrize("header",
                         ["item_id:token\ttext:token_seq\n", "item_id\ttext\n", "asin\ttitle\n", ""])
def test_item_text_header_is_never_an_item(tmp_path, header):
    f = tmp_path / "Office.text"
    f.write_text(header + "1\tRed stapler\n2\tBlue pen\n")
    items, _ = read_items(f)
    assert items["item_id"].to_list() == ["1", "2"]
    text = {r["item_id"]: r.get("title") or r.get("description") for r in items.to_dicts()}
    assert text == {"1": "Red stapler", "2": "Blue pen"}


def test_recbole_events_take_items_from_any_file(tmp_path):
    (tmp_path / "x.inter").write_text(INTER)
    (tmp_path / "x.text").write_text("item_id:token\ttext:token_seq\n1\tRed stapler\n2\tBlue pen\n")
    ds, report = load_dataset(tmp_path / "x.inter", items=tmp_path / "x.text")
    assert "item_id" not in ds.item_map.raw_ids  # the header line is not an item
    assert texts(ds) == {"1": "Red stapler", "2": "Blue pen", "3": ""}
    assert ds.text_coverage() == (2, 3)
    assert any("items from" in n for n in report.notes)
    # A table, a JSON lines file and a headerless text file are read the same way.
    (tmp_path / "p.csv").write_text("sku,name,category\n1,Red stapler,Desk\n2,Blue pen,Pens\n3,Glue,Desk\n")
    ds2, _ = load_dataset(tmp_path / "x.inter", items=tmp_path / "p.csv",
                          item_mapping={"item_id": "sku", "title": "name", "categories": "category"})
    assert titles(ds2) == {"1": "Red stapler", "2": "Blue pen", "3": "Glue"}
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"item_id": str(i), "title": t}) + "\n"
                                              for i, t in ((1, "A"), (3, "C"))))
    ds3, report3 = load_dataset(tmp_path / "x.inter", items=tmp_path / "p.jsonl")
    assert report3.dropped["unknown_item"] == 2  # a table is the whole catalogue: item 2's events are dropped
    assert ds3.text_coverage() == (2, 2)
    (tmp_path / "t.txt").write_text("1\tA\n2\tB\n")
    ds4, _ = load_dataset(tmp_path / "x.inter", items=tmp_path / "t.txt")
    assert ds4.n_events == 4 and ds4.text_coverage() == (2, 3)  # text for some: no event lost


def test_built_in_and_sequence_data_take_items_too(tmp_path):
    (tmp_path / "i.tsv").write_text("item_id\ttitle\n1\tToy Story (1995)\n")
    ds, _ = load_dataset("movielens-100k", items=tmp_path / "i.tsv")
    assert titles(ds)["1"] == "Toy Story (1995)"
    (tmp_path / "seq.txt").write_text("u 1 2 3\n")
    (tmp_path / "seq.item").write_text("item_id:token\ttitle:token_seq\n1\tA\n2\tB\n3\tC\n")
    ds2, _ = load_dataset(tmp_path / "seq.txt", items=tmp_path / "seq.item")
    assert titles(ds2) == {"1": "A", "2": "B", "3": "C"}


def test_item_text_keyed_by_another_id_is_translated_by_item2index(tmp_path):
    (tmp_path / "x.inter").write_text(INTER)  # events use indices 1, 2, 3
    (tmp_path / "x.text").write_text("B001\tRed stapler\nB002\tBlue pen\nB003\tGlue\n")  # text uses ASINs
    (tmp_path / "x.item2index").write_text("B001\t1\nB002\t2\nB003\t3\n")
    ds, report = load_dataset(tmp_path / "x.inter", items=tmp_path / "x.text")  # found beside the text
    assert titles(ds) == {"1": "Red stapler", "2": "Blue pen", "3": "Glue"}
    assert any("translated by" in n and "3 of 3 items renamed" in n for n in report.notes)
    # Given explicitly, in the other direction (events by ASIN, text by index).
    (tmp_path / "e.csv").write_text("user_id,item_id,timestamp\nu,B001,1\nu,B003,2\n")
    (tmp_path / "idx.txt").write_text("item_id\ttext\n1\tRed stapler\n3\tGlue\n")
    (tmp_path / "map.tsv").write_text("asin\tindex\nB001\t1\nB003\t3\n")
    ds2, _ = load_dataset(tmp_path / "e.csv", items=tmp_path / "idx.txt", item_map=tmp_path / "map.tsv")
    assert titles(ds2) == {"B001": "Red stapler", "B003": "Glue"}
    # Ids that already match the events: the mapping file beside them is left alone.
    (tmp_path / "same.text").write_text("1\tA\n2\tB\n3\tC\n")
    ds3, report3 = load_dataset(tmp_path / "x.inter", items=tmp_path / "same.text")
    assert titles(ds3) == {"1": "A", "2": "B", "3": "C"}
    assert not any("translated" in n for n in report3.notes)


def test_id_map_and_item_file_errors_are_located(tmp_path):
    (tmp_path / "m.txt").write_text("a\t1\nb\n")
    with pytest.raises(DataError, match=r"m\.txt.*row 2.*two ids"):
        read_id_map(tmp_path / "m.txt")
    (tmp_path / "t.txt").write_text("1\tA\n2 no tab\n")
    with pytest.raises(DataError, match=r"t\.txt.*row 2.*item_id<TAB>text"):
        read_items(tmp_path / "t.txt")
    with pytest.raises(FileNotFoundError, match="no such item file"):
        open_source("movielens-100k", items=tmp_path / "missing.csv")


def test_text_coverage_line():
    assert text_coverage_line(2380, 2420) == "text for 2,380 of 2,420 items with events (98 %)"
    assert text_coverage_line(0, 0) == "text for 0 of 0 items with events"


def test_item_mapping_without_items_keeps_the_loaders_own(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    (d / "ml.inter").write_text(INTER)
    (d / "ml.item").write_text("item_id:token\tname:token_seq\n1\tA\n2\tB\n3\tC\n")
    ds, _ = load_dataset(d, item_mapping={"title": "name"})
    assert titles(ds)["1"] == "A"
    assert pl.Series(ds.item_map.raw_ids).to_list() == ["1", "2", "3"]
