"""One experiment path: a typed, nested config (YAML/TOML + ``--set``) and the orchestration of
``train``, ``evaluate``, ``benchmark`` and ``tune``, written once for the CLI, the ``torchrun`` entry
and library callers.

    from lmrec.experiment import build_config, train
    run = train(build_config("run.yaml", settings=["model.d_model=64"]))

Layering: this package sits above data, text, training, models, evaluation and prediction, and below serving
and the CLI; nothing under it imports it.
"""

from lmrec.experiment.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    SplitConfig,
    TuneConfig,
    build_config,
    load_config,
    parse_ks,
    parse_settings,
    parse_value,
    validate,
)
from lmrec.experiment.runs import (
    FOR_CHOICES,
    Histories,
    TrainRun,
    benchmark,
    evaluate,
    histories_for,
    load_data,
    model_specs,
    train,
    tune,
)

__all__ = [
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "FOR_CHOICES",
    "Histories",
    "ModelConfig",
    "SplitConfig",
    "TrainRun",
    "TuneConfig",
    "benchmark",
    "build_config",
    "evaluate",
    "histories_for",
    "load_config",
    "load_data",
    "model_specs",
    "parse_ks",
    "parse_settings",
    "parse_value",
    "train",
    "tune",
    "validate",
]
