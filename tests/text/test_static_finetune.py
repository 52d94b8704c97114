"""A static encoder fine-tuned end to end through the text recommender: its token vectors reproduce the
encoder exactly, the saved folder is a static model with only the trained tokens changed, training learns
behaviour the text does not show, and a split's validation and test events are never read."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.data.dataset import Dataset
from lmrec.data.splits import leave_one_out
from lmrec.text import get_encoder
from lmrec.text.encoders import StaticEncoder, is_static_folder
from lmrec.text.finetune import validation_ndcg
from lmrec.text.static_finetune import StaticFinetuneConfig, finetune_static_encoder
from lmrec.text.vectors import item_vectors

pytest.importorskip("model2vec")
pytest.importorskip("static_model")  # pip install tokenlearn-static-model (lmrec[encoders])

#: Unrelated words: the order users read the items in (a ring) is not in their text.
WORDS = ["stapler", "volcano", "violin", "harbour", "pepper", "glacier", "lantern", "tiger", "marble",
         "compass", "orchid", "saddle", "rocket", "walnut", "canyon", "feather", "kettle", "mosaic", "falcon",
         "ribbon"]


COLD = "zebra"  # the item without events: a word of its own


@pytest.fixture
def ring() -> Dataset:
    """120 users, each reading 6 consecutive items of a ring of 20 (from a random start); one more item has
    text and no events."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(120):
        start = int(rng.integers(len(WORDS)))
        for t in range(6):
            item = f"i{(start + t) % len(WORDS)}"
            rows.append({"event_id": f"u{u}-{t}", "user_id": f"u{u}", "item_id": item, "timestamp": t,
                         "event_type": "view"})
    items = pl.DataFrame({"item_id": [f"i{k}" for k in range(len(WORDS))] + ["new"],
                          "title": [f"{w} {w}s" for w in WORDS] + [COLD]})
    return Dataset.build(pl.DataFrame(rows), items, name="ring")


def test_token_vectors_reproduce_the_encoder_and_its_cut():
    enc = get_encoder("tokenlearn-static-model")
    assert isinstance(enc, StaticEncoder)
    texts = ["HP 78 Tri-Color Printer Cartridge", "Brother P-touch label maker " * 30, ""]
    for max_tokens in (None, 5):
        ids = enc.token_ids(texts, max_tokens=max_tokens)
        assert ids[2] == [] and (max_tokens is None or len(ids[1]) == max_tokens)
        mine = np.stack([enc.token_vectors(np.asarray(x)).mean(0) if x else np.zeros(enc.dim) for x in ids])
        norms = np.linalg.norm(mine, axis=1, keepdims=True)
        mine = np.divide(mine, norms, out=np.zeros_like(mine), where=norms > 0)
        np.testing.assert_allclose(mine, enc.encode(texts, max_tokens=max_tokens), atol=1e-5)


def test_saved_folder_changes_only_the_tokens_given(tmp_path):
    enc = get_encoder("tokenlearn-static-model")
    texts = ["violin", "tiger"]
    ids = enc.token_ids(texts)
    new = np.random.default_rng(0).normal(size=(len(ids[0]), enc.dim)).astype(np.float32)
    enc.save_with_token_vectors(tmp_path / "tuned", np.asarray(ids[0]), new)
    assert is_static_folder(tmp_path / "tuned")  # model2vec also writes a modules.json
    tuned = get_encoder(str(tmp_path / "tuned"))
    assert isinstance(tuned, StaticEncoder) and tuned.revision != enc.revision
    before, after = enc.encode(texts), tuned.encode(texts)
    want = new.mean(0) / np.linalg.norm(new.mean(0))
    np.testing.assert_allclose(after[0], want, atol=1e-5)
    assert not set(ids[0]) & set(ids[1])
    np.testing.assert_allclose(after[1], before[1], atol=1e-6)  # no shared token: unchanged


