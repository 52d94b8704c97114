"""``lmrec demo``: the whole pipeline on the built-in MovieLens-100K, with progress all the way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lmrec.cli.common import friendly_errors


def demo(out: Annotated[Path, typer.Option(help="Folder for the store, vectors and report.")] = Path("demo"),
         seed: Annotated[int, typer.Option(help="Seed for every random step.")] = 0,
         quick: Annotated[bool, typer.Option(help="Fewer epochs, for a fast look.")] = False,
         budget: Annotated[float, typer.Option(
             help="Seconds of neural training in all (0: none), shared by the sequence models; each also "
                  "stops early on validation.")] = 420.0) -> None:
    """Run data → vectors → models → evaluation table → report on MovieLens-100K."""
    from lmrec.cli.pipeline import run_demo

    with friendly_errors():
        run_demo(out, seed=seed, quick=quick, budget=budget)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
