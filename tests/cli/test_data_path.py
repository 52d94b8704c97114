"""One data path: every command that reads data reads the store (`--store`, or lmrec.duckdb in the working
folder) as well as files and built-in names, says which it used, and a store holds one dataset."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.store import DatasetMismatchError, Store

runner = CliRunner()

#: 12 users × 8 events over 10 items, with columns no alias finds and ISO timestamps.
CLICKS = "who,what,at\n" + "".join(
    f"w{u},t{(u + k) % 10},2024-05-{1 + k:02d}T{u:02d}:00:00Z\n" for u in range(12) for k in range(8))
ITEMS = "item_id,title,category\n" + "".join(f"t{i},Thing number {i},{'odd' if i % 2 else 'even'}\n"
                                              for i in range(10))
MAP = ["-m", "user_id=who", "-m", "item_id=what", "-m", "timestamp=at"]
OTHER = "user_id,item_id,timestamp\n" + "".join(f"x{k % 3},y{k % 4},{1_700_000_000 + k}\n" for k in range(12))


class HashEncoder:
    """A tiny deterministic text encoder (the CLI's real default is tested in tests/text)."""

    name, revision, dim = "hash-test", "1", 8

    def encode(self, texts, *, side: str = "document") -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        return out


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """A working folder with the example files; the embedding cache and encoder are the test's own."""
    (tmp_path / "clicks.csv").write_text(CLICKS)
    (tmp_path / "things.csv").write_text(ITEMS)
    (tmp_path / "other.csv").write_text(OTHER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LMREC_STORE", raising=False)
    monkeypatch.setenv("LMREC_CACHE_DIR", str(tmp_path / "cache"))
    import lmrec.cli.text as cli_text

    monkeypatch.setattr(cli_text, "_encoder", lambda *a: HashEncoder())
    return tmp_path


def run(*args: str) -> str:
    r = runner.invoke(app, list(args))
    out = " ".join(r.output.split())
    assert r.exit_code == 0, out
    assert "Traceback" not in out
    return out


def test_every_command_reads_the_store_here_and_says_so(here: Path) -> None:
    run("data", "import", "clicks.csv", *MAP, "--items", "things.csv")  # into ./lmrec.duckdb
    said = "data: store lmrec.duckdb (the store here; no --data or --store given)"

    out = run("train", "most-popular", "--protocol", "none", "--out", "m")
    assert said in out and "of clicks" in out
    info = json.loads((here / "m" / "training.json").read_text())
    assert info["data"] == "lmrec.duckdb" and info["dataset"] == "clicks"
    from lmrec.models import load_model

    assert sorted(load_model(here / "m").user_map.raw_ids) == sorted(f"w{u}" for u in range(12))

    assert said in run("evaluate", "most-popular", "itemknn")
    assert said in run("benchmark", "--models", "most-popular", "--out", "rep")
    assert said in run("tune", "most-popular", "--space", "half_life_days=0,30")
    out = run("embed", "items")
    assert said in out and "10 items of clicks" in out
    out = run("similar", "t3", "--k", "2")
    assert said in out and "Thing number 3" in out
    run("train", "itemknn", "--out", "k")  # a protocol fit: recommend re-reads its data from the store
    out = run("recommend", "k", "--out", "top.csv")
    assert "training and validation events of clicks" in out
    assert pl.read_csv(here / "top.csv")["user_id"].n_unique() == 12


def test_explicit_data_beats_the_store_here_and_old_names_still_work(here: Path) -> None:
    run("data", "import", "clicks.csv", *MAP)
    out = run("train", "most-popular", "--data", "other.csv", "--protocol", "none", "--out", "m1")
    assert "data: other.csv (--data)" in out and "of other" in out
    out = run("train", "most-popular", "--dataset", "other.csv", "--protocol", "none", "--out", "m2")
    assert "data: other.csv (--data)" in out
    run("data", "import", "other.csv", "--store", "other.duckdb")
    out = run("evaluate", "most-popular", "--store", "other.duckdb")
    assert "data: store other.duckdb (--store)" in out
    out = run("embed", "items", "--source", "other.csv")
    assert "4 items of other" in out
    # a config file's data wins over the store found here, and the output says where it came from
    (here / "run.yaml").write_text("data: {dataset: other.csv}\nsplit: {protocol: none}\nout: m3\n")
    out = run("train", "most-popular", "--config", "run.yaml")
    assert "data: other.csv (data.dataset in run.yaml)" in out


def test_without_a_store_the_builtin_default_is_named(here: Path, monkeypatch) -> None:
    seen = {}
    import lmrec.experiment as experiment

    def fake_train(cfg, **_kw):  # do not fit MovieLens here: only which data was chosen matters
        seen["data"] = cfg.data.dataset
        raise ValueError("stop")

    monkeypatch.setattr(experiment, "train", fake_train)
    r = runner.invoke(app, ["train", "ease", "--out", "m"])
    out = " ".join(r.output.split())
    assert seen["data"] == "movielens-100k"
    said = "data: movielens-100k (the built-in default; no --data or --store given and no lmrec.duckdb here)"
    assert said in out


def test_a_store_holds_one_dataset(here: Path) -> None:
    run("data", "import", "clicks.csv", *MAP)
    before = Store("lmrec.duckdb", read_only=True)
    counts = before.counts()
    before.close()
    # following the README in order must not mix another dataset into the user's store: refused, unchanged
    r = runner.invoke(app, ["data", "import", "other.csv"])
    out = " ".join(r.output.split())
    assert r.exit_code == 1 and "Traceback" not in out
    assert "lmrec.duckdb holds dataset 'clicks'; importing 'other' would mix two datasets" in out
    assert "--store other.duckdb" in out and "importing" not in out.split("error:")[0]  # no bar before it
    with Store("lmrec.duckdb", read_only=True) as st:
        assert st.counts() == counts and st.dataset_name() == "clicks"
    # more of the same data from a file named otherwise: --name says so
    (here / "clicks-june.csv").write_text(CLICKS.replace("2024-05-", "2024-06-"))
    out = run("data", "import", "clicks-june.csv", *MAP, "--name", "clicks")
    with Store("lmrec.duckdb", read_only=True) as st:
        assert st.counts()["events"] == 2 * counts["events"]
    # re-importing the same file is still idempotent and allowed
    assert "inserted 0 events" in run("data", "import", "clicks.csv", *MAP)
    # its own store takes it
    assert "(dataset 'other')" in run("data", "import", "other.csv", "--store", "other.duckdb")


def test_store_api_refuses_a_second_dataset_before_writing(tmp_path: Path) -> None:
    from lmrec.data.source import Source

    def src(name: str, user: str) -> Source:
        return Source(name, events=pl.DataFrame({"user_id": [user], "item_id": ["i"], "timestamp": [1],
                                                 "event_type": ["view"]}))

    with Store(tmp_path / "s.duckdb") as st:
        st.import_source(src("a", "u1"))
        with pytest.raises(DatasetMismatchError, match="holds dataset 'a'"):
            st.import_source(src("b", "u2"))
        st.import_source(src("b", "u3"), dataset="a")
        assert st.counts()["events"] == 2 and st.dataset_name() == "a"
        assert st.to_dataset().name == "a"
    with Store(tmp_path / "unnamed.duckdb") as st:  # a store filled without a name (an older lmrec)
        st.append_events(pl.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [1],
                                       "event_type": ["view"]}))
        with pytest.raises(DatasetMismatchError, match="unnamed dataset"):
            st.import_source(src("b", "u2"))
        st.import_source(src("b", "u2"), dataset="mine")
        assert st.dataset_name() == "mine"


def test_serve_says_which_store_and_warns_when_the_model_was_fitted_on_another_dataset(
        here: Path, monkeypatch) -> None:
    import lmrec.serving as serving

    started = []
    monkeypatch.setattr(serving, "serve", lambda settings, **kw: started.append(settings.store))
    run("data", "import", "clicks.csv", *MAP)
    run("train", "most-popular", "--protocol", "none", "--out", "m")
    out = run("serve", "m", "--dev")
    assert "store: lmrec.duckdb (dataset 'clicks')" in out and "warning" not in out
    run("data", "import", "other.csv", "--store", "other.duckdb")
    out = run("serve", "m", "--dev", "--store", "other.duckdb")
    assert "warning: m was fitted on 'clicks' but other.duckdb holds 'other'" in out
    assert "store: new.duckdb (new" in run("serve", "m", "--dev", "--store", "new.duckdb")
    assert len(started) == 3
