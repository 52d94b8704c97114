"""The contract every registered recommender honours (parametrised over ``available_models()``).

A model registered anywhere in lmrec is tested here automatically, with its ``fast_config``; models that read
text vectors get the checkerboard's vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.models import NotFittedError, Recommender, available_models, create_model, load_model, model_class
from lmrec.models.base import UnknownUserError
from tests.models.conftest import HELD_OUT_ITEM, HELD_OUT_USER

MODELS = available_models()
_FITTED: dict[str, Recommender] = {}


def fitted(name: str, board: Dataset, vectors: np.ndarray) -> Recommender:
    """One fitted instance per model for the whole module (fits are the slow part)."""
    if name not in _FITTED:
        cls = model_class(name)
        model = create_model(name, **cls.fast_config)
        model.fit(board, item_vectors=vectors if cls.needs_item_vectors else None)
        _FITTED[name] = model
    return _FITTED[name]


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest, board: Dataset, board_vectors: np.ndarray) -> Recommender:
    return fitted(request.param, board, board_vectors)


def test_registry_lists_the_built_in_models() -> None:
    for name in ("most-popular", "itemknn", "userknn", "ease", "als", "bpr", "content-lm"):
        assert name in MODELS
    with pytest.raises(ValueError, match="unknown model"):
        create_model("no-such-model")


def test_unknown_setting_is_an_error() -> None:
    with pytest.raises(TypeError, match="no setting"):
        create_model("itemknn", neighbours=3)


@pytest.mark.parametrize("name", MODELS)
def test_unfitted_model_refuses_to_recommend(name: str) -> None:
    with pytest.raises(NotFittedError):
        create_model(name).recommend("u1")


def test_held_out_item_ranks_first(model: Recommender, board: Dataset) -> None:
    ids, scores = model.recommend(HELD_OUT_USER, k=5)
    assert ids[0] == HELD_OUT_ITEM, f"{model.name}: {list(ids)}"
    assert np.all(np.diff(scores) <= 0), "scores are best first"
    # the same from an anonymous history of raw ids
    ids2, _ = model.recommend(histories=[board.user_sequence(HELD_OUT_USER)], k=5)
    assert ids2[0][0] == HELD_OUT_ITEM


def test_score_shape_and_padding(model: Recommender, board: Dataset) -> None:
    hist = board.sequences.take(np.arange(1, 6))
    s = model.score(hist, np.arange(1, 6))
    assert s.shape == (5, board.item_map.size)
    assert s.dtype == np.float32
    assert np.all(s[:, PAD] == -np.inf)
    items = np.array([3, 1, 7])
    sub = model.score(hist, np.arange(1, 6), items=items)
    assert sub.shape == (5, 3)
    np.testing.assert_allclose(sub, s[:, items], rtol=1e-5, atol=1e-6)


def test_batch_equals_single(model: Recommender, board: Dataset) -> None:
    users = [f"u{u}" for u in (0, 3, 12, 31, 45, 49)]
    ids, scores = model.recommend(users, k=8, batch_size=4)
    for row, user in enumerate(users):
        one_ids, one_scores = model.recommend(user, k=8)
        assert list(one_ids) == list(ids[row])
        np.testing.assert_allclose(one_scores, scores[row], rtol=1e-5, atol=1e-6)


def test_exclude_seen_and_explicit_exclusions(model: Recommender, board: Dataset) -> None:
    users = [f"u{u}" for u in range(0, 50, 7)]
    ids, _ = model.recommend(users, k=10)
    for row, user in enumerate(users):
        seen = set(board.user_sequence(user))
        assert not seen.intersection(ids[row]), f"{model.name} recommended seen items to {user}"
        assert "" not in set(ids[row])
    first = model.recommend(HELD_OUT_USER, k=3)[0]
    again, _ = model.recommend([HELD_OUT_USER], k=3, exclude=[[first[0]]])
    assert first[0] not in set(again[0])
    assert again[0][0] == first[1]


def test_candidates_and_category_filters(model: Recommender, board: Dataset) -> None:
    cands = ["i1", "i3", "i0", "i5"]
    ids, _ = model.recommend(HELD_OUT_USER, k=10, candidates=cands)
    real = [i for i in ids if i]
    assert set(real) <= set(cands)
    assert real[0] == HELD_OUT_ITEM
    assert len(real) == 4 and list(ids[4:]) == [""] * 6, "fewer candidates than k are padded with ''"
    odd, _ = model.recommend(HELD_OUT_USER, k=10, categories=["odd"])
    assert all(int(i[1:]) % 2 == 1 for i in odd if i)
    not_odd, _ = model.recommend(HELD_OUT_USER, k=10, exclude_categories=["odd"])
    assert all(int(i[1:]) % 2 == 0 for i in not_odd if i)
    mod, _ = model.recommend("u31", k=10, categories=["mod4-1"], exclude_seen=False)
    assert all(i == "" or int(i[1:]) % 4 == 1 for i in mod)


def test_unknown_user_and_empty_history_fall_back_to_popularity(model: Recommender, board: Dataset) -> None:
    pop = board.item_popularity
    order = sorted(range(1, len(pop)), key=lambda i: (-pop[i], i))
    expected = list(board.item_map.raws(order[:5]))
    # the unknown-user policy: an error naming the user, or the popular items when asked for
    with pytest.raises(UnknownUserError, match="someone-new"):
        model.recommend([HELD_OUT_USER, "someone-new"], k=5)
    ids, _ = model.recommend("someone-new", k=5, unknown="popular")
    assert list(ids) == expected
    assert model.unknown_users([HELD_OUT_USER, "someone-new"]) == ["someone-new"]
    # an unknown id that comes with a history is scored from that history, not refused
    ids_h, _ = model.recommend(["someone-new"], k=5, histories=[board.user_sequence(HELD_OUT_USER)])
    assert ids_h[0][0] == HELD_OUT_ITEM
    ids2, _ = model.recommend(histories=[[]], k=5)
    assert list(ids2[0]) == expected
    # an anonymous history of unknown items is an empty history
    ids3, _ = model.recommend(histories=[["no-such-item"]], k=5)
    assert list(ids3[0]) == expected


def test_save_load_round_trip(model: Recommender, board: Dataset, tmp_path: Path) -> None:
    path = model.save(tmp_path / model.name)
    assert (path / "model.json").exists() and (path / "arrays.npz").exists()
    with np.load(path / "arrays.npz", allow_pickle=False) as z:  # no pickles anywhere
        assert all(z[k].dtype != object for k in z.files)
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    hist = Ragged.from_lists([board.sequences[u] for u in range(1, 20)])
    users = np.arange(1, 20)
    np.testing.assert_array_equal(loaded.score(hist, users), model.score(hist, users))
    users_raw = [f"u{u}" for u in range(10)]
    a, sa = model.recommend(users_raw, k=7)
    b, sb = loaded.recommend(users_raw, k=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)


def test_more_than_the_catalogue_is_padded(model: Recommender, board: Dataset) -> None:
    ids, scores = model.recommend(HELD_OUT_USER, k=board.n_items + 5)
    n_seen = len(set(board.user_sequence(HELD_OUT_USER)))
    real = [i for i in ids if i]
    assert len(real) == board.n_items - n_seen
    assert np.all(np.isinf(scores[len(real) :]))


def test_new_items_never_crash_scoring(model: Recommender, board: Dataset, board_vectors: np.ndarray) -> None:
    import copy

    m = copy.deepcopy(model)
    vec = board_vectors[board.item_map.index("i0")][None, :] if m.item_vectors_ is not None else None
    idx = m.add_items(["brand-new"], [["even"]], vectors=vec)
    assert idx[0] == board.n_items + 1
    s = m.score(board.sequences.take([1, 2]), np.array([1, 2]))
    assert s.shape == (2, board.n_items + 2)
    ids, _ = m.recommend(HELD_OUT_USER, k=board.n_items + 1)
    assert "" in set(ids) or "brand-new" in set(ids)


def test_items_a_model_cannot_score_are_never_recommended(board: Dataset) -> None:
    """``-inf`` means "cannot rank": such items never fill a list, and a row with no finite score at all
    gets the popularity fallback (a regression: ``nan_to_num`` once turned ``-inf`` into -3.4e38)."""
    from lmrec.models.popularity import MostPopular

    class Partial(MostPopular):
        def score(self, histories, users=None, items=None):  # type: ignore[no-untyped-def]
            s = super().score(histories, users, items)
            s[:, 2:] = -np.inf  # only item 1 is scorable ...
            s[np.asarray(histories.lengths) == 1] = -np.inf  # ... and nothing after a one-item history
            return s

        def popularity_scores(self, rows: int) -> np.ndarray:
            return Recommender.popularity_scores(self, rows)  # the base's, not this score's

    m = Partial()
    m.fit(board)
    first = board.item_map.raw(1)
    other = next(board.item_map.raw(i) for i in range(2, board.n_items + 1))
    ids, _ = m.recommend(histories=[[other, other]], k=5, exclude_seen=False)
    assert list(ids[0]) == [first, "", "", "", ""]  # "" where fewer than k items could be ranked
    ids, scores = m.recommend(histories=[[other]], k=5, exclude_seen=False)
    assert "" not in ids[0] and np.isfinite(scores).all()  # popularity, not -3.4e38 placeholders


@pytest.mark.parametrize(("setting", "value"), [("lr", "fast"), ("d_model", "wide"), ("loss", "xx")])
def test_a_bad_setting_is_refused_when_the_model_is_built(setting: str, value: str) -> None:
    """Not deep inside fit: the message names the setting and what was wrong with it."""
    with pytest.raises(ValueError, match=setting):
        create_model("seqrec", **{setting: value})


def test_settings_given_as_text_are_read_by_their_type() -> None:
    m = create_model("seqrec", lr="0.002", d_model="32")
    assert m.config.lr == 0.002 and m.config.d_model == 32


def test_text_models_warn_when_item_text_cannot_tell_items_apart(board: Dataset,
                                                                 board_vectors: np.ndarray) -> None:
    """Empty or identical text gives every item one vector: a text model still fits, with a warning."""
    from lmrec.models.base import TextQualityWarning

    same = np.tile(board_vectors[1], (len(board_vectors), 1))
    same[0] = 0
    with pytest.warns(TextQualityWarning, match="same text vector"):
        create_model("content-lm").fit(board, item_vectors=same)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", TextQualityWarning)
        create_model("content-lm").fit(board, item_vectors=board_vectors)  # distinct texts: no warning
