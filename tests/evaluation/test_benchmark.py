"""run_benchmark end to end on small data: table, report files, labels, tuning on validation only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.splits import leave_one_out
from lmrec.evaluation import run_benchmark, tune


def test_benchmark_writes_a_complete_report(
    board: Dataset, board_vectors: np.ndarray, tmp_path: Path
) -> None:
    res = run_benchmark(
        board,
        "leave-one-out",
        models=["most-popular", ("itemknn", {"k": 10}), ("knn-5", "itemknn", {"k": 5}), "content-lm"],
        ks=(5, 10),
        out_dir=tmp_path,
        seed=0,
        item_vectors=board_vectors,
        progress=False,
        n_boot=200,
        command="pytest",
    )
    assert res.labels == ["most-popular", "itemknn", "knn-5", "content-lm"]
    assert res.ranking == "full ranking"
    d = res.to_dict()
    assert set(d["models"]) == set(res.labels)
    ndcg = d["models"]["itemknn"]["metrics"]["NDCG@10"]
    assert ndcg["ci_low"] <= ndcg["mean"] <= ndcg["ci_high"]
    assert d["models"][d["best_model"]]["vs_best"] is None
    assert res.report_html is not None and res.report_html.exists()
    page = res.report_html.read_text()
    assert page.count("data:image/png;base64,") == 3 and "full ranking" in page
    md = (tmp_path / "report.md").read_text()
    assert "full ranking" in md and "NDCG@10" in md and "seed" in md
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["models"]["content-lm"]["metrics"]["ILD@10"]["mean"] is not None
    assert (tmp_path / "per_user.parquet").exists()
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(res.table())
    assert "itemknn" in console.export_text()


def test_sampled_benchmark_is_labelled_everywhere(board: Dataset, tmp_path: Path) -> None:
    res = run_benchmark(
        board,
        "leave-one-out",
        models=["most-popular"],
        ks=(5,),
        out_dir=tmp_path,
        ranking="sampled-10",
        progress=False,
        n_boot=50,
    )
    label = "sampled (10 negatives)"
    assert res.ranking == label
    assert label in (tmp_path / "report.md").read_text()
    assert label in (tmp_path / "report.html").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["ranking"] == label


def test_cold_item_protocol_needs_text(board: Dataset, board_vectors: np.ndarray) -> None:
    res = run_benchmark(
        board,
        "cold-item",
        models=["itemknn", "content-lm"],
        ks=(10,),
        seed=0,
        item_vectors=board_vectors,
        progress=False,
        n_boot=50,
        protocol_params={"cold_frac": 0.2},
    )
    # collaborative models cannot rank items without events; the text model can
    assert res.result("content-lm").mean("HR@10") > res.result("itemknn").mean("HR@10")


def test_tuning_reads_validation_only(board: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    split = leave_one_out(board)
    from lmrec.evaluation import tuning

    seen: list[str] = []
    real = tuning.evaluate

    def spy(model, eval_set, *a, **k):  # type: ignore[no-untyped-def]
        seen.append(eval_set.name)
        return real(model, eval_set, *a, **k)

    monkeypatch.setattr(tuning, "evaluate", spy)
    res = tune("itemknn", {"k": [2, 10]}, split)
    assert len(res.trials) == 2 and res.best["k"] in (2, 10)
    assert set(seen) == {"valid"}
    assert res.best_score == max(s for _, s in res.trials)


def test_fitted_models_from_another_vocabulary_are_refused(board: Dataset) -> None:
    from lmrec.models import create_model
    from tests.models.conftest import checkerboard

    other = checkerboard().with_events(board.events.head(10))
    m = create_model("most-popular").fit(other)
    # same vocabulary → accepted without refitting
    res = run_benchmark(board, models=[("prefit", m)], ks=(5,), progress=False, n_boot=20)
    assert res.result("prefit").fit_seconds < 0.1


def test_benchmark_tuning_is_recorded(board: Dataset, tmp_path: Path) -> None:
    res = run_benchmark(
        board,
        models=[("knn", "itemknn", {"shrink": 1.0})],
        tune={"itemknn": {"k": [3, 10]}},
        ks=(5,),
        out_dir=tmp_path,
        progress=False,
        n_boot=20,
    )
    rec = res.to_dict()["tuning_on_validation"]["knn"]
    assert rec["metric"] == "NDCG@5" and len(rec["trials"]) == 2
    assert rec["best"]["shrink"] == 1.0 and rec["best"]["k"] in (3, 10)
    assert res.result("knn").config["k"] == rec["best"]["k"]
    assert "Tuned on the validation split" in (tmp_path / "report.md").read_text()


def test_a_spec_needs_text_vectors_as_its_settings_say() -> None:
    from lmrec.evaluation.benchmark import ModelSpec

    assert ModelSpec.of("content-lm").needs_item_vectors
    assert not ModelSpec.of("ease").needs_item_vectors
    assert not ModelSpec.of("seqrec").needs_item_vectors  # id items: no encoder asked for
    assert ModelSpec.of(("seqrec", {"item_repr": "fused"})).needs_item_vectors
    assert ModelSpec.of(("seqrec", {"id_init": "svd+text"})).needs_item_vectors  # id items started from text
