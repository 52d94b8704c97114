"""``lmrec embed items|users|spaces`` and ``lmrec similar`` on a tiny store, with the real default model."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.store import Store


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, minilm):
    """The CLI's default encoder is the session's loaded one (loading it per command is slow)."""
    import lmrec.cli.text as cli_text

    real = cli_text._encoder
    monkeypatch.setattr(cli_text, "_encoder", lambda model, *a: minilm if model is None else real(model, *a))


@pytest.fixture
def shop(tmp_path):
    path = tmp_path / "shop.duckdb"
    with Store(path) as st:
        st.upsert_items(pl.DataFrame({
            "item_id": ["i1", "i2", "i3", "i4"],
            "title": ["Alien (1979)", "Aliens (1986)", "Toy Story (1995)", "Toy Story 2 (1999)"],
            "categories": [["Horror", "Sci-Fi"], ["Action", "Sci-Fi"], ["Animation"], ["Animation"]],
        }))
        st.upsert_users(pl.DataFrame({"user_id": ["u1", "u2"],
                                      "attributes": ['{"age": 30, "gender": "F"}', None]}))
        st.append_events(pl.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["i1", "i2", "i3"],
                                       "timestamp": [1, 2, 3], "event_type": ["view"] * 3}))
    return path


def test_embed_items_then_cached_and_similar(shop, tmp_path):
    runner = CliRunner()
    out = tmp_path / "items.npy"
    res = runner.invoke(app, ["embed", "items", "--store", str(shop), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "4 encoded" in res.output
    vecs = np.load(out)
    assert vecs.shape == (5, 384) and not vecs[0].any()
    assert json.loads(out.with_suffix(".json").read_text())["rows"][1:] == ["i1", "i2", "i3", "i4"]

    res = runner.invoke(app, ["embed", "items", "--store", str(shop)])
    assert res.exit_code == 0 and "0 encoded" in res.output and "4 from the cache" in res.output

    res = runner.invoke(app, ["similar", "i3", "--store", str(shop), "--k", "2"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if "│" in ln and "Toy Story 2" in ln]
    assert lines and lines[0].split("│")[1].strip() == "1"  # the sequel is the nearest item

    res = runner.invoke(app, ["embed", "spaces", "--cache", str(shop)])
    assert res.exit_code == 0 and "float32" in res.output and "│ 384 │ 4 " in res.output


def test_embed_users_and_errors(shop):
    runner = CliRunner()
    res = runner.invoke(app, ["embed", "users", "--store", str(shop)])
    assert res.exit_code == 0, res.output
    assert "2 encoded" in res.output and "gender: female" in res.output
    res = runner.invoke(app, ["embed", "items", "--store", str(shop), "--model", "nobody/missing-model"])
    assert res.exit_code == 1 and "not available offline" in res.output
    res = runner.invoke(app, ["similar", "no-such-thing", "--store", str(shop)])
    assert res.exit_code == 1 and "no item has id" in res.output


def test_export_then_import_into_another_cache(shop, tmp_path, minilm):
    runner = CliRunner()
    assert runner.invoke(app, ["embed", "items", "--store", str(shop)]).exit_code == 0
    out = tmp_path / "vectors.parquet"
    res = runner.invoke(app, ["embed", "export", str(out), "--cache", str(shop)])
    assert res.exit_code == 0, res.output
    assert "wrote 4 vectors" in res.output and out.exists()
    other = tmp_path / "other.duckdb"
    res = runner.invoke(app, ["embed", "import", str(out), "--cache", str(other)])
    assert res.exit_code == 0 and "imported 4 new vectors" in res.output
    # the other cache now answers without encoding
    from lmrec.store import Store
    from lmrec.text import embed_items

    with Store(shop, read_only=True) as st:
        items = st.items()
    _, stats = embed_items(items, encoder=minilm, store=other)
    assert stats.n_encoded == 0 and stats.n_cached == 4


def test_embed_items_reads_a_store_given_as_source_with_a_packaged_static_encoder(shop, tmp_path):
    pytest.importorskip("model2vec")
    pytest.importorskip("static_model")
    out = tmp_path / "vecs.npy"
    res = CliRunner().invoke(app, ["embed", "items", "--source", str(shop), "--model",
                                   "tokenlearn-static-model", "--cache", str(tmp_path / "cache.duckdb"),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    vecs = np.load(out)
    assert vecs.shape == (5, 64) and not vecs[0].any()
    assert json.loads(out.with_suffix(".json").read_text())["encoder"] == "tokenlearn-static-model"


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "n_pairs"), [("item", 6), ("neighbours", 9)])
def test_embed_finetune_on_item_pairs_reports_the_held_out_check(tmp_path, monkeypatch, kind, n_pairs):
    monkeypatch.setenv("LMREC_CACHE_DIR", str(tmp_path / "cache"))
    store = tmp_path / "shop.duckdb"
    seqs = {"u1": "abcde", "u2": "fgabc", "u3": "gfedc"}
    with Store(store) as st:
        titles = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf"]
        st.upsert_items(pl.DataFrame({"item_id": list("abcdefg"), "title": titles}))
        st.append_events(pl.DataFrame({
            "user_id": [u for u, s in seqs.items() for _ in s],
            "item_id": [i for s in seqs.values() for i in s],
            "timestamp": [t for s in seqs.values() for t in range(len(s))], "event_type": ["view"] * 15}))
    out = tmp_path / "ft"
    res = CliRunner().invoke(app, ["embed", "finetune", "--store", str(store), "--out", str(out),
                                   "--pairs-from", kind, "--steps", "1", "--batch-size", "4",
                                   "--max-length", "16", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    # item: each user's training events chained (2 + 2 + 2); neighbours: every training event anchors one
    assert "held-out check" in res.output and f"{n_pairs} pairs" in res.output
    saved = json.loads((out / "lmrec_revision.json").read_text())
    assert saved["config"]["pairs"] == kind and saved["config"]["max_steps"] == 1
    assert set(saved["validation"]) == {"base", "fine-tuned", "users"}
