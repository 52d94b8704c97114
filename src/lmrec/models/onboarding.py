"""Onboarding a new user by active learning: which items to ask about, one answer at a time.

A new user has no history, so any recommender can only guess. Asking "do you know / like these?" about a few
items fixes that, and the question is which items. Asking the most popular ones gets many "yes" answers that
say little (nearly everyone knows them); asking random ones gets "no" to almost everything.

:class:`Onboarding` treats the new user as one of the training users, unknown which (a mixture with one
component per training user, as a user-kNN whose neighbourhood the answers define), and keeps a posterior
weight per training user:

* **Answers are noisy evidence.** A user like training user ``u`` answers "yes" about item ``i`` with
  probability ``(1 - s) x_ui + s p_i`` (``x_ui``: ``u`` chose ``i``; ``p_i``: the share of training users who
  chose it; ``s``: ``smoothing``). So a "no" about an item ``u`` chose (on MovieLens: just "not rated") and a
  "yes" about one ``u`` did not choose lower ``u``'s weight without ruling ``u`` out, and more so for a
  popular item than for a rare one. The log-likelihood of each answer is scaled by ``temperature`` (a tempered
  posterior: the training users are not exact copies of the new user, so many answers must not collapse the
  neighbourhood onto a handful of them).
* **Questions maximise the expected information.** The next question is the pool item whose answer tells
  most about which training user the new user is like: the mutual information between the answer and the
  user, ``H(P(yes)) - E_u H(P(yes | u))`` under the posterior. An item about half of the plausible users chose
  splits them best (Golbandi, Koren & Lempel, WSDM 2011), but only if the answer is reliable: the noise term
  favours items a user is likely to know, as "popularity x entropy" does by hand (Rashid et al., IUI 2002;
  Elahi, Ricci & Rubens, "A survey of active learning in collaborative filtering recommender systems", 2016).
* **Recommendations are the posterior's next item.** Each training user's items share a weight of one (what
  a user does next is one of their items: a heavy rater's long tail must not outvote everyone), the newer
  the more (``recency``: item ``j`` weighs ``e^(-recency a_uj)``, ``a_uj`` from 0 for ``u``'s newest item
  to 1 for the oldest; 0 gives each ``1 / |u|``), because a user's next item is more like their recent
  ones than their first (tastes drift, catalogues age: on a data set spanning years a neighbour's early
  items are what the site offered then), mixed by the posterior weights and blended with the same per-user
  popularity of all training users (``prior``): the distribution of a new user's next item, before any
  answer that prior alone.

The four settings are chosen **on validation**, per fitted model (:func:`calibrate`): the model's training
users are cut into folds, each fold's users are simulated as new users against the others (they answer "yes"
about the items they chose), and the grid point whose recommendations after 3, 5 and 10 answers hit each
validation user's newest item most often wins. Nothing of any held-out user is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.models.base import Recommender

#: The default pool: the most popular items (a question about an item nobody recognises is wasted).
DEFAULT_POOL = 300
#: Onboarding lengths the settings are validated for (answers before the first recommendations are judged).
VALIDATION_ANSWERS = (3, 5, 10)
#: The validation grid.
SMOOTHING_GRID = (0.05, 0.1, 0.2)
TEMPERATURE_GRID = (0.5, 1.0)
PRIOR_GRID = (0.1, 0.3, 0.5)
#: ``recency``: the newest item of a user weighs up to e^6 (about 400) times the oldest; 0 weighs them alike.
RECENCY_GRID = (0.0, 1.5, 3.0, 6.0)
#: Validation needs at least this many training users with :data:`MIN_ITEMS` items; with fewer,
#: :data:`DEFAULT_SETTINGS` are used.
MIN_VALIDATION_USERS = 50
MIN_ITEMS = 5
#: Validation targets per user: their newest items not asked about (1: the newest, "what the new user chooses
#: next"; several would be steadier but, on MovieLens-100K, favour a weaker prior than the newest item alone).
VALIDATION_TARGETS = 1
#: At most this many validation users and training users they are matched against (random samples), to bound
#: the cost on large data sets.
MAX_VALIDATION_USERS = 1000
MAX_NEIGHBOURS = 20_000


@dataclass(frozen=True)
class OnboardingSettings:
    """``smoothing``: the answer noise ``s``; ``temperature``: the weight of each answer's log-likelihood;
    ``prior``: the share of the popularity prior in the recommendations; ``recency``: how much more a
    user's newest items weigh than their oldest in the recommendations (``e^recency`` times; 0: alike)."""

    smoothing: float = 0.1
    temperature: float = 1.0
    prior: float = 0.3
    recency: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in (0, 1), got {self.smoothing}")
        if not 0.0 < self.temperature <= 1.0:
            raise ValueError(f"temperature must be in (0, 1], got {self.temperature}")
        if not 0.0 <= self.prior < 1.0:
            raise ValueError(f"prior must be in [0, 1), got {self.prior}")
        if not 0.0 <= self.recency < np.inf:
            raise ValueError(f"recency must be finite and >= 0, got {self.recency}")


