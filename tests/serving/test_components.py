"""The serving parts on their own: retrieval, MMR, the history overlay, explanations, keys, the engine's
ANN path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lmrec.serving.engine import Engine, RecRequest
from lmrec.serving.overlay import HistoryOverlay, UserState
from lmrec.serving.rerank import mmr
from lmrec.serving.retrieval import VectorIndex, normalise
from lmrec.serving.settings import ServingSettings
from lmrec.store import Store
from lmrec.store.keys import KeyStore, parse_key
from tests.serving.serving_helpers import HashingEncoder, text_model_store


def clustered(n: int, d: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d))
    return normalise(c[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, d)))


def test_ann_search_matches_exact_search_on_clustered_vectors() -> None:
    v = np.vstack([np.zeros((1, 32)), clustered(4000, 32, 50, 0)])
    ann = VectorIndex(v, threshold=1000, candidates=100)
    exact = VectorIndex(v, threshold=10**9)
    assert ann.uses_ann and not exact.uses_ann
    q = clustered(50, 32, 50, 1)
    a_idx, a_sc = ann.search(q, 10)
    e_idx, e_sc = exact.search(q, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(a_idx, e_idx, strict=True)])
    assert recall >= 0.95
    # Candidates are re-scored exactly: every returned score is the true inner product.
    np.testing.assert_allclose(a_sc, np.take_along_axis(q @ v.T, a_idx, axis=1), rtol=1e-5)
    assert (a_idx > 0).all()


def test_ann_index_takes_new_items_and_honours_masks() -> None:
    v = np.vstack([np.zeros((1, 16)), clustered(600, 16, 10, 2)])
    index = VectorIndex(v, threshold=100)
    target = normalise(np.ones((1, 16)))
    index.upsert(np.array([601]), target)
    idx, sc = index.search(target, 3)
    assert idx[0, 0] == 601 and sc[0, 0] == pytest.approx(1.0)
    mask = np.ones(602, dtype=bool)
    mask[601] = False
    idx, _ = index.search(target, 3, mask=mask)
    assert 601 not in idx[0]
    # A filter that leaves fewer allowed items than k among the candidates falls back to exact search.
    only = np.zeros(602, dtype=bool)
    only[[5, 7]] = True
    idx, sc = index.search(target, 3, mask=only)
    assert sorted(idx[0, :2].tolist()) == [5, 7] and idx[0, 2] == 0 and sc[0, 2] == -np.inf


def test_mmr_trades_relevance_for_novelty() -> None:
    vecs = normalise(np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]]))
    rel = np.array([1.0, 0.95, 0.6])
    assert mmr(rel, vecs, 2, 0.0).tolist() == [0, 1]
    assert mmr(rel, vecs, 2, 0.7).tolist() == [0, 2]
    assert mmr(np.array([1.0, -np.inf, 0.5]), vecs, 3, 0.5).tolist() == [0, 2]


def test_overlay_applies_negative_feedback_and_evicts() -> None:
    loads: list[str] = []

    def loader(user: str) -> UserState | None:
        loads.append(user)
        return None if user == "ghost" else UserState(items=["a", "b"], types=["view", "view"])

    overlay = HistoryOverlay(loader, max_users=2, limit=3)
    assert overlay.get("ghost") is None
    with overlay.user_lock("u"):
        overlay.ensure_loaded("u")
        overlay.apply("u", [("c", "purchase"), ("a", "dislike"), ("d", "view")])
    state = overlay.get("u")
    assert state is not None and state.items == ["b", "c", "d"] and state.negatives == {"a"}
    with overlay.user_lock("u"):
        overlay.apply("u", [("a", "like")])  # a positive event takes back a dislike
    state = overlay.get("u")
    assert state is not None and state.items == ["c", "d", "a"] and not state.negatives
    overlay.get("v")
    overlay.get("w")
    assert "u" not in overlay and len(overlay) == 2  # least recently used went first


def test_keys_are_stored_hashed_and_checked_by_scope() -> None:
    with Store(":memory:") as st:
        keys = KeyStore(st)
        key, rec = keys.create("ci", ["write"])
        assert parse_key(key) == (rec.key_id, key.split("_")[2])
        assert key.split("_")[2] not in str(st.execute("SELECT * FROM api_keys"))
        found = keys.verify(key)
        assert found is not None and found.allows("read") and found.allows("write")
        assert not found.allows("admin")
        assert keys.verify(key[:-1] + ("x" if key[-1] != "x" else "y")) is None
        assert keys.verify("not-a-key") is None
        with pytest.raises(ValueError, match="scopes"):
            keys.create("bad", ["root"])
        assert keys.revoke(rec.key_id) and keys.verify(key) is None and not keys.revoke(rec.key_id)
        keys.mark_erased("alice")
        assert keys.is_erased("alice") and not keys.is_erased("bob")
        assert "alice" not in str(st.execute("SELECT * FROM erased_users"))


@pytest.fixture
def content_engine(tmp_path: Path) -> Iterator[Engine]:
    """ContentLM (user vector · item vector) over hashed text, with the ANN threshold below the catalogue
    size."""
    store, enc = text_model_store(tmp_path, "content-lm", {"encoder": HashingEncoder.name})
    settings = ServingSettings(model_dir=tmp_path / "m", store=str(store.path), ann_threshold=4,
                               ann_candidates=6,
                               dev_mode=True)
    engine = Engine.open(settings, store, enc)
    yield engine
    engine.close()
    store.close()


def test_engine_retrieves_with_the_index_and_rescores_exactly(content_engine: Engine) -> None:
    eng = content_engine
    assert eng.bundle.factor_index is not None and eng.bundle.factor_index.uses_ann
    state = UserState(items=["heat"], types=["view"])
    got = eng._recommend(eng.bundle, 0, state, RecRequest(k=3, explain=True))
    assert got.strategy == "ann+rescore"
    assert [i.item_id for i in got.items][:2] in (["ronin", "fargo"], ["fargo", "ronin"])
    exact = eng.bundle.model.recommend(histories=[["heat"]], k=3)
    assert [i.item_id for i in got.items] == list(exact[0][0])
    np.testing.assert_allclose([i.score for i in got.items], exact[1][0], rtol=1e-5)
    assert got.items[0].explanation is not None
    assert got.items[0].explanation.text.startswith("Because you viewed Heat (1995)")
    assert "Crime" in got.items[0].explanation.shared_categories


def test_engine_serves_a_blend_from_candidates(tmp_path: Path) -> None:
    """Auto on a catalogue above the ANN threshold: each component's candidates (SeqRec's and ContentLM's
    indexes, ItemKNN's sparse rows, EASE's scores) blended exactly give the lists of full scoring; an item
    created while serving joins the indexes and can be recommended."""
    tiny = {"d_model": 16, "n_layers": 1, "max_len": 8, "epochs": 2, "batch_size": 16, "text_reduced_dim": 8,
            "adapter_hidden": 32, "patience": 0}
    store, enc = text_model_store(tmp_path, "auto", {"encoder": HashingEncoder.name}, seqrec=tiny, text="on",
                                  weight_step=0.5)
    settings = ServingSettings(model_dir=tmp_path / "m", store=str(store.path), ann_threshold=4,
                               ann_candidates=4, dev_mode=True)
    eng = Engine.open(settings, store, enc)
    try:
        b = eng.bundle
        assert set(b.space_indexes) == set(b.model.retrieval_spaces()) and b.space_indexes
        for items in (["heat"], ["toy", "up"], ["alien", "ronin", "brazil"]):
            got = eng._recommend(b, 0, UserState(items=items, types=["view"] * len(items)), RecRequest(k=3))
            assert got.strategy == "candidates"
            exact = b.model.recommend(histories=[items], k=3)
            assert [i.item_id for i in got.items] == list(exact[0][0])
            np.testing.assert_allclose([i.score for i in got.items], exact[1][0], rtol=1e-5, atol=1e-6)
        eng.upsert_items([{"item_id": "heat2", "title": "Heat 2 (2025)",
                           "description": "crime heist thriller detectives sequel", "categories": ["Crime"]}])
        assert all(ix.n_items == b.model.n_items for ix in b.space_indexes.values())
        got = eng._recommend(b, 0, UserState(items=["heat"], types=["view"]), RecRequest(k=9))
        exact = b.model.recommend(histories=[["heat"]], k=9)
        assert [i.item_id for i in got.items] == list(exact[0][0])
    finally:
        eng.close()
        store.close()


def test_engine_adds_text_items_to_a_text_model(content_engine: Engine) -> None:
    eng = content_engine
    out = eng.upsert_items([{"item_id": "heat2", "title": "Heat 2 (2026)",
                             "description": "crime heist thriller",
                             "categories": ["Crime", "Thriller"], "attributes": None}])
    assert out.created == 1 and out.catalogue_size == 11
    got = eng._recommend(eng.bundle, 0, UserState(items=["heat"], types=["view"]), RecRequest(k=1))
    assert got.items[0].item_id == "heat2"  # the text model scores the new item at once
    sim = eng.similar_items("heat2", 2, "behaviour")
    assert {i.item_id for i in sim.items} & {"heat", "ronin"}


def test_api_events_get_the_importers_ids_and_errors_name_the_row() -> None:
    import polars as pl

    from lmrec.data.cleaning import ROW, CleaningConfig, CleaningReport, DataError, clean_rows
    from lmrec.serving.ingest import prepare

    raw = [{"user_id": "u", "item_id": "i", "timestamp": 1_700_000_000_123, "event_type": "addtocart",
            "value": 4.5},
           {"user_id": "u", "item_id": "j", "timestamp": 1_700_000_001, "event_type": "view", "value": None}]
    ours = prepare(raw)
    df = pl.DataFrame(raw).with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))
    theirs = clean_rows(df, CleaningConfig(), CleaningReport())
    assert [e.event_id for e in ours] == theirs["event_id"].to_list()
    assert ours[0].event_type == "cart" and ours[0].timestamp == 1_700_000_000
    with pytest.raises(DataError, match="row 1, field 'event_type'"):
        prepare([raw[1], {**raw[1], "event_type": "teleport"}])


def test_erasure_drops_events_not_yet_committed(content_engine: Engine) -> None:
    eng = content_engine
    eng.writer.ack_before_commit = True  # the opt-in fire-and-forget mode: acknowledged before the commit
    eng.writer.flush_s = 60.0  # hold the batch back
    eng.ingest([{"event_id": "late", "user_id": "u5", "item_id": "toy", "event_type": "view"}])
    assert eng.writer.pending_ids(["late"]) == {"late"}
    eng.erase_user("u5")
    eng.writer.flush()
    assert eng.store.execute("SELECT count(*) FROM events WHERE user_id = 'u5'")[0][0] == 0


def test_the_id_filter_has_no_false_negatives_and_few_false_positives() -> None:
    from lmrec.serving.idfilter import IdFilter

    f = IdFilter(capacity=20_000)
    added = [f"e{i}" for i in range(20_000)]
    f.add(added)
    assert all(f.may_contain(added))
    others = f.may_contain([f"x{i}" for i in range(20_000)])
    assert sum(others) < 1_000  # ~1 % expected at capacity; 5 % bound
