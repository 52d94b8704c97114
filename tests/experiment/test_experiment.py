"""lmrec.experiment: the config (YAML/TOML round trip, --set overrides, errors), the CLI built on it, the
tuner's cut-off check and the torchrun entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.experiment import ExperimentConfig, build_config, load_config, validate
from lmrec.experiment import tune as run_tune
from lmrec.experiment.__main__ import main as experiment_main

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.models.conftest import checkerboard

    return checkerboard().save(tmp_path_factory.mktemp("data") / "board")


def _example() -> ExperimentConfig:
    return validate(
        {
            "seed": 3,
            "out": "models/seqrec",
            "data": {"dataset": "movielens-100k"},
            "split": {"protocol": "cold-item", "params": {"cold_frac": 0.2}},
            "model": {"name": "seqrec", "d_model": 64, "item_repr": "fused", "lr": 0.002},
            "models": ["ease", {"name": "itemknn", "label": "knn-50", "k": 50}],
            "eval": {"ks": [5, 10], "ranking": "sampled-50"},
            "tune": {"space": {"dropout": [0.2, 0.5]}, "mode": "grid", "metric": "HR@10"},
        }
    )


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_config_round_trips_through_a_file(tmp_path: Path, suffix: str) -> None:
    cfg = _example()
    assert cfg.model is not None and cfg.model.settings == {"d_model": 64, "item_repr": "fused", "lr": 0.002}
    assert cfg.models[1].label == "knn-50" and cfg.eval.ks == (5, 10) and cfg.out == Path("models/seqrec")
    back = load_config(cfg.write(tmp_path / f"run{suffix}"))
    assert back == cfg
    assert back.split_params() == {"cold_frac": 0.2, "seed": 3}


def test_set_overrides_nested_sections_and_model_settings(tmp_path: Path) -> None:
    path = _example().write(tmp_path / "run.yaml")
    cfg = build_config(
        path,
        {"seed": 7, "data.dataset": None},  # a flag that was not given changes nothing
        ["model.d_model=32", "n_layers=3", "seqrec.lr=0.01", "eval.ranking=full", "tune.space.lr=[0.1,0.2]",
         "split.seed=5"],
    )
    assert cfg.model is not None
    assert cfg.model.settings == {"d_model": 32, "item_repr": "fused", "lr": 0.01, "n_layers": 3}
    assert cfg.seed == 7 and cfg.split.seed == 5 and cfg.data.dataset == "movielens-100k"
    assert cfg.eval.ranking == "full" and cfg.tune.space == {"dropout": [0.2, 0.5], "lr": [0.1, 0.2]}
    several = build_config(None, {"models": ["ease", "itemknn"]}, ["ease.lam=300"], several=True)
    assert [(m.name, m.settings) for m in several.models] == [("ease", {"lam": 300}), ("itemknn", {})]


def test_unknown_keys_name_the_key_and_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'eval\.foo'.*valid keys of eval: ks, ranking"):
        build_config(None, {"model.name": "itemknn"}, ["eval.foo=1"])
    with pytest.raises(ValueError, match=r"no setting\(s\) \['bogus'\].*valid:.*\bk\b.*shrink"):
        build_config(None, {"model.name": "itemknn"}, ["bogus=1"])
    with pytest.raises(ValueError, match="valid top-level keys"):
        validate({"modle": {"name": "ease"}})
    with pytest.raises(ValueError, match="tune.space.*no setting"):
        build_config(None, {"model.name": "itemknn"}, ["tune.space.nope=[1,2]"])
    with pytest.raises(ValueError, match="not being evaluated"):
        build_config(None, {"models": ["ease"]}, ["itemknn.k=3"], several=True)
    with pytest.raises(ValueError, match="unknown protocol"):
        build_config(None, {"split.protocol": "random"})
    with pytest.raises(ValueError, match="unknown model"):
        build_config(None, {"model.name": "no-such-model"})


def test_train_from_a_config_file_equals_the_same_flags(board_dir: Path, tmp_path: Path) -> None:
    flags_dir, file_dir = tmp_path / "flags", tmp_path / "file"
    r = runner.invoke(
        app,
        ["train", "als", "--dataset", str(board_dir), "--out", str(flags_dir), "--set", "factors=8",
         "--set", "iterations=3", "--seed", "2"],
    )
    assert r.exit_code == 0, r.output
    run = tmp_path / "run.yaml"
    run.write_text(
        f"seed: 2\nout: {file_dir}\ndata:\n  dataset: {board_dir}\nmodel:\n  name: als\n  factors: 8\n"
    )
    r = runner.invoke(app, ["train", "--config", str(run), "--set", "model.iterations=3"])
    assert r.exit_code == 0, r.output
    a, b = (json.loads((d / "training.json").read_text()) for d in (flags_dir, file_dir))
    for info in (a, b):
        info.pop("fit_seconds")
    assert a == b and a["config"] == {"factors": 8, "iterations": 3, "seed": 2}
    r = runner.invoke(app, ["train", "--config", str(run), "--set", "model.nope=1"])
    assert r.exit_code == 1 and "nope" in r.output


def test_tuner_refuses_a_metric_whose_cutoff_is_not_evaluated(board_dir: Path, tmp_path: Path) -> None:
    cfg = build_config(
        None,
        {"model.name": "most-popular", "data.dataset": str(board_dir), "tune.metric": "NDCG@10"},
        ["eval.ks=[5]", "tune.space.half_life_days=[0.0,30.0]"],
    )
    with pytest.raises(ValueError, match="not evaluated"):
        run_tune(cfg)
    out = tmp_path / "trials.json"
    r = runner.invoke(
        app,
        ["tune", "most-popular", "--space", "half_life_days=0,30", "--dataset", str(board_dir), "--mode",
         "grid", "--metric", "HR@5", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    saved = json.loads(out.read_text())
    assert saved["metric"] == "HR@5" and len(saved["trials"]) == 2
    r = runner.invoke(
        app, ["tune", "most-popular", "--space", "half_life_days=0", "--dataset", str(board_dir),
              "--metric", "NDCG@50"],
    )
    assert r.exit_code == 1 and "not evaluated" in r.output


def test_the_torchrun_entry_trains_alone(
    board_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment_main(["--model", "itemknn", "--dataset", str(board_dir), "--out", str(tmp_path / "m"),
                     "--set", "k=5"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "itemknn" and summary["config"] == {"k": 5} and summary["processes"] == 1
    assert (tmp_path / "m" / "training.json").exists()


def test_python_m_lmrec_experiment_help() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-m", "lmrec.experiment", "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and "torchrun" in r.stdout and "--config" in r.stdout


def test_every_seeded_protocol_gets_the_run_seed() -> None:
    from lmrec.experiment.config import ExperimentConfig

    for protocol in ("cold-item", "cold-mixed"):
        cfg = ExperimentConfig.model_validate({"seed": 7, "split": {"protocol": protocol}})
        assert cfg.split_params()["seed"] == 7, protocol
    assert "seed" not in ExperimentConfig.model_validate({"split": {"protocol": "temporal"}}).split_params()


def test_cold_protocols_benchmark_the_unseen_first_rule() -> None:
    from lmrec.experiment.config import ExperimentConfig
    from lmrec.experiment.runs import model_specs

    for protocol, has in (("cold-item", True), ("cold-mixed", True), ("leave-one-out", False)):
        cfg = ExperimentConfig.model_validate({"split": {"protocol": protocol}})
        labels = [s.label for s in model_specs(cfg)]
        assert ("unseen-random" in labels) is has, protocol


def test_a_store_file_is_a_dataset_and_the_encoder_is_a_data_setting(tmp_path):
    """`lmrec train --dataset shop.duckdb --encoder X`: a store (`lmrec data import`) is the dataset."""
    import polars as pl

    from lmrec.experiment.runs import load_data
    from lmrec.store import Store

    path = tmp_path / "shop.duckdb"
    with Store(path) as st:
        st.upsert_items(pl.DataFrame({"item_id": ["i1", "i2", "i3"], "title": ["A", "B", "C"]}))
        st.append_events(pl.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["i1", "i2", "i3"],
                                       "timestamp": [1, 2, 3], "event_type": ["view"] * 3}))
    ds = load_data(str(path))
    assert ds.name == "shop" and ds.n_events == 3 and ds.n_items == 3
    cfg = build_config(None, {"data.dataset": str(path), "data.encoder": "tokenlearn-static-model"})
    assert cfg.data.encoder == "tokenlearn-static-model"
    assert build_config(None, {}).data.encoder is None
