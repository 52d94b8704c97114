"""Experiment definitions, bucketing and the statistics of arms, checked against scipy and known values."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from lmrec.evaluation.abtest import (
    Arm,
    ArmOutcomes,
    ExperimentError,
    ExperimentSpec,
    arm_report,
    bucket,
    experiment_report,
    holm,
    mean_interval,
    outcomes_by_arm,
    proportion_difference_interval,
    two_proportion_ztest,
    welch_test,
    wilson_interval,
)

USERS = [f"user-{i}" for i in range(20_000)]


def _spec(*shares: float, salt: str = "salt", alpha: float = 0.05) -> ExperimentSpec:
    return ExperimentSpec("exp", tuple(Arm(f"a{i}", f"v{i}", s) for i, s in enumerate(shares)), salt=salt,
                          alpha=alpha)


def test_bucketing_is_deterministic_keyed_by_salt_and_respects_shares() -> None:
    spec = _spec(0.2, 0.3, 0.4)
    first = [spec.assign(u) for u in USERS]
    assert first == [_spec(0.2, 0.3, 0.4).assign(u) for u in USERS]  # same salt and id: same arm, always
    assert bucket("salt", "user-1") == bucket("salt", "user-1") != bucket("other", "user-1")
    counts = {name: sum(a is not None and a.name == name for a in first) for name in ("a0", "a1", "a2")}
    counts["none"] = sum(a is None for a in first)  # the 10 % outside every share
    n = len(USERS)
    for name, share in (("a0", 0.2), ("a1", 0.3), ("a2", 0.4), ("none", 0.1)):
        sd = np.sqrt(n * share * (1 - share))
        assert abs(counts[name] - n * share) < 5 * sd, (name, counts)
    # a goodness-of-fit test of the observed split against the shares does not reject
    assert stats.chisquare([counts[k] for k in ("a0", "a1", "a2", "none")],
                           [n * s for s in (0.2, 0.3, 0.4, 0.1)]).pvalue > 1e-4
    # another salt reshuffles users independently of this one (2x2 table of arms under both salts)
    other = [_spec(0.5, 0.5, salt="another").assign(u).name for u in USERS]
    mine = [_spec(0.5, 0.5).assign(u).name for u in USERS]
    table = pd_crosstab(mine, other)
    assert stats.chi2_contingency(table).pvalue > 1e-4


def pd_crosstab(a: list[str], b: list[str]) -> np.ndarray:
    keys_a, keys_b = sorted(set(a)), sorted(set(b))
    out = np.zeros((len(keys_a), len(keys_b)))
    for x, y in zip(a, b, strict=True):
        out[keys_a.index(x), keys_b.index(y)] += 1
    return out


def test_definitions_are_checked() -> None:
    with pytest.raises(ExperimentError, match="at least two"):
        _spec(0.5)
    with pytest.raises(ExperimentError, match="add up"):
        _spec(0.6, 0.6)
    with pytest.raises(ExperimentError, match="share"):
        _spec(0.0, 0.5)
    with pytest.raises(ExperimentError, match="differ"):
        ExperimentSpec("x", (Arm("a", "v1", 0.5), Arm("a", "v2", 0.5)))
    with pytest.raises(ExperimentError, match="name"):
        ExperimentSpec("bad name", (Arm("a", "v1", 0.5), Arm("b", "v2", 0.5)))
    with pytest.raises(ExperimentError, match="version"):
        ExperimentSpec("x", (Arm("a", "../v1", 0.5), Arm("b", "v2", 0.5)))
    spec = ExperimentSpec("x", (Arm("a", "v1", 0.5), Arm("b", "v2", 0.5)))
    assert spec.salt == "x" and spec.control.name == "a"
    assert ExperimentSpec.from_dict(spec.to_dict()) == spec


def test_wilson_interval_matches_scipy() -> None:
    for k, n in ((0, 10), (3, 10), (10, 10), (57, 1000), (1, 3)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n, 0.95) == pytest.approx((ci.low, ci.high), abs=1e-12)
    low, high = wilson_interval(57, 1000, 0.99)
    ci = stats.binomtest(57, 1000).proportion_ci(confidence_level=0.99, method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_two_proportion_z_test_is_the_uncorrected_chi_square_test() -> None:
    for x1, n1, x2, n2 in ((120, 1000, 100, 1000), (30, 200, 45, 210), (5, 50, 5, 50)):
        z, p = two_proportion_ztest(x1, n1, x2, n2)
        chi2, p_chi, _, _ = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
        assert z * z == pytest.approx(chi2, rel=1e-9)
        assert p == pytest.approx(p_chi, rel=1e-9)
    # textbook value: 120/1000 vs 100/1000, pooled p = 0.11, z = 0.02 / sqrt(0.11 * 0.89 * 0.002)
    assert two_proportion_ztest(120, 1000, 100, 1000)[0] == pytest.approx(0.02 / np.sqrt(0.11 * 0.89 * 0.002))
    assert two_proportion_ztest(0, 10, 0, 10) == (0.0, 1.0)
    low, high = proportion_difference_interval(120, 1000, 100, 1000)
    half = 1.959963984540054 * np.sqrt(0.12 * 0.88 / 1000 + 0.1 * 0.9 / 1000)
    assert (low, high) == pytest.approx((0.02 - half, 0.02 + half), rel=1e-9)


def test_welch_test_and_mean_interval_match_scipy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.exponential(3.0, 400), rng.exponential(2.5, 300)
    t, p, low, high = welch_test(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-9)
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    m_low, m_high = mean_interval(a)
    ref_m = stats.ttest_1samp(a, 0.0).confidence_interval(0.95)
    assert (m_low, m_high) == pytest.approx((ref_m.low, ref_m.high), rel=1e-9)
    assert welch_test(np.zeros(5), np.zeros(5))[1] == 1.0


def test_holm_adjustment_known_values() -> None:
    # sorted: 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    adj = holm([0.2, float("nan"), 0.01])
    assert adj[0] == pytest.approx(0.2) and np.isnan(adj[1]) and adj[2] == pytest.approx(0.02)


def _outcomes(arm: str, n: int, p_click: float, rng: np.random.Generator) -> ArmOutcomes:
    clicked = (rng.random(n) < p_click).astype(float)
    bought = clicked * (rng.random(n) < 0.3)
    revenue = bought * rng.gamma(2.0, 20.0, n)
    return ArmOutcomes(arm, np.ones(n), clicked, clicked * (rng.random(n) < 0.5), bought, revenue, clicked)


def test_arm_report_tests_each_arm_against_the_control_with_holm() -> None:
    rng = np.random.default_rng(1)
    spec = _spec(0.3, 0.3, 0.3)
    outs = {"a0": _outcomes("a0", 3000, 0.10, rng), "a1": _outcomes("a1", 3000, 0.10, rng),
            "a2": _outcomes("a2", 3000, 0.16, rng)}
    rep = arm_report(spec, outs)
    assert rep["correction"] == "holm" and [a["arm"] for a in rep["arms"]] == ["a0", "a1", "a2"]
    ctr = {t["arm"]: t for t in rep["tests"] if t["metric"] == "click_through"}
    for arm in ("a1", "a2"):
        x1, x0 = int(outs[arm].clicked.sum()), int(outs["a0"].clicked.sum())
        assert ctr[arm]["p_value"] == pytest.approx(two_proportion_ztest(x1, 3000, x0, 3000)[1])
    raw = [ctr["a1"]["p_value"], ctr["a2"]["p_value"]]
    assert [ctr["a1"]["p_adjusted"], ctr["a2"]["p_adjusted"]] == pytest.approx(holm(raw))
    assert ctr["a2"]["significant"] and ctr["a2"]["difference"] > 0
    assert ctr["a2"]["low"] < ctr["a2"]["difference"] < ctr["a2"]["high"]
    rev = {t["arm"]: t for t in rep["tests"] if t["metric"] == "revenue_per_user"}
    assert rev["a2"]["p_value"] == pytest.approx(welch_test(outs["a2"].revenue, outs["a0"].revenue)[1])
    a0 = rep["arms"][0]["metrics"]["click_through"]
    assert (a0["low"], a0["high"]) == pytest.approx(wilson_interval(a0["count"], 3000))


def test_a_a_tests_reject_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(7)
    spec = _spec(0.5, 0.5)
    rejections = []
    for _ in range(400):
        rep = arm_report(spec, {"a0": _outcomes("a0", 400, 0.2, rng), "a1": _outcomes("a1", 400, 0.2, rng)})
        rejections.append(next(t for t in rep["tests"] if t["metric"] == "click_through")["significant"])
    rate = float(np.mean(rejections))
    # 400 draws of Bernoulli(0.05): sd 0.011; the z test is close to exact at these sizes
    assert 0.015 <= rate <= 0.09, rate


def test_report_from_a_frame_of_per_user_outcomes() -> None:
    frame = pl.DataFrame({"user_id": ["a", "b", "c", "d"], "arm": ["a0", "a0", "a1", "a1"],
                          "answers": [2, 1, 1, 3], "clicked_answers": [1, 0, 1, 2], "clicked": [1, 0, 1, 1],
                          "carted": [0, 0, 1, 0], "bought": [0, 0, 1, 0], "revenue": [0.0, 0.0, 30.0, 0.0]})
    outs = outcomes_by_arm(frame)
    assert outs["a1"].revenue.tolist() == [30.0, 0.0] and outs["a0"].answers.tolist() == [2.0, 1.0]
    record = {"name": "exp", "salt": "s", "arms": [{"name": "a0", "version": "v0", "share": 0.5},
                                                   {"name": "a1", "version": "v1", "share": 0.5}],
              "window_s": 3600, "alpha": 0.05, "description": "", "created_at": 1.0, "stopped_at": None}
    rep = experiment_report(record, frame)
    assert rep["status"] == "running" and rep["arms"][0]["answer_ctr"] == pytest.approx(1 / 3)
    assert rep["arms"][1]["metrics"]["conversion"]["value"] == 0.5
    assert rep["arms"][1]["metrics"]["revenue_per_user"]["value"] == 15.0
    empty = experiment_report(record, frame.clear())
    assert all(a["users"] == 0 and a["metrics"]["click_through"]["value"] is None for a in empty["arms"])
    assert all(t["p_value"] is None and not t["significant"] for t in empty["tests"])
