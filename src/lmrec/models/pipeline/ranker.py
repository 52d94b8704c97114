"""The rank stage: a learned ranker over the candidates' features, LightGBM LambdaRank by default.

A ranker is anything with the :class:`Ranker` interface (fit on grouped rows, predict, per-feature
contributions, save as text); :data:`RANKERS` names the ones the pipeline can build. The settings that set a
tree ranker's capacity (leaves, rows a leaf, L2) are not fixed: every fit selects them from a small grid that
is fixed in advance and the same for every data set (:data:`GRIDS`), by NDCG@10 on a held-out share of the
*label* users (validation data, never test data), the same share that early-stops the number of trees.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

#: LightGBM LambdaRank's fixed settings: a slow learning rate (the number of trees is early-stopped), row and
#: column subsampling, one thread (the machine is shared), deterministic. The settings that set the trees'
#: capacity are selected per fit from :data:`LIGHTGBM_GRID`; the values here (its first, most regularised
#: point) are only used where no selection can be made (fewer than 10 label users) or a caller fixes them.
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "learning_rate": 0.05, "num_leaves": 7,
    "min_data_in_leaf": 100, "lambda_l2": 10.0, "feature_fraction": 0.8, "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambdarank_truncation_level": 20, "num_threads": 1, "deterministic": True, "force_row_wise": True,
    "verbosity": -1,
}
#: The grid every fit selects LightGBM's capacity from, by held-out NDCG@10 (ties: the earlier point). Fixed
#: in advance and the same for every data set: 7, 15 or 31 leaves (LightGBM's default), each with LightGBM's
#: default regularisation (20 rows a leaf, no L2) or a strong one (100 rows a leaf, L2 10: a ranker learns
#: from one positive per label user, a few hundred of them on small sets). Six fits: a full product with
#: L2 as a third axis doubled the ranker's time (about 130 s on Amazon Office) for no clear gain. Ordered
#: from the most regularised point, so a tie keeps the simpler ranker.
LIGHTGBM_GRID: tuple[dict[str, Any], ...] = tuple(
    {"num_leaves": leaves, "min_data_in_leaf": rows, "lambda_l2": l2}
    for leaves in (7, 15, 31) for rows, l2 in ((100, 10.0), (20, 0.0)))
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
#: Each ranker's selection grid (a ranker without one is fitted once with its settings).
GRIDS: dict[str, tuple[dict[str, Any], ...]] = {"lightgbm": LIGHTGBM_GRID}


def grid_points(grid: tuple[dict[str, Any], ...], fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """The points of ``grid`` in order, without the keys a caller fixed in ``fixed`` (points that become
    equal are kept once); ``[{}]`` when nothing is left to choose."""
    out: list[dict[str, Any]] = []
    for point in grid:
        p = {k: v for k, v in point.items() if k not in fixed}
        if p not in out:
            out.append(p)
    return out or [{}]


def select(build: Any, points: list[dict[str, Any]], params: dict[str, Any], seed: int,
           feature_names: list[str], train: tuple[np.ndarray, np.ndarray, np.ndarray],
           heldout: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> tuple[Any, dict[str, Any]]:
    """Fit one ranker per grid point (``params`` on top of each) on ``train`` = ``(x, y, groups)``, early-
    stopped on ``heldout``, and keep the one with the best held-out NDCG@10 (ties and missing scores: the
    earlier point). Without ``heldout``, only the first point is fitted. Returns the ranker and a summary:
    its ``rounds``, held-out score, chosen ``params`` and every point's ``grid`` score."""
    if heldout is None:
        points = points[:1]
    best: tuple[Any, dict[str, Any]] | None = None
    best_score = -np.inf
    scores: list[dict[str, Any]] = []
    for point in points:
        ranker = build({**params, **point}, seed, feature_names)
        summary = ranker.fit(*train, *(heldout if heldout is not None else (None, None, None)))
        score = summary.get("heldout_ndcg10_candidates")
        scores.append({"params": point, "rounds": summary.get("rounds"),
                       "heldout_ndcg10": None if score is None else round(float(score), 6)})
        value = -np.inf if score is None else float(score)
        if best is None or value > best_score:
            best, best_score = (ranker, {**summary, "params": point}), value
    assert best is not None
    ranker, summary = best
    return ranker, {**summary, "grid": scores if len(points) > 1 else []}
