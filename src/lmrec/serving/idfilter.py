"""A Bloom filter over the stored event ids: proves most new ids absent without asking the store.

Without an index on ``event_id`` (it would slow bulk imports five-fold, see ``Store``), asking DuckDB whether
an id exists scans the column: several milliseconds per request on a few hundred thousand events, growing with
the table. The filter answers "surely absent" for a new id in microseconds; only "maybe present" (a resend,
or a false positive, ~1 % at the sized capacity) costs a store lookup. It is sized at start for twice the
stored ids (at least a million); past its capacity the false-positive rate, and so the lookups, grow slowly,
until the next start sizes it again. It lives in memory only and is rebuilt from the store at every start.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import polars as pl

_BITS_PER_ID = 10  # with 7 hashes: about 1 % false positives at capacity
_HASHES = 7


class IdFilter:
    """Add ids, and ask which of some ids may have been added (no false negatives)."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        bits = 1 << max(20, int(capacity * _BITS_PER_ID - 1).bit_length())
        self._mask = np.uint64(bits - 1)
        self._bits = np.zeros(bits // 8, dtype=np.uint8)
        self._lock = threading.Lock()
        self.capacity = capacity
        self.count = 0

    def _positions(self, ids: pl.Series) -> np.ndarray:
        h1 = ids.hash(seed=0x9E3779B9).to_numpy()
        # The second hash is a SplitMix64 finaliser of the first (one hashing pass over the strings).
        z = h1 ^ (h1 >> np.uint64(30))
        z = z * np.uint64(0xBF58476D1CE4E5B9)
        z = z ^ (z >> np.uint64(27))
        z = z * np.uint64(0x94D049BB133111EB)
        h2 = (z ^ (z >> np.uint64(31))) | np.uint64(1)
        steps = np.arange(_HASHES, dtype=np.uint64)
        return (h1[:, None] + steps[None, :] * h2[:, None]) & self._mask  # (n, k), wraps modulo 2**64

    def add(self, ids: Iterable[str] | pl.Series) -> None:
        s = ids if isinstance(ids, pl.Series) else pl.Series(list(ids), dtype=pl.String)
        if len(s) == 0:
            return
        pos = self._positions(s).ravel()
        with self._lock:
            np.bitwise_or.at(self._bits, (pos >> np.uint64(3)).astype(np.int64),
                             (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8)))
            self.count += len(s)

    def may_contain(self, ids: list[str]) -> list[bool]:
        if not ids:
            return []
        pos = self._positions(pl.Series(ids, dtype=pl.String))
        byte = self._bits[(pos >> np.uint64(3)).astype(np.int64)]
        got = (byte >> (pos & np.uint64(7)).astype(np.uint8)) & 1
        return got.all(axis=1).tolist()  # type: ignore[no-any-return]

    @classmethod
    def of_store(cls, store: object) -> IdFilter:
        """A filter holding every event id of an lmrec store (read in one column scan)."""
        ids = pl.from_arrow(store.query_arrow("SELECT event_id FROM events"))["event_id"]  # type: ignore[attr-defined,index]
        f = cls(capacity=max(1_000_000, 2 * len(ids)))
        for start in range(0, len(ids), 1_000_000):
            f.add(ids.slice(start, 1_000_000))
        return f
