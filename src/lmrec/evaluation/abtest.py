"""Online A/B (and A/B/n) experiments: definitions, deterministic bucketing, and the statistics of their arms.

Pure functions only: where the definitions are kept and where the outcomes come from is the store's business
(:mod:`lmrec.store.experiments`), and the service routes users with :meth:`ExperimentSpec.assign`.

**Bucketing.** A user's position in ``[0, 1)`` is the first 64 bits of ``HMAC-SHA256(salt, user id)``
(:func:`bucket`); arms take consecutive stretches of that interval by their traffic shares, in the order
given, and users past the last share are not in the experiment (they get the service's active model). The
same user and salt always land in the same arm, on every process and after a restart; a new salt reshuffles
everyone independently of every other experiment.

**Metrics.** The unit of randomisation is the user, so the unit of analysis is the user too (a user's answers
are not independent of each other): for each exposed user, whether they clicked, carted or bought an item of
an answer within the experiment's window after it, and the revenue of those purchases.
:func:`arm_report` gives per arm

* proportions of users (``click_through``, ``add_to_cart``, ``conversion``) with Wilson score intervals, and
  each treatment arm against the control (the first arm) by a pooled two-proportion z-test, the difference
  with an unpooled (Wald) interval;
* the mean revenue per exposed user with a Student-t interval, each treatment against the control by Welch's
  t-test (unequal variances) and its Welch interval of the difference;
* with more than one treatment arm, p-values adjusted by Holm's step-down method within each metric (the
  family: every treatment against the control), which controls the family-wise error rate at ``alpha``.

References
----------
Kohavi, Tang & Xu, "Trustworthy Online Controlled Experiments", 2020 (user-level analysis, A/A tests);
Wilson, "Probable inference, the law of succession, and statistical inference", JASA 1927; Welch, "The
generalization of 'Student's' problem when several different population variances are involved", Biometrika
1947; Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 1979.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from lmrec.privacy import keyed_hash

#: An experiment or arm name: letters, digits, '.', '_' and '-' (it appears in URLs and file names).
NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"
#: Proportion metrics: the share of exposed users with at least one such outcome after an answer.
PROPORTIONS: tuple[str, ...] = ("click_through", "add_to_cart", "conversion")
#: Mean metrics: per exposed user.
MEANS: tuple[str, ...] = ("revenue_per_user",)
#: The per-user column each metric reads (as :mod:`lmrec.store.experiments` makes them).
OUTCOME_COLUMNS: dict[str, str] = {"click_through": "clicked", "add_to_cart": "carted",
                                   "conversion": "bought", "revenue_per_user": "revenue"}


class ExperimentError(ValueError):
    """An experiment definition that cannot be run (names, shares, arms)."""


@dataclass(frozen=True)
class Arm:
    """One arm: a name, the model version that serves it (a folder of the model registry), and its share of
    all users."""

    name: str
    version: str
    share: float


@dataclass(frozen=True)
class ExperimentSpec:
    """A named experiment. ``arms[0]`` is the control.

    Parameters
    ----------
    name:
        Unique among the store's experiments.
    salt:
        Bucketing key; defaults to the name (two experiments with one salt would split users identically).
    arms:
        Two or more arms with shares in ``(0, 1]`` summing to at most 1.
    window_s:
        How long after an answer an event on one of its items counts for it (seconds).
    alpha:
        Significance level of the tests (two-sided).
    """

    name: str
    arms: tuple[Arm, ...]
    salt: str = ""
    window_s: int = 86_400
    alpha: float = 0.05
    description: str = ""
    created_at: float | None = None
    stopped_at: float | None = None
    _bounds: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not re.match(NAME_PATTERN, self.name or ""):
            raise ExperimentError(f"experiment name {self.name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        arms = tuple(a if isinstance(a, Arm) else Arm(**a) for a in self.arms)
        object.__setattr__(self, "arms", arms)
        if not self.salt:
            object.__setattr__(self, "salt", self.name)
        if len(arms) < 2:
            raise ExperimentError(f"experiment {self.name!r} needs at least two arms, got {len(arms)}")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ExperimentError(f"experiment {self.name!r}: arm names must differ, got {names}")
        for a in arms:
            if not re.match(NAME_PATTERN, a.name or ""):
                raise ExperimentError(f"arm name {a.name!r}: use 1-64 letters, digits, '.', '_' or '-'")
            if not re.match(NAME_PATTERN, a.version or ""):
                raise ExperimentError(f"arm {a.name!r}: {a.version!r} is not a model version name")
            if not (isinstance(a.share, (int, float)) and 0 < a.share <= 1 and math.isfinite(a.share)):
                raise ExperimentError(f"arm {a.name!r}: a share is in (0, 1], got {a.share!r}")
        total = sum(a.share for a in arms)
        if total > 1 + 1e-9:
            raise ExperimentError(f"experiment {self.name!r}: the arms' shares add up to {total:g} > 1")
        if not (isinstance(self.window_s, int) and self.window_s > 0):
            raise ExperimentError(f"window_s must be a positive number of seconds, got {self.window_s!r}")
        if not 0 < self.alpha < 0.5:
            raise ExperimentError(f"alpha must be in (0, 0.5), got {self.alpha!r}")
        object.__setattr__(self, "_bounds", tuple(np.cumsum([a.share for a in arms]).tolist()))

    @property
    def control(self) -> Arm:
        return self.arms[0]

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)

    def assign(self, user_id: str) -> Arm | None:
        """The user's arm, or ``None`` when the user falls outside every share."""
        return arm_at(self.arms, self._bounds, bucket(self.salt, user_id))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_bounds")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentSpec:
        keep = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and not k.startswith("_")}
        keep["arms"] = tuple(Arm(**a) if isinstance(a, dict) else a for a in keep.get("arms", ()))
        return cls(**keep)


