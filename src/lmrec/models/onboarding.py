"""Onboarding a new user by active learning: which items to ask about, one answer at a time.

A new user has no history, so any recommender can only guess. Asking "do you know / like these?" about a few
items fixes that, and the question is which items. Asking the most popular ones gets many "yes" answers that
say little (nearly everyone knows them); asking random ones gets "no" to almost everything. The informative
question **splits the users who are still plausible**: an item about half of them have chosen, so that either
answer rules out about half of the candidates (Golbandi, Koren & Lempel, "Adaptive bootstrapping of
recommender systems using decision trees", WSDM 2011, build a tree of such splits).

:class:`Onboarding` keeps a weight per training user — how consistent that user is with the answers so far —
and asks next about the item whose weighted share of choosers is closest to one half (the largest binary
entropy), among a pool of items popular enough to be recognised. An answer multiplies each training user's
weight by how likely that user would have given it (``agree`` for a user who did the same, ``1 - agree``
otherwise), so no single answer rules anyone out for good. The "yes" items become the user's first history,
and the model recommends from it at once.

Nothing here is fitted: it reads a fitted model's training histories (its user × item matrix).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lmrec.data.schema import PAD
from lmrec.models.base import Recommender

#: The default pool: the most popular items (a question about an item nobody recognises is wasted).
DEFAULT_POOL = 300


class Onboarding:
    """Questions for a new user, from a fitted model's training histories.

    Parameters
    ----------
    model:
        A fitted recommender (its ``user_histories_`` and ``item_map`` are read; it also makes the first
        recommendations from the "yes" answers).
    pool:
        How many of the most popular items questions are chosen from.
    agree:
        How likely a training user who chose an item (or did not) would answer the same: the weight update.
    """

    def __init__(self, model: Recommender, pool: int = DEFAULT_POOL, agree: float = 0.9) -> None:
        model._check_fitted()
        if not 0.5 < agree < 1.0:
            raise ValueError(f"agree must be in (0.5, 1), got {agree}")
        assert model.user_histories_ is not None and model.item_map is not None
        assert model.popularity_ is not None
        self.model = model
        self.agree = agree
        pop = np.asarray(model.popularity_, dtype=np.float64).copy()
        pop[PAD] = -1
        self.pool = np.argsort(-pop, kind="stable")[: max(1, min(pool, len(model.item_map)))]
        self.pool = self.pool[pop[self.pool] > 0]
        full = model.user_histories_.to_csr(model.item_map.size).tocsr()
        full.data[:] = 1.0  # chose it or not, however often
        x = full[:, self.pool].tocsr()
        keep = np.diff(x.indptr) > 0  # training users with at least one pool item
        self._x = x[keep].tocsc()
        self._full = full[keep].tocsr()
        self._pool_pos = {int(i): p for p, i in enumerate(self.pool)}

    def _weights(self, answers: Mapping[int, bool]) -> np.ndarray:
        w = np.ones(self._x.shape[0], dtype=np.float64)
        for item, yes in answers.items():
            p = self._pool_pos.get(int(item))
            if p is None:
                continue
            chose = np.zeros(self._x.shape[0], dtype=bool)
            chose[self._x.indices[self._x.indptr[p]:self._x.indptr[p + 1]]] = True
            w *= np.where(chose == yes, self.agree, 1.0 - self.agree)
            w /= w.max()  # keep the scale (products of many answers underflow otherwise)
        return w

    def next_questions(self, answers: Mapping[str, bool] | None = None, n: int = 1,
                       exclude: Sequence[str] = ()) -> list[str]:
        """The ``n`` most informative items to ask about next (raw ids, best first), given the answers so far
        (``{item id: chose it}``); items already answered or in ``exclude`` are not asked again."""
        assert self.model.item_map is not None
        known = {self.model.item_map.index(i): bool(v) for i, v in (answers or {}).items()
                 if i in self.model.item_map}
        w = self._weights(known)
        share = (self._x.T @ w) / max(w.sum(), 1e-12)
        share = np.clip(share, 1e-9, 1 - 1e-9)
        entropy = -(share * np.log2(share) + (1 - share) * np.log2(1 - share))
        skip = set(known) | {self.model.item_map.index(i) for i in exclude if i in self.model.item_map}
        entropy[[p for i, p in self._pool_pos.items() if i in skip]] = -1.0
        order = np.argsort(-entropy, kind="stable")[:n]
        return [str(self.model.item_map.raw(int(self.pool[p]))) for p in order if entropy[p] >= 0]

    def consistent_scores(self, answers: Mapping[str, bool]) -> np.ndarray:
        """Scores ``(n_items + 1,)`` of every item for a user known only by their answers: how many training
        users chose it, each weighted by how consistent they are with the answers (a user-kNN whose
        neighbourhood the answers define, "no" answers included)."""
        assert self.model.item_map is not None
        imap = self.model.item_map
        known = {imap.index(i): bool(v) for i, v in answers.items() if i in imap}
        w = self._weights(known)
        w = w / max(w.sum(), 1e-12)
        return np.asarray(self._full.T @ w).ravel()

    def ask(self, answer: Callable[[str], bool], n: int) -> dict[str, bool]:
        """Ask ``n`` questions one at a time, ``answer(item id) -> bool`` giving each reply (a simulated user
        in benchmarks); returns every answer."""
        answers: dict[str, bool] = {}
        for _ in range(n):
            q = self.next_questions(answers, 1)
            if not q:
                break
            answers[q[0]] = bool(answer(q[0]))
        return answers


def popular_questions(model: Recommender, n: int, exclude: Sequence[str] = ()) -> list[str]:
    """The baseline: the ``n`` most popular items."""
    assert model.popularity_ is not None and model.item_map is not None
    pop = np.asarray(model.popularity_, dtype=np.float64).copy()
    pop[PAD] = -1
    skip = set(exclude)
    out = []
    for i in np.argsort(-pop, kind="stable"):
        rid = str(model.item_map.raw(int(i)))
        if rid not in skip:
            out.append(rid)
        if len(out) == n:
            break
    return out
