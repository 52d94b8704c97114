"""Item groups, the long tail, and exposure-aware re-ranking: one implementation for every path.

A recommendation list gives its slots to item *groups* (a genre, a category, a provider or brand). A list
that fills eight of ten slots with one group, or never shows an item from the long tail, concentrates
exposure whatever the model's accuracy. :func:`rerank` is a greedy re-ranker over a longer candidate list:
it walks the candidates best first and takes the next one that keeps every group of the list at or below a
cap (``max_group_share`` of the ``k`` slots) and leaves room for a minimum number of long-tail items
(``min_tail_share``); when no candidate satisfies the rules it relaxes them rather than return a short list.
Batch recommendations (:func:`lmrec.models.export.write_recommendations`), the evaluation (which measures
what the rules cost in accuracy) and the service all call it, so they re-rank alike.

It sits in the data layer because it needs only item indices, their groups and their popularity.

References
----------
Greedy constrained re-ranking in the line of Zehlike et al., "FA*IR: A Fair Top-k Ranking Algorithm" (CIKM
2017) and Abdollahpouri et al., "Managing Popularity Bias in Recommender Systems with Personalized
Re-ranking" (FLAIRS 2019); exposure shares as in Singh & Joachims, "Fairness of Exposure in Rankings"
(KDD 2018).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.schema import PAD

#: Catalogue tables group items by ``categories`` (a list per item) or by a key of their ``attributes`` JSON.
CATEGORIES = "categories"


def popularity_buckets(popularity: np.ndarray) -> np.ndarray:
    """``0`` head / ``1`` torso / ``2`` tail per item index, by training popularity.

    Items are sorted by events, most first; the head is the most popular items that hold the first third of
    all training events, the torso the next third, the tail the rest (including items with no events). Padding
    is tail.
    """
    pop = np.asarray(popularity, dtype=np.float64).copy()
    pop[PAD] = 0.0
    order = np.argsort(-pop, kind="stable")
    total = pop.sum()
    out = np.full(len(pop), 2, dtype=np.int8)
    if total <= 0:
        return out
    before = np.concatenate([[0.0], np.cumsum(pop[order])[:-1]]) / total  # share held by more popular items
    out[order] = np.where(before < 1 / 3, 0, np.where(before < 2 / 3, 1, 2))
    out[pop == 0] = 2
    return out


def tail_items(popularity: np.ndarray) -> np.ndarray:
    """``(n_items + 1,)`` bool: the long tail (the least popular items holding the last third of events)."""
    out = popularity_buckets(popularity) == 2
    out[PAD] = False
    return out


@dataclass(frozen=True)
class ItemGroups:
    """Which groups each item index belongs to: a sparse ``(n_items + 1, n_groups)`` 0/1 matrix and labels.

    An item may be in several groups (a film is Comedy and Romance) or none; row 0 (padding) is empty.
    """

    membership: sp.csr_matrix
    labels: tuple[str, ...]
    by: str = CATEGORIES

    @classmethod
    def from_lists(cls, groups: Sequence[Sequence[str] | None], by: str = CATEGORIES) -> ItemGroups:
        """``groups[i]``: the group names of item index ``i`` (index 0 is padding, ignored)."""
        labels = sorted({g for row in groups[1:] for g in (row or ()) if g})
        code = {g: j for j, g in enumerate(labels)}
        rows, cols = [], []
        for i, row in enumerate(groups):
            if i == PAD:
                continue
            for g in dict.fromkeys(row or ()):
                if g:
                    rows.append(i)
                    cols.append(code[g])
        m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                          shape=(len(groups), len(labels)))
        return cls(m, tuple(labels), by)

    @classmethod
    def of_items(cls, items: pl.DataFrame, by: str = CATEGORIES) -> ItemGroups:
        """Groups from a dataset's item table (one row per item index, in order): its ``categories`` lists, or
        the value of key ``by`` in each item's ``attributes`` JSON (``brand``, ``store``...; a list value puts
        the item in each group)."""
        if by == CATEGORIES:
            rows = [list(c or []) for c in items[CATEGORIES].to_list()]
        else:
            rows = []
            for text in items["attributes"].to_list():
                value = _json_field(text, by)
                if value is None or value == "":
                    rows.append([])
                elif isinstance(value, list):
                    rows.append([str(v) for v in value if v not in (None, "")])
                else:
                    rows.append([str(value)])
            if not any(rows):
                raise ValueError(f"no item has an attribute {by!r}; group items by {CATEGORIES!r} or an "
                                 "attribute key the item table holds")
        return cls.from_lists([[], *rows], by)

    @property
    def n_groups(self) -> int:
        return len(self.labels)

    def weights(self) -> sp.csr_matrix:
        """Membership with each item's row summing to 1 (an item in three groups counts a third to each), so
        that shares over groups add up to 1."""
        m = self.membership.tocsr(copy=True)
        n = np.asarray(m.sum(axis=1)).ravel()
        scale = np.divide(1.0, n, out=np.zeros_like(n, dtype=np.float64), where=n > 0)
        return sp.csr_matrix(sp.diags(scale) @ m)

    def padded(self, n_rows: int) -> ItemGroups:
        """The same groups over ``n_rows`` item indices (items added later belong to no group)."""
        m = self.membership
        if m.shape[0] >= n_rows:
            return ItemGroups(sp.csr_matrix(m[:n_rows]), self.labels, self.by)
        extra = sp.csr_matrix((n_rows - m.shape[0], m.shape[1]), dtype=m.dtype)
        return ItemGroups(sp.csr_matrix(sp.vstack([m, extra])), self.labels, self.by)


def _json_field(text: str | None, key: str) -> object:
    if not text:
        return None
    try:
        obj = json.loads(text)
    except (TypeError, ValueError):
        return None
    return obj.get(key) if isinstance(obj, dict) else None


@dataclass(frozen=True)
class ExposurePolicy:
    """Rules for one recommendation list of ``k`` items.

    Parameters
    ----------
    max_group_share:
        No item group may hold more than this share of the list's slots (``1`` = no cap). The cap is
        ``max(1, floor(max_group_share * k))`` items; an item in several groups counts toward each.
    min_tail_share:
        At least this share of the slots goes to long-tail items (``0`` = no minimum), rounded up:
        ``ceil(min_tail_share * k)`` items.
    pool:
        The re-ranker chooses among the model's top ``pool * k`` candidates.
    """

    max_group_share: float = 1.0
    min_tail_share: float = 0.0
    pool: int = 10

    def __post_init__(self) -> None:
        if not 0.0 < self.max_group_share <= 1.0:
            raise ValueError(f"max_group_share must be in (0, 1], got {self.max_group_share}")
        if not 0.0 <= self.min_tail_share <= 1.0:
            raise ValueError(f"min_tail_share must be in [0, 1], got {self.min_tail_share}")
        if self.pool < 1:
            raise ValueError(f"pool must be >= 1, got {self.pool}")

    @property
    def active(self) -> bool:
        return self.max_group_share < 1.0 or self.min_tail_share > 0.0

    def candidates(self, k: int) -> int:
        """How many candidates to fetch for a list of ``k``."""
        return k * self.pool if self.active else k

    def cap(self, k: int) -> int:
        return max(1, math.floor(self.max_group_share * k + 1e-9))

    def tail_slots(self, k: int) -> int:
        return min(k, math.ceil(self.min_tail_share * k - 1e-9))

    def describe(self) -> str:
        parts = []
        if self.max_group_share < 1.0:
            parts.append(f"≤{self.max_group_share:.0%} of a list per item group")
        if self.min_tail_share > 0.0:
            parts.append(f"≥{self.min_tail_share:.0%} long-tail items")
        return ", ".join(parts) + f" (greedy over the top {self.pool}×k)" if parts else "none"


def rerank(candidates: np.ndarray, k: int, policy: ExposurePolicy, groups: ItemGroups | None,
           tail: np.ndarray | None) -> np.ndarray:
    """Positions (into ``candidates``) of the ``k`` items one list keeps, in list order.

    Parameters
    ----------
    candidates:
        ``(n,)`` item indices, best first; :data:`PAD` entries are never picked.
    k:
        List length.
    policy:
        The rules; an inactive policy keeps the first ``k``.
    groups:
        Item groups (needed when ``max_group_share < 1``).
    tail:
        ``(n_items + 1,)`` bool long-tail flags (needed when ``min_tail_share > 0``).

    Returns
    -------
    ``int64 (min(k, real candidates),)`` positions. Greedy: each slot takes the best remaining candidate
    that keeps every group within the cap and leaves enough slots for the tail minimum. When no candidate
    fits, the tail rule is kept and the cap bent as little as possible (the candidate that pushes the fewest
    groups over it); without a tail candidate left, the tail rule gives way. A list is never cut short by the
    rules.
    """
    cand = np.asarray(candidates, dtype=np.int64)
    real = np.flatnonzero(cand != PAD)
    n_pick = min(k, len(real))
    if not policy.active or n_pick == 0:
        return real[:n_pick].astype(np.int64)
    use_cap = policy.max_group_share < 1.0 and groups is not None and groups.n_groups > 0
    need_tail = policy.tail_slots(k) if tail is not None else 0
    items = cand[real]
    if use_cap:
        assert groups is not None
        known = np.where(items < groups.membership.shape[0], items, PAD)  # items added later: no group
        m = groups.membership[known].toarray() > 0  # (n, G); row PAD is empty
    else:
        m = np.zeros((len(items), 0), dtype=bool)
    is_tail = (np.asarray(tail, dtype=bool)[np.minimum(items, len(tail) - 1)] & (items < len(tail))
               if tail is not None else np.zeros(len(items), dtype=bool))
    cap = policy.cap(k)
    counts = np.zeros(m.shape[1], dtype=np.int64)
    available = np.ones(len(items), dtype=bool)
    picked: list[int] = []
    n_tail = 0
    order = np.arange(len(items), dtype=np.float64)
    for slot in range(n_pick):
        must_tail = need_tail - n_tail >= n_pick - slot and n_tail < need_tail
        # groups the candidate would push over the cap (0: it fits); the best fitting candidate wins, and
        # when none fits, the one that breaks the fewest groups
        over = (m[:, counts >= cap].sum(axis=1) if use_cap else np.zeros(len(items)))
        key = over * len(items) + order
        pool = available & is_tail if must_tail and (available & is_tail).any() else available
        best = int(np.argmin(np.where(pool, key, np.inf)))
        picked.append(best)
        available[best] = False
        n_tail += int(is_tail[best])
        if use_cap:
            counts += m[best]
    return real[np.asarray(picked, dtype=np.int64)]


def rerank_rows(candidates: np.ndarray, scores: np.ndarray | None, k: int, policy: ExposurePolicy,
                groups: ItemGroups | None, tail: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rerank` for every row of ``(rows, n)`` candidates (and their scores): ``(rows, k)`` item
    indices and scores, padded with :data:`PAD` / ``-inf``."""
    cand = np.asarray(candidates, dtype=np.int64)
    sc = (np.zeros(cand.shape, dtype=np.float32) if scores is None else np.asarray(scores, dtype=np.float32))
    out_i = np.zeros((len(cand), k), dtype=np.int64)
    out_s = np.full((len(cand), k), -np.inf, dtype=np.float32)
    for r in range(len(cand)):
        pos = rerank(cand[r], k, policy, groups, tail)
        out_i[r, : len(pos)] = cand[r, pos]
        out_s[r, : len(pos)] = sc[r, pos]
    return out_i, out_s


__all__ = ["CATEGORIES", "ExposurePolicy", "ItemGroups", "popularity_buckets", "rerank", "rerank_rows",
           "tail_items"]
