import numpy as np
import pytest

from lmrec.data.idmap import IdMap, UnknownIdError
from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD


def test_idmap_reserves_padding_and_round_trips():
    m = IdMap(["a", "b", "c"], kind="item")
    assert len(m) == 3 and m.size == 4
    assert m.index("a") == 1 and m.raw(3) == "c"
    assert list(m.indices(["c", "a"])) == [3, 1]
    assert list(m.indices(["zz"], strict=False)) == [PAD]
    with pytest.raises(UnknownIdError, match="unknown item id 'zz'"):
        m.index("zz")
    m2 = m.extend(["b", "d"])
    assert m2.index("a") == 1 and m2.index("d") == 4 and len(m2) == 4


def test_idmap_rejects_duplicates():
    with pytest.raises(ValueError, match="appears twice"):
        IdMap(["a", "a"])


def test_ragged_take_last_and_csr():
    r = Ragged.from_lists([[1, 2, 3], [], [4]])
    assert r.to_lists() == [[1, 2, 3], [], [4]]
    assert r.take([2, 0]).to_lists() == [[4], [1, 2, 3]]
    assert r.take([1]).to_lists() == [[]]
    assert r.last(2).tolist() == [[2, 3], [0, 0], [0, 4]]
    assert r.last(2, left_pad=False).tolist() == [[2, 3], [0, 0], [4, 0]]
    assert r.last(4, pad=-1).tolist() == [[-1, 1, 2, 3], [-1, -1, -1, -1], [-1, -1, -1, 4]]
    assert r.last(2).dtype == r.values.dtype
    # events 1..2 of row 0 and 0..0 of row 2, left-padded to width 3
    assert r.windows(np.array([0, 2]), np.array([3, 1]), 3).tolist() == [[1, 2, 3], [0, 0, 4]]
    assert r.windows(np.array([0]), np.array([2]), 3, pad=9).tolist() == [[9, 1, 2]]
    assert Ragged.from_lists([[], []]).last(2).tolist() == [[0, 0], [0, 0]]
    m = r.to_csr(5)
    assert m.shape == (3, 5) and m[0, 2] == 1 and m[1].nnz == 0
    assert list(r.row_ids()) == [0, 0, 0, 2]
    with pytest.raises(ValueError):
        Ragged(np.array([0, 2]), np.array([1]))
