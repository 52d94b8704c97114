"""Honest evaluation: protocols, full-ranking metrics with confidence intervals, paired tests and reports.

The entry point for a comparison of models is :func:`run_benchmark` (each model a :class:`ModelSpec`);
:func:`evaluate` scores one fitted model on one evaluation set; :func:`tune` searches settings on validation;
:mod:`lmrec.evaluation.metrics` holds the metric functions.
"""

from lmrec.evaluation.benchmark import DEFAULT_MODELS, BenchmarkResult, ModelSpec, run_benchmark
from lmrec.evaluation.evaluator import EvalResult, Ranking, evaluate, popularity_buckets
from lmrec.evaluation.stats import Interval, PairedTest, bootstrap_ci, paired_test
from lmrec.evaluation.tuning import TuningResult, grid, sample_points, tune

__all__ = [
    "DEFAULT_MODELS",
    "BenchmarkResult",
    "EvalResult",
    "Interval",
    "ModelSpec",
    "PairedTest",
    "Ranking",
    "TuningResult",
    "bootstrap_ci",
    "evaluate",
    "paired_test",
    "popularity_buckets",
    "grid",
    "run_benchmark",
    "sample_points",
    "tune",
]
