"""Baselines every prediction head must be compared with.

* Ratings: :class:`BiasBaseline` (global mean + regularised user and item biases, fitted by alternating
  closed-form updates) and :class:`BiasedMF` (biased matrix factorisation fitted by alternating least squares;
  Koren, Bell & Volinsky, "Matrix Factorization Techniques for Recommender Systems", IEEE Computer 2009).
* Next action type: :class:`MajorityType` (class frequencies) and :class:`MarkovType` (first-order Markov
  chain from the previous action type, Laplace-smoothed).
* User value: :class:`RFMScore` (recency, frequency, monetary quintile scores; Hughes 1994),
  :class:`LastPeriodValue` ("what they spent in the last period, they will spend in the next") and
  :class:`GBMValue` (LightGBM on the RFM features, regressing ``log1p`` value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lmrec.prediction.tasks import RFM_FEATURES, RatingSet, TypeSet, ValueSet


# ---------------------------------------------------------------------- ratings
def _group_sums(index: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.bincount(index, weights=values, minlength=n), np.bincount(index, minlength=n).astype(np.float64)


@dataclass
class BiasBaseline:
    """``r̂(u, i) = μ + b_u + b_i`` with ridge-regularised biases, fitted by alternating exact updates.

    Each update is the closed-form minimiser of the squared error plus ``reg_item * b_i²``
    (``reg_user * b_u²``) with the other biases fixed, so the loss never increases. Unknown users or items get
    a zero bias.
    """

    reg_user: float = 10.0
    reg_item: float = 25.0
    n_iter: int = 10

    def fit(self, ratings: RatingSet, n_users: int, n_items: int) -> BiasBaseline:
        u, i, r = ratings.users, ratings.items, ratings.ratings
        self.mu_ = float(r.mean())
        self.b_user_ = np.zeros(n_users)
        self.b_item_ = np.zeros(n_items)
        for _ in range(self.n_iter):
            s, c = _group_sums(i, r - self.mu_ - self.b_user_[u], n_items)
            self.b_item_ = np.divide(s, c + self.reg_item, out=np.zeros(n_items), where=c + self.reg_item > 0)
            s, c = _group_sums(u, r - self.mu_ - self.b_item_[i], n_users)
            self.b_user_ = np.divide(s, c + self.reg_user, out=np.zeros(n_users), where=c + self.reg_user > 0)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        bu = np.where(u < len(self.b_user_), self.b_user_[np.minimum(u, len(self.b_user_) - 1)], 0.0)
        bi = np.where(i < len(self.b_item_), self.b_item_[np.minimum(i, len(self.b_item_) - 1)], 0.0)
        return self.mu_ + bu + bi


@dataclass
class BiasedMF:
    """``r̂(u, i) = μ + b_u + b_i + p_uᵀ q_i`` fitted by alternating least squares with L2 regularisation.

    Each half-step solves, for every user (item) at once in a batched linear solve, the ridge regression of
    the residual ``r - μ - b_i`` on ``[q_i, 1]`` (``r - μ - b_u`` on ``[p_u, 1]``), which updates factors and
    bias together. Predictions are clipped to ``clip`` (the rating scale) when given.
    """

    factors: int = 10
    reg: float = 15.0
    n_iter: int = 15
    clip: tuple[float, float] | None = (1.0, 5.0)
    seed: int = 0

    def _solve(self, rows: np.ndarray, cols: np.ndarray, target: np.ndarray, other: np.ndarray,
               n_rows: int) -> np.ndarray:
        """Ridge solution per row: minimise Σ (target - [x, b]·[other_col, 1])² + reg·(|x|² + b²)."""
        k = other.shape[1] + 1
        feats = np.hstack([other, np.ones((len(other), 1))])[cols]  # (nnz, k)
        # Sum per row with one sparse product: (n_rows, nnz) indicator @ (nnz, k·k) outer products.
        ind = sp.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(n_rows, len(rows)))
        gram = (ind @ (feats[:, :, None] * feats[:, None, :]).reshape(len(rows), k * k)).reshape(n_rows, k, k)
        rhs = ind @ (feats * target[:, None])
        gram += self.reg * np.eye(k)
        return np.linalg.solve(gram, rhs[..., None])[..., 0]

    def fit(self, ratings: RatingSet, n_users: int, n_items: int) -> BiasedMF:
        rng = np.random.default_rng(self.seed)
        u, i, r = ratings.users, ratings.items, ratings.ratings
        self.mu_ = float(r.mean())
        self.P_ = rng.normal(0, 0.1, (n_users, self.factors))
        self.Q_ = rng.normal(0, 0.1, (n_items, self.factors))
        self.b_user_ = np.zeros(n_users)
        self.b_item_ = np.zeros(n_items)
        for _ in range(self.n_iter):
            sol = self._solve(u, i, r - self.mu_ - self.b_item_[i], self.Q_, n_users)
            self.P_, self.b_user_ = sol[:, :-1], sol[:, -1]
            sol = self._solve(i, u, r - self.mu_ - self.b_user_[u], self.P_, n_items)
            self.Q_, self.b_item_ = sol[:, :-1], sol[:, -1]
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        known_u, known_i = u < len(self.P_), i < len(self.Q_)
        uu, ii = np.where(known_u, u, 0), np.where(known_i, i, 0)
        pred = (self.mu_ + np.where(known_u, self.b_user_[uu], 0.0) + np.where(known_i, self.b_item_[ii], 0.0)
                + np.where(known_u & known_i, np.einsum("nk,nk->n", self.P_[uu], self.Q_[ii]), 0.0))
        return np.clip(pred, *self.clip) if self.clip else pred


# ---------------------------------------------------------------------- next action type
@dataclass
class MajorityType:
    """Predicts the training class frequencies for every example (its argmax is the majority class)."""

    def fit(self, labels: np.ndarray, n_types: int) -> MajorityType:
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_types).astype(np.float64)
        self.proba_ = (counts + 1.0) / (counts.sum() + n_types)
        return self

    def predict_proba(self, examples: TypeSet) -> np.ndarray:
        return np.broadcast_to(self.proba_, (len(examples), len(self.proba_))).copy()


@dataclass
class MarkovType:
    """``P(next type | previous type)`` from transition counts with add-``alpha`` smoothing; examples without
    a previous event (``previous == -1``) get the class frequencies."""

    alpha: float = 1.0

    def fit(self, examples: TypeSet, n_types: int) -> MarkovType:
        prev, y = examples.previous, examples.labels
        ok = prev >= 0
        counts = np.zeros((n_types, n_types))
        np.add.at(counts, (prev[ok], y[ok]), 1.0)
        self.prior_ = MajorityType().fit(y, n_types).proba_
        denom = counts.sum(axis=1, keepdims=True) + self.alpha * n_types
        # A previous type never seen in training (with alpha = 0) falls back to the class frequencies.
        self.transition_ = np.where(denom > 0, (counts + self.alpha) / np.maximum(denom, 1e-300), self.prior_)
        return self

    def predict_proba(self, examples: TypeSet) -> np.ndarray:
        prev = examples.previous
        out = np.broadcast_to(self.prior_, (len(prev), len(self.prior_))).copy()
        ok = prev >= 0
        out[ok] = self.transition_[prev[ok]]
        return out


# ---------------------------------------------------------------------- user value
_R, _F, _M = (RFM_FEATURES.index(n) for n in ("recency_days", "frequency", "monetary"))


def _quintile_scores(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """1..5 by which training quintile ``x`` falls in."""
    return 1 + np.searchsorted(edges, x, side="right")


@dataclass
class RFMScore:
    """Classic RFM scoring: recency, frequency and monetary value each get a quintile score 1–5 (recent,
    frequent, big spenders score 5), and the user's score is their sum (3–15).

    As a value predictor, each score maps to the mean ``log1p`` value of training users with that score (users
    at scores never seen in training get the overall mean), so the baseline is also scored on RMSE.
    """

    def fit(self, train: ValueSet) -> RFMScore:
        x = train.features
        qs = [0.2, 0.4, 0.6, 0.8]
        self.edges_ = [np.quantile(-x[:, _R], qs), np.quantile(x[:, _F], qs), np.quantile(x[:, _M], qs)]
        s = self.score(train)
        y = np.log1p(train.target)
        self.level_ = np.full(16, y.mean())
        for level in np.unique(s):
            self.level_[level] = y[s == level].mean()
        return self

    def score(self, data: ValueSet) -> np.ndarray:
        """The RFM sum score (3–15) of each user."""
        x = data.features
        cols = (-x[:, _R], x[:, _F], x[:, _M])
        return sum(_quintile_scores(c, e) for c, e in zip(cols, self.edges_, strict=True)).astype(np.int64)

    def predict(self, data: ValueSet) -> np.ndarray:
        """Predicted future value (original scale)."""
        return np.expm1(self.level_[self.score(data)])


@dataclass
class LastPeriodValue:
    """The value of the ``horizon`` days before the cut predicts the ``horizon`` days after it."""

    def fit(self, train: ValueSet) -> LastPeriodValue:
        return self

    def predict(self, data: ValueSet) -> np.ndarray:
        return data.features[:, RFM_FEATURES.index("last_period_value")].copy()


@dataclass
class GBMValue:
    """LightGBM regression of ``log1p(future value)`` on the RFM features (several training cuts may be
    stacked)."""

    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 20
    seed: int = 0

    def fit(self, train: ValueSet | list[ValueSet]) -> GBMValue:
        import lightgbm as lgb

        sets = train if isinstance(train, list) else [train]
        x = np.vstack([s.features for s in sets])
        y = np.concatenate([np.log1p(s.target) for s in sets])
        self.model_ = lgb.LGBMRegressor(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate, num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples, random_state=self.seed, n_jobs=1, verbose=-1,
            deterministic=True, force_row_wise=True)
        self.model_.fit(x, y)
        return self

    def predict(self, data: ValueSet) -> np.ndarray:
        return np.expm1(np.maximum(self.model_.predict(data.features), 0.0))


__all__ = ["BiasBaseline", "BiasedMF", "GBMValue", "LastPeriodValue", "MajorityType", "MarkovType",
           "RFMScore"]
