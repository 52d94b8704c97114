"""The retrieve stage: every retriever proposes its top-N unseen items for a history, with its score.

Two kinds of retriever:

* **Models** (:data:`MODEL_RETRIEVERS`): any fitted lmrec recommender: SeqRec, EASE, ItemKNN, ALS, MultiTask
  (whose next-action-type and value heads also become features) and ContentLM (the user's language-model
  vector, the mean of the history's text vectors, against each item's).
  SeqRec, EASE, ItemKNN and ContentLM are fitted by :class:`~lmrec.models.auto.Auto`'s own machinery (its
  component plan: SeqRec's item representation and settings, its bounded early stopping), so the pipeline and
  Auto fit them the same way.
* **Simple** ones computed from the fitting data: ``popular`` (events per item), ``trending`` (events in the
  most recent tenth of the fitting events) and ``categories`` ("more from the categories the user engages
  with": the recency-weighted share of the history in each category, summed over the item's categories, ties
  broken by popularity).

:func:`top_candidates` merges the retrievers' lists into one candidate set per row and keeps each retriever's
rank of every candidate (``N + 1`` when the candidate is not in its list).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.ranking import first_occurrences, mask_items, topk
from lmrec.data.schema import PAD

#: Retrievers that are lmrec models (registered name of each).
MODEL_RETRIEVERS: dict[str, str] = {
    "seqrec": "seqrec", "ease": "ease", "itemknn": "itemknn", "als": "als", "content-lm": "content-lm",
    "multitask": "multitask",
}
#: Retrievers computed from the fitting data by the pipeline itself.
SIMPLE_RETRIEVERS: tuple[str, ...] = ("popular", "trending", "categories")
RETRIEVERS: tuple[str, ...] = (*MODEL_RETRIEVERS, *SIMPLE_RETRIEVERS)
#: Retrievers that Auto's component machinery fits.
AUTO_FITTED: tuple[str, ...] = ("seqrec", "ease", "itemknn", "content-lm")
#: Share of the most recent fitting events that count for ``trending``.
TRENDING_SHARE = 0.1
#: Newest history items that the category profile (and the language-model vector) look at, and the decay per
#: step back in the history.
PROFILE_WINDOW = 50
PROFILE_DECAY = 0.9


def parse_retrievers(spec: str) -> list[str] | None:
    """``auto`` → ``None`` (the pipeline's rule), else the listed names, checked."""
    if spec.strip() == "auto":
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = sorted(set(names) - set(RETRIEVERS))
    if unknown or not names:
        raise ValueError(f"retrievers: choose among {', '.join(RETRIEVERS)} (or auto), got {spec!r}")
    return list(dict.fromkeys(names))


def trending_counts(dataset: Dataset, share: float = TRENDING_SHARE) -> np.ndarray:
    """Events per item among the most recent ``share`` of the dataset's events (by timestamp)."""
    ts = dataset.events["timestamp"].to_numpy()
    items = dataset.events["item_idx"].to_numpy()
    out = np.zeros(dataset.item_map.size, dtype=np.float32)
    if len(ts):
        cut = np.quantile(ts, 1.0 - share)
        recent = ts >= cut
        out += np.bincount(items[recent], minlength=len(out)).astype(np.float32)[: len(out)]
    return out


def recency_weights(histories: Ragged, window: int = PROFILE_WINDOW, decay: float = PROFILE_DECAY
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The last ``window`` items of each row (``(rows, window)``, left-padded with PAD) and their weights
    (``decay ** steps back``, 0 at padding)."""
    last = histories.last(window, pad=PAD)
    steps = np.arange(last.shape[1] - 1, -1, -1, dtype=np.float32)
    w = np.broadcast_to(decay ** steps, last.shape).astype(np.float32)
    return last, np.where(last != PAD, w, 0.0).astype(np.float32)


class CategoryIndex:
    """Items × categories incidence (built from a model's ``item_categories_``) for category features."""

    def __init__(self, item_categories: list[list[str]]) -> None:
        names = sorted({c for cats in item_categories for c in cats})
        self.names = names
        col = {c: j for j, c in enumerate(names)}
        rows, cols = [], []
        for i, cats in enumerate(item_categories):
            for c in cats:
                rows.append(i)
                cols.append(col[c])
        n = len(item_categories)
        self.matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                                    shape=(n, max(1, len(names))))
        # each item's first category (-1: none), for "steps since the user last touched it"
        self.first = np.full(n, -1, dtype=np.int64)
        for i, cats in enumerate(item_categories):
            if cats:
                self.first[i] = col[cats[0]]

    def profile(self, histories: Ragged) -> np.ndarray:
        """``(rows, categories)``: the recency-weighted share of the row's recent history in each category."""
        last, w = recency_weights(histories)
        n_c = self.matrix.shape[1]
        safe = np.where(last < self.matrix.shape[0], last, PAD).ravel()
        # each (row, history slot)'s categories, gathered from the CSR arrays: numpy only (a scipy product
        # costs a millisecond of constructors per request)
        rows, cats, weight = self._gather(safe, np.repeat(np.arange(len(last)), last.shape[1]), w.ravel())
        prof = np.bincount(rows * n_c + cats, weights=weight, minlength=len(last) * n_c)
        prof = prof.reshape(len(last), n_c).astype(np.float32)
        total = w.sum(axis=1, keepdims=True)
        return prof / np.maximum(total, 1e-9)

    def _gather(self, items: np.ndarray, rows: np.ndarray, weights: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each ``items[j]``'s categories: ``rows[j]``, the category and ``weights[j]`` (× the entry)."""
        indptr, indices = self.matrix.indptr, self.matrix.indices
        lens = (indptr[items + 1] - indptr[items]).astype(np.int64)
        total = int(lens.sum())
        if not total:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float64)
        ends = np.cumsum(lens)
        starts = indptr[items].astype(np.int64)
        pos = np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lens), lens)
        return (np.repeat(rows, lens), indices[pos].astype(np.int64),
                np.repeat(weights, lens) * self.matrix.data[pos])

    def share(self, cand: np.ndarray, prof: np.ndarray) -> np.ndarray:
        """``(rows, width)``: each candidate's profile share, summed over the candidate's categories."""
        rows, width = cand.shape
        flat = np.arange(rows * width, dtype=np.int64)
        slot, cats, weight = self._gather(cand.ravel().astype(np.int64), flat, np.ones(rows * width))
        vals = weight * prof[slot // max(width, 1), cats]
        out = np.bincount(slot, weights=vals, minlength=rows * width)
        return out.reshape(rows, width).astype(np.float32)

    def steps_since(self, histories: Ragged) -> np.ndarray:
        """``(rows, categories)``: events since the row last touched each category (``inf``: never)."""
        n_c = self.matrix.shape[1]
        out = np.full((len(histories), n_c), np.inf, dtype=np.float32)
        rows = histories.row_ids()
        vals = histories.values.astype(np.int64)
        if not len(vals):
            return out
        ends = np.repeat(histories.offsets[1:], histories.lengths)
        back = (ends - 1 - np.arange(len(vals))).astype(np.float32)  # 0 for the newest event
        safe = np.where(vals < len(self.first), vals, PAD)
        cat = self.first[safe]
        keep = cat >= 0
        # newest touch: the minimum steps back per (row, category)
        np.minimum.at(out, (rows[keep], cat[keep]), back[keep])
        return out

    def scores(self, histories: Ragged, popularity: np.ndarray, prof: np.ndarray | None = None) -> np.ndarray:
        """The ``categories`` retriever: profile · item categories, plus a popularity tie-break below 0.01
        (``prof``: :meth:`profile` of ``histories``, when computed already)."""
        prof = self.profile(histories) if prof is None else prof
        s = np.ascontiguousarray(np.asarray(self.matrix @ prof.T, dtype=np.float32).T)
        pop = np.log1p(np.asarray(popularity, dtype=np.float32))
        pop = pop / max(float(pop.max(initial=0.0)), 1.0)
        s += 0.01 * pop[None, : s.shape[1]]
        return s


def top_candidates(zs: dict[str, np.ndarray], histories: Ragged, n: int, extra: Ragged | None = None,
                   orders: dict[str, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Merge each retriever's top ``n`` unseen items (by its row of scores in ``zs``).

    Returns ``(cand, ok, ranks, tops)``: candidate items ``(rows, width)`` (PAD where a slot is empty),
    which slots are real (not padding, not a repeat), each retriever's 1-based rank of each candidate
    ``(R, rows, width)`` (``n + 1`` when not in its list) and each retriever's own top list. ``extra`` adds
    items per row (hard negatives) to the candidates, even seen ones. ``orders``: for a retriever whose
    scores are the same for every row (popular, trending), its items best first (:func:`static_order`),
    from which its top lists are read without ranking the catalogue again.
    """
    tops: dict[str, np.ndarray] = {}
    for name, z in zs.items():
        if orders is not None and name in orders:
            tops[name] = _top_from_order(orders[name], histories, n, z.shape[1])
            continue
        zm = np.array(z, dtype=np.float32, copy=True)
        zm[:, PAD] = -np.inf
        mask_items(zm, histories)
        k = max(1, min(n, zm.shape[1] - 1))
        idx, val = topk(zm, k)
        idx[~np.isfinite(val)] = PAD
        tops[name] = idx
    parts = list(tops.values())
    if extra is not None and len(extra.values):
        width = int(extra.lengths.max())
        e = np.full((len(extra), width), PAD, dtype=np.int64)
        pos = np.arange(len(extra.values)) - np.repeat(extra.offsets[:-1], extra.lengths)
        e[extra.row_ids(), pos] = extra.values
        parts.append(e)
    cand = np.concatenate(parts, axis=1) if parts else np.zeros((len(histories), 0), dtype=np.int64)
    ok = first_occurrences(cand)
    cand = np.where(ok, cand, PAD)
    ranks = np.full((len(tops), *cand.shape), n + 1, dtype=np.float32)
    if cand.shape[1]:
        width = np.int64(max(next(iter(zs.values())).shape[1], int(cand.max(initial=0)) + 1))
        ck = (np.arange(len(cand), dtype=np.int64)[:, None] * width + cand).ravel()
        for r, idx in enumerate(tops.values()):
            # each candidate's position in this retriever's list: a sorted search over (row, item) keys
            keys = (np.arange(len(idx), dtype=np.int64)[:, None] * width + idx).ravel()
            pos = np.tile(np.arange(1, idx.shape[1] + 1, dtype=np.float32), len(idx))
            real = idx.ravel() != PAD
            keys, pos = keys[real], pos[real]
            if not len(keys):
                continue
            o = np.argsort(keys, kind="stable")
            keys, pos = keys[o], pos[o]
            j = np.minimum(np.searchsorted(keys, ck), len(keys) - 1)
            ranks[r] = np.where(keys[j] == ck, pos[j], np.float32(n + 1)).reshape(cand.shape)
    return cand, ok, ranks, tops


def static_order(z: np.ndarray) -> np.ndarray:
    """The items of one row of scores, best first (equal scores: lower index first), PAD and non-finite
    scores left out: the order :func:`~lmrec.data.ranking.topk` ranks them in."""
    z = np.asarray(z, dtype=np.float32)
    items = np.flatnonzero(np.isfinite(z))
    items = items[items != PAD]
    return items[np.lexsort((items, -z[items]))].astype(np.int64)


def _top_from_order(order: np.ndarray, histories: Ragged, n: int, width: int) -> np.ndarray:
    """Each row's first ``n`` items of ``order`` that are not in its history (PAD-padded), as ``topk`` of the
    masked row would give them."""
    k = max(1, min(n, width - 1))
    out = np.full((len(histories), k), PAD, dtype=np.int64)
    for r in range(len(histories)):
        seen = histories[r]
        head = order[: k + len(seen)]
        if len(seen):
            head = head[~np.isin(head, seen)]
        head = head[:k]
        out[r, : len(head)] = head
    return out