def test_finetune_through_the_recommender_learns_the_order_text_does_not_show(ring, tmp_path, monkeypatch):
    monkeypatch.setenv("LMREC_CACHE_DIR", str(tmp_path / "cache"))  # the name registry goes here
    split = leave_one_out(ring)
    store = tmp_path / "vectors.duckdb"
    cfg = StaticFinetuneConfig(epochs=12, patience=2, batch_size=64, seed=0)
    epochs: list[dict[str, float]] = []
    res = finetune_static_encoder(split, tmp_path / "ft", config=cfg, device="cpu", store=store,
                                  on_epoch=epochs.append)
    v = res.validation
    assert v is not None and v["users"] == 120
    # the text says nothing of the ring: the base is near chance; the trained tokens find the next item
    assert v["base"] < 0.35 and v["fine-tuned"] > v["base"] + 0.25, v
    # the epochs were chosen on each user's last training event, then training ran again on every event
    assert 1 <= res.epochs <= 12 and res.epochs == int(np.argmax(res.held_back)) + 1
    assert len(res.losses) == res.epochs and len(epochs) == len(res.held_back) + res.epochs
    assert res.n_events == 120 * 3  # 4 training events a user, each but the first a target
    tuned = res.encoder()
    assert tuned.revision == res.revision and res.revision.startswith("ft-")
    assert get_encoder(res.name).revision == res.revision  # registered by name
    meta = json.loads((res.path / "lmrec_revision.json").read_text())
    assert meta["epochs"] == res.epochs and meta["validation"] == v
    # what the folder encodes is what the check measured
    assert validation_ndcg(item_vectors(split.train, encoder=tuned, store=store, progress=False),
                           split) == pytest.approx(v["fine-tuned"])
    # an item without training events is no softmax alternative: its own tokens are left as they were
    np.testing.assert_allclose(tuned.encode([COLD]), get_encoder("tokenlearn-static-model").encode([COLD]),
                               atol=1e-6)
    with pytest.raises(FileExistsError):
        finetune_static_encoder(split, res.path, config=cfg, device="cpu")


def test_validation_and_test_events_are_never_read(ring, tmp_path, monkeypatch):
    monkeypatch.setenv("LMREC_CACHE_DIR", str(tmp_path / "cache"))
    split = leave_one_out(ring)
    cfg = StaticFinetuneConfig(epochs=4, patience=2, batch_size=64, seed=3)
    a = finetune_static_encoder(split, tmp_path / "a", config=cfg, device="cpu", check=False)
    b = finetune_static_encoder(split.train, tmp_path / "b", config=cfg, device="cpu")
    # the same training either way (to the float rounding that parallel sums may vary)
    assert a.validation is None and a.epochs == b.epochs
    np.testing.assert_allclose(a.held_back, b.held_back, atol=1e-4)
    texts = [f"{w} {w}s" for w in WORDS]
    np.testing.assert_allclose(a.encoder().encode(texts), b.encoder().encode(texts), atol=1e-5)


def test_wrong_model_kind_no_text_or_bad_settings_are_refused(ring, tmp_path):
    from lmrec.text.finetune import finetune_encoder

    with pytest.raises(ValueError, match="not a static"):
        finetune_static_encoder(ring, tmp_path / "x", base=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="through the recommender"):  # and the other way round
        finetune_encoder(ring, tmp_path / "y", base="tokenlearn-static-model", progress=False, check=False)
    blank = Dataset.build(ring.events, ring.items.select("item_id").with_columns(pl.lit("").alias("title")),
                          name="blank")
    with pytest.raises(ValueError, match="no item has text"):
        finetune_static_encoder(blank, tmp_path / "z")
    with pytest.raises(ValueError, match="positive"):
        StaticFinetuneConfig(epochs=0)


@pytest.mark.slow
def test_embed_finetune_picks_the_recommender_method_for_a_static_model(ring, tmp_path, monkeypatch):
    from lmrec.cli import app
    from lmrec.store import Store

    monkeypatch.setenv("LMREC_CACHE_DIR", str(tmp_path / "cache"))
    store = tmp_path / "ring.duckdb"
    with Store(store) as st:
        st.upsert_items(pl.DataFrame({"item_id": [f"i{k}" for k in range(len(WORDS))],
                                      "title": [f"{w} {w}s" for w in WORDS]}))
        st.append_events(ring.events.select("user_id", "item_id", "timestamp", "event_type"))
    out = tmp_path / "ft"
    res = CliRunner().invoke(app, ["embed", "finetune", "--store", str(store), "--out", str(out), "--model",
                                   "tokenlearn-static-model", "--epochs", "3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "epoch 1: loss" in res.output and "held-back NDCG@10" in res.output
    assert "held-out check" in res.output and is_static_folder(out)
    bad = CliRunner().invoke(app, ["embed", "finetune", "--store", str(store), "--out", str(tmp_path / "y"),
                                   "--method", "recommender", "--device", "cpu"])
    assert bad.exit_code != 0 and "static" in bad.output
