"""Train a model from the command line, alone or as one process of a ``torchrun`` job.

    python -m lmrec.experiment --data movielens-100k --out models/seqrec --set item_repr=fused
    torchrun --nproc_per_node=2 -m lmrec.experiment --data movielens-100k --out models/seqrec
    torchrun --nproc_per_node=2 -m lmrec.experiment --config run.yaml --set model.d_model=64

Every process loads the same data and split and builds the same model; :class:`~lmrec.training.Trainer` joins
the process group that ``torchrun`` prepared (gloo on CPU, NCCL on GPUs) and trains with
DistributedDataParallel. Only the main process validates, saves and prints.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from lmrec.experiment.config import build_config
from lmrec.experiment.runs import train


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m lmrec.experiment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--config", "-c", type=Path, default=None, help="experiment file (.yaml or .toml)")
    ap.add_argument("--model", default=None, help="registered model name (default seqrec)")
    ap.add_argument(
        "--data", "--dataset", "-d", dest="dataset", default=None,
        help="built-in name, data file, dataset folder or store file (movielens-100k)"
    )
    ap.add_argument(
        "--protocol", "-p", default=None, help="leave-one-out (default), temporal, cold-item or none"
    )
    ap.add_argument("--out", "-o", type=Path, default=None, help="model folder to write (main process)")
    ap.add_argument(
        "--set", "-s", dest="settings", action="append", default=[], help="key=value or section.key=value"
    )
    ap.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    args = ap.parse_args(argv)
    cfg = build_config(
        args.config,
        {
            "model.name": args.model,
            "data.dataset": args.dataset,
            "split.protocol": args.protocol,
            "out": args.out,
            "seed": args.seed,
        },
        args.settings,
        defaults={"model.name": "seqrec"},
    )
    summary = train(cfg).summary
    if summary:
        print(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
