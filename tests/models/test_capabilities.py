"""The contract of each capability interface (:mod:`lmrec.models.capabilities`), for every registered model
that declares it, and the text space a text model records.

Models come from the contract suite's cache of fitted models; tests that change a model work on a copy.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.models import create_model, load_model, model_class
from lmrec.models.capabilities import (
    CandidateRetrieval,
    CatalogueUpdates,
    ColdStartItems,
    ItemEmbeddings,
    LinearScores,
    PredictionHeads,
    SparseScores,
    UserEmbeddings,
)
from lmrec.serving.heads import available_heads
from lmrec.text.space import TextSpace, TextSpaceError
from tests.models.conftest import HELD_OUT_ITEM, HELD_OUT_USER
from tests.models.test_contract import MODELS, fitted


def declaring(capability: type) -> list[str]:
    return [name for name in MODELS if issubclass(model_class(name), capability)]


#: What each built-in model really has (optional packages are checked when present).
EXPECTED = {
    "most-popular": {ColdStartItems},
    "unseen-random": {ColdStartItems},
    "itemknn": {SparseScores},
    "userknn": set(),
    "ease": set(),
    "als": {ItemEmbeddings, UserEmbeddings},
    "bpr": {ItemEmbeddings},
    "content-lm": {ItemEmbeddings, UserEmbeddings, LinearScores, ColdStartItems},
    "seqrec": {ItemEmbeddings, UserEmbeddings, LinearScores, ColdStartItems},
    "multitask": {ItemEmbeddings, PredictionHeads},
    "auto": {ColdStartItems, CandidateRetrieval},
    "pipeline": {ColdStartItems},
}
OPTIONAL = (ColdStartItems, ItemEmbeddings, UserEmbeddings, PredictionHeads, LinearScores, SparseScores,
            CandidateRetrieval)


@pytest.mark.parametrize("name", [n for n in EXPECTED if n in MODELS])
def test_each_model_declares_what_it_has(name: str) -> None:
    cls = model_class(name)
    assert issubclass(cls, CatalogueUpdates)  # every model's catalogue can grow
    assert {c for c in OPTIONAL if issubclass(cls, c)} == EXPECTED[name]


# ---------------------------------------------------------------------- ItemEmbeddings
@pytest.mark.parametrize("name", declaring(ItemEmbeddings))
def test_item_embeddings_shape_dtype_and_padding(
    name: str, board: Dataset, board_vectors: np.ndarray
) -> None:
    model = fitted(name, board, board_vectors)
    v = model.item_embeddings()  # type: ignore[attr-defined]
    assert v.dtype == np.float32 and v.ndim == 2 and v.shape[0] == board.item_map.size
    assert np.all(v[PAD] == 0), "row 0 is padding"
    assert np.isfinite(v).all()
    assert np.count_nonzero(np.linalg.norm(v[1:], axis=1)) == board.n_items  # every fitted item has one


@pytest.mark.parametrize("name", declaring(ItemEmbeddings))
def test_item_embeddings_cover_items_added_later(
    name: str, board: Dataset, board_vectors: np.ndarray
) -> None:
    model = copy.deepcopy(fitted(name, board, board_vectors))
    vectors = board_vectors[[1]] if model.item_vectors_ is not None else None
    model.add_items(["late"], [["even"]], vectors=vectors)
    v = model.item_embeddings()  # type: ignore[attr-defined]
    assert v.shape[0] == model.n_items + 1 == board.item_map.size + 1 and v.dtype == np.float32


# ---------------------------------------------------------------------- UserEmbeddings
@pytest.mark.parametrize("name", declaring(UserEmbeddings))
def test_user_dot_item_is_the_score(name: str, board: Dataset, board_vectors: np.ndarray) -> None:
    """The space an ANN index over the item embeddings searches is the space the model scores in."""
    model = fitted(name, board, board_vectors)
    users = np.arange(1, 9)
    hist = board.sequences.take(users)
    u = model.user_embeddings(hist, users)  # type: ignore[attr-defined]
    v = model.item_embeddings()  # type: ignore[attr-defined]
    assert u.dtype == np.float32 and u.shape == (len(users), v.shape[1])
    cols = np.flatnonzero(np.linalg.norm(v, axis=1) > 0)  # items the model has a vector for
    scores = model.score(hist, users)
    np.testing.assert_allclose((u @ v.T)[:, cols], scores[:, cols], rtol=1e-4, atol=1e-4)
    # so the best unseen item by dot product is the model's first recommendation
    row = board.user_map.index(HELD_OUT_USER)
    dots = model.user_embeddings(board.sequences.take([row]), np.array([row]))[0] @ v.T  # type: ignore[attr-defined]
    unseen = np.setdiff1d(cols, board.sequences[row])
    assert board.item_map.raw(int(unseen[np.argmax(dots[unseen])])) == HELD_OUT_ITEM


# ---------------------------------------------------------------------- LinearScores / SparseScores
@pytest.mark.parametrize("name", declaring(LinearScores))
@pytest.mark.parametrize("added", [False, True])
def test_query_dot_table_is_the_score(name: str, added: bool, board: Dataset,
                                      board_vectors: np.ndarray) -> None:
    """Every item's score is ``query · table`` or its fixed score, also after items were added."""
    model = fitted(name, board, board_vectors)
    if added:
        model = copy.deepcopy(model)
        model.add_items(["late"], [["even"]],
                        vectors=board_vectors[[1]] if model.item_vectors_ is not None else None)
    users = np.arange(1, 9)
    hist = board.sequences.take(users)
    table, fixed = model.linear_table()  # type: ignore[attr-defined]
    q = model.linear_queries(hist, users)  # type: ignore[attr-defined]
    assert table.shape[0] == fixed.shape[0] == model.n_items + 1 and q.shape == (len(users), table.shape[1])
    assert fixed[PAD] == -np.inf and model.linear_table()[0] is table  # cached while unchanged
    expected = np.where(np.isnan(fixed)[None, :], q @ table.T, fixed[None, :])
    np.testing.assert_allclose(expected, model.score(hist, users), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", declaring(SparseScores))
def test_sparse_row_is_the_score(name: str, board: Dataset, board_vectors: np.ndarray) -> None:
    model = fitted(name, board, board_vectors)
    users = np.arange(1, 9)
    hist = board.sequences.take(users)
    rows = model.sparse_scores(hist, users)  # type: ignore[attr-defined]
    scores = model.score(hist, users)
    n = rows.shape[1]
    np.testing.assert_allclose(rows.toarray()[:, 1:], scores[:, 1:n], rtol=1e-5, atol=1e-6)
    assert rows.nnz < rows.shape[0] * n  # really sparse: most items share nothing with a history


@pytest.mark.parametrize("name", declaring(CandidateRetrieval))
def test_candidates_are_scored_as_the_model_scores_them(name: str, board: Dataset,
                                                        board_vectors: np.ndarray) -> None:
    """Candidates from exact indexes of the retrieval spaces carry the model's own scores, and with enough
    of them the best ones are the model's top items."""
    model = fitted(name, board, board_vectors)
    spaces = model.retrieval_spaces()  # type: ignore[attr-defined]

    def search(space: str, q: np.ndarray, n: int) -> np.ndarray:
        table, scorable = spaces[space]
        s = q @ (table * scorable[:, None]).T
        s[:, PAD] = -np.inf
        return np.argsort(-s, axis=1, kind="stable")[:, :n]

    users = np.arange(1, 9)
    hist = board.sequences.take(users)
    full = model.score(hist, users)
    got = model.candidates(hist, users, 5, search)  # type: ignore[attr-defined]
    assert len(got) == len(users)
    for r, (items, scores) in enumerate(got):
        assert len(items) >= 5 and PAD not in items and len(np.unique(items)) == len(items)
        np.testing.assert_allclose(scores, full[r, items], rtol=1e-4, atol=1e-4)
    everything = model.candidates(hist, users, model.n_items, search)  # type: ignore[attr-defined]
    for r, (items, scores) in enumerate(everything):
        assert items[np.argmax(scores)] == np.argmax(full[r])


# ---------------------------------------------------------------------- CatalogueUpdates / ColdStartItems
def _add_two(model, board_vectors: np.ndarray) -> np.ndarray:
    """Add ``new-even`` (text like the even items) and ``new-odd``; returns their indices."""
    vectors = None
    if model.item_vectors_ is not None:
        even, odd = int(np.argmax(board_vectors[:, 0])), int(np.argmax(board_vectors[:, 1]))
        vectors = board_vectors[[even, odd]] * 1.01
    return model.add_items(["new-even", "new-odd"], [["even"], ["odd"]], vectors=vectors)


@pytest.mark.parametrize("name", MODELS)
def test_add_items_and_set_categories(name: str, board: Dataset, board_vectors: np.ndarray) -> None:
    model = copy.deepcopy(fitted(name, board, board_vectors))
    n = board.n_items
    idx = _add_two(model, board_vectors)
    assert idx.tolist() == [n + 1, n + 2] and model.n_items == n + 2
    assert model.add_items(["new-even", "i3"]).tolist() == [n + 1, board.item_map.index("i3")]  # known: kept
    hist = board.sequences.take(np.arange(1, 4))
    assert model.score(hist, np.arange(1, 4)).shape == (3, n + 3)
    mask = model.category_mask(["even"], None)
    assert mask is not None and mask[n + 1] and not mask[n + 2]
    model.set_item_categories(np.array([n + 2, 1]), [["fresh"], ["fresh", "odd"]])
    fresh = model.category_mask(["fresh"], None)
    assert fresh is not None and np.flatnonzero(fresh).tolist() == [1, n + 2]
    with pytest.raises(IndexError):
        model.set_item_categories(np.array([n + 3]), [["x"]])
    with pytest.raises(ValueError, match="category lists"):
        model.set_item_categories(np.array([1, 2]), [["x"]])


@pytest.mark.parametrize("name", MODELS)
def test_items_added_later_are_scored_exactly_when_declared(
    name: str, board: Dataset, board_vectors: np.ndarray
) -> None:
    model = copy.deepcopy(fitted(name, board, board_vectors))
    idx = _add_two(model, board_vectors)
    row = board.user_map.index(HELD_OUT_USER)
    scores = model.score(board.sequences.take([row]), np.array([row]), items=idx)
    if isinstance(model, ColdStartItems):
        assert np.isfinite(scores).all()
        ids, _ = model.recommend(HELD_OUT_USER, k=2, candidates=["new-even", "new-odd"])
        assert set(ids) == {"new-even", "new-odd"}
    else:
        assert np.all(scores == -np.inf)  # no representation until refit


def test_a_text_model_ranks_a_new_item_by_its_text(board: Dataset, board_vectors: np.ndarray) -> None:
    model = copy.deepcopy(fitted("content-lm", board, board_vectors))
    _add_two(model, board_vectors)
    ids, _ = model.recommend(HELD_OUT_USER, k=3)
    assert "new-even" in set(ids) and "new-odd" not in set(ids)


# ---------------------------------------------------------------------- PredictionHeads
@pytest.fixture(scope="module")
def rated_board(board: Dataset) -> Dataset:
    """The checkerboard with a rating event (1-5) after every third click: two event types, ratings."""
    ev = board.events.select("user_id", "item_id", "timestamp", "event_type").with_columns(
        pl.lit(None, pl.Float64).alias("value"))
    rated = ev.gather_every(3).with_columns(
        pl.lit("rating").alias("event_type"),
        (pl.int_range(pl.len()) % 5 + 1).cast(pl.Float64).alias("value"))
    events = pl.concat([ev, rated]).sort("timestamp", maintain_order=True).with_row_index("n").with_columns(
        pl.format("e{}", "n").alias("event_id")).drop("n")
    return Dataset.build(events, board.items, name="rated-checkerboard")


@pytest.mark.parametrize("name", declaring(PredictionHeads))
def test_prediction_heads(name: str, rated_board: Dataset) -> None:
    cls = model_class(name)
    model = create_model(name, **{**cls.fast_config, "item_repr": "id"}).fit(rated_board)
    assert isinstance(model, PredictionHeads)
    assert {"rating", "next_type"} <= set(model.heads)
    assert set(model.event_types) == {"click", "rating"}
    assert available_heads(model)[:2] == ["rating", "next_action"]
    users = np.array([1, 2, 3])
    items = np.array([1, 2, 5])
    r = model.predict_ratings(users, items)
    assert r.shape == (3,) and np.all((r >= 1) & (r <= 5))
    p = model.predict_next_type(users)
    assert p.shape == (3, len(model.event_types))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    if "value" in model.heads:
        assert model.predict_value(users).shape == (3,)


def test_models_without_heads_offer_no_predictions(board: Dataset, board_vectors: np.ndarray) -> None:
    assert available_heads(fitted("itemknn", board, board_vectors)) == []


# ---------------------------------------------------------------------- the text space
def test_text_space_is_saved_and_loaded(tmp_path: Path, board: Dataset, board_vectors: np.ndarray) -> None:
    space = TextSpace("some-encoder", "rev1", '{"fields":[["title",""]]}')
    model = create_model("content-lm").fit(board, item_vectors=board_vectors, vectors_meta=space)
    assert model.text_space_ == TextSpace("some-encoder", "rev1", space.template, board_vectors.shape[1])
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "model.json").read_text())
    assert saved["text_space"] == model.text_space_.to_dict()
    assert load_model(tmp_path / "m").text_space_ == model.text_space_
    assert create_model("itemknn").fit(board).text_space_ is None


