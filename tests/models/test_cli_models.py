"""``lmrec train | recommend | evaluate | benchmark`` and the recommendation export, on the checkerboard."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.dataset import Dataset
from lmrec.experiment import parse_settings, parse_value
from lmrec.models import create_model, load_model
from lmrec.models.export import format_for, read_user_file, write_recommendations

runner = CliRunner()


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.models.conftest import checkerboard

    return checkerboard().save(tmp_path_factory.mktemp("data") / "board")


def test_settings_are_parsed_into_types() -> None:
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("abc") == "abc"
    assert parse_settings(["k=5", "shrink=1.5"]) == {"k": 5, "shrink": 1.5}
    assert parse_settings(["ease.lam=300"], scoped=True) == {"ease": {"lam": 300}}
    with pytest.raises(ValueError):
        parse_settings(["lam"])
    with pytest.raises(ValueError):
        parse_settings(["lam=3"], scoped=True)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "tsv"])
def test_export_writes_every_user_best_first(board: Dataset, tmp_path: Path, fmt: str) -> None:
    model = create_model("itemknn", k=10).fit(board)
    out = tmp_path / f"recs.{fmt}"
    n = write_recommendations(model, None, 3, out, batch_size=7)
    assert n == board.n_users
    expected_ids, _ = model.recommend(["u0", "u31"], k=3)
    if fmt == "tsv":
        lines = out.read_text().splitlines()
        assert len(lines) == board.n_users
        row = dict(line.split("\t") for line in lines)
        assert row["u0"].split(" ") == list(expected_ids[0])
    else:
        df = (
            pl.read_parquet(out)
            if fmt == "parquet"
            else pl.read_csv(out, schema_overrides={"user_id": pl.String, "item_id": pl.String})
        )
        assert df.columns == ["user_id", "rank", "item_id", "score"]
        assert df.height == 3 * board.n_users
        u0 = df.filter(pl.col("user_id") == "u0").sort("rank")
        assert u0["item_id"].to_list() == list(expected_ids[0])
        assert u0["score"].is_sorted(descending=True)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


def test_export_helpers(tmp_path: Path) -> None:
    assert format_for(Path("a.parquet")) == "parquet" and format_for(Path("a.txt")) == "tsv"
    with pytest.raises(ValueError):
        format_for(Path("a.xlsx"))
    f = tmp_path / "users.csv"
    f.write_text("user_id\nu1\n\n# comment\nu2,extra\n")
    assert read_user_file(f) == ["u1", "u2"]


def test_train_then_recommend_then_evaluate(board_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    r = runner.invoke(
        app, ["train", "itemknn", "--dataset", str(board_dir), "--out", str(model_dir), "--set", "k=10"]
    )
    assert r.exit_code == 0, r.output
    info = json.loads((model_dir / "training.json").read_text())
    assert info["protocol"] == "leave-one-out" and info["config"] == {"k": 10}
    assert "NDCG@10" in info["validation"]
    assert load_model(model_dir).config.k == 10

    users = tmp_path / "users.txt"
    users.write_text("u0\nu31\nnobody\n")
    out = tmp_path / "recs.tsv"
    r = runner.invoke(
        app, ["recommend", str(model_dir), "--users", str(users), "--k", "4", "--out", str(out)]
    )
    # one unknown-user policy: an unknown user is an error naming it, unless --unknown popular
    assert r.exit_code == 1 and "1 user unknown to the model: 'nobody'" in " ".join(r.output.split())
    assert not out.exists()
    r = runner.invoke(
        app, ["recommend", str(model_dir), "--users", str(users), "--k", "4", "--out", str(out),
              "--unknown", "popular"]
    )
    assert r.exit_code == 0, r.output
    assert "fallback: 1 users unknown to the model got the most popular items" in " ".join(r.output.split())
    lines = out.read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["u0", "u31", "nobody"]
    assert lines[0].split("\t")[1].split(" ")[0] == "i0"

    report = tmp_path / "report"
    r = runner.invoke(
        app,
        [
            "evaluate",
            "most-popular",
            "--dataset",
            str(board_dir),
            "--k",
            "5,10",
            "--model-dir",
            str(model_dir),
            "--out",
            str(report),
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads((report / "results.json").read_text())
    assert set(res["models"]) == {"most-popular", "model"} and res["ranking"] == "full ranking"


def test_benchmark_command_and_friendly_errors(board_dir: Path, tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        [
            "benchmark",
            "--dataset",
            str(board_dir),
            "--models",
            "most-popular,itemknn",
            "--k",
            "5",
            "--ranking",
            "sampled-10",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "sampled (10 negatives)" in (tmp_path / "b" / "report.md").read_text()
    r = runner.invoke(
        app, ["train", "no-such-model", "--dataset", str(board_dir), "--out", str(tmp_path / "x")]
    )
    assert r.exit_code == 1 and "unknown model" in r.output
    r = runner.invoke(app, ["evaluate", "ease", "--dataset", str(board_dir), "--set", "itemknn.k=3"])
    assert r.exit_code == 1 and "not being evaluated" in r.output


def _ndcg_at_10(lists: pl.DataFrame, targets: pl.DataFrame) -> float:
    """An independent NDCG@10 for one target per user: 1 / log2(rank + 1) when the target is in the top 10."""
    import math

    ranked = {u: g.sort("rank")["item_id"].to_list() for (u,), g in lists.group_by("user_id")}
    gains = []
    for u, item in targets.iter_rows():
        top = ranked.get(u, [])[:10]
        gains.append(1 / math.log2(top.index(item) + 2) if item in top else 0.0)
    return sum(gains) / len(gains)


def test_recommend_for_test_lists_rescore_to_the_evaluate_figure(board_dir: Path, tmp_path: Path) -> None:
    """Lists exported with ``--for test`` and re-scored by other code give exactly ``evaluate``'s NDCG@10, and
    the default ``--for next`` scores from training *and* validation events (the history before the test
    target), not from the training part alone."""
    from lmrec.data.splits import make_split
    from lmrec.evaluation import evaluate

    model_dir = tmp_path / "ease"
    r = runner.invoke(app, ["train", "ease", "--dataset", str(board_dir), "--out", str(model_dir)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "test.parquet"
    r = runner.invoke(app, ["recommend", str(model_dir), "--for", "test", "--k", "10", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "test targets" in r.output
    targets = pl.read_csv(tmp_path / "test.targets.csv", schema_overrides={"user_id": pl.String,
                                                                             "item_id": pl.String})
    mine = _ndcg_at_10(pl.read_parquet(out), targets)

    split = make_split(Dataset.load(board_dir), "leave-one-out")
    model = load_model(model_dir)
    theirs = evaluate(model, split.test, split.train, (10,)).mean("NDCG@10")
    assert len(targets) == len(split.test)
    assert mine == pytest.approx(theirs, abs=1e-9)

    # --for next: every known event, so a user's validation item is history (excluded), not recommended
    nxt = tmp_path / "next.parquet"
    r = runner.invoke(app, ["recommend", str(model_dir), "--k", "10", "--out", str(nxt)])
    assert r.exit_code == 0, r.output
    lists = pl.read_parquet(nxt)
    valid = {model.user_map.raw(int(u)): model.item_map.raw(int(t[0]))
             for u, t in zip(split.valid.users, split.valid.targets, strict=True)}
    leaked = lists.filter(pl.col("user_id").is_in(list(valid))).filter(
        pl.struct("user_id", "item_id").map_elements(lambda r: valid[r["user_id"]] == r["item_id"],
                                                     return_dtype=pl.Boolean))
    assert leaked.height == 0
    # a model fitted on every event has no test part
    full = tmp_path / "full"
    runner.invoke(app, ["train", "ease", "--dataset", str(board_dir), "--out", str(full), "-p", "none"])
    r = runner.invoke(app, ["recommend", str(full), "--for", "test", "--out", str(tmp_path / "x.csv")])
    assert r.exit_code == 1 and "no test part" in r.output


def test_recommend_for_test_after_a_temporal_fit(board_dir: Path, tmp_path: Path) -> None:
    """The recorded temporal split holds its derived cut-off times beside its settings; recommend rebuilds
    the split from the settings alone (it used to pass the cut-offs back and fail)."""
    model_dir = tmp_path / "ease-temporal"
    r = runner.invoke(app, ["train", "ease", "--dataset", str(board_dir), "--protocol", "temporal", "--out",
                            str(model_dir)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "temporal.parquet"
    r = runner.invoke(app, ["recommend", str(model_dir), "--for", "test", "--k", "5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert pl.read_parquet(out).height > 0 and (tmp_path / "temporal.targets.csv").is_file()


def test_recommend_with_an_exposure_cap(board: Dataset, board_dir: Path, tmp_path: Path) -> None:
    """Batch lists go through the one re-ranking function (the service's too): every written list is
    `rerank` of the model's plain candidates, and the cap changes some lists."""
    import numpy as np

    from lmrec.data.exposure import ExposurePolicy, rerank

    model = create_model("itemknn", k=10).fit(board)
    policy = ExposurePolicy(max_group_share=0.5)
    out = tmp_path / "capped.csv"
    write_recommendations(model, None, 4, out, exposure=policy)
    df = pl.read_csv(out, schema_overrides={"user_id": pl.String, "item_id": pl.String})
    users = list(model.user_map.raw_ids)
    plain, _ = model.recommend(users, k=policy.candidates(4))
    groups, tail = model.exposure_groups()
    changed = 0
    for u, row in zip(users, plain, strict=True):
        row = np.array([i for i in row if i])
        want = row[rerank(model.item_map.indices(row), 4, policy, groups, tail)].tolist()
        got = df.filter(pl.col("user_id") == u).sort("rank")["item_id"].to_list()
        assert got == want, u
        changed += got != row[:4].tolist()
    assert changed > 0

    model_dir = tmp_path / "m"
    r = runner.invoke(app, ["train", "itemknn", "--data", str(board_dir), "--out", str(model_dir)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["recommend", str(model_dir), "--k", "4", "--out", str(tmp_path / "r.tsv"),
                            "--max-group-share", "0.5", "--min-tail-share", "0.25"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "exposure re-ranking: ≤50% of a list per item group, ≥25% long-tail items" in said
    r = runner.invoke(app, ["recommend", str(model_dir), "--out", str(tmp_path / "x.tsv"),
                            "--max-group-share", "0"])
    assert r.exit_code == 1 and "max_group_share must be in (0, 1]" in r.output