def bucket(salt: str, user_id: str) -> float:
    """The user's position in ``[0, 1)`` under ``salt``: the first 64 bits of ``HMAC-SHA256(salt, id)``."""
    return int(keyed_hash(salt.encode(), str(user_id), "experiment")[:16], 16) / 2.0**64


def arm_at(arms: Sequence[Arm], bounds: Sequence[float], position: float) -> Arm | None:
    """The arm whose stretch of ``[0, 1)`` (cumulative shares ``bounds``) holds ``position``."""
    i = int(np.searchsorted(np.asarray(bounds), position, side="right"))
    return arms[i] if i < len(arms) else None


# ---------------------------------------------------------------------------------------------- statistics
def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion; ``(nan, nan)`` without trials."""
    if n <= 0:
        return float("nan"), float("nan")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_ztest(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """``(z, two-sided p)`` of H0: p1 = p2, with the pooled standard error. Equals Pearson's chi-square test
    of the 2×2 table without continuity correction."""
    if n1 <= 0 or n2 <= 0:
        return float("nan"), float("nan")
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / se
    return z, float(2 * stats.norm.sf(abs(z)))


def proportion_difference_interval(x1: int, n1: int, x2: int, n2: int,
                                   level: float = 0.95) -> tuple[float, float]:
    """Wald (unpooled) interval of ``p1 - p2``."""
    if n1 <= 0 or n2 <= 0:
        return float("nan"), float("nan")
    p1, p2 = x1 / n1, x2 / n2
    z = float(stats.norm.ppf(0.5 + level / 2))
    half = z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return p1 - p2 - half, p1 - p2 + half


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of a mean; the mean itself twice for fewer than two values or no spread."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    m = float(x.mean())
    if len(x) < 2 or float(x.std(ddof=1)) == 0:
        return m, m
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return m - half, m + half


def welch_test(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Welch's t-test of H0: mean(a) = mean(b): ``(t, two-sided p, interval low, interval high)`` of
    ``mean(a) - mean(b)``. No spread in either group: ``p = 1`` when the means are equal, else 0."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        return float("nan"), float("nan"), float("nan"), float("nan")
    d = float(x.mean() - y.mean())
    vx, vy = float(x.var(ddof=1)) / len(x), float(y.var(ddof=1)) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return 0.0, 1.0 if d == 0 else 0.0, d, d
    res = stats.ttest_ind(x, y, equal_var=False)
    dof = (vx + vy) ** 2 / (vx * vx / (len(x) - 1) + vy * vy / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    return float(res.statistic), float(res.pvalue), d - half, d + half


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control); NaNs stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


@dataclass(frozen=True)
class ArmOutcomes:
    """Per-user outcomes of one arm (index-aligned arrays over its exposed users)."""

    arm: str
    answers: np.ndarray  # answers served
    clicked: np.ndarray  # 0/1: clicked (view/click) a recommended item within the window of an answer
    carted: np.ndarray  # 0/1: put one in the cart
    bought: np.ndarray  # 0/1: bought one
    revenue: np.ndarray  # the value of those purchases
    clicked_answers: np.ndarray  # answers followed by a click

    @property
    def users(self) -> int:
        return len(self.answers)

    def column(self, name: str) -> np.ndarray:
        return getattr(self, name)  # type: ignore[no-any-return]


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def arm_report(spec: ExperimentSpec, outcomes: dict[str, ArmOutcomes]) -> dict[str, Any]:
    """Per-arm metrics with intervals, and every treatment arm against the control (tests, corrected
    p-values, whether significant at ``spec.alpha``), as a JSON-ready dict."""
    level = 1 - spec.alpha
    empty = ArmOutcomes("", *(np.zeros(0) for _ in range(6)))
    arms_out: list[dict[str, Any]] = []
    for a in spec.arms:
        o = outcomes.get(a.name, empty)
        n = o.users
        answers = int(o.answers.sum()) if n else 0
        metrics: dict[str, Any] = {}
        for m in PROPORTIONS:
            x = int(o.column(OUTCOME_COLUMNS[m]).sum()) if n else 0
            low, high = wilson_interval(x, n, level)
            metrics[m] = {"value": x / n if n else None, "low": _nan_to_none(low), "high": _nan_to_none(high),
                          "count": x}
        rev = o.revenue
        low, high = mean_interval(rev, level)
        metrics["revenue_per_user"] = {"value": float(rev.mean()) if n else None, "low": _nan_to_none(low),
                                       "high": _nan_to_none(high), "total": float(rev.sum()) if n else 0.0}
        arms_out.append({"arm": a.name, "version": a.version, "share": a.share, "users": n,
                         "answers": answers,
                         "answer_ctr": (int(o.clicked_answers.sum()) / answers) if answers else None,
                         "metrics": metrics})
    tests: list[dict[str, Any]] = []
    ctrl = outcomes.get(spec.control.name, empty)
    for m in (*PROPORTIONS, *MEANS):
        rows = []
        for a in spec.arms[1:]:
            o = outcomes.get(a.name, empty)
            col = OUTCOME_COLUMNS[m]
            if m in PROPORTIONS:
                x1, n1 = int(o.column(col).sum()), o.users
                x0, n0 = int(ctrl.column(col).sum()), ctrl.users
                z, p = two_proportion_ztest(x1, n1, x0, n0)
                low, high = proportion_difference_interval(x1, n1, x0, n0, level)
                diff = (x1 / n1 - x0 / n0) if n1 and n0 else float("nan")
                rows.append({"metric": m, "arm": a.name, "control": spec.control.name,
                             "test": "two-proportion z", "statistic": z, "p_value": p, "difference": diff,
                             "low": low, "high": high})
            else:
                t, p, low, high = welch_test(o.revenue, ctrl.revenue, level)
                diff = (float(o.revenue.mean() - ctrl.revenue.mean()) if o.users and ctrl.users
                        else float("nan"))
                rows.append({"metric": m, "arm": a.name, "control": spec.control.name, "test": "Welch t",
                             "statistic": t, "p_value": p, "difference": diff, "low": low, "high": high})
        adjusted = holm([r["p_value"] for r in rows])
        for r, adj in zip(rows, adjusted, strict=True):
            r["p_adjusted"] = adj
            r["significant"] = bool(not math.isnan(adj) and adj < spec.alpha)
            for k in ("statistic", "p_value", "p_adjusted", "difference", "low", "high"):
                r[k] = _nan_to_none(r[k])
        tests.extend(rows)
    return {"experiment": spec.name, "alpha": spec.alpha, "window_s": spec.window_s,
            "correction": "holm" if len(spec.arms) > 2 else "none (one comparison)",
            "arms": arms_out, "tests": tests}


def outcomes_by_arm(frame: Any) -> dict[str, ArmOutcomes]:
    """Per-user outcomes (a polars frame with ``arm`` and the columns of :class:`ArmOutcomes`, as
    :meth:`lmrec.store.experiments.ExperimentTable.user_outcomes` returns it) split by arm."""
    out: dict[str, ArmOutcomes] = {}
    if frame.height == 0:
        return out
    for (arm,), part in frame.partition_by("arm", as_dict=True, maintain_order=True).items():
        out[str(arm)] = ArmOutcomes(
            str(arm), *(part[c].to_numpy().astype(np.float64) for c in
                        ("answers", "clicked", "carted", "bought", "revenue", "clicked_answers")))
    return out


def experiment_report(record: dict[str, Any], frame: Any) -> dict[str, Any]:
    """The stored definition ``record`` (a row of the experiments table) with :func:`arm_report` of its
    per-user outcomes ``frame`` and its state."""
    spec = ExperimentSpec.from_dict(record)
    report = arm_report(spec, outcomes_by_arm(frame))
    return {**spec.to_dict(), "status": "running" if spec.running else "stopped", **report}
