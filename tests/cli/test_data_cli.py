"""``lmrec data import|stats|split`` through typer's CliRunner: results, clear errors, readable help."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.store import Store

runner = CliRunner()

EVENTS = ("customer,sku,ts,action\n"
          + "".join(f"c{k % 4},p{k % 6},{1_600_000_000 + 60 * k},{'view' if k % 3 else 'addtocart'}\n"
                    for k in range(40)))
MAP = ["-m", "user_id=customer", "-m", "item_id=sku", "-m", "timestamp=ts", "-m", "event_type=action"]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "clicks.csv").write_text(EVENTS)
    (tmp_path / "products.csv").write_text("item_id,title,brand\n" + "".join(f"p{k},Product {k},B{k % 2}\n"
                                                                           for k in range(6)))
    return tmp_path


def _run(*args: str):
    """Invoke the CLI; the output comes back with Rich's line wrapping undone (runs of whitespace → one
    space)."""
    result = runner.invoke(app, list(args))
    return result, " ".join(result.output.split())


@pytest.fixture(params=["duckdb", "postgresql"])
def store_target(request, files) -> str:
    """A DuckDB file, or a database on the test PostgreSQL server."""
    return str(files / "s.duckdb") if request.param == "duckdb" else request.getfixturevalue("pg_url")


def test_import_is_idempotent_and_reports(files, store_target):
    store = store_target
    (files / "customers.csv").write_text("user_id,profile,country\nc0,Likes boots,FR\nc1,,DE\n")
    result, out = _run("data", "import", str(files / "clicks.csv"), "--store", store, *MAP,
                       "--items", str(files / "products.csv"), "--users", str(files / "customers.csv"),
                       "--chunk-rows", "7")
    assert result.exit_code == 0, out
    assert "read 40 rows, kept 40" in out and "inserted 40 events" in out and "6 items, 2 users" in out
    result, out = _run("data", "import", str(files / "clicks.csv"), "--store", store, *MAP)
    assert result.exit_code == 0 and "inserted 0 events (40 already present)" in out
    with Store(store, read_only=True) as st:
        assert st.counts() == {"events": 40, "items": 6, "users": 2}
        assert st.users().to_dicts()[0] == {"user_id": "c0", "profile": "Likes boots",
                                            "attributes": '{"country": "FR"}'}
        assert set(st.events()["event_type"]) == {"view", "cart"}
        assert st.get_item("p1")["title"] == "Product 1"


def test_import_with_config_file(files):
    cfg = files / "loader.toml"
    cfg.write_text(
        '[loader]\nitems = "products.csv"\n[loader.mapping]\nuser_id = "customer"\nitem_id = "sku"\n'
        'timestamp = "ts"\nevent_type = "action"\n'
    )
    result, out = _run("data", "import", str(files / "clicks.csv"), "--store", str(files / "s.duckdb"),
                       "--config", str(cfg))
    assert result.exit_code == 0, out
    assert "inserted 40 events" in out and "6 items" in out


def test_strict_import_error_is_one_clean_line_and_writes_nothing(files):
    bad = files / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\na,x,1600000000\nb,y,tomorrow\n")
    store = str(files / "s.duckdb")
    result, out = _run("data", "import", str(bad), "--store", store, "--strict")
    assert result.exit_code == 1
    assert "error:" in out and "row 2" in out and "'timestamp'" in out and "tomorrow" in out
    assert "Traceback" not in out and isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    with Store(store, read_only=True) as st:
        assert st.counts()["events"] == 0
    result, out = _run("data", "import", str(bad), "--store", store)  # lenient: dropped and counted
    assert result.exit_code == 0 and "bad_timestamp: 1 (first at row 2)" in out


@pytest.mark.parametrize(("args", "message"), [
    (["data", "import", "no/such/file.csv"], "no such file or folder"),
    (["data", "import", "{tmp}/clicks.csv"], "missing column"),
    (["data", "import", "{tmp}/clicks.csv", "-f", "nope"], "unknown format 'nope'"),
    (["data", "import", "{tmp}/clicks.csv", "-m", "user_id"], "expects name=value"),
    (["data", "import", "{tmp}/clicks.csv", "--option", "layout=pairs"], "does not take option"),
    (["data", "stats", "--store", "{tmp}/missing.duckdb"], "no store at"),
    (["data", "split", "{tmp}/clicks.csv", *MAP, "--protocol", "random"], "unknown protocol"),
    (["data", "import", "{tmp}/notparquet.parquet"], "not a Parquet file"),
])
def test_bad_input_gives_a_clear_message_without_traceback(files, args, message):
    (files / "notparquet.parquet").write_text("hello")
    result, out = _run(*[a.replace("{tmp}", str(files)) for a in args])
    assert result.exit_code == 1, out
    assert message in out and "Traceback" not in out


def test_stats_from_file_and_from_store(files):
    result, out = _run("data", "stats", str(files / "clicks.csv"), *MAP, "--json")
    assert result.exit_code == 0, out
    stats = json.loads(out)
    assert (
        stats["n_users"] == 4
        and stats["n_events"] == 40
        and stats["events_by_type"] == {"cart": 14, "view": 26}
    )
    assert stats["cleaning"]["rows_kept"] == 40
    store = str(files / "s.duckdb")
    _run("data", "import", str(files / "clicks.csv"), "--store", store, *MAP)
    result, out = _run("data", "stats", "--store", store)
    assert result.exit_code == 0 and "events" in out and "40" in out and "time span" in out
    result, out = _run("data", "stats", "--store", store, "--min-user-events", "11", "--json")
    assert json.loads(out)["n_events"] == 0  # each customer has exactly 10 events


def test_stats_movielens_builtin():
    result, out = _run("data", "stats", "movielens-100k", "--json")
    assert result.exit_code == 0, out
    s = json.loads(out)
    assert (s["n_users"], s["n_items"], s["n_events"]) == (943, 1682, 100_000)


@pytest.mark.parametrize("protocol", ["leave-one-out", "temporal", "cold-item"])
def test_split_writes_files(files, protocol):
    out_dir = files / f"split-{protocol}"
    result, out = _run("data", "split", str(files / "clicks.csv"), *MAP, "--protocol", protocol,
                       "--out", str(out_dir), "--seed", "3", "--cold-frac", "0.2")
    assert result.exit_code == 0, out
    meta = json.loads((out_dir / "split.json").read_text())
    assert meta["protocol"] == protocol
    train = pl.read_parquet(out_dir / "train.parquet")
    test = pl.read_parquet(out_dir / "test.parquet")
    assert train.height > 0 and set(test.columns) == {"user_id", "item_id"}
    if protocol == "leave-one-out":
        assert test.height == 4 and train.height == 40 - 8
    if protocol == "cold-item":
        assert not set(test["item_id"]) & set(train["item_id"])


def test_help_texts_guide_a_newcomer():
    result, out = _run("data", "--help")
    assert result.exit_code == 0 and "import" in out and "stats" in out and "split" in out
    result, out = _run("data", "import", "--help")
    assert result.exit_code == 0
    for needle in ("Examples", "--map", "--strict", "--items", "--chunk-rows", "amazon"):
        assert needle in out, needle
    result, out = _run("data", "split", "--help")
    assert "leave-one-out" in out and "cold-item" in out and "--seed" in out


def test_ctrl_c_during_import_leaves_the_store_as_it_was(files, monkeypatch):
    import lmrec.store.duckdb_store as ds_mod

    store = str(files / "s.duckdb")
    real, calls = ds_mod.clean_rows, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ds_mod, "clean_rows", interrupted)
    result, out = _run("data", "import", str(files / "clicks.csv"), "--store", store, *MAP,
                       "--chunk-rows", "10")
    assert result.exit_code == 130 and "interrupted" in out and "Traceback" not in out
    with Store(store, read_only=True) as st:
        assert st.counts()["events"] == 0  # the two chunks written before Ctrl-C were rolled back


def test_import_of_a_recbole_split_with_item_text_reports_text_and_split(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    (folder / "toy.train.inter").write_text(head + "u\ta\tb\nu\ta b\tc\nv\tb\tc\n")
    (folder / "toy.valid.inter").write_text(head + "u\tb c\td\nv\tb c\ta\n")
    (folder / "toy.test.inter").write_text(head + "u\tc d\te\nv\tc a\td\n")
    (folder / "toy.text").write_text("item_id:token\ttext:token_seq\na\tApple\nb\tBanana\nc\tCherry\n")
    store = str(tmp_path / "s.duckdb")
    result, out = _run("data", "import", str(folder), "--items", str(folder / "toy.text"), "--store", store)
    assert result.exit_code == 0, out
    assert "inserted 9 events" in out  # 5 + 4 events, rebuilt from the prefix rows of the three files
    assert "text for 3 of 5 items with events (60 %)" in out
    assert "the store keeps events, not their split" in out and "--protocol given" in out
    with Store(store, read_only=True) as st:
        assert "item_id" not in st.items()["item_id"].to_list()  # the .text header is not an item
    result, out = _run("data", "stats", str(folder), "--items", str(folder / "toy.text"))
    assert result.exit_code == 0, out
    assert "text for 3 of 5 items with events (60 %)" in out and "given split" in out


def test_split_given_writes_the_datas_own_split(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("user_id,item_id,timestamp,split\n"
                 + "".join(f"u{u},i{k},{k},{'test' if k == 4 else 'valid' if k == 3 else 'train'}\n"
                           for u in range(3) for k in range(5)))
    result, out = _run("data", "split", str(f), "--protocol", "given", "--out", str(tmp_path / "sp"))
    assert result.exit_code == 0, out
    assert "given: train 9 events, valid 3 users, test 3 users" in out
    test = pl.read_parquet(tmp_path / "sp" / "test.parquet")
    assert sorted(test["item_id"].to_list()) == ["i4", "i4", "i4"]