#: The settings when there are too few training users to validate on (the middle of the grid, no tempering).
DEFAULT_SETTINGS = OnboardingSettings()


@dataclass
class Calibration:
    """What :func:`calibrate` chose and why: every grid point's validation HR@10 (mean over
    :data:`VALIDATION_ANSWERS`), and how many validation users it was measured on (0: too few users, the
    defaults)."""

    settings: OnboardingSettings
    users: int = 0
    scores: dict[OnboardingSettings, float] = field(default_factory=dict)


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def _ages(histories: Ragged, n_items: int) -> sp.csr_matrix:
    """``(users, n_items)``: where each item a user chose lies in their history, from their newest distinct
    item (``0.5 / n``) to their oldest (``(n - 0.5) / n``), ``n`` their distinct items; repeats count at
    their newest occurrence. The sparsity pattern is the users' choices."""
    lengths = np.diff(histories.offsets)
    user = np.repeat(np.arange(len(lengths)), lengths)
    items = histories.values.astype(np.int64)
    pos = np.arange(len(items))
    order = np.lexsort((-pos, items, user))  # each (user, item) once, at its newest position
    user, items, pos = user[order], items[order], pos[order]
    first = np.ones(len(user), dtype=bool)
    first[1:] = (user[1:] != user[:-1]) | (items[1:] != items[:-1])
    user, items, pos = user[first], items[first], pos[first]
    order = np.lexsort((-pos, user))  # per user, newest first
    user, items = user[order], items[order]
    n = np.bincount(user, minlength=len(lengths))
    rank = np.arange(len(user)) - (np.cumsum(n) - n)[user]
    age = (rank + 0.5) / n[user]
    return sp.csr_matrix((age, (user, items)), shape=(len(lengths), n_items))


def _choices(ages: sp.csr_matrix) -> sp.csr_matrix:
    """The users' choices as ones (chose it or not, however often), on the pattern of :func:`_ages`."""
    x = ages.copy()
    x.data[:] = 1.0
    return x


