"""The rank stage: a learned ranker over the candidates' features, LightGBM LambdaRank by default.

A ranker is anything with the :class:`Ranker` interface (fit on grouped rows, predict, per-feature
contributions, save as text); :data:`RANKERS` names the ones the pipeline can build. LightGBM's settings are
modest fixed defaults (no search on any data set); the number of trees is chosen by early stopping on a
held-out share of the *label* users (validation data, never test data).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

#: LightGBM LambdaRank defaults: small, strongly regularised trees (a ranker learns from one positive per
#: label user, a few hundred to a few thousand of them: 7 leaves, at least 100 rows a leaf, L2 10), a slow
#: learning rate, row and column subsampling, one thread (the machine is shared), deterministic. Set once
#: (on MovieLens-100K development runs, where LightGBM's own defaults of 31 leaves and 20 rows a leaf
#: overfitted), not searched per data set.
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "learning_rate": 0.05, "num_leaves": 7,
    "min_data_in_leaf": 100, "lambda_l2": 10.0, "feature_fraction": 0.8, "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambdarank_truncation_level": 20, "num_threads": 1, "deterministic": True, "force_row_wise": True,
    "verbosity": -1,
}
#: Most boosting rounds, and rounds without improvement of the held-out NDCG@10 before stopping.
ROUNDS, STOP_ROUNDS = 400, 30


class Ranker(Protocol):
    """What the pipeline needs of a ranker."""

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray, x_valid: np.ndarray | None,
            y_valid: np.ndarray | None, groups_valid: np.ndarray | None) -> dict[str, Any]:
        """Learn from rows ``x`` with relevance ``y``; ``groups``: rows per query, in order. Returns a
        summary (rounds, held-out metric)."""
        ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        ...

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """``(rows, features + 1)``: each feature's additive share of the score (last column: the bias)."""
        ...

    def to_text(self) -> str:
        ...


class LightGBMRanker:
    """LightGBM LambdaRank (``lightgbm.train``), early-stopped on the held-out groups."""

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 0,
                 feature_names: list[str] | None = None) -> None:
        self.params = {**LIGHTGBM_DEFAULTS, "seed": seed, **(params or {})}
        self.feature_names = feature_names
        self.booster: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray, x_valid: np.ndarray | None = None,
            y_valid: np.ndarray | None = None, groups_valid: np.ndarray | None = None) -> dict[str, Any]:
        import lightgbm as lgb

        params = dict(self.params)
        rounds = int(params.pop("num_boost_round", ROUNDS))
        names = [n.replace(":", "_") for n in self.feature_names] if self.feature_names else "auto"
        train = lgb.Dataset(x, y, group=groups, feature_name=names, free_raw_data=True)
        valid_sets, callbacks = [], []
        if x_valid is not None and groups_valid is not None and len(groups_valid):
            valid_sets = [lgb.Dataset(x_valid, y_valid, group=groups_valid, reference=train)]
            callbacks = [lgb.early_stopping(STOP_ROUNDS, verbose=False)]
        self.booster = lgb.train(params, train, num_boost_round=rounds, valid_sets=valid_sets,
                                 callbacks=callbacks)
        best = int(self.booster.best_iteration or self.booster.current_iteration())
        score = self.booster.best_score.get("valid_0", {}).get("ndcg@10") if valid_sets else None
        return {"rounds": best, "heldout_ndcg10_candidates": None if score is None else float(score)}

    def predict(self, x: np.ndarray) -> np.ndarray:
        # One thread: a request scores a few hundred rows, and starting OpenMP's threads for them costs
        # milliseconds on a busy machine (12 ms against 0.02 ms for 20 rows here).
        return np.asarray(self.booster.predict(x, num_iteration=self._iterations(), num_threads=1),
                          dtype=np.float64)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, num_iteration=self._iterations(), pred_contrib=True,
                                               num_threads=1))

    def importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain", iteration=self._iterations())
        names = self.feature_names or [str(i) for i in range(len(gains))]
        return {n: float(g) for n, g in zip(names, gains, strict=True)}

    def _iterations(self) -> int | None:
        best = self.booster.best_iteration
        return int(best) if best and best > 0 else None

    def to_text(self) -> str:
        return str(self.booster.model_to_string(num_iteration=self._iterations()))

    @classmethod
    def from_text(cls, text: str, feature_names: list[str]) -> LightGBMRanker:
        import lightgbm as lgb

        out = cls(feature_names=feature_names)
        out.booster = lgb.Booster(model_str=text)
        return out


#: Rankers by name: ``(build(params, seed, feature_names), load(text, feature_names))``.
RANKERS: dict[str, tuple[Any, Any]] = {
    "lightgbm": (LightGBMRanker, LightGBMRanker.from_text),
}