def test_older_folders_without_a_text_space_still_load(
    tmp_path: Path, board: Dataset, board_vectors: np.ndarray
) -> None:
    create_model("content-lm").fit(board, item_vectors=board_vectors).save(tmp_path / "m")
    file = tmp_path / "m" / "model.json"
    meta = json.loads(file.read_text())
    del meta["text_space"]
    meta["vectors"] = {"encoder": "old-encoder", "source": "lmrec.text.item_vectors"}
    file.write_text(json.dumps(meta))
    assert load_model(tmp_path / "m").text_space_ == TextSpace("old-encoder", dim=board_vectors.shape[1])
    del meta["vectors"]
    file.write_text(json.dumps(meta))
    assert load_model(tmp_path / "m").text_space_ == TextSpace(dim=board_vectors.shape[1])


def test_vectors_of_another_size_are_refused(board: Dataset, board_vectors: np.ndarray) -> None:
    with pytest.raises(TextSpaceError, match="5-d"):
        create_model("content-lm").fit(board, item_vectors=board_vectors,
                                       vectors_meta=TextSpace("e", dim=5))


def test_texts_need_a_named_encoder(board: Dataset, board_vectors: np.ndarray) -> None:
    model = create_model("content-lm").fit(board, item_vectors=board_vectors)
    with pytest.raises(TextSpaceError, match="unnamed encoder"):
        model.add_items(["t"], texts=["a new item"])


