"""The RecBole atomic files of ``benchmarks/recbole_sasrec.py`` carry lmrec's leave-one-out split exactly:
the same users, items and order, the training rows RecBole's own augmentation would make, and validation and
test rows that are the split's. Runs without RecBole installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.splits import leave_one_out
from tests.benchmarks.scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("recbole_sasrec")


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(3)
    n = 1500
    users = rng.integers(0, 60, n)
    items = rng.integers(0, 90, n)
    ts = rng.integers(1_600_000_000, 1_600_000_000 + 5_000_000, n)
    ds = Dataset.build(pl.DataFrame({
        "event_id": [f"e{k}" for k in range(n)], "user_id": [f"u{u}" for u in users],
        "item_id": [f"i{i}" for i in items], "timestamp": ts, "event_type": ["view"] * n,
    }), name="synthetic")
    return leave_one_out(ds)


@pytest.mark.parametrize("max_len", [3, 50])
def test_atomic_files_round_trip_the_split(bench, split, tmp_path: Path, max_len: int) -> None:
    paths = bench.write_atomic(split, tmp_path / "Office", max_len)
    assert sorted(p.name for p in paths.values()) == ["Office.test.inter", "Office.train.inter",
                                                        "Office.valid.inter"]

    # train: one row per position after a user's first, in order; the sequences rebuild exactly
    train = bench.read_atomic(paths["train"])
    seqs = split.train.sequences
    rebuilt: dict[int, list[int]] = {}
    for u, lst, target, hist in train:
        assert 1 <= len(lst) <= max_len and hist == lst
        seq = rebuilt.setdefault(u, [])
        if not seq:
            seq.append(lst[0])
        assert lst == seq[-max_len:]  # the newest max_len items before the target, oldest first
        seq.append(target)
    assert len(train) == sum(max(0, len(seqs[u]) - 1) for u in range(len(seqs)))
    for u in range(len(seqs)):
        assert rebuilt.get(u, list(seqs[u][:1])) == seqs[u].tolist()

    # valid and test: the split's users, whole histories and targets, in the split's order
    for part, ev in (("valid", split.valid), ("test", split.test)):
        rows = bench.read_atomic(paths[part])
        assert [r[0] for r in rows] == ev.users.tolist()
        assert [r[2] for r in rows] == [int(t[0]) for t in ev.targets]
        assert [r[3] for r in rows] == [h.tolist() for h in ev.history]
        assert [r[1] for r in rows] == [h[-max_len:].tolist() for h in ev.history]
    # the test history is the validation history plus the validation target
    valid, test = bench.read_atomic(paths["valid"]), bench.read_atomic(paths["test"])
    assert all(t[3] == v[3] + [v[2]] for v, t in zip(valid, test, strict=True))


def test_rescore_counts_hits_at_their_rank(bench) -> None:
    top = np.array([[5, 1, 2], [7, 8, 9], [3, 4, 6]])
    got = bench.rescore(top, np.array([1, 0, 3]), k=2)
    assert got["HR@2"] == pytest.approx(2 / 3)
    assert got["NDCG@2"] == pytest.approx((1 / np.log2(3) + 0 + 1.0) / 3)
    # a hit below the cut-off does not count
    assert bench.rescore(top, np.array([2, 9, 6]), k=2) == {"NDCG@2": 0.0, "HR@2": 0.0}
