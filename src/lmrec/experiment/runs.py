"""The orchestration of an experiment, written once: load data, split, build models, fit, evaluate, save.

``lmrec train | evaluate | benchmark | tune``, ``lmrec seqrec train`` and the ``torchrun`` entry
(``python -m lmrec.experiment``) build an :class:`~lmrec.experiment.config.ExperimentConfig` and call one of
:func:`train`, :func:`evaluate`, :func:`benchmark` or :func:`tune`.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.config import resolve_device
from lmrec.data.dataset import Dataset, text_coverage_line
from lmrec.data.exposure import ExposurePolicy
from lmrec.data.loaders import load_dataset
from lmrec.data.splits import make_split, split_settings
from lmrec.evaluation import evaluate as evaluate_model
from lmrec.evaluation import run_benchmark
from lmrec.evaluation.benchmark import DEFAULT_MODELS, TUNING_GRIDS, BenchmarkResult, ModelSpec
from lmrec.evaluation.tuning import TuningResult
from lmrec.evaluation.tuning import tune as search
from lmrec.experiment.config import ExperimentConfig, ModelConfig, model_fields
from lmrec.models import create_model, load_model
from lmrec.models.base import Recommender, TextQualityWarning
from lmrec.store import is_store_file, open_read
from lmrec.training.distributed import cleanup, init_distributed

#: A message for the user (Rich markup allowed); the CLI prints it, library callers may drop it.
Log = Callable[[str], None]


def load_data(spec: str, items: str | None = None, options: dict[str, Any] | None = None) -> Dataset:
    """An lmrec store (a ``.duckdb`` file filled by ``lmrec data import``; read from a snapshot while a
    service holds it), a saved dataset folder (``dataset.json``), a built-in name, or a file/folder a loader
    understands; ``items``: an item file of any kind read with it; ``options``: the loader's options (not for
    a store, whose items are its own)."""

    opts = dict(options or {})
    if items is not None:
        opts["items"] = items
    if is_store_file(spec):
        if opts:
            raise ValueError(f"{spec} is a store: its items are its own and it takes no loader options "
                             f"({', '.join(sorted(opts))}); import the item file into it instead")
        with open_read(spec) as st:
            return st.to_dataset()
    if (Path(spec) / "dataset.json").exists() and not opts:
        return Dataset.load(spec)
    ds, _ = load_dataset(spec, **opts)
    return ds


def _load(cfg: ExperimentConfig) -> Dataset:
    return load_data(cfg.data.dataset, cfg.data.items, cfg.data.options)


@contextlib.contextmanager
def text_checks(strict: bool) -> Iterator[None]:
    """Within: a :class:`~lmrec.models.base.TextQualityWarning` is an error (``ValueError``) when ``strict``,
    else the warning it always was."""
    if not strict:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error", TextQualityWarning)
        try:
            yield
        except TextQualityWarning as exc:
            raise ValueError(f"item text: {exc} (an error under --strict / data.strict)") from None


@dataclass
class TrainRun:
    """What :func:`train` produced: the summary (also saved as ``training.json``), the model, its folder."""

    summary: dict[str, Any]
    model: Recommender | None = None
    path: Path | None = None


#: The model ``train`` fits when none is named: the validation-fitted blend (``lmrec.models.auto``).
DEFAULT_TRAIN_MODEL = "auto"


def _one_model(cfg: ExperimentConfig, command: str) -> ModelConfig:
    if cfg.model is None and command == "train":
        return ModelConfig(name=DEFAULT_TRAIN_MODEL)
    if cfg.model is None:
        raise ValueError(f"{command} needs a model: give its name, or model.name in the config file")
    return cfg.model


def _needs_split(cfg: ExperimentConfig, command: str) -> None:
    if cfg.split.protocol == "none":
        raise ValueError(f"{command} needs a validation/test split: protocol 'none' has none")


@contextlib.contextmanager
def _nothing(_label: str) -> Iterator[None]:
    yield


def train(
    cfg: ExperimentConfig,
    *,
    log: Log | None = None,
    fitting: Callable[[str], contextlib.AbstractContextManager[Any]] | None = None,
) -> TrainRun:
    """Fit ``cfg.model`` on the training part of ``cfg.split`` (every event for protocol ``none``) with early
    stopping on its validation part, and save the folder to ``cfg.out`` with a ``training.json`` summary.

    Under ``torchrun`` every process loads the same data and split and builds the same model, and the model's
    trainer runs DistributedDataParallel; only the main process validates, saves and logs (the others return
    an empty summary). ``fitting(label)`` wraps the fit (the CLI shows a spinner).
    """

    spec = _one_model(cfg, "train")
    settings = dict(spec.settings)
    if "seed" in model_fields(spec.name) and "seed" not in settings:
        settings["seed"] = cfg.seed
    ctx = init_distributed(resolve_device(settings.get("device")))
    say: Log = log if (log is not None and ctx.is_main) else (lambda _text: None)
    try:
        rec = create_model(spec.name, **settings)
        ds = _load(cfg)
        summary: dict[str, Any] = {
            "model": spec.name,
            "config": settings,
            "dataset": ds.name,
            "data": cfg.data.dataset,  # the spec it was loaded from (name, file or folder)
            **({"items": cfg.data.items} if cfg.data.items else {}),
            **({"data_options": cfg.data.options} if cfg.data.options else {}),
            "protocol": cfg.split.protocol,
            "seed": cfg.seed,
        }
        coverage = ds.text_coverage()
        summary["text_coverage"] = list(coverage)
        say(f"{ds.name}: {text_coverage_line(*coverage)}")
        if cfg.split.protocol == "none":
            train_ds, valid, split = ds, None, None
        else:
            split = make_split(ds, cfg.split.protocol, **cfg.split_params())
            train_ds, valid = split.train, split.valid
            summary["split"] = split.describe()
            summary["split_params"] = split.params
        say(
            f"fitting [cyan]{spec.name}[/] on {train_ds.n_events:,} events of {ds.name} "
            f"({'all events' if split is None else split.describe()})"
        )
        t0 = time.perf_counter()
        text = {"vectors_meta": {"encoder": cfg.data.encoder}} if cfg.data.encoder else {}
        if text:
            summary["encoder"] = cfg.data.encoder
        with (fitting or _nothing)(f"fit {spec.name}"), text_checks(cfg.data.strict):
            rec.fit(train_ds, valid, **text)
        if not ctx.is_main:
            return TrainRun({})
        summary["fit_seconds"] = round(time.perf_counter() - t0, 3)
        summary["processes"] = ctx.world_size
        result = getattr(rec, "train_result_", None)
        if result is not None:
            summary.update(
                best_epoch=result.best_epoch, valid_ndcg10=result.best_metric, epochs_run=result.epochs_run
            )
            if getattr(result, "privacy", None):
                summary["privacy"] = result.privacy
        blend = getattr(rec, "search_", None)
        if blend:  # auto: its components, weights, validation scores and ablation
            summary["blend"] = {"weights": getattr(rec, "weights_", {}), **blend}
        if split is not None and len(split.valid):
            res = evaluate_model(rec, split.valid, split.train, (10,))
            summary["validation"] = {
                "NDCG@10": res.mean("NDCG@10"),
                "HR@10": res.mean("HR@10"),
                "ranking": res.ranking,
            }
        path = None
        if cfg.out is not None:
            path = rec.save(cfg.out)
            (path / "training.json").write_text(json.dumps(summary, indent=2, default=str))
            summary["saved"] = str(path)
        return TrainRun(summary, rec, path)
    finally:
        cleanup(ctx)


#: Protocols whose targets include items without training events.
COLD_PROTOCOLS = ("cold-item", "cold-mixed")

#: What ``lmrec recommend --for`` can ask.
FOR_CHOICES = ("next", "test")


@dataclass
class Histories:
    """Whose lists to write and from which histories (raw ids, oldest first).

    ``histories`` is ``None`` when the model's own training histories are the right ones (a model fitted on
    every event); ``targets`` is set for ``--for test`` (what each user did next, for re-scoring).
    """

    users: list[str] | None
    histories: list[list[str]] | None
    targets: list[list[str]] | None
    note: str


def histories_for(model_dir: str | Path, which: str = "next", dataset: str | None = None) -> Histories:
    """The histories to score lists for ``which`` from, rebuilt from the folder's ``training.json``.

    ``next``: every event the model may know. For a model fitted on a protocol's training part that is the
    training part plus the validation events (the history before each test target), so the lists are for the
    next, unseen event; for a model fitted on every event (protocol ``none``), its own training histories.
    ``test``: exactly the protocol's test users and histories, with their targets, so that anyone can re-score
    the lists with their own metric code and get :func:`evaluate`'s figure. ``dataset`` overrides the data
    spec recorded at training (a moved file).
    """
    if which not in FOR_CHOICES:
        raise ValueError(f"--for must be one of {', '.join(FOR_CHOICES)}, got {which!r}")
    info_file = Path(model_dir) / "training.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    protocol = info.get("protocol", "none")
    if protocol == "none":
        if which == "test":
            raise ValueError(f"{model_dir} was fitted on every event (protocol none, or no training.json): "
                             "it has no test part; train it with --protocol to export test lists")
        return Histories(None, None, None, "histories: the model's training events (it was fitted on all)")
    spec = dataset or info.get("data") or info.get("dataset")
    if not spec:
        raise ValueError(f"{info_file} does not say which data the model was fitted on; pass --dataset")
    ds = load_data(spec, None if dataset else info.get("items"), info.get("data_options"))
    split = make_split(ds, protocol, **split_settings(protocol, info.get("split_params", {})))
    items, users = ds.item_map, ds.user_map
    if which == "test":
        ev = split.test
        return Histories(
            users.raws(ev.users).tolist(),
            [items.raws(h).tolist() for h in ev.history],
            [items.raws(t).tolist() for t in ev.targets],
            f"lists for the {protocol} test targets of {len(ev):,} users, from their training and validation "
            f"events ({split.describe()})",
        )
    known = split.train_valid.sequences
    rows = np.arange(1, len(known))
    return Histories(
        users.raws(rows).tolist(),
        [items.raws(known[int(u)]).tolist() for u in rows],
        None,
        f"histories: training and validation events of {ds.name} ({protocol}), so the lists are for each "
        "user's next, unseen event",
    )


def model_specs(cfg: ExperimentConfig) -> list[ModelSpec]:
    """The models of an evaluation: ``cfg.models`` (every baseline when empty and no folders are given) with
    :data:`~lmrec.evaluation.DEFAULT_MODELS`' settings under their own, then the ``eval.model_dirs``.

    On a protocol with cold targets the baselines include ``unseen-random``, the rule that ranks items without
    training events first: a text model must beat it for its cold-item figure to mean anything."""

    models = list(cfg.models)
    if not models and not cfg.eval.model_dirs:
        models = [ModelConfig(name=name, settings=dict(c)) for name, c in DEFAULT_MODELS]
        if cfg.split.protocol in COLD_PROTOCOLS:
            models.append(ModelConfig(name="unseen-random", settings={"seed": cfg.seed}))
    defaults = dict(DEFAULT_MODELS)
    specs = [
        ModelSpec(m.label or m.name, m.name, {**defaults.get(m.name, {}), **m.settings}) for m in models
    ]
    for d in cfg.eval.model_dirs:
        model = load_model(d)
        specs.append(ModelSpec(d.name, model.name, {}, model))
    return specs


def _grids(cfg: ExperimentConfig, specs: list[ModelSpec]) -> dict[str, dict[str, list[Any]]] | None:

    if cfg.tune.grids == "default":
        names = {s.name for s in specs if s.model is None}
        return {n: g for n, g in TUNING_GRIDS.items() if n in names}
    return dict(cfg.tune.grids) or None


def evaluate(cfg: ExperimentConfig, *, command: str | None = None, progress: bool = True) -> BenchmarkResult:
    """Fit each model on the training part of ``cfg.split`` (after a search on validation when ``tune.grids``
    is set), test once on the test part, and write the report to ``cfg.out`` when it is set."""

    _needs_split(cfg, "evaluate")
    ds = _load(cfg)
    specs = model_specs(cfg)
    with text_checks(cfg.data.strict):
        return run_benchmark(
            ds,
            cfg.split.protocol,
            specs,
            ks=cfg.eval.ks,
            out_dir=cfg.out,
            seed=cfg.seed,
            progress=progress,
            ranking=cfg.eval.ranking,
            protocol_params=cfg.split_params(),
            tune=_grids(cfg, specs),
            main_metric=cfg.eval.metric,
            command=command,
            by=cfg.eval.by,
            item_groups=cfg.eval.item_groups,
            exposure=ExposurePolicy(cfg.eval.max_group_share, cfg.eval.min_tail_share),
        )


def default_report_dir(cfg: ExperimentConfig) -> Path:
    """``reports/benchmark-DATASET-PROTOCOL``."""
    spec = Path(cfg.data.dataset)
    name = spec.stem if is_store_file(cfg.data.dataset) else spec.name
    return Path("reports") / f"benchmark-{name}-{cfg.split.protocol}"


def benchmark(cfg: ExperimentConfig, *, command: str | None = None, progress: bool = True) -> BenchmarkResult:
    """:func:`evaluate` with a report always written (to :func:`default_report_dir` unless ``cfg.out``)."""
    if cfg.out is None:
        cfg = cfg.model_copy(update={"out": default_report_dir(cfg)})
    return evaluate(cfg, command=command, progress=progress)


def tune(
    cfg: ExperimentConfig, *, on_trial: Callable[[int, dict[str, Any], float], None] | None = None
) -> TuningResult:
    """Search ``cfg.tune.space`` for ``cfg.model`` on the validation split (the test set is never read) and
    write every trial as JSON to ``cfg.out`` when it is set."""

    spec = _one_model(cfg, "tune")
    _needs_split(cfg, "tune")
    if not cfg.tune.space:
        raise ValueError("tune needs a search space: --space key=v1,v2 or tune.space in the config file")
    ds = _load(cfg)
    split = make_split(ds, cfg.split.protocol, **cfg.split_params())
    base = dict(spec.settings)
    if "progress" in model_fields(spec.name):
        base.setdefault("progress", False)  # one line per trial instead of a bar per fit
    with text_checks(cfg.data.strict):
        res = search(
            spec.name,
            cfg.tune.space,
            split,
            mode=cfg.tune.mode,
            n_trials=cfg.tune.trials,
            seed=cfg.seed,
            base=base,
            metric=cfg.tune.metric,
            ks=cfg.eval.ks,
            on_trial=on_trial,
        )
    if cfg.out is not None:
        cfg.out.write_text(
            json.dumps(
                {
                    "model": spec.name,
                    "metric": res.metric,
                    "best": res.best,
                    "best_score": res.best_score,
                    "trials": [{"config": c, "score": s} for c, s in res.trials],
                },
                indent=1,
                default=str,
            )
        )
    return res
