"""Ragged integer arrays: many variable-length rows in two flat numpy arrays (CSR layout)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ragged:
    """Rows of different lengths stored as ``values[offsets[i]:offsets[i+1]]``.

    Used for users' chronological item sequences, evaluation targets and candidate sets; cheap to slice and
    to turn into a padded batch for a sequence model.
    """

    offsets: np.ndarray  # (n_rows + 1,) int64, offsets[0] == 0
    values: np.ndarray  # (nnz,)

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) == 0 or self.offsets[0] != 0:
            raise ValueError("offsets must be 1-d and start at 0")
        if self.offsets[-1] != len(self.values):
            raise ValueError(f"offsets end at {self.offsets[-1]} but there are {len(self.values)} values")

    @classmethod
    def from_lists(
        cls, rows: Sequence[Sequence[int]] | Sequence[np.ndarray], dtype: type = np.int64
    ) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = (
            np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if len(rows) and offsets[-1] else
            np.zeros(0, dtype=dtype)
        )
        return cls(offsets, values)

    @classmethod
    def from_groups(cls, group: np.ndarray, values: np.ndarray, n_groups: int) -> Ragged:
        """Build from a ``group`` index per value, already sorted by group (stable order inside a group)."""
        group = np.asarray(group, dtype=np.int64)  # an empty column may arrive untyped (object)
        counts = np.bincount(group, minlength=n_groups)[:n_groups]
        offsets = np.zeros(n_groups + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(offsets, np.asarray(values))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows: np.ndarray | Sequence[int]) -> Ragged:
        """The selected rows, in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1] == 0:
            return Ragged(offsets, self.values[:0])
        # Gather positions without a Python loop: start of each row repeated, plus a running index.
        pos = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Ragged(offsets, self.values[pos])

    def emptied(self, rows: np.ndarray | Sequence[int]) -> Ragged:
        """The same rows, with the given ones left empty (their values removed, not just hidden)."""
        drop = np.zeros(len(self), dtype=bool)
        drop[np.asarray(rows, dtype=np.int64)] = True
        lengths = np.where(drop, 0, self.lengths)
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return Ragged(offsets, self.values[~np.repeat(drop, self.lengths)])

    def row_ids(self) -> np.ndarray:
        """The row of every value: ``[0, 0, 1, 2, 2, 2, ...]``."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def windows(self, rows: np.ndarray, ends: np.ndarray, width: int, pad: int = 0) -> np.ndarray:
        """A dense left-padded ``(len(rows), width)`` array: values ``ends[i] - width .. ends[i] - 1`` of row
        ``rows[i]`` (positions within the row; those before its start are ``pad``), newest in the last
        column."""
        rows = np.asarray(rows, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        if len(self.values) == 0:
            return np.full((len(rows), width), pad, dtype=np.int64)
        pos = ends[:, None] - width + np.arange(width)[None, :]  # (len(rows), width) positions within the row
        idx = np.clip(self.offsets[rows][:, None] + pos, 0, len(self.values) - 1)
        return np.where(pos >= 0, self.values[idx], pad)

    def last(self, n: int, pad: int = 0, left_pad: bool = True) -> np.ndarray:
        """A dense ``(rows, n)`` array of each row's last ``n`` values, padded with ``pad``.

        Left padding (the default) puts the newest value in the last column, as sequence models expect.
        """
        out = self.windows(np.arange(len(self)), self.lengths, n, pad)
        if left_pad:
            return out
        k = np.minimum(self.lengths, n)  # values per row, at columns n - k .. n - 1: move them to the front
        cols = np.minimum(np.arange(n)[None, :] + (n - k)[:, None], n - 1)
        return np.where(np.arange(n)[None, :] < k[:, None], np.take_along_axis(out, cols, axis=1), pad)

    def to_lists(self) -> list[list[int]]:
        return [r.tolist() for r in self]

    def to_csr(self, n_cols: int, data: np.ndarray | None = None):  # -> scipy.sparse.csr_matrix
        """A ``(rows, n_cols)`` sparse matrix with a 1 (or ``data``) at every value; duplicates are summed."""
        import scipy.sparse as sp

        d = np.ones(len(self.values), dtype=np.float32) if data is None else data
        m = sp.csr_matrix((d, self.values.astype(np.int64), self.offsets), shape=(len(self), n_cols))
        m.sum_duplicates()
        return m


#: Windows per row for :func:`window_bounds`: "last" (one per row) or "all" (consecutive windows).
WINDOWS = ("last", "all")


def window_bounds(lengths: np.ndarray, max_len: int, windows: str = "last") -> tuple[np.ndarray, np.ndarray]:
    """``(row, end)`` of every next-event training window over rows of ``lengths`` values: window ``i`` holds
    values ``max(0, end - max_len - 1)`` to ``end - 1`` of row ``row[i]`` (gather them with
    :meth:`Ragged.windows`, width ``max_len + 1``).

    ``"last"`` gives each row with at least two values its last window; ``"all"`` also the windows before it,
    ending ``max_len`` values apart (consecutive windows share one value, the input that predicts the first
    target of the next), down to a first window of at least two values. Newest windows come first per row.
    Rows are in increasing order.
    """
    if windows not in WINDOWS:
        raise ValueError(f"windows must be one of {WINDOWS}, got {windows!r}")
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = np.flatnonzero(lengths >= 2)
    if windows == "last":
        return rows, lengths[rows]
    # windows of a row of length L end at L, L - m, L - 2m, ... while at least 2 events remain
    n_win = (lengths[rows] - 2) // max_len + 1
    row = np.repeat(rows, n_win)
    first = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(n_win, out=first[1:])
    k = np.arange(len(row)) - np.repeat(first[:-1], n_win)  # 0 = newest window
    return row, lengths[row] - k * max_len
