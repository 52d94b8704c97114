"""The real default encoder (all-MiniLM-L6-v2 from PyPI), offline; model resolution and its errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lmrec.text import ItemTemplate, ModelNotAvailableError, TextEncoder, get_encoder
from lmrec.text.encoders import REVISION_FILE, default_model_path, folder_revision, known_prompts


def test_default_encoder_is_offline_and_normalised(minilm):
    assert isinstance(minilm, TextEncoder)
    assert minilm.name == "all-MiniLM-L6-v2" and minilm.dim == 384
    vecs = minilm.encode(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell."])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.3


def test_offline_hub_restores_the_environment(monkeypatch):
    from lmrec.text.encoders import offline_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with offline_hub():
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ


def test_edge_texts_encode(minilm):
    texts = ["", "word " * 3000, "功夫熊猫是一部动画电影", "🎬🍿 movie night 🎉", "Ünïcödé — naïve café"]
    vecs = minilm.encode(texts)
    assert vecs.shape == (5, 384) and np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert np.abs(vecs[2] - vecs[3]).max() > 0.01  # non-Latin texts are not collapsed to one vector


def test_matches_sentence_transformers_directly(minilm):
    texts = ["short", "a somewhat longer sentence about films", "x"]
    direct = minilm.load().encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(minilm.encode(texts), direct, atol=1e-5)
    chunked = minilm.encode(texts, on_batch=lambda n: None)  # the progress path sorts and chunks
    np.testing.assert_allclose(chunked, direct, atol=1e-5)


def test_prompts_by_side():
    enc = get_encoder(None, query_prompt="query: ", document_prompt="passage: ")
    assert enc.prompt("query") == "query: " and enc.prompt("document") == "passage: "
    assert enc.settings_key("query") != enc.settings_key("document")
    assert known_prompts("intfloat/multilingual-e5-small") == {"query": "query: ", "document": "passage: "}
    assert known_prompts("BAAI/bge-small-en-v1.5")["query"].startswith("Represent this sentence")
    assert known_prompts("thenlper/gte-small") == {}


def test_query_prompt_is_applied(minilm):
    enc = get_encoder(None, query_prompt="query: ")
    enc._model = minilm.load()  # share the loaded weights
    got = enc.encode(["heist films"], side="query")
    want = minilm.encode(["query: heist films"])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_missing_model_error_says_how_to_fix():
    with pytest.raises(ModelNotAvailableError) as info:
        get_encoder("lmrec-test-org/no-such-model-anywhere")
    msg = str(info.value)
    assert "not available offline" in msg
    assert "huggingface-cli download lmrec-test-org/no-such-model-anywhere" in msg
    assert "pip install" in msg and "--model ./no-such-model-anywhere" in msg and "allow_download" in msg
    with pytest.raises(ModelNotAvailableError, match="no such model folder"):
        get_encoder("./models/not/here")
    with pytest.raises(TypeError, match="unknown encoder option"):
        get_encoder(None, batchsize=3)


def test_revision_tracks_weights_and_saved_ids(tmp_path):
    src = default_model_path()
    copy = tmp_path / "minilm-copy"
    for f in src.rglob("*"):
        if f.is_file():
            (copy / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (copy / f.relative_to(src)).symlink_to(f)
    base = folder_revision(src)
    assert folder_revision(copy) == base  # same bytes, same revision
    enc = get_encoder(str(copy))
    assert enc.name == "minilm-copy" and enc.revision == base
    (copy / REVISION_FILE).write_text(json.dumps({"revision": "ft-123", "name": "minilm-ft"}))
    enc = get_encoder(str(copy))
    assert (enc.name, enc.revision) == ("minilm-ft", "ft-123")


def test_token_truncation_uses_the_tokenizer(minilm, items):
    long = items.head(1).with_columns(description=__import__("polars").lit("extraordinarily " * 200))
    tpl = ItemTemplate.parse("title, description", max_tokens=16)
    text = tpl.render(long, minilm.tokenizer)[0]
    n_tokens = len(minilm.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert 12 <= n_tokens <= 16 and text.startswith("Heat (1995). extra")
    untouched = ItemTemplate.parse("title", max_tokens=16).render(items, minilm.tokenizer)
    assert untouched[0] == "Heat (1995)"
    cjk = items.head(1).with_columns(title=__import__("polars").lit("电影" * 100))
    cut = ItemTemplate.parse("title", max_tokens=10).render(cjk, minilm.tokenizer)[0]
    assert 0 < len(minilm.tokenizer(cut, add_special_tokens=False)["input_ids"]) <= 10


@pytest.mark.slow
def test_movielens_titles_encode_offline_then_hit_the_cache(ml100k, minilm, tmp_path):
    from lmrec.text import embed_dataset_items, item_vectors

    store = tmp_path / "cache.duckdb"
    vecs, stats = embed_dataset_items(ml100k, encoder=minilm, template="title", store=store, progress=False)
    assert vecs.shape == (1683, 384) and not vecs[0].any()
    assert stats.n_texts == 1682 and stats.n_encoded == stats.n_unique > 1600
    np.testing.assert_allclose(np.linalg.norm(vecs[1:], axis=1), 1.0, rtol=1e-4)
    again, stats = embed_dataset_items(ml100k, encoder=minilm, template="title", store=store, progress=False)
    assert stats.n_encoded == 0 and stats.n_cached == stats.n_unique
    np.testing.assert_array_equal(again, vecs)
    np.testing.assert_array_equal(item_vectors(ml100k, encoder=minilm, template="title", store=store,
                                               progress=False), vecs)


def test_max_tokens_cuts_inside_the_model(minilm):
    from lmrec.text.templates import truncate_tokens

    long = "The heist goes wrong and the crew scatters across Los Angeles. " * 20
    before = minilm.load().max_seq_length
    cut_in_model = minilm.encode([long], max_tokens=16)
    assert minilm.load().max_seq_length == before  # restored
    cut_first = minilm.encode(truncate_tokens([long], minilm.tokenizer, 16))
    whole = minilm.encode([long])
    assert float(cut_in_model[0] @ cut_first[0]) > 0.99
    assert float(cut_in_model[0] @ whole[0]) < float(cut_in_model[0] @ cut_first[0])


def test_registered_names_resolve_to_their_folder(tmp_path, monkeypatch):
    from lmrec.text.encoders import register_encoder, registered_encoders

    monkeypatch.setenv("LMREC_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / REVISION_FILE).write_text(json.dumps({"revision": "ft-1", "name": "my-ft"}))
    (folder / "model.safetensors").write_bytes(b"0")
    register_encoder("my-ft", folder)
    assert registered_encoders() == {"my-ft": folder.resolve()}
    enc = get_encoder("my-ft")
    assert (enc.name, enc.revision, enc.path) == ("my-ft", "ft-1", folder.resolve())
    folder.joinpath(REVISION_FILE).unlink()
    folder.joinpath("model.safetensors").unlink()
    folder.rmdir()
    with pytest.raises(ModelNotAvailableError):  # a removed folder is forgotten, not an obscure failure
        get_encoder("my-ft")
