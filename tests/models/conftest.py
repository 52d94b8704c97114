"""Fixtures for the model tests: a small checkerboard dataset and text vectors that agree with it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset

N_EVEN_USERS, N_ODD_USERS, N_ITEMS = 30, 20, 40
HELD_OUT_USER, HELD_OUT_ITEM = "u0", "i0"


def checkerboard() -> Dataset:
    """Users ``u0..u29`` interact with the even items, ``u30..u49`` with the odd ones (a checkerboard).

    ``u0`` has every even item except ``i0``, which must come first in ``u0``'s recommendations: its
    neighbours all have it, it is popular (even items have more users than odd ones) and its text is like
    ``u0``'s. Item categories: ``even``/``odd`` and ``mod4-{i % 4}``.
    """
    rows = []
    t = 0
    for u in range(N_EVEN_USERS + N_ODD_USERS):
        parity = 0 if u < N_EVEN_USERS else 1
        for i in range(parity, N_ITEMS, 2):
            if u == 0 and i == 0:
                continue
            # Users beyond the first few skip a different item each, so the data is not perfectly regular.
            if u > 5 and (i + u) % 7 == 0:
                continue
            t += 1
            rows.append((f"e{t}", f"u{u}", f"i{i}", t, "click", None))
    events = pl.DataFrame(
        rows, schema=["event_id", "user_id", "item_id", "timestamp", "event_type", "value"], orient="row"
    )
    items = pl.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(N_ITEMS)],
            "title": [f"{'even' if i % 2 == 0 else 'odd'} thing {i}" for i in range(N_ITEMS)],
            "categories": [["even" if i % 2 == 0 else "odd", f"mod4-{i % 4}"] for i in range(N_ITEMS)],
        }
    )
    return Dataset.build(events, items, name="checkerboard")


def checkerboard_vectors(ds: Dataset, dim: int = 8, seed: int = 0) -> np.ndarray:
    """Text vectors: even items near one direction, odd items near another, small noise; row 0 zeros."""
    rng = np.random.default_rng(seed)
    v = np.zeros((ds.item_map.size, dim), dtype=np.float32)
    for idx in range(1, ds.item_map.size):
        i = int(ds.item_map.raw(idx)[1:])
        v[idx, i % 2] = 1.0
        v[idx] += 0.05 * rng.standard_normal(dim).astype(np.float32)
    return v


@pytest.fixture(scope="session")
def board() -> Dataset:
    return checkerboard()


@pytest.fixture(scope="session")
def board_vectors(board: Dataset) -> np.ndarray:
    return checkerboard_vectors(board)
