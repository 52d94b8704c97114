"""``lmrec tune`` and ``lmrec seqrec train|export``: search settings on validation, train SeqRec (optionally
on several processes with torchrun), export it for serving.

The commands build an :class:`~lmrec.experiment.ExperimentConfig` and call :func:`lmrec.experiment.tune` or
:func:`lmrec.experiment.train`; ``--distributed`` runs ``torchrun -m lmrec.experiment`` with the same options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lmrec.cli.common import (
    DataOpt,
    DatasetAlias,
    DataStoreOpt,
    choose_data,
    console,
    data_config,
    friendly_errors,
    run_torchrun,
    say_data,
)
from lmrec.cli.models import ConfigOpt

seqrec_app = typer.Typer(help="Train SeqRec (alone or distributed) and export it.", no_args_is_help=True)

ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        "-p",
        help="leave-one-out, temporal, cold-item, cold-mixed or given (the data's own split).",
        show_default="leave-one-out",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="A setting key=value, or section.key=value of the config (repeatable)."),
]


def parse_space(items: list[str] | None) -> dict[str, list[Any]] | None:
    """``["lr=0.001,0.003"]`` → ``{"lr": [0.001, 0.003]}`` (values read like ``--set`` values)."""
    from lmrec.experiment import parse_value

    if not items:
        return None
    space: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--space expects key=v1,v2,…, got {item!r}")
        key, values = item.split("=", 1)
        space[key.strip()] = [parse_value(v) for v in values.split(",")]
    return space


def tune(
    model: Annotated[
        str | None, typer.Argument(help="A registered model name, e.g. seqrec; or model.name in --config.")
    ] = None,
    space: Annotated[
        list[str] | None,
        typer.Option("--space", help="key=v1,v2,… candidate values (repeatable; or tune.space in --config)."),
    ] = None,
    data: DataOpt = None,
    store: DataStoreOpt = None,
    dataset: DatasetAlias = None,
    protocol: ProtocolOpt = None,
    mode: Annotated[str | None, typer.Option(help="random or grid.", show_default="random")] = None,
    trials: Annotated[
        int | None, typer.Option(help="Random trials (ignored by grid).", show_default="8")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="Validation metric NAME@K; K must be one of eval.ks.", show_default="NDCG@10"),
    ] = None,
    settings: SetOpt = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the split and of the random search.", show_default="0")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write every trial as JSON here.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Search settings on the validation set (full-ranking NDCG@10); the test set is never read.

    Example: `lmrec tune seqrec --space dropout=0.2,0.5 --space lr=0.001,0.003 --set epochs=50`.
    """
    from lmrec.experiment import build_config
    from lmrec.experiment import tune as run_tune

    with friendly_errors():
        choice = choose_data(data, store, dataset)
        data_flags, data_defaults = data_config(choice)
        cfg = build_config(
            config,
            {
                "model.name": model,
                "tune.space": parse_space(space),
                **data_flags,
                "split.protocol": protocol,
                "tune.mode": mode,
                "tune.trials": trials,
                "tune.metric": metric,
                "seed": seed,
                "out": out,
            },
            settings,
            defaults=data_defaults,
        )
        say_data(cfg.data.dataset, choice, config)
        keys = list(cfg.tune.space)

        def show(i: int, trial: dict[str, object], score: float) -> None:
            point = {k: trial[k] for k in keys}
            console.print(f"trial {i + 1}: {point} → validation {cfg.tune.metric} {score:.4f}")

        res = run_tune(cfg, on_trial=show)
        console.print(
            f"[bold]best[/] {json.dumps({k: res.best[k] for k in keys})} "
            f"validation {res.metric} {res.best_score:.4f}"
        )


@seqrec_app.command("train")
def train_seqrec(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Model folder to write (required; or out in --config).")
    ] = None,
    data: DataOpt = None,
    store: DataStoreOpt = None,
    dataset: DatasetAlias = None,
    protocol: ProtocolOpt = None,
    settings: SetOpt = None,
    seed: Annotated[int | None, typer.Option(show_default="0")] = None,
    distributed: Annotated[
        bool, typer.Option(help="Run under torchrun with --nproc processes (DDP).")
    ] = False,
    nproc: Annotated[
        int, typer.Option(help="Processes for --distributed (one per GPU, or CPU workers).")
    ] = 2,
    config: ConfigOpt = None,
) -> None:
    """Train SeqRec with early stopping on validation and save it.

    `--distributed` launches `torchrun --nproc_per_node=N -m lmrec.experiment` (gloo on CPU, NCCL on GPUs);
    the global batch and therefore the result stay those of one process.
    """
    from lmrec.experiment import build_config
    from lmrec.experiment import train as run_train

    with friendly_errors():
        choice = choose_data(data, store, dataset)
        data_flags, data_defaults = data_config(choice)
        # checked here, before any process starts
        cfg = build_config(config, {**data_flags, "split.protocol": protocol, "out": out, "seed": seed,
                                    "model.name": "seqrec"}, settings, defaults=data_defaults)
        if cfg.out is None:
            raise ValueError("seqrec train needs --out (or out in the config file): the folder to write")
        say_data(cfg.data.dataset, choice, config)
        flags = {"data.dataset": cfg.data.dataset, "split.protocol": protocol, "out": out, "seed": seed}
        if distributed:
            args = ["--model", "seqrec"]
            if config is not None:
                args += ["--config", str(config)]
            names = ("--dataset", "--protocol", "--out", "--seed")
            for flag, value in zip(names, flags.values(), strict=True):
                if value is not None:
                    args += [flag, str(value)]
            for s in settings or []:
                args += ["--set", s]
            rc = run_torchrun(nproc, "lmrec.experiment", args)
            if rc:
                raise RuntimeError(f"torchrun exited with status {rc}")
            return
        summary = run_train(cfg).summary
        console.print_json(json.dumps(summary, default=str))


@seqrec_app.command("export")
def export_seqrec(
    model_dir: Annotated[Path, typer.Argument(help="A saved SeqRec folder, or an auto folder with a SeqRec "
                                                   "component.")],
    int8: Annotated[bool, typer.Option("--int8", help="Write model.int8.pt (int8 encoder body).")] = False,
    onnx: Annotated[bool, typer.Option("--onnx", help="Write model.onnx (the encoder body for onnxruntime).")
                    ] = False,
    runtime: Annotated[str | None, typer.Option(
        help="What `lmrec serve` uses for this folder: torch, int8 or onnx (default: the last form written; "
             "alone, it only switches).")] = None,
) -> None:
    """Write SeqRec's compressed forms into its model folder and choose the one `lmrec serve` uses.

    Example: `lmrec seqrec export models/seqrec --int8 --onnx --runtime onnx`. The choice is recorded in the
    folder's serving.json; `lmrec serve --runtime` (or LMREC_RUNTIME) overrides it.
    """
    from lmrec.models.serving_forms import export_folder

    with friendly_errors():
        forms = [f for f, on in (("int8", int8), ("onnx", onnx)) if on]
        if not forms and runtime is None:
            raise ValueError("nothing to do: give --int8, --onnx and/or --runtime")
        for part, info in export_folder(model_dir, forms, runtime).items():
            files = ", ".join(sorted(f["file"] for f in info["forms"].values())) or "none"
            console.print(f"[bold]{part}[/]: forms {files}; serves with [bold]{info['runtime']}[/]")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
    app.add_typer(seqrec_app, name="seqrec")
