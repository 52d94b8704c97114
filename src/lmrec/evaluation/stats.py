"""Uncertainty for per-user metric values: bootstrap confidence intervals and paired tests between models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean with a two-sided confidence interval."""

    mean: float
    low: float
    high: float
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.half_width:.4f}"


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap CI of the mean of ``values`` (users resampled with replacement; NaNs dropped).

    References
    ----------
    Efron & Tibshirani, "An Introduction to the Bootstrap", 1993.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), level)
    if len(x) == 1 or n_boot < 1:
        return Interval(float(x.mean()), float(x.mean()), float(x.mean()), level)
    rng = np.random.default_rng(seed)
    # Resample in blocks so memory stays O(block * n) for large user counts.
    means = np.empty(n_boot)
    block = max(1, min(n_boot, 2**24 // len(x)))
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        idx = rng.integers(0, len(x), size=(b, len(x)))
        means[start : start + b] = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(x.mean()), float(low), float(high), level)


@dataclass(frozen=True)
class PairedTest:
    """Result of comparing two models on the same users."""

    method: str
    mean_difference: float  # mean(a - b)
    statistic: float
    p_value: float
    n: int


def paired_test(
    a: np.ndarray, b: np.ndarray, method: str = "t", n_boot: int = 10_000, seed: int = 0
) -> PairedTest:
    """Is model A's per-user metric different from model B's on the same users?

    ``method``: ``"t"`` (paired t-test), ``"wilcoxon"`` (signed-rank, zero differences dropped) or
    ``"bootstrap"`` (two-sided paired bootstrap of the mean difference; the statistic is the difference).
    Rows where either value is NaN are dropped.

    References
    ----------
    Sakai, "Statistical reform in information retrieval?", SIGIR Forum 2014; Smucker, Allan & Carterette,
    "A comparison of statistical significance tests for information retrieval evaluation", CIKM 2007.
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired values must align: {x.shape} vs {y.shape}")
    ok = ~(np.isnan(x) | np.isnan(y))
    d = x[ok] - y[ok]
    n = int(len(d))
    mean_diff = float(d.mean()) if n else float("nan")
    if n < 2 or np.all(d == 0):
        return PairedTest(method, mean_diff, 0.0, 1.0, n)
    if method == "t":
        res = stats.ttest_rel(x[ok], y[ok])
        return PairedTest(method, mean_diff, float(res.statistic), float(res.pvalue), n)
    if method == "wilcoxon":
        res = stats.wilcoxon(d, zero_method="wilcox")
        return PairedTest(method, mean_diff, float(res.statistic), float(res.pvalue), n)
    if method == "bootstrap":
        rng = np.random.default_rng(seed)
        centred = d - d.mean()  # resample under the null hypothesis of zero mean difference
        boots = np.array([centred[rng.integers(0, n, n)].mean() for _ in range(n_boot)])
        p = float((np.abs(boots) >= abs(d.mean())).mean())
        return PairedTest(method, mean_diff, mean_diff, max(p, 1.0 / n_boot), n)
    raise ValueError(f"unknown paired test {method!r}; choose t, wilcoxon or bootstrap")
