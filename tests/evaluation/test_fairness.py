"""Group fairness in the evaluation: metric by user attribute with CIs and the best−worst gap, exposure shares
by item group, and the exposure re-ranking measured through the same evaluation."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.exposure import ExposurePolicy, ItemGroups
from lmrec.evaluation import run_benchmark
from lmrec.evaluation.evaluator import EvalResult
from lmrec.evaluation.fairness import by_user_group, exposure_shares, parse_by, user_groups


def _people() -> Dataset:
    ages = [15, 22, 25, 30, 31, 40, 45, 60, 70, None]
    users = pl.DataFrame({
        "user_id": [f"u{i}" for i in range(10)],
        "attributes": [json.dumps({"gender": "F" if i % 2 else "M", **({"age": a} if a is not None else {})})
                       for i, a in enumerate(ages)],
    })
    events = pl.DataFrame({"event_id": [str(i) for i in range(10)], "user_id": [f"u{i}" for i in range(10)],
                           "item_id": ["a"] * 10, "timestamp": list(range(10)), "event_type": ["view"] * 10})
    return Dataset.build(events, users=users)


def test_categorical_and_bucketed_attributes() -> None:
    ds = _people()
    users = np.arange(1, 11)
    g = user_groups(ds, "gender", users)
    assert g.labels == ("F", "M") and g.codes.tolist() == [1, 0] * 5
    a = user_groups(ds, "age", users)  # 9 distinct ages > MAX_LEVELS (8): quantile buckets, missing → unknown
    assert a.bucketed and a.labels[-1] == "unknown" and a.codes[-1] == len(a.labels) - 1
    assert a.labels[0].startswith("≤") and a.labels[-2].startswith("≥")
    assert len(a.labels) - 1 <= 4
    two = user_groups(ds, "age:2", users)
    assert len(two.labels) == 3  # two buckets and unknown
    # every bucket's label range holds its members
    ages = [15, 22, 25, 30, 31, 40, 45, 60, 70]
    lo = [min(x for x, c in zip(ages, two.codes, strict=False) if c == k) for k in range(2)]
    assert lo[0] == 15 and lo[1] > 15
    with pytest.raises(ValueError, match="no user has an attribute 'income'.*gender"):
        user_groups(ds, "income", users)
    assert parse_by("gender, age:6,") == ["gender", "age:6"] and parse_by(["a,b", "c"]) == ["a", "b", "c"]


def test_group_means_ci_and_gap() -> None:
    ds = _people()
    g = user_groups(ds, "gender", np.arange(1, 11))
    vals = np.where(g.codes == 0, 0.5, 0.1)  # F 0.5, M 0.1
    res = EvalResult("m", "full ranking", (10,), np.arange(1, 11), {"NDCG@10": vals}, {}, np.zeros((10, 10)),
                     np.zeros(10), np.zeros(10), 0.0, np.zeros((10, 10), bool), np.ones(10))
    rep = by_user_group(res, g, "NDCG@10", n_boot=200)
    assert rep["best"] == "F" and rep["worst"] == "M"
    assert rep["gap"] == pytest.approx(0.4) and rep["ratio"] == pytest.approx(0.2)
    f = rep["groups"]["F"]
    assert f["users"] == 5 and f["ci_low"] <= f["mean"] <= f["ci_high"]


def test_exposure_shares_by_hand() -> None:
    groups = ItemGroups.from_lists([[], ["A"], ["A", "B"], ["B"], []])
    ranked = np.array([[1, 2], [1, 3]])  # slots: item1 ×2 (A), item2 (A½ B½), item3 (B)
    pop = np.array([0, 6, 2, 2, 0])
    out = exposure_shares(ranked, 2, groups, pop)
    g = out["groups"]
    assert g["A"]["exposure"] == pytest.approx(2.5 / 4) and g["B"]["exposure"] == pytest.approx(1.5 / 4)
    # catalogue: items 1..3 have groups (item 4 none): A 1.5, B 1.5
    assert g["A"]["catalogue"] == pytest.approx(0.5)
    assert g["A"]["interactions"] == pytest.approx(7 / 10) and g["B"]["interactions"] == pytest.approx(3 / 10)
    assert sum(v["exposure"] for v in g.values()) == pytest.approx(1.0)
    assert out["tv_exposure_vs_interactions"] == pytest.approx(abs(0.625 - 0.7))


def test_benchmark_reports_fairness_and_the_cost_of_reranking(ml100k, tmp_path) -> None:
    models = [("itemknn", {}), ("most-popular", {})]
    plain = run_benchmark(ml100k, "leave-one-out", models, ks=(10,), progress=False,
                          by="gender,age,occupation", out_dir=tmp_path / "plain", n_boot=200)
    fair = plain.fairness
    assert set(fair["users"]) == {"gender", "age", "occupation"}
    gender = fair["users"]["gender"]["itemknn"]
    assert set(gender["groups"]) == {"F", "M"} and sum(g["users"] for g in gender["groups"].values()) == 943
    assert gender["gap"] >= 0 and fair["item_groups"] == "categories"
    shares = fair["items"]["itemknn"]["groups"]
    assert sum(s["exposure"] for s in shares.values()) == pytest.approx(1.0)
    assert sum(s["catalogue"] for s in shares.values()) == pytest.approx(1.0)
    md = (tmp_path / "plain" / "report.md").read_text()
    assert "## Fairness" in md and "NDCG@10 by user age" in md and "Exposure share of top-10" in md
    assert "best − worst" in md
    saved = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert saved["fairness"]["users"]["gender"]["itemknn"]["best"] in ("F", "M")
    assert "Fairness" in (tmp_path / "plain" / "report.html").read_text()

    policy = ExposurePolicy(max_group_share=0.3, min_tail_share=0.2)
    capped = run_benchmark(ml100k, "leave-one-out", models[:1], ks=(10,), progress=False, by="gender",
                           exposure=policy, n_boot=200)
    r = capped.result("itemknn")
    groups = ItemGroups.of_items(ml100k.items).padded(ml100k.n_items + 1)
    counts = np.stack([np.asarray(groups.membership[row[row > 0]].sum(0)).ravel() for row in r.ranked])
    # the cap holds on most lists: it bends only when the 100 candidates cannot fill a list within it (films
    # have several genres; Drama and Comedy hold 40% of the catalogue)
    assert (counts.max(1) <= policy.cap(10)).mean() > 0.8
    assert r.mean("Tail@10") >= 0.2 - 1e-9
    assert capped.exposure.startswith("≤30%")
    cost = plain.result("itemknn").mean("NDCG@10") - r.mean("NDCG@10")
    assert np.isfinite(cost)


def test_cli_evaluate_by_prints_and_writes_fairness(tmp_path) -> None:
    from typer.testing import CliRunner

    from lmrec.cli import app

    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["evaluate", "most-popular", "--data", "movielens-100k", "--by",
                                 "gender,age:3", "--k", "10", "--max-group-share", "0.5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "NDCG@10 by user gender" in said and "Exposure share of top-10 slots by item categories" in said
    assert "exposure re-ranking: ≤50% of a list per item group" in said
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["fairness"]["users"]["age"]["most-popular"]["groups"]) == 3
    assert saved["exposure_reranking"].startswith("≤50%")
    r = CliRunner().invoke(app, ["evaluate", "most-popular", "--data", "movielens-100k", "--by", "income"])
    assert r.exit_code == 1 and "no user has an attribute 'income'" in " ".join(r.output.split())
