"""Static (Model2Vec-format) encoders: one shipped in a PyPI package, by name, offline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmrec.text import ItemTemplate, ModelNotAvailableError, TextEncoder, embed_items, get_encoder
from lmrec.text.encoders import (
    PACKAGED_MODELS,
    StaticEncoder,
    default_model_path,
    is_static_folder,
    packaged_model_path,
)

pytest.importorskip("model2vec")
static_model = pytest.importorskip("static_model")  # pip install tokenlearn-static-model (lmrec[encoders])

TEXTS = ["HP 78 Tri-Color Printer Cartridge", "Brother P-touch label maker", "Swingline stapler"]


def test_packaged_static_model_loads_by_name_offline_and_matches_its_package():
    enc = get_encoder("tokenlearn-static-model")
    assert isinstance(enc, StaticEncoder) and isinstance(enc, TextEncoder)
    assert enc.name == "tokenlearn-static-model" and enc.dim == 64
    assert enc.path == packaged_model_path("tokenlearn-static-model")
    vecs = enc.encode(TEXTS)
    assert vecs.shape == (3, 64) and vecs.dtype == np.float32
    # The package's own (Rust) encoder gives the same vectors.
    np.testing.assert_allclose(vecs, np.asarray(static_model.get_embeddings(TEXTS)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-4)
    assert enc.encode([]).shape == (0, 64)
    assert get_encoder("TOKENLEARN-STATIC-MODEL").revision == enc.revision  # names are case-insensitive


def test_a_static_folder_is_recognised_by_its_files(tmp_path):
    folder = packaged_model_path("tokenlearn-static-model")
    assert is_static_folder(folder) and not is_static_folder(default_model_path())
    assert isinstance(get_encoder(str(folder)), StaticEncoder)
    # A transformer's config (model_type/architectures) is not a static model, even with the same files.
    fake = tmp_path / "bert"
    fake.mkdir()
    for name in ("model.safetensors", "tokenizer.json"):
        (fake / name).write_bytes((folder / name).read_bytes())
    (fake / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    assert not is_static_folder(fake)


def test_static_vectors_are_cached_under_their_own_space(tmp_path, items):
    enc = get_encoder("tokenlearn-static-model")
    store = tmp_path / "cache.duckdb"
    first, stats = embed_items(items, encoder=enc, store=store, progress=False)
    assert stats.n_encoded == 3  # rows a and d render the same text
    again, stats = embed_items(items, encoder=get_encoder("tokenlearn-static-model"), store=store,
                               progress=False)
    assert stats.n_encoded == 0
    np.testing.assert_array_equal(first, again)
    assert first.shape == (4, 64)
    texts = ItemTemplate.parse(None).render(items)
    np.testing.assert_allclose(first, enc.encode(texts, max_tokens=128), atol=1e-6)


def test_a_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(PACKAGED_MODELS, "absent-static", ("no_such_module_here", "model", "absent-pkg"))
    with pytest.raises(ModelNotAvailableError, match="pip install absent-pkg"):
        get_encoder("absent-static")