class _Neighbours:
    """The training users as mixture components: their binary choices ``x`` (users with at least one item),
    the items' base rates ``p``, each user's item distribution (:meth:`dist`) and the per-user popularity
    ``q``. Every computation takes a batch of posteriors (rows), so that validation simulates many users at
    once through the same code the service runs for one. ``ages``: :func:`_ages` of the training users."""

    def __init__(self, ages: sp.csr_matrix, pool: np.ndarray) -> None:
        ages = ages.tocsr()
        ages = ages[np.diff(ages.indptr) > 0]
        self.ages = ages
        x = _choices(ages)
        self.x = x
        self.x_csc = x.tocsc()
        self.base = np.asarray(x.sum(axis=0)).ravel() / max(x.shape[0], 1)  # p_i
        self.pool = pool
        self.x_pool = x[:, pool].tocsc()
        self._dists: dict[float, tuple[sp.csr_matrix, np.ndarray]] = {}

    def dist(self, recency: float) -> tuple[sp.csr_matrix, np.ndarray]:
        """Each user's item distribution (rows sum to 1; item ``j`` of ``u`` weighs ``e^(-recency age_uj)``,
        with recency 0 ``1 / |u|``: what a user does next is one of their items, the newer the likelier) and
        its mean over the users, the per-user popularity ``q`` (sums to 1)."""
        if recency not in self._dists:
            d = self.ages.copy()
            d.data = np.exp(-recency * d.data)
            d = (sp.diags(1.0 / np.maximum(np.asarray(d.sum(axis=1)).ravel(), 1e-300)) @ d).tocsr()
            self._dists[recency] = d, np.asarray(d.sum(axis=0)).ravel() / max(d.shape[0], 1)
        return self._dists[recency]

    @property
    def n_users(self) -> int:
        return int(self.x.shape[0])

    def column(self, items: np.ndarray) -> np.ndarray:
        """``(n_users, len(items))`` dense: who chose each item."""
        return self.x_csc[:, items].toarray()

    def update(self, log_w: np.ndarray, items: np.ndarray, yes: np.ndarray, st: OnboardingSettings) -> None:
        """Add each row's answer (``items[r]``, ``yes[r]``) to its log-posterior ``log_w[r]`` in place."""
        chose = self.column(items).T  # (rows, n_users)
        p_yes = (1.0 - st.smoothing) * chose + st.smoothing * self.base[items][:, None]
        log_w += st.temperature * np.log(np.where(yes[:, None], p_yes, 1.0 - p_yes))

    @staticmethod
    def posterior(log_w: np.ndarray) -> np.ndarray:
        w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
        return w / w.sum(axis=1, keepdims=True)

    def gain(self, w: np.ndarray, st: OnboardingSettings) -> np.ndarray:
        """``(rows, len(pool))``: the mutual information between the answer about each pool item and which
        training user the new user is like."""
        m = np.asarray(self.x_pool.T @ w.T).T  # posterior share of choosers of each pool item
        s, p = st.smoothing, self.base[self.pool][None, :]
        p_yes = (1.0 - s) * m + s * p
        return _entropy(p_yes) - (m * _entropy((1.0 - s) + s * p) + (1.0 - m) * _entropy(s * p))

    def mixture(self, w: np.ndarray, recency: float) -> np.ndarray:
        """``(rows, n_items + 1)``: the posterior-weighted mean of the users' item distributions."""
        return np.asarray(self.dist(recency)[0].T @ w.T).T

    def scores(self, w: np.ndarray, prior: float, recency: float,
               mix: np.ndarray | None = None) -> np.ndarray:
        """``(rows, n_items + 1)``: the probability of each item being the new user's next (``mix``:
        :meth:`mixture`, when already computed)."""
        mix = self.mixture(w, recency) if mix is None else mix
        return (1.0 - prior) * mix + prior * self.dist(recency)[1][None, :]


