"""``lmrec tune`` and ``lmrec seqrec train|export``: search settings on validation, train SeqRec (optionally
on
several processes with torchrun), export it for serving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from lmrec.cli.common import console, friendly_errors

seqrec_app = typer.Typer(help="Train SeqRec (alone or distributed) and export it.", no_args_is_help=True)

DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="Built-in name, data file or dataset folder.")
]
ProtocolOpt = Annotated[str, typer.Option("--protocol", "-p", help="leave-one-out, temporal or cold-item.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="A setting key=value (repeatable).")]


def tune(
    model: Annotated[str, typer.Argument(help="A registered model name, e.g. seqrec.")],
    space: Annotated[list[str], typer.Option("--space", help="key=v1,v2,… candidate values (repeatable).")],
    dataset: DatasetOpt = "movielens-100k",
    protocol: ProtocolOpt = "leave-one-out",
    mode: Annotated[str, typer.Option(help="random or grid.")] = "random",
    trials: Annotated[int, typer.Option(help="Random trials (ignored by grid).")] = 8,
    settings: SetOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and of the random search.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write every trial as JSON here.")] = None,
) -> None:
    """Search settings on the validation set (full-ranking NDCG@10); the test set is never read.

    Example: `lmrec tune seqrec --space dropout=0.2,0.5 --space lr=0.001,0.003 --set epochs=50`.
    """
    from lmrec.data.splits import make_split
    from lmrec.training.run import _load, parse_settings
    from lmrec.training.tune import search

    with friendly_errors():
        grid: dict[str, list[object]] = {}
        for item in space:
            if "=" not in item:
                raise ValueError(f"--space expects key=v1,v2,…, got {item!r}")
            key, values = item.split("=", 1)
            grid[key.strip()] = [parse_settings([f"v={v}"])["v"] for v in values.split(",")]
        ds = _load(dataset)
        split = make_split(ds, protocol, **({"seed": seed} if protocol == "cold-item" else {}))
        base = parse_settings(settings or [])
        if model == "seqrec":
            base.setdefault("progress", False)  # one line per trial instead of a bar per fit

        def show(i: int, cfg: dict[str, object], score: float) -> None:
            point = {k: cfg[k] for k in grid}
            console.print(f"trial {i + 1}: {point} → validation NDCG@10 {score:.4f}")

        res = search(model, grid, split, mode=mode, n_trials=trials, seed=seed, base=base, on_trial=show)
        console.print(
            f"[bold]best[/] {json.dumps({k: res.best[k] for k in grid})} "
            f"validation NDCG@10 {res.best_score:.4f}"
        )
        if out is not None:
            out.write_text(
                json.dumps(
                    {
                        "model": model,
                        "metric": res.metric,
                        "best": res.best,
                        "best_score": res.best_score,
                        "trials": [{"config": c, "score": s} for c, s in res.trials],
                    },
                    indent=1,
                    default=str,
                )
            )


@seqrec_app.command("train")
def train_seqrec(
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    dataset: DatasetOpt = "movielens-100k",
    protocol: ProtocolOpt = "leave-one-out",
    settings: SetOpt = None,
    seed: int = 0,
    distributed: Annotated[
        bool, typer.Option(help="Run under torchrun with --nproc processes (DDP).")
    ] = False,
    nproc: Annotated[
        int, typer.Option(help="Processes for --distributed (one per GPU, or CPU workers).")
    ] = 2,
) -> None:
    """Train SeqRec with early stopping on validation and save it.

    `--distributed` launches `torchrun --nproc_per_node=N -m lmrec.training.run` (gloo on CPU, NCCL on GPUs);
    the global batch and therefore the result stay those of one process.
    """
    from lmrec.training.run import parse_settings, train_model

    with friendly_errors():
        if distributed:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={nproc}",
                "-m",
                "lmrec.training.run",
                "--model",
                "seqrec",
                "--dataset",
                dataset,
                "--protocol",
                protocol,
                "--out",
                str(out),
                "--seed",
                str(seed),
            ]
            for s in settings or []:
                cmd += ["--set", s]
            console.print(f"[dim]{' '.join(cmd)}")
            rc = subprocess.call(cmd)
            if rc:
                raise RuntimeError(f"torchrun exited with status {rc}")
            return
        summary = train_model("seqrec", dataset, out, parse_settings(settings or []), protocol, seed)
        console.print_json(json.dumps(summary, default=str))


@seqrec_app.command("export")
def export_seqrec(
    model_dir: Annotated[Path, typer.Argument(help="A saved SeqRec folder.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write.")],
) -> None:
    """Export a saved SeqRec to ONNX (history → scores over the catalogue) for onnxruntime serving."""
    from lmrec.models import load_model
    from lmrec.models.seqrec.inference import export_onnx

    with friendly_errors():
        model = load_model(model_dir)
        path = export_onnx(model, onnx)  # type: ignore[arg-type]
        console.print(f"wrote [bold]{path}[/]")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
    app.add_typer(seqrec_app, name="seqrec")
