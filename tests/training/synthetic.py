"""A tiny sequential dataset with an obvious rule: after item ``k`` comes item ``k + 1`` (cyclically)."""

from __future__ import annotations

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset

N_ITEMS = 24


def cyclic_dataset(n_users: int = 48, length: int = 12, seed: int = 0) -> Dataset:
    """User ``u`` starts at a random item and walks ``k → k + 1 (mod N_ITEMS)``.

    Events are an hour to a day apart, alternating ``cart`` and ``view``; items have titles.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(N_ITEMS))
        t = 1_600_000_000 + int(rng.integers(10_000))
        for j in range(length):
            t += int(rng.integers(3600, 86_400))
            kind = "view" if j % 2 else "cart"
            rows.append((f"e{u}-{j}", f"u{u}", f"i{(start + j) % N_ITEMS}", t, kind, None))
    events = pl.DataFrame(rows, schema=["event_id", "user_id", "item_id", "timestamp", "event_type", "value"],
                          orient="row")
    items = pl.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)],
                          "title": [f"item number {i}" for i in range(N_ITEMS)]})
    return Dataset.build(events, items, name="cyclic")


def cyclic_vectors(ds: Dataset, dim: int = 6) -> np.ndarray:
    """Text vectors that place item ``k`` on a circle (angle ∝ k), so neighbours in the cycle are close."""
    v = np.zeros((ds.item_map.size, dim), dtype=np.float32)
    for idx in range(1, ds.item_map.size):
        k = int(ds.item_map.raw(idx)[1:])
        a = 2 * np.pi * k / N_ITEMS
        v[idx, :2] = np.cos(a), np.sin(a)
        v[idx, 2:4] = np.cos(2 * a), np.sin(2 * a)
    return v


def next_item(ds: Dataset, idx: int) -> int:
    """The index of the item that follows item index ``idx`` in the cycle."""
    k = int(ds.item_map.raw(idx)[1:])
    return ds.item_map.index(f"i{(k + 1) % N_ITEMS}")