class Onboarding:
    """Questions for a new user and their first recommendations, from a fitted model's training histories.

    Parameters
    ----------
    model:
        A fitted recommender (its ``user_histories_``, ``item_map`` and ``popularity_`` are read).
    pool:
        How many of the most popular items questions are chosen from.
    settings:
        The answer model and the blend; by default chosen on validation from the model's own training users
        (:func:`calibrate`; :attr:`calibration` says what was measured).
    seed:
        The validation folds' seed.
    """

    def __init__(self, model: Recommender, pool: int = DEFAULT_POOL,
                 settings: OnboardingSettings | None = None, seed: int = 0) -> None:
        model._check_fitted()
        assert model.user_histories_ is not None and model.item_map is not None
        assert model.popularity_ is not None
        self.model = model
        pop = np.asarray(model.popularity_, dtype=np.float64).copy()
        pop[PAD] = -1
        pool_idx = np.argsort(-pop, kind="stable")[: max(1, min(pool, len(model.item_map)))]
        self.pool = pool_idx[pop[pool_idx] > 0]
        self._pool_pos = {int(i): p for p, i in enumerate(self.pool)}
        self._nb = _Neighbours(_ages(model.user_histories_, model.item_map.size), self.pool)
        if settings is None:
            self.calibration = calibrate(model.user_histories_, model.item_map.size, self.pool, seed)
            settings = self.calibration.settings
        else:
            self.calibration = Calibration(settings)
        self.settings = settings
        self._nb.dist(settings.recency)  # built once here, not on the first request

    def _known(self, answers: Mapping[str, bool] | None) -> dict[int, bool]:
        imap = self.model.item_map
        assert imap is not None
        return {imap.index(i): bool(v) for i, v in (answers or {}).items() if i in imap}

    def _posterior(self, known: Mapping[int, bool]) -> np.ndarray:
        log_w = np.zeros((1, self._nb.n_users))
        for item, yes in known.items():
            if item != PAD:
                self._nb.update(log_w, np.array([item]), np.array([yes]), self.settings)
        return self._nb.posterior(log_w)

    def next_questions(self, answers: Mapping[str, bool] | None = None, n: int = 1,
                       exclude: Sequence[str] = ()) -> list[str]:
        """The ``n`` most informative items to ask about next (raw ids, best first), given the answers so far
        (``{item id: chose it}``); items already answered or in ``exclude`` are not asked again."""
        imap = self.model.item_map
        assert imap is not None
        known = self._known(answers)
        gain = self._nb.gain(self._posterior(known), self.settings)[0]
        skip = set(known) | {imap.index(i) for i in exclude if i in imap}
        gain[[p for i, p in self._pool_pos.items() if i in skip]] = -np.inf
        order = np.argsort(-gain, kind="stable")[:n]
        return [str(imap.raw(int(self.pool[p]))) for p in order if np.isfinite(gain[p])]

    def scores(self, answers: Mapping[str, bool]) -> np.ndarray:
        """Scores ``(n_items + 1,)`` of every item for a user known only by their answers ("no" answers
        included): the probability of being their next item (index 0, padding, included; mask it)."""
        st = self.settings
        return self._nb.scores(self._posterior(self._known(answers)), st.prior, st.recency)[0]

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


def _simulate(nb: _Neighbours, chosen: sp.csr_matrix, newest: list[np.ndarray], st: OnboardingSettings,
              blends: Sequence[tuple[float, float]], answers: Sequence[int], k: int = 10) -> np.ndarray:
    """Validation users (rows of ``chosen``, their items newest first in ``newest``) answer the questions
    ``nb`` asks, one at a time; ``(len(blends), len(answers))``: per ``(prior, recency)`` of the
    recommendations, the share of each user's :data:`VALIDATION_TARGETS` newest items not asked about in
    their top ``k`` (with one target, HR@k)."""
    rows = chosen.shape[0]
    log_w = np.zeros((rows, nb.n_users))
    asked = np.zeros((rows, len(nb.pool)), dtype=bool)
    hits = np.zeros((len(blends), len(answers)))
    r = np.arange(rows)
    for step in range(1, max(answers) + 1):
        gain = nb.gain(nb.posterior(log_w), st)
        gain[asked] = -np.inf
        pick = np.argmax(gain, axis=1)
        asked[r, pick] = True
        items = nb.pool[pick]
        yes = np.asarray(chosen[r, items]).ravel() > 0
        nb.update(log_w, items, yes, st)
        if step not in answers:
            continue
        w = nb.posterior(log_w)
        asked_items = [set(nb.pool[a].tolist()) for a in asked]
        targets = np.zeros((rows, VALIDATION_TARGETS), dtype=np.int64)  # PAD where a user has fewer
        for row, (nw, a) in enumerate(zip(newest, asked_items, strict=True)):
            t = [int(i) for i in nw if int(i) not in a][:VALIDATION_TARGETS]
            targets[row, : len(t)] = t
        n_targets = np.maximum((targets != PAD).sum(axis=1), 1)
        mixes = {recency: nb.mixture(w, recency) for recency in {r_ for _, r_ in blends}}
        asked_rows, asked_cols = np.nonzero(asked)  # the asked items are masked for every blend
        asked_cols = nb.pool[asked_cols]
        for b, (prior, recency) in enumerate(blends):
            sc = nb.scores(w, prior, recency, mixes[recency])
            sc[:, PAD] = -np.inf
            sc[asked_rows, asked_cols] = -np.inf
            # A target is in the top k when fewer than k items score higher (cheaper than ranking them all).
            hit = np.zeros(rows)
            for c in range(VALIDATION_TARGETS):
                above = (sc > sc[r, targets[:, c]][:, None]).sum(axis=1)
                hit += (above < k) & (targets[:, c] != PAD)
            hits[b, answers.index(step)] += (hit / n_targets).sum()
    return hits / max(rows, 1)


