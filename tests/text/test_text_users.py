"""User text and pooled history vectors, checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.ragged import Ragged
from lmrec.text import (
    history_text,
    history_texts,
    profile_text,
    recency_weights,
    user_history_vectors,
    user_vector,
)

TITLES = ["", "Heat", "Up", "Fargo", "Alien"]


def test_profile_text_from_movielens_attributes():
    attrs = '{"age": 24, "gender": "M", "occupation": "technician", "zip_code": "85711"}'
    assert profile_text(attrs) == "age: 24, gender: male, occupation: technician"
    assert profile_text({"gender": "F"}, "Likes noir.") == "gender: female. Likes noir."
    assert profile_text({"zip_code": "1"}, fields=None) == "zip code: 1"
    assert profile_text(None) == "" and profile_text("") == ""
    with pytest.raises(ValueError, match="not valid JSON"):
        profile_text("{age: 3")


def test_history_text_is_newest_first_and_limited():
    assert history_text([1, 2, 3, 4], TITLES, last_n=3) == "Alien; Fargo; Up"
    assert history_text(np.array([0, 2]), TITLES, prefix="Watched: ") == "Watched: Up"
    assert history_text([], TITLES) == ""
    rows = Ragged.from_lists([[1], [], [3, 4]])
    assert history_texts(rows, TITLES) == ["Heat", "", "Alien; Fargo"]


def test_recency_weights_halve_every_half_life():
    w = recency_weights(np.array([3, 1]), half_life=1.0)
    np.testing.assert_allclose(w, [0.25, 0.5, 1.0, 1.0])


def test_mean_and_recency_pooling_by_hand():
    item_vecs = np.array([[9, 9], [1, 0], [0, 1], [1, 1]], dtype=np.float32)  # row 0 is padding
    hist = Ragged.from_lists([[1, 2], [], [1, 1, 2]])
    mean = user_history_vectors(item_vecs, hist, "mean", normalize=False)
    np.testing.assert_allclose(mean, [[0.5, 0.5], [0, 0], [2 / 3, 1 / 3]], rtol=1e-6)
    rec = user_history_vectors(item_vecs, hist, "recency", half_life=1.0, normalize=False)
    # weights for [1, 2]: 0.5, 1 -> (0.5*[1,0] + [0,1]) / 1.5
    np.testing.assert_allclose(rec[0], [1 / 3, 2 / 3], rtol=1e-6)
    # [1, 1, 2]: 0.25, 0.5, 1 -> ([0.75, 0] + [0, 1]) / 1.75
    np.testing.assert_allclose(rec[2], [0.75 / 1.75, 1 / 1.75], rtol=1e-6)
    unit = user_history_vectors(item_vecs, hist, "mean")
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), [1, 0, 1], rtol=1e-6)


def test_pooling_last_n_and_padding():
    item_vecs = np.eye(4, dtype=np.float32)
    hist = Ragged.from_lists([[1, 2, 3], [0, 3]])
    out = user_history_vectors(item_vecs, hist, "mean", last_n=2, normalize=False)
    np.testing.assert_allclose(out, [[0, 0, 0.5, 0.5], [0, 0, 0, 1]])  # PAD carries no weight


def test_pooling_rejects_bad_input():
    vecs = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="outside"):
        user_history_vectors(vecs, Ragged.from_lists([[5]]))
    with pytest.raises(ValueError, match="unknown pooling"):
        user_history_vectors(vecs, Ragged.from_lists([[1]]), "max")  # type: ignore[arg-type]


def test_single_user_vector_matches_the_batch():
    item_vecs = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    hist = Ragged.from_lists([[1, 5, 2]])
    np.testing.assert_allclose(user_vector(item_vecs, [1, 5, 2], "recency", half_life=2.0),
                               user_history_vectors(item_vecs, hist, "recency", half_life=2.0)[0], rtol=1e-6)
