"""Training windows: one per user (SASRec) or every window, each training event a target exactly once."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.ragged import Ragged, window_bounds
from lmrec.data.schema import PAD
from lmrec.models.seqrec.rows import sequence_rows
from tests.training.synthetic import cyclic_dataset


def test_window_bounds_cover_every_event_once() -> None:
    lengths = np.array([0, 1, 2, 5, 9, 10, 23])
    row, end = window_bounds(lengths, max_len=4, windows="all")
    # row 6 (23 events): windows end at 23, 19, 15, 11, 7, 3 (the last one has 3 events, ≥ 2)
    assert end[row == 6].tolist() == [23, 19, 15, 11, 7, 3]
    assert end[row == 4].tolist() == [9, 5]  # 9 - 2*4 = 1 event left: not a window
    assert end[row == 5].tolist() == [10, 6, 2]
    assert 0 not in row and 1 not in row
    for r, n in enumerate(lengths):
        targets = set()
        for e in end[row == r]:
            start = max(0, e - 5)
            targets.update(range(start + 1, e))  # positions predicted by this window
        assert targets == set(range(1, n)), r  # every event but the first is a target exactly once
        n_targets = sum(e - max(0, e - 5) - 1 for e in end[row == r])
        assert n_targets == max(n - 1, 0)
    last_row, last_end = window_bounds(lengths, max_len=4, windows="last")
    assert last_row.tolist() == [2, 3, 4, 5, 6] and last_end.tolist() == [2, 5, 9, 10, 23]
    with pytest.raises(ValueError, match="windows"):
        window_bounds(lengths, 4, "every")


def test_sequence_rows_all_windows_match_the_histories() -> None:
    ds = cyclic_dataset(n_users=5, length=12)
    last = sequence_rows(ds, 4)
    every = sequence_rows(ds, 4, with_types=True, gap_buckets=8, windows="all")
    assert last["items"].shape == (5, 5)
    # 12 events, max_len 4: windows end at 12, 8, 4 → 3 per user, the newest first
    assert every["items"].shape == (15, 5)
    assert every["types"].shape == every["gaps"].shape == (15, 5)
    np.testing.assert_array_equal(every["items"][::3], last["items"])
    seqs: Ragged = ds.sequences
    users = np.flatnonzero(seqs.lengths >= 2)
    for i, u in enumerate(users):
        s = seqs[u]
        np.testing.assert_array_equal(every["items"][3 * i + 1], s[3:8])
        np.testing.assert_array_equal(every["items"][3 * i + 2], [PAD, *s[0:4]])
        np.testing.assert_array_equal(every["types"][3 * i + 1], ds.type_sequences[u][3:8] + 1)
    assert (every["types"][every["items"] == PAD] == 0).all()
    assert (every["gaps"][every["items"] == PAD] == 0).all()
