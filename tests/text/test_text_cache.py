"""The embedding cache: hits, misses, invalidation by template and model, dimensions, dtypes, export and
import."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.store import Store
from lmrec.store.embeddings import EmbeddingDimensionError, EmbeddingSpace, EmbeddingTable, text_hashes
from lmrec.text import embed_items, encode_cached, encode_items


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request):
    """The cache in an in-memory DuckDB store, and in a database on the test PostgreSQL server."""
    with Store(":memory:" if request.param == "duckdb" else request.getfixturevalue("pg_url")) as st:
        yield st


def test_miss_then_hit_encodes_only_new_texts(store, fake):
    vecs, stats = encode_cached(["a", "b", "a"], encoder=fake, store=store)
    assert (stats.n_texts, stats.n_unique, stats.n_cached, stats.n_encoded) == (3, 2, 0, 2)
    assert fake.n_encoded == 2 and vecs.shape == (3, 8) and vecs.dtype == np.float32
    np.testing.assert_array_equal(vecs[0], vecs[2])

    again, stats = encode_cached(["b", "c", "a"], encoder=fake, store=store)
    assert (stats.n_cached, stats.n_encoded) == (2, 1)
    assert fake.calls[-1] == ["c"]  # only the new text reached the encoder
    np.testing.assert_array_equal(again[0], vecs[1])
    np.testing.assert_array_equal(again[2], vecs[0])
    np.testing.assert_array_equal(again[1], fake.encode(["c"])[0])


def test_fully_cached_rerun_calls_no_encoder(store, fake):
    texts = [f"text {i}" for i in range(500)]
    first, _ = encode_cached(texts, encoder=fake, store=store)
    n = fake.n_encoded
    second, stats = encode_cached(texts, encoder=fake, store=store)
    assert stats.n_encoded == 0 and fake.n_encoded == n
    np.testing.assert_array_equal(first, second)


def test_template_change_invalidates(store, fake, items):
    embed_items(items, encoder=fake, template="title", store=store)
    n = fake.n_encoded
    _, stats = embed_items(items, encoder=fake, template="title", store=store)
    assert stats.n_encoded == 0
    # Same texts for most rows, but another template is another cache space: everything is encoded again.
    _, stats = embed_items(items, encoder=fake, template="title:Title", store=store)
    assert stats.n_cached == 0 and stats.n_encoded > 0 and fake.n_encoded > n
    _, stats = embed_items(items, encoder=fake, template=ItemTemplateMaxTokens(), store=store)
    assert stats.n_cached == 0


def ItemTemplateMaxTokens():  # noqa: N802 - a template that differs from "title" only by its length limit
    from lmrec.text import ItemTemplate

    return ItemTemplate((("title", ""),), max_tokens=16)


def test_model_change_invalidates(store, items, FakeEncoder):  # noqa: N803
    a, b, a2 = FakeEncoder("m1", "r1"), FakeEncoder("m2", "r1"), FakeEncoder("m1", "r2")
    embed_items(items, encoder=a, store=store)
    _, stats = embed_items(items, encoder=b, store=store)
    assert stats.n_cached == 0 and b.n_encoded == stats.n_unique
    _, stats = embed_items(items, encoder=a2, store=store)  # same name, new revision (fine-tuned weights)
    assert stats.n_cached == 0
    _, stats = embed_items(items, encoder=FakeEncoder("m1", "r1"), store=store)
    assert stats.n_encoded == 0


def test_dimension_mismatch_is_a_clear_error(store, FakeEncoder):  # noqa: N803
    encode_cached(["x", "y"], encoder=FakeEncoder("m", "r", dim=8), store=store)
    with pytest.raises(EmbeddingDimensionError, match="dimension 4.*dimension 8"):
        encode_cached(["x", "z"], encoder=FakeEncoder("m", "r", dim=4), store=store)
    table = EmbeddingTable(store)
    space = EmbeddingSpace("m", "r", "", "document")
    with pytest.raises(EmbeddingDimensionError, match="dimension 3"):
        table.put(space, text_hashes(["q"]), np.zeros((1, 3), dtype=np.float32))


def test_float16_storage_round_trips(store, fake):
    texts = ["alpha", "beta", "gamma"]
    cold, _ = encode_cached(texts, encoder=fake, store=store, dtype="float16")
    warm, stats = encode_cached(texts, encoder=fake, store=store, dtype="float16")
    assert stats.n_encoded == 0 and warm.dtype == np.float32
    np.testing.assert_array_equal(cold, warm)  # cold results are rounded like the stored ones
    exact = fake.encode(texts)
    assert np.abs(warm - exact).max() < 1e-3
    # float32 and float16 caches are separate spaces
    _, stats = encode_cached(texts, encoder=fake, store=store, dtype="float32")
    assert stats.n_encoded == 3


def test_encode_items_keeps_row_order_and_duplicates(store, fake, items):
    vecs = encode_items(items, encoder=fake, store=store)
    assert vecs.shape == (4, 8)
    np.testing.assert_array_equal(vecs[0], vecs[3])  # identical rows share one vector
    rev = encode_items(items.reverse(), encoder=fake, store=store)
    np.testing.assert_array_equal(rev[::-1], vecs)


def test_cache_survives_reopening_the_file(tmp_path, fake):
    path = tmp_path / "cache.duckdb"
    first, _ = encode_cached(["one", "two"], encoder=fake, store=path)
    second, stats = encode_cached(["two", "one"], encoder=fake, store=str(path))
    assert stats.n_encoded == 0
    np.testing.assert_array_equal(second, first[::-1])


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_export_import_round_trip(tmp_path, fake, suffix):
    texts = ["red", "green", "blue"]
    with Store(tmp_path / "a.duckdb") as a:
        vecs, _ = encode_cached(texts, encoder=fake, store=a, template="t")
        table = EmbeddingTable(a)
        space = EmbeddingSpace("fake", "r1", "t", "document")
        assert table.count(space) == 3
        out = table.export(space, tmp_path / f"vectors{suffix}")
    with Store(tmp_path / "b.duckdb") as b:
        got_space, n = EmbeddingTable(b).import_(out)
        assert got_space == space and n == 3
        again, stats = encode_cached(texts, encoder=fake, store=b, template="t")
        assert stats.n_encoded == 0
        np.testing.assert_array_equal(again, vecs)
        # importing into a space of another dimension is refused
        EmbeddingTable(b).put(EmbeddingSpace("other", "r"), text_hashes(["w"]), np.ones((1, 5), np.float32))
        with pytest.raises(EmbeddingDimensionError):
            EmbeddingTable(b).import_(out, space=EmbeddingSpace("other", "r"))


def test_spaces_listing(store, fake):
    encode_cached(["a"], encoder=fake, store=store, template="x")
    spaces = EmbeddingTable(store).spaces()
    assert isinstance(spaces, pl.DataFrame)
    row = spaces.row(0, named=True)
    assert (row["encoder"], row["revision"], row["template"], row["dim"], row["n_vectors"]) == \
        ("fake", "r1", "x", 8, 1)


def test_item_vectors_key_names_the_cache_space(store, fake, items):
    from lmrec.text import item_vectors_key

    embed_items(items, encoder=fake, template="title", store=store)
    key = item_vectors_key(encoder=fake, template="title")
    assert (key["encoder"], key["revision"]) == ("fake", "r1")
    assert key["space_id"] in EmbeddingTable(store).spaces()["space_id"].to_list()
    assert item_vectors_key(encoder=fake, template="title:T")["space_id"] != key["space_id"]
