"""Raw id ↔ dense index vocabularies. Index 0 is :data:`~lmrec.data.schema.PAD`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from lmrec.data.schema import PAD


class UnknownIdError(KeyError):
    """A raw id that the vocabulary has never seen."""

    def __init__(self, kind: str, raw_id: str) -> None:
        super().__init__(f"unknown {kind} id {raw_id!r}")
        self.kind = kind
        self.raw_id = raw_id

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return self.args[0]


class IdMap:
    """An immutable vocabulary from raw string ids to dense indices ``1..n`` (0 is padding).

    Parameters
    ----------
    raw_ids:
        Distinct raw ids in the order their indices are given (index ``i + 1`` for ``raw_ids[i]``).
    kind:
        ``"user"`` or ``"item"``, used in error messages.
    """

    __slots__ = ("_index", "_raw", "kind")

    def __init__(self, raw_ids: Iterable[str], kind: str = "item") -> None:
        raw = [str(r) for r in raw_ids]
        index = {r: i + 1 for i, r in enumerate(raw)}
        if len(index) != len(raw):
            seen: set[str] = set()
            dup = next(r for r in raw if r in seen or seen.add(r))  # type: ignore[func-returns-value]
            raise ValueError(f"{kind} id {dup!r} appears twice in the vocabulary")
        self._raw = np.array([""] + raw, dtype=object)  # position 0 = PAD
        self._index = index
        self.kind = kind

    def __len__(self) -> int:
        """Number of real ids (padding excluded)."""
        return len(self._index)

    @property
    def size(self) -> int:
        """Number of rows an embedding table needs: ``len(self) + 1`` for padding."""
        return len(self._index) + 1

    def __contains__(self, raw_id: object) -> bool:
        return str(raw_id) in self._index

    def index(self, raw_id: str) -> int:
        """The dense index of one raw id; :class:`UnknownIdError` when it is not in the vocabulary."""
        try:
            return self._index[str(raw_id)]
        except KeyError:
            raise UnknownIdError(self.kind, str(raw_id)) from None

    def get(self, raw_id: str, default: int = PAD) -> int:
        return self._index.get(str(raw_id), default)

    def indices(self, raw_ids: Iterable[str], *, strict: bool = True) -> np.ndarray:
        """Dense indices of many raw ids (``int64``). Unknown ids raise, or map to ``PAD`` when not strict."""
        if strict:
            return np.fromiter((self.index(r) for r in raw_ids), dtype=np.int64)
        return np.fromiter((self._index.get(str(r), PAD) for r in raw_ids), dtype=np.int64)

    def raw(self, idx: int) -> str:
        if idx <= PAD or idx > len(self._index):
            raise IndexError(f"{self.kind} index {idx} is outside 1..{len(self._index)}")
        return str(self._raw[idx])

    def raws(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        """Raw ids of many indices, as an object array of ``str`` (PAD maps to ``""``)."""
        return self._raw[np.asarray(idx, dtype=np.int64)]

    @property
    def raw_ids(self) -> list[str]:
        """All raw ids, in index order (index 1 first)."""
        return [str(r) for r in self._raw[1:]]

    def extend(self, raw_ids: Iterable[str]) -> IdMap:
        """A new vocabulary with unseen ``raw_ids`` appended; existing indices keep their value."""
        new = [str(r) for r in dict.fromkeys(str(r) for r in raw_ids) if str(r) not in self._index]
        return IdMap(self.raw_ids + new, kind=self.kind)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self.kind == other.kind and self._index == other._index

    def __hash__(self) -> int:  # pragma: no cover - IdMap is used as a value, not a key
        return hash((self.kind, len(self)))

    def __repr__(self) -> str:
        return f"IdMap(kind={self.kind!r}, n={len(self)})"
