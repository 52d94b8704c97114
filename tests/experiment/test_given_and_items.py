"""train / evaluate / recommend on data that carries its split (``--protocol given``), item files given with
``--items``, and ``--strict`` for item text that cannot tell items apart."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.loaders import load_dataset
from lmrec.data.splits import given
from lmrec.experiment import build_config, histories_for
from lmrec.experiment import train as run_train
from lmrec.experiment.runs import text_checks
from lmrec.models import create_model
from lmrec.models.base import TextQualityWarning

runner = CliRunner()


def _run(*args: str):
    result = runner.invoke(app, list(args))
    return result, " ".join(result.output.split())


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 users over 30 items with a split column: each user's last event test, the one before valid, and
    a second test event for every fourth user."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        items = rng.choice(30, size=8, replace=False)
        for k, item in enumerate(items):
            part = "test" if k >= 7 or (k == 6 and u % 4 == 0) else "valid" if k == 5 else "train"
            rows.append(f"u{u},i{item},{1000 + k},{part}\n")
    path = tmp_path_factory.mktemp("given") / "clicks.csv"
    path.write_text("user_id,item_id,timestamp,split\n" + "".join(rows))
    (path.parent / "items.txt").write_text("item_id\ttext\n"
                                           + "".join(f"i{k}\tItem number {k}\n" for k in range(25)))
    return path


def test_train_evaluate_and_recommend_on_the_given_split(split_csv: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "ease"
    result, out = _run("train", "ease", "--dataset", str(split_csv), "--protocol", "given",
                       "--items", str(split_csv.parent / "items.txt"), "--out", str(model_dir))
    assert result.exit_code == 0, out
    assert "given: train" in out and "text for 25 of 30 items with events (83 %)" in out
    info = json.loads((model_dir / "training.json").read_text())
    assert info["protocol"] == "given" and info["items"].endswith("items.txt")
    assert info["text_coverage"] == [25, 30]
    # Lists for the test part are exactly the given test users, histories and targets.
    ds, _ = load_dataset(split_csv)
    sp = given(ds)
    hist = histories_for(model_dir, "test")
    assert hist.users == ds.user_map.raws(sp.test.users).tolist()
    assert [sorted(t) for t in hist.targets or []] == [sorted(ds.item_map.raws(t).tolist())
                                                       for t in sp.test.targets]
    assert sum(len(t) for t in hist.targets or []) == 50  # 40 last events + a second one for 10 users
    result, out = _run("evaluate", "ease", "most-popular", "--dataset", str(split_csv), "--protocol", "given",
                       "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, out
    report = json.loads(next((tmp_path / "report").glob("*.json")).read_text())
    assert "given" in json.dumps(report)


def test_given_on_data_without_a_split_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "plain.csv"
    f.write_text("user_id,item_id,timestamp\n" + "".join(f"u{k % 3},i{k},{k}\n" for k in range(12)))
    result, out = _run("evaluate", "ease", "--dataset", str(f), "--protocol", "given")
    assert result.exit_code == 1 and "protocol 'given' needs data that carries its split" in out
    assert "Traceback" not in out


def test_strict_turns_the_text_warning_into_an_error(board_vectors_and_data) -> None:
    board, vectors = board_vectors_and_data
    same = np.tile(vectors[1], (len(vectors), 1))
    same[0] = 0
    with pytest.raises(ValueError, match=r"same text vector.*--strict"), text_checks(True):
        create_model("content-lm").fit(board, item_vectors=same)
    with pytest.warns(TextQualityWarning), text_checks(False):
        create_model("content-lm").fit(board, item_vectors=same)
    with warnings.catch_warnings(), text_checks(True):
        warnings.simplefilter("error")
        create_model("content-lm").fit(board, item_vectors=vectors)  # distinct texts: nothing raised


@pytest.fixture(scope="module")
def board_vectors_and_data():
    from tests.models.conftest import checkerboard, checkerboard_vectors

    board = checkerboard()
    return board, checkerboard_vectors(board)


def test_strict_flag_reaches_the_experiment_config(split_csv: Path) -> None:
    cfg = build_config(None, {"data.dataset": str(split_csv), "data.strict": True, "split.protocol": "given",
                              "model.name": "content-lm"})
    assert cfg.data.strict and cfg.split.protocol == "given"
    # content-lm on items without any text: every item gets the same vector, an error under strict.
    f = split_csv.parent / "no-text.csv"
    f.write_text(pl.read_csv(split_csv).write_csv())
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"dataset": str(f)})})
    with pytest.raises(ValueError, match="an error under --strict"):
        run_train(cfg)


def test_a_sequence_files_stated_protocol_through_data_options(tmp_path: Path) -> None:
    f = tmp_path / "Beauty.txt"
    f.write_text("".join(f"{u} " + " ".join(f"{(u + k) % 9}" for k in range(5)) + "\n" for u in range(12)))
    model_dir = tmp_path / "pop"
    result, out = _run("train", "most-popular", "--dataset", str(f), "--protocol", "given",
                       "--set", "data.options.split=leave-one-out", "--out", str(model_dir))
    assert result.exit_code == 0, out
    assert "given: train 36 events, valid 12 users, test 12 users" in out
    hist = histories_for(model_dir, "test")  # the loader options are recorded with the model
    assert hist.targets == [[str((u + 4) % 9)] for u in range(12)]
