"""Spectral item factors of the user-item matrix (SeqRec's start for its id table)."""

from __future__ import annotations

import numpy as np
import polars as pl

from lmrec.data.cooccurrence import spectral_item_factors
from lmrec.data.dataset import Dataset


def _two_tastes(n_users: int = 40) -> Dataset:
    """Half the users take items a0–a4, the other half b0–b4; item z is in the catalogue without events."""
    rows = []
    for u in range(n_users):
        group = "a" if u < n_users // 2 else "b"
        for j in range(5):
            rows.append((f"e{u}-{j}", f"u{u}", f"{group}{(u + j) % 5}", 1_600_000_000 + j, "view"))
    events = pl.DataFrame(rows, schema=["event_id", "user_id", "item_id", "timestamp", "event_type"],
                          orient="row")
    items = pl.DataFrame({"item_id": [*(f"a{i}" for i in range(5)), *(f"b{i}" for i in range(5)), "z"]})
    return Dataset.build(events, items, name="two-tastes")


def test_factors_place_co_consumed_items_together() -> None:
    ds = _two_tastes()
    f = spectral_item_factors(ds, dim=4, seed=0)
    assert f is not None and f.shape == (ds.item_map.size, 4) and f.dtype == np.float32
    a = [ds.item_map.index(f"a{i}") for i in range(5)]
    b = [ds.item_map.index(f"b{i}") for i in range(5)]
    gram = f @ f.T
    within = min(gram[np.ix_(a, a)].min(), gram[np.ix_(b, b)].min())
    across = np.abs(gram[np.ix_(a, b)]).max()
    assert within > 10 * across  # the two tastes are orthogonal directions
    assert not f[0].any() and not f[ds.item_map.index("z")].any()  # padding and an item without events
    again = spectral_item_factors(ds, dim=4, seed=0)  # the same similarities (the two tastes' equal singular
    assert again is not None                          # values leave their order to rounding)
    np.testing.assert_allclose(again @ again.T, gram, atol=1e-5)


def test_small_matrices_give_fewer_factors() -> None:
    ds = _two_tastes(n_users=4)  # 5 x 12 matrix: at most 4 factors
    f = spectral_item_factors(ds, dim=64)
    assert f is not None and f.shape == (ds.item_map.size, 4)
    one = Dataset.build(pl.DataFrame({"event_id": ["e"], "user_id": ["u"], "item_id": ["i"], "timestamp": [1],
                                      "event_type": ["view"]}), name="one")
    f = spectral_item_factors(one, dim=8)  # a 2 x 2 matrix (padding row and column included): one factor
    assert f is not None and f.shape == (2, 1) and f[0, 0] == 0 and f[1, 0] != 0
