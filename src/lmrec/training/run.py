"""Train a model from the command line, alone or as one process of a ``torchrun`` job.

    python -m lmrec.training.run --dataset movielens-100k --out models/seqrec --set item_repr=fused
    torchrun --nproc_per_node=2 -m lmrec.training.run --dataset movielens-100k --out models/seqrec

Every process loads the same data and split and builds the same model; :class:`~lmrec.training.Trainer` joins
the process group that ``torchrun`` prepared (gloo on CPU, NCCL on GPUs) and trains with
DistributedDataParallel. Only the main process validates, saves and prints.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmrec.training.distributed import cleanup, init_distributed


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=0.002", "item_repr=fused", "amp=false"]`` → typed values (JSON where it parses, else
    strings)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        low = value.strip().lower()
        if low in ("true", "false"):
            out[key.strip()] = low == "true"
            continue
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def train_model(
    model: str,
    dataset: str,
    out: Path | None,
    settings: dict[str, Any],
    protocol: str = "leave-one-out",
    seed: int = 0,
) -> dict[str, Any]:
    """Fit ``model`` on the training part of ``protocol`` with early stopping on its validation part; the main
    process saves the folder to ``out`` and returns a summary (other processes return ``{}``)."""
    from lmrec.config import resolve_device
    from lmrec.data.splits import make_split
    from lmrec.models import create_model, model_class

    cls = model_class(model)
    cfg = dict(settings)
    if "seed" in getattr(cls.Config, "__dataclass_fields__", {}) and "seed" not in cfg:
        cfg["seed"] = seed
    ctx = init_distributed(resolve_device(cfg.get("device")))
    ds = _load(dataset)
    split = make_split(ds, protocol, **({"seed": seed} if protocol == "cold-item" else {}))
    rec = create_model(model, **cfg)
    t0 = time.perf_counter()
    rec.fit(split.train, split.valid)
    summary: dict[str, Any] = {}
    if ctx.is_main:
        summary = {
            "model": model,
            "config": cfg,
            "dataset": ds.name,
            "split": split.describe(),
            "fit_seconds": round(time.perf_counter() - t0, 2),
            "processes": ctx.world_size,
        }
        result = getattr(rec, "train_result_", None)
        if result is not None:
            summary.update(
                best_epoch=result.best_epoch, valid_ndcg10=result.best_metric, epochs_run=result.epochs_run
            )
        if out is not None:
            rec.save(out)
            summary["saved"] = str(out)
    cleanup(ctx)
    return summary


def _load(spec: str):  # -> Dataset
    from lmrec.data.dataset import Dataset
    from lmrec.data.loaders import load_dataset

    if (Path(spec) / "dataset.json").exists():
        return Dataset.load(spec)
    return load_dataset(spec)[0]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m lmrec.training.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--model", default="seqrec", help="registered model name (default seqrec)")
    ap.add_argument(
        "--dataset", "-d", default="movielens-100k", help="built-in name, data file or dataset folder"
    )
    ap.add_argument("--protocol", "-p", default="leave-one-out", help="leave-one-out, temporal or cold-item")
    ap.add_argument("--out", "-o", type=Path, default=None, help="model folder to write (main process)")
    ap.add_argument("--set", "-s", dest="settings", action="append", default=[], help="key=value setting")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    summary = train_model(
        args.model, args.dataset, args.out, parse_settings(args.settings), args.protocol, args.seed
    )
    if summary:
        print(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