def calibrate(histories: Ragged, n_items: int, pool: np.ndarray, seed: int = 0,
              folds: int = 5) -> Calibration:
    """Choose :class:`OnboardingSettings` on validation: training users with at least :data:`MIN_ITEMS`
    items (at most :data:`MAX_VALIDATION_USERS`, a random sample; each matched against at most
    :data:`MAX_NEIGHBOURS` others) are cut into ``folds`` folds; each fold's users answer as new users ("yes"
    about the items they chose) against the mixture of all other training users, and the grid point
    (:data:`SMOOTHING_GRID` x :data:`TEMPERATURE_GRID` x :data:`PRIOR_GRID` x :data:`RECENCY_GRID`) with the
    highest HR@10 of their newest item, averaged over :data:`VALIDATION_ANSWERS` answers, wins (ties: the
    first in grid order). ``histories``: each training user's item indices, oldest first."""
    ages = _ages(histories, n_items)  # one entry per distinct item
    eligible = np.flatnonzero(np.diff(ages.indptr) >= MIN_ITEMS)
    if len(eligible) < MIN_VALIDATION_USERS:
        return Calibration(DEFAULT_SETTINGS)
    x_all = _choices(ages)
    rng = np.random.default_rng(seed)
    val = rng.permutation(eligible)[:MAX_VALIDATION_USERS]
    blends = [(b, r) for b in PRIOR_GRID for r in RECENCY_GRID]
    grid = [OnboardingSettings(s, t, b, r)
            for s in SMOOTHING_GRID for t in TEMPERATURE_GRID for b, r in blends]
    totals = np.zeros(len(grid))
    for f in range(folds):
        held = val[f::folds]
        if len(held) == 0:
            continue
        rest = np.ones(x_all.shape[0], dtype=bool)
        rest[held] = False
        others = np.flatnonzero(rest)
        if len(others) > MAX_NEIGHBOURS:
            others = np.sort(rng.choice(others, MAX_NEIGHBOURS, replace=False))
        nb = _Neighbours(ages[others], pool)
        chosen = x_all[held].tocsr()
        held_ages = ages[held].tocsr()  # distinct items, newest first: by age
        newest = [held_ages.indices[lo:hi][np.argsort(held_ages.data[lo:hi])]
                  for lo, hi in zip(held_ages.indptr[:-1], held_ages.indptr[1:], strict=True)]
        for s in SMOOTHING_GRID:
            for t in TEMPERATURE_GRID:
                hr = _simulate(nb, chosen, newest, OnboardingSettings(s, t), blends, VALIDATION_ANSWERS)
                for hr_b, (b, r) in zip(hr, blends, strict=True):
                    totals[grid.index(OnboardingSettings(s, t, b, r))] += hr_b.mean() * len(held)
    scores = totals / len(val)
    best = int(np.argmax(scores))
    return Calibration(grid[best], len(val), {g: float(v) for g, v in zip(grid, scores, strict=True)})


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
