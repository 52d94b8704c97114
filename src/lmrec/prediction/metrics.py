"""Metrics for the prediction heads: ratings, next action type and user value. Pure functions on arrays.

Each is tested against values worked out by hand in ``tests/prediction/test_metrics.py``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("no values to score")
    return t, p


# ---------------------------------------------------------------------- ratings
def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error, :math:`\\sqrt{\\frac1n\\sum (y - \\hat y)^2}`."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error, :math:`\\frac1n\\sum |y - \\hat y|`."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


# ---------------------------------------------------------------------- classification (next action type)
def _probs(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"proba must be (n, n_classes) with n = {y.size}, got {p.shape}")
    if y.size == 0:
        raise ValueError("no values to score")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be in [0, {p.shape[1]}), got {y.min()}..{y.max()}")
    return y, p


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the true class, :math:`-\\frac1n\\sum \\log p_{i, y_i}`.

    Rows of ``proba`` are renormalised to sum to 1 and clipped to ``[eps, 1 - eps]``, as scikit-learn does.
    """
    y, p = _probs(y_true, proba)
    p = p / p.sum(axis=1, keepdims=True)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(np.log(p[np.arange(y.size), y])))


def accuracy(y_true: np.ndarray, proba_or_labels: np.ndarray) -> float:
    """Share of rows whose most probable class (or given label, for 1-d input) is the true one."""
    y = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(proba_or_labels)
    pred = p.argmax(axis=1) if p.ndim == 2 else p.astype(np.int64).ravel()
    if pred.size != y.size or y.size == 0:
        raise ValueError(f"{y.size} labels but {pred.size} predictions")
    return float(np.mean(pred == y))


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative (ties
    count one half), computed from average ranks (the Mann–Whitney U statistic). ``nan`` if one class is
    absent."""
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(score, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks handle ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """One-vs-rest ROC AUC averaged over the classes present in ``y_true`` (with at least one negative too).

    Classes that never occur are skipped (their AUC is undefined), as in scikit-learn's ``multi_class="ovr"``.
    """
    y, p = _probs(y_true, proba)
    aucs = [binary_auc(y == c, p[:, c]) for c in range(p.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    if not aucs:
        raise ValueError("macro AUC needs at least two classes in y_true")
    return float(np.mean(aucs))


# ---------------------------------------------------------------------- user value
def rmse_log(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """RMSE on the ``log1p`` scale, for non-negative amounts and counts: :math:`\\mathrm{RMSE}(\\log(1+y),
    \\log(1+\\hat y))`. Both arguments are on the original scale; negative predictions are clipped to 0."""
    t, p = _pair(y_true, y_pred)
    if (t < 0).any():
        raise ValueError("values must be non-negative")
    return rmse(np.log1p(t), np.log1p(np.maximum(p, 0.0)))


def spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks); ``nan`` if either side is
    constant."""
    t, p = _pair(y_true, y_pred)
    rt, rp = rankdata(t), rankdata(p)
    if rt.std() == 0 or rp.std() == 0:
        return float("nan")
    return float(np.corrcoef(rt, rp)[0, 1])


def top_decile_capture(y_true: np.ndarray, y_pred: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the total future value held by the ``fraction`` of users ranked highest by ``y_pred``.

    The top group has ``ceil(fraction * n)`` users; ties in ``y_pred`` at the boundary are resolved by giving
    the tied users their average share, so the result does not depend on input order. A perfect ranking
    reaches the share the truly top users hold; a random one ≈ ``fraction``.
    """
    t, p = _pair(y_true, y_pred)
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    total = t.sum()
    if total <= 0:
        return float("nan")
    k = int(np.ceil(fraction * t.size))
    order = np.argsort(-p, kind="stable")
    threshold = p[order[k - 1]]
    above = p > threshold
    tied = p == threshold
    n_from_ties = k - int(above.sum())
    captured = t[above].sum() + t[tied].mean() * n_from_ties
    return float(captured / total)


__all__ = ["accuracy", "binary_auc", "log_loss", "macro_auc", "mae", "rmse", "rmse_log", "spearman",
           "top_decile_capture"]