class _Encoder:
    def __init__(self, name: str, dim: int, revision: str = "") -> None:
        self.name, self.dim, self.revision = name, dim, revision


def test_text_space_checks_an_encoder() -> None:
    space = TextSpace("enc", "r1", "", 8)
    assert space.mismatch(_Encoder("enc", 8, "r1")) is None
    assert space.mismatch(_Encoder("enc", 8)) is None  # unknown revision is not held against it
    assert "'other'" in str(space.mismatch(_Encoder("other", 8)))
    assert "revision r2" in str(space.mismatch(_Encoder("enc", 8, "r2")))
    assert "4-d" in str(space.mismatch(_Encoder("enc", 4, "r1")))
    with pytest.raises(TextSpaceError, match="'other'"):
        space.check(_Encoder("other", 8))
    assert TextSpace.from_dict(space.to_dict()) == space


def test_an_empty_history_has_a_zero_user_embedding(board: Dataset, board_vectors: np.ndarray) -> None:
    """A history with nothing in it has no direction: models give it a zero vector (the service then falls
    back to ranking the whole catalogue)."""
    for name in declaring(UserEmbeddings):
        model = fitted(name, board, board_vectors)
        u = model.user_embeddings(Ragged.from_lists([[]]), np.zeros(1, dtype=np.int64))  # type: ignore[attr-defined]
        assert u.shape[0] == 1 and np.all(u == 0), name
