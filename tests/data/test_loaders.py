"""Loaders for real formats: each returns lmrec's columns with ``_row`` and streams its events in chunks."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmrec.data.cleaning import ROW, CleaningConfig, DataError
from lmrec.data.loaders import FORMATS, detect_format, load_dataset, open_source
from lmrec.data.loaders import _io as lio
from lmrec.data.loaders.options import loader_options


def _write_jsonl(path: Path, records: list[dict], compress: bool = False, extra: str = "") -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records) + extra
    if compress:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


# ---------------------------------------------------------------------- registry
def test_every_format_is_registered():
    open_source("movielens-100k")  # loads the optional modules too
    for fmt in (
        "movielens",
        "amazon",
        "sequences",
        "item-text",
        "recbole",
        "generic",
        "csv",
        "tsv",
        "parquet",
        "jsonl",
    ):
        assert fmt in FORMATS, fmt


def test_unknown_format_and_unknown_option_are_clear(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("user_id,item_id,timestamp\n1,2,3\n")
    with pytest.raises(ValueError, match="unknown format 'nope'"):
        open_source(f, "nope")
    with pytest.raises(ValueError, match="does not take option"):
        open_source(f, "csv", layuot="pairs")
    with pytest.raises(FileNotFoundError, match="not a built-in dataset"):
        open_source(tmp_path / "missing.csv")


# ---------------------------------------------------------------------- generic tables
EVENTS_CSV = (
    "customer,sku,ts,action,amount\n"
    "u1,i1,1700000000,view,\n"
    "u1,i2,1700000100,AddToCart,\n"
    "u2,i1,2023-11-14T22:13:20Z,purchase,9.5\n"
    "u2,i2,1700000000123,view,\n"
)
MAPPING = {
    "user_id": "customer",
    "item_id": "sku",
    "timestamp": "ts",
    "event_type": "action",
    "value": "amount",
}


def test_generic_csv_with_mapping_and_items(tmp_path):
    (tmp_path / "ev.csv").write_text(EVENTS_CSV)
    (tmp_path / "items.csv").write_text(
        "sku,name,department,brand\ni1,Shoe,Fashion|Men,Acme\ni2,Hat,Fashion,\n"
    )
    assert detect_format(tmp_path / "ev.csv") == "generic"
    ds, report = load_dataset(tmp_path / "ev.csv", mapping=MAPPING, items=tmp_path / "items.csv",
                              item_mapping={"item_id": "sku", "title": "name", "categories": "department"})
    assert report.rows_read == 4 and report.rows_kept == 4
    assert ds.events.sort("timestamp")["timestamp"].to_list() == [1700000000] * 3 + [1700000100]
    assert sorted(ds.events["event_type"].unique().to_list()) == ["cart", "purchase", "view"]
    items = {r["item_id"]: r for r in ds.items.to_dicts()}
    assert items["i1"]["title"] == "Shoe" and items["i1"]["categories"] == ["Fashion", "Men"]
    assert json.loads(items["i1"]["attributes"]) == {"brand": "Acme"}


def test_generic_finds_common_column_names_without_mapping(tmp_path):
    (tmp_path / "rr.csv").write_text("timestamp,visitorid,event,itemid,transactionid\n"
                                     "1433221332117,257597,view,355908,\n"
                                     "1433224214164,992329,addtocart,248676,\n")
    src = open_source(tmp_path / "rr.csv")
    chunk = next(src.iter_events(10))
    assert chunk.columns == [ROW, "user_id", "item_id", "timestamp", "event_type"]
    assert chunk[ROW].to_list() == [1, 2]
    ds, _ = load_dataset(tmp_path / "rr.csv")
    assert ds.n_events == 2 and set(ds.events["event_type"]) == {"view", "cart"}
    assert ds.events["timestamp"].to_list() == [1433221332, 1433224214]  # milliseconds recognised


def test_generic_missing_and_mismatched_columns_name_the_file(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("who,what\n1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv.*missing column.*-m user_id=COLUMN"):
        open_source(f)
    with pytest.raises(DataError, match=r"mapped column not found.*'customer'"):
        open_source(f, mapping={"user_id": "customer", "item_id": "what", "timestamp": "what"})
    with pytest.raises(ValueError, match="unknown field"):
        open_source(f, mapping={"usr": "who"})


def test_generic_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty file"):
        open_source(empty)
    header = tmp_path / "header.csv"
    header.write_text("user_id,item_id,timestamp\n")
    ds, report = load_dataset(header)
    assert ds.n_events == 0 and report.rows_read == 0


def test_generic_tsv_gzip_jsonl_parquet_agree(tmp_path):
    rows = [{"user_id": f"u{i % 7}", "item_id": f"i{i % 11}", "timestamp": 1_600_000_000 + i, "rating": i % 5}
            for i in range(50)]
    df = pl.DataFrame(rows)
    df.write_parquet(tmp_path / "e.parquet")
    df.write_csv(tmp_path / "e.tsv", separator="\t")
    with gzip.open(tmp_path / "e.csv.gz", "wb") as f:
        f.write(df.write_csv().encode())
    _write_jsonl(tmp_path / "e.jsonl", rows)
    seqs = []
    for name in ("e.parquet", "e.tsv", "e.csv.gz", "e.jsonl"):
        assert detect_format(tmp_path / name) == "generic"
        ds, report = load_dataset(tmp_path / name)
        assert report.rows_kept == 50, name
        assert ds.events["value"].sum() == df["rating"].sum()
        seqs.append({u: ds.user_sequence(u) for u in ds.user_map.raw_ids})
    assert all(s == seqs[0] for s in seqs)


def test_generic_streams_in_chunks_of_chunk_rows(tmp_path):
    n = 10_000
    df = pl.DataFrame({"user_id": [str(i % 97) for i in range(n)], "item_id": [str(i % 31) for i in range(n)],
                       "timestamp": list(range(n))})
    pq.write_table(df.to_arrow(), tmp_path / "e.parquet", row_group_size=1000)
    df.write_csv(tmp_path / "e.csv")
    assert open_source(tmp_path / "e.parquet").n_rows == n  # known from the footer, for progress bars
    for name in ("e.parquet", "e.csv"):
        chunks = list(open_source(tmp_path / name).iter_events(chunk_rows=700))
        assert [c.height for c in chunks] == [700] * 14 + [200]
        rows = pl.concat([c[ROW] for c in chunks])
        assert rows.to_list() == list(range(1, n + 1))


def test_generic_csv_is_read_lazily(tmp_path, monkeypatch):
    """The first chunk arrives before the reader reaches a malformed line at the end: the file is not read
    whole."""
    monkeypatch.setattr(lio, "CSV_BLOCK_BYTES", 4096)
    lines = ["user_id,item_id,timestamp"] + [f"u{i},i{i},{1_600_000_000 + i}" for i in range(20_000)]
    lines.append("u,i,1,extra,fields")
    f = tmp_path / "big.csv"
    f.write_text("\n".join(lines) + "\n")
    stream = open_source(f).iter_events(chunk_rows=500)
    first = next(stream)
    assert first.height == 500 and first[ROW][0] == 1
    with pytest.raises(DataError, match="malformed table"):
        for _ in stream:
            pass


def test_generic_parquet_peak_arrow_memory_is_bounded(tmp_path):
    """Reading a Parquet file chunk by chunk holds a constant amount of Arrow memory, far below the whole
    file."""
    n = 200_000
    table = pa.table({"user_id": [f"user-{i % 5000:06d}-{'x' * 60}" for i in range(n)],
                      "item_id": [f"item-{i % 777:06d}" for i in range(n)], "timestamp": list(range(n))})
    pq.write_table(table, tmp_path / "e.parquet", row_group_size=5_000)
    whole = table.nbytes
    del table
    base = pa.total_allocated_bytes()
    used = []
    for chunk in open_source(tmp_path / "e.parquet").iter_events(chunk_rows=5_000):
        assert chunk.height <= 5_000
        used.append(pa.total_allocated_bytes() - base)
    assert len(used) == n // 5_000
    assert max(used) <= 2 * max(used[0], 1 << 20)  # does not grow with the number of chunks read
    assert max(used) < whole / 3, (max(used), whole)


def test_folder_with_events_items_users(tmp_path):
    pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"], "timestamp": [1, 2, 3]}) \
        .write_parquet(tmp_path / "events.parquet")
    pl.DataFrame({"item_id": ["x", "y"], "title": ["X", "Y"], "categories": [["c1"], []]}) \
        .write_parquet(tmp_path / "items.parquet")
    pl.DataFrame({"user_id": ["a"], "age": [31]}).write_parquet(tmp_path / "users.parquet")
    assert detect_format(tmp_path) == "generic"
    ds, _ = load_dataset(tmp_path)
    assert ds.n_events == 3 and ds.item_titles() == ["", "X", "Y"]
    assert json.loads(ds.users.filter(pl.col("user_id") == "a")["attributes"][0]) == {"age": 31}


def test_config_file_options(tmp_path):
    (tmp_path / "ev.csv").write_text(EVENTS_CSV)
    (tmp_path / "products.csv").write_text("sku,name\ni1,Shoe\ni2,Hat\n")
    cfg = tmp_path / "loader.toml"
    cfg.write_text(
        '[loader]\nitems = "products.csv"\n[loader.mapping]\nuser_id = "customer"\nitem_id = "sku"\n'
        'timestamp = "ts"\nevent_type = "action"\nvalue = "amount"\n[loader.item_mapping]\n'
        'item_id = "sku"\ntitle = "name"\n'
    )
    opts = loader_options([], cfg)
    assert opts["items"] == str(tmp_path / "products.csv")
    ds, _ = load_dataset(tmp_path / "ev.csv", **opts)
    assert ds.n_events == 4 and "Shoe" in ds.item_titles()
    ycfg = tmp_path / "loader.yaml"
    ycfg.write_text("mapping:\n  user_id: customer\n")
    assert loader_options(["item_id=sku"], ycfg, ["separator=;"]) == {
        "mapping": {"user_id": "customer", "item_id": "sku"}, "separator": ";"}
    with pytest.raises(ValueError, match="expects name=value"):
        loader_options(["user_id"], None)


# ---------------------------------------------------------------------- Amazon
REVIEWS_2018 = [
    {"overall": 5.0, "verified": True, "reviewTime": "09 1, 2016", "reviewerID": "A1", "asin": "B01",
     "reviewText": "great", "unixReviewTime": 1472688000},
    {"overall": 3.0, "reviewTime": "09 2, 2016", "reviewerID": "A1", "asin": "B02"},  # no unix time
    {"overall": 4.0, "reviewerID": "A2", "asin": "B01", "unixReviewTime": 1472688000},
    {"overall": 4.0, "reviewerID": "A2", "asin": "B01", "unixReviewTime": 1472688000},  # a duplicate review
]
META_2018 = [
    {"asin": "B01", "title": "Soap", "category": ["Beauty", "Bath"], "brand": "Acme",
     "description": ["Gentle.", "Lavender."], "price": "$1,299.00"},
    {"asin": "B02", "title": "Shampoo", "category": [], "price": ""},
]
REVIEWS_2023 = [
    {"rating": 5.0, "title": "Nice", "text": "ok", "asin": "C1-red", "parent_asin": "C1", "user_id": "U1",
     "timestamp": 1588687728923, "verified_purchase": True},
    {"rating": 2.0, "title": "Meh", "text": "no", "asin": "C2", "parent_asin": "C2", "user_id": "U1",
     "timestamp": 1588687800000},
]
META_2023 = [
    {"main_category": "All Beauty", "title": "Lotion", "features": ["soft"], "description": ["Rich."],
     "price": 15.99, "store": "Brand", "categories": ["Beauty", "Skin"], "details": {"Size": "1 oz"},
     "parent_asin": "C1"},
]


def test_amazon_2018_gzip_with_meta(tmp_path):
    _write_jsonl(tmp_path / "Beauty.json.gz", REVIEWS_2018, compress=True, extra="{not json\n")
    _write_jsonl(tmp_path / "meta_Beauty.json.gz", META_2018, compress=True)
    assert detect_format(tmp_path / "Beauty.json.gz") == "amazon"
    ds, report = load_dataset(tmp_path / "Beauty.json.gz")
    assert ds.name == "Beauty" and ds.event_types == ("rating",)
    assert (
        report.rows_read == 5 and report.dropped["duplicate"] == 1 and report.dropped["missing_user_id"] == 1
    )
    assert any("not a JSON object" in n for n in report.notes)
    assert ds.user_sequence("A1") == ["B01", "B02"]
    a1 = ds.events.filter(pl.col("user_id") == "A1")
    assert a1["timestamp"].to_list() == [1472688000, 1472774400]  # reviewTime "09 2, 2016" parsed
    assert a1["value"].to_list() == [5.0, 3.0]
    soap = ds.items.filter(pl.col("item_id") == "B01").to_dicts()[0]
    assert soap["title"] == "Soap" and soap["categories"] == ["Beauty", "Bath"]
    assert soap["description"] == "Gentle.\nLavender."
    assert json.loads(soap["attributes"]) == {"brand": "Acme", "price": 1299.0}


def test_amazon_2023_parent_asin_milliseconds_and_folder(tmp_path):
    _write_jsonl(tmp_path / "All_Beauty.jsonl", REVIEWS_2023)
    _write_jsonl(tmp_path / "meta_All_Beauty.jsonl", META_2023)
    for spec in (tmp_path / "All_Beauty.jsonl", tmp_path):
        assert detect_format(Path(spec)) == "amazon"
        ds, report = load_dataset(spec, "amazon")
        # C2 has no metadata: the metadata file is the catalogue, so its review is an unknown item
        assert ds.user_sequence("U1") == ["C1"] and report.dropped["unknown_item"] == 1
        assert ds.events["timestamp"].to_list() == [1588687728]  # milliseconds → seconds
    ds, _ = load_dataset(tmp_path / "All_Beauty.jsonl", cleaning=CleaningConfig(drop_unknown_items=False))
    assert ds.user_sequence("U1") == ["C1", "C2"]
    lotion = ds.items.filter(pl.col("item_id") == "C1").to_dicts()[0]
    assert lotion["categories"] == ["Beauty", "Skin"] and lotion["description"] == "Rich."
    attrs = json.loads(lotion["attributes"])
    assert attrs == {"store": "Brand", "price": 15.99, "main_category": "All Beauty", "features": ["soft"],
                     "details": {"Size": "1 oz"}}
    by_variant = open_source(tmp_path / "All_Beauty.jsonl", "amazon", item_key="asin")
    assert next(by_variant.iter_events())["item_id"].to_list() == ["C1-red", "C2"]


def test_amazon_reviews_stream_in_chunks(tmp_path):
    recs = [{"reviewerID": f"A{i % 13}", "asin": f"B{i % 17}", "overall": 1 + i % 5,
             "unixReviewTime": 1_400_000_000 + i} for i in range(1000)]
    _write_jsonl(tmp_path / "Toys.json", recs)
    chunks = list(open_source(tmp_path / "Toys.json").iter_events(chunk_rows=300))
    assert [c.height for c in chunks] == [300, 300, 300, 100]
    assert chunks[-1][ROW].to_list()[-1] == 1000


# ---------------------------------------------------------------------- research sequence files
def test_sequence_layout_with_item_text(tmp_path):
    (tmp_path / "Beauty.txt").write_text("1 10 11 12\n2 11 13\n\n3 12 10 10\n")
    (tmp_path / "Beauty_item_text.txt").write_text("item_id\ttext\n10\tRed lipstick\n11\tBlue nail polish\n")
    assert detect_format(tmp_path / "Beauty.txt") == "sequences"
    ds, report = load_dataset(tmp_path / "Beauty.txt", items=tmp_path / "Beauty_item_text.txt")
    assert ds.user_sequence("1") == ["10", "11", "12"] and ds.user_sequence("3") == ["12", "10", "10"]
    assert report.rows_kept == 8  # items without text keep their events
    titles = dict(zip(ds.item_map.raw_ids, ds.item_titles()[1:], strict=True))
    assert titles["10"] == "Red lipstick" and titles["13"] == ""
    assert any("not real times" in n for n in report.notes)
    rows = pl.concat(list(open_source(tmp_path / "Beauty.txt").iter_events(chunk_rows=2)))[ROW].to_list()
    assert rows == [1, 1, 1, 2, 2, 4, 4, 4]  # line numbers, for error messages


def test_pairs_layout_keeps_file_order(tmp_path):
    (tmp_path / "ml-1m.txt").write_text("1 10\n2 11\n1 11\n1 12\n2 10\n")
    ds, _ = load_dataset(tmp_path / "ml-1m.txt", layout="pairs")
    assert ds.user_sequence("1") == ["10", "11", "12"] and ds.user_sequence("2") == ["11", "10"]
    (tmp_path / "bad.txt").write_text("1 10\n1\n")
    with pytest.raises(DataError, match=r"bad\.txt.*row 2.*user item"):
        load_dataset(tmp_path / "bad.txt", "sequences", layout="pairs")


def test_long_sequence_lines_are_split_into_chunks(tmp_path):
    (tmp_path / "long.txt").write_text("u " + " ".join(str(i) for i in range(2500)) + "\nv 1 2\n")
    chunks = list(open_source(tmp_path / "long.txt").iter_events(chunk_rows=1000))
    assert [c.height for c in chunks] == [1000, 1000, 502]
    assert pl.concat(chunks)["timestamp"].is_sorted()


# ---------------------------------------------------------------------- RecBole atomic files
def test_recbole_inter_item_user(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    (d / "ml.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                "1\t10\t3\t100\n1\t11\t4\t50\n2\t10\tbad\t70\n2\t11\t5\t80\n")
    (d / "ml.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq\n"
                               "10\tToy Story\t1995\tAnimation Comedy\n11\tHeat\t1995\tAction\n")
    (d / "ml.user").write_text("user_id:token\tage:float\tgender:token\n1\t24\tM\n")
    assert detect_format(d) == "recbole" and detect_format(d / "ml.inter") == "recbole"
    ds, report = load_dataset(d)
    assert ds.event_types == ("rating",) and report.dropped["bad_value"] == 1
    assert report.first_row["bad_value"] == 3
    assert ds.user_sequence("1") == ["11", "10"]  # ordered by timestamp, not by line
    toy = ds.items.filter(pl.col("item_id") == "10").to_dicts()[0]
    assert toy["title"] == "Toy Story" and toy["categories"] == ["Animation", "Comedy"]
    assert json.loads(toy["attributes"]) == {"release_year": "1995"}
    assert json.loads(ds.users.filter(pl.col("user_id") == "1")["attributes"][0]) == {
        "age": 24.0,
        "gender": "M",
    }


def test_recbole_sequence_rows_expand_to_one_history(tmp_path):
    f = tmp_path / "beauty.train.inter"
    f.write_text("session_id:token\titem_id_list:token_seq\titem_id:token\n"
                 "1\t10\t11\n1\t10 11\t12\n1\t10 11 12\t13\n2\t11 12\t10\n")
    ds, report = load_dataset(f)
    assert ds.user_sequence("1") == ["10", "11", "12", "13"] and ds.user_sequence("2") == ["11", "12", "10"]
    assert report.rows_read == report.rows_kept == 7  # the prefixes rebuilt, not expanded and de-duplicated
    assert ds.name == "beauty"


def test_recbole_bad_header_is_located(tmp_path):
    f = tmp_path / "x.inter"
    f.write_text("user_id\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"x\.inter.*field 'user_id'.*name:type"):
        open_source(f, "recbole")
    g = tmp_path / "y.inter"
    g.write_text("user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match="timestamp:float"):
        open_source(g, "recbole")


def test_strict_cleaning_names_file_row_field(tmp_path):
    (tmp_path / "ev.csv").write_text("user_id,item_id,timestamp,value\na,x,1,5\nb,y,yesterday,4\n")
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path / "ev.csv", cleaning=CleaningConfig(strict=True))
    e = err.value
    assert e.source.endswith("ev.csv") and e.row == 2 and e.field == "timestamp" and "ISO-8601" in e.expected
    assert "yesterday" in str(e)


# ---------------------------------------------------------------------- MovieLens
def test_movielens_csv_release_streams_from_a_zip(tmp_path):
    import zipfile

    rows = [f"{u},{m},{(u + m) % 5 + 0.5},{1_500_000_000 + 10 * u + m}\n"
            for u in range(1, 21) for m in range(1, 11)]
    ratings = "userId,movieId,rating,timestamp\n" + "".join(rows)
    movies = ('movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n'
              '2,"Heat, The (1995)",(no genres listed)\n')
    with zipfile.ZipFile(tmp_path / "ml-25m.zip", "w") as z:
        z.writestr("ml-25m/ratings.csv", ratings)
        z.writestr("ml-25m/movies.csv", movies)
        z.writestr("ml-25m/tags.csv", "userId,movieId,tag,timestamp\n1,1,Pixar,1\n2,1,pixar,2\n3,2,heist,3\n")
    assert detect_format(tmp_path / "ml-25m.zip") == "movielens"
    src = open_source(tmp_path / "ml-25m.zip")
    chunks = list(src.iter_events(chunk_rows=64))
    assert [c.height for c in chunks] == [64, 64, 64, 8]
    assert chunks[0].columns == [ROW, "user_id", "item_id", "value", "timestamp"]
    ds, report = load_dataset(tmp_path / "ml-25m.zip")
    assert report.rows_read == 200 and report.dropped["unknown_item"] == 160  # only movies 1, 2 are listed
    assert ds.n_events == 40
    toy = ds.items.filter(pl.col("item_id") == "1").to_dicts()[0]
    assert toy["categories"] == ["Animation", "Comedy"]
    assert json.loads(toy["attributes"]) == {"tags": ["pixar"]}  # lower-cased, repeated tags once
    assert ds.items.filter(pl.col("item_id") == "2")["categories"].to_list() == [[]]


def test_gzip_recognised_by_content_not_name(tmp_path):
    with gzip.open(tmp_path / "events.csv", "wt") as f:  # compressed although the name does not say so
        f.write("user_id,item_id,timestamp\na,x,1\nb,y,2\n")
    ds, _ = load_dataset(tmp_path / "events.csv")
    assert ds.n_events == 2


@pytest.mark.parametrize("fmt", ["jsonl", "amazon", "sequences"])
def test_line_formats_assemble_chunks_from_small_parsed_pieces(tmp_path, monkeypatch, fmt):
    """Lines are parsed 64 at a time (so Python objects stay few) yet chunks have exactly chunk_rows rows."""
    import importlib

    module = {"jsonl": "generic", "amazon": "amazon", "sequences": "sequences"}[fmt]
    monkeypatch.setattr(importlib.import_module(f"lmrec.data.loaders.{module}"), "PARSE_ROWS", 64)
    if fmt == "sequences":
        path = tmp_path / "s.txt"
        path.write_text("".join(f"u{k} {k} {k + 1}\n" for k in range(500)))  # 1,000 events on 500 lines
    else:
        records = [{"reviewerID": f"A{k % 9}", "asin": f"B{k % 5}", "overall": 3,
                    "unixReviewTime": 1_400_000_000 + k, "user_id": f"A{k % 9}", "item_id": f"B{k % 5}",
                    "timestamp": 1_400_000_000 + k} for k in range(1000)]
        path = _write_jsonl(tmp_path / "r.jsonl", records)
    chunks = list(open_source(path, fmt).iter_events(chunk_rows=300))
    assert [c.height for c in chunks] == [300, 300, 300, 100]
    rows = pl.concat(chunks)[ROW].to_list()
    assert rows == (list(range(1, 1001)) if fmt != "sequences" else [k // 2 + 1 for k in range(1000)])


def test_amazon_2014_python_literal_metadata_with_nested_categories(tmp_path):
    _write_jsonl(tmp_path / "reviews_Books_5.json", [
        {"reviewerID": "R1", "asin": "0001", "overall": 4.0, "unixReviewTime": 1_300_000_000}])
    (tmp_path / "meta_Books.json").write_text(
        "{'asin': '0001', 'title': \"Gulliver's Travels\", "
        "'categories': [['Books', 'Literature'], ['Books']], 'price': 7.5, 'salesRank': {'Books': 12}}\n")
    ds, _ = load_dataset(tmp_path / "reviews_Books_5.json")  # pairs with meta_Books.json
    assert ds.name == "Books_5"
    book = ds.items.to_dicts()[0]
    assert book["title"] == "Gulliver's Travels" and book["categories"] == ["Books", "Literature"]
    assert json.loads(book["attributes"]) == {"price": 7.5}


def test_movielens_1m_dat_layout_streams(tmp_path):
    import zipfile

    ratings = "".join(f"{u}::{m}::{(u * m) % 5 + 1}::{978_300_000 + 7 * u + m}\n"
                      for u in range(1, 6) for m in (1193, 661, 914))
    with zipfile.ZipFile(tmp_path / "ml-1m.zip", "w") as z:
        z.writestr("ml-1m/ratings.dat", ratings)
        z.writestr("ml-1m/movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                                       "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
                                       "914::My Fair Lady (1964)::Musical|Romance\n".encode("latin-1"))
        z.writestr("ml-1m/users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    chunks = list(open_source(tmp_path / "ml-1m.zip").iter_events(chunk_rows=4))
    assert [c.height for c in chunks] == [4, 4, 4, 3] and chunks[-1][ROW].to_list() == [13, 14, 15]
    ds, report = load_dataset(tmp_path / "ml-1m.zip")
    assert ds.name == "movielens-1m" and ds.n_events == 15 and report.rows_dropped == 0
    assert ds.user_sequence("1") == ["661", "914", "1193"]  # by time, not by line
    peach = ds.items.filter(pl.col("item_id") == "661").to_dicts()[0]
    assert peach["categories"] == ["Animation", "Children's", "Musical"]
    user = json.loads(ds.users.filter(pl.col("user_id") == "2")["attributes"][0])
    assert user == {"gender": "M", "age": 56, "occupation": "self-employed", "zip_code": "70072"}
