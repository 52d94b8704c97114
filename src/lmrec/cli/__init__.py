"""``lmrec``: one command line for data, text vectors, training, evaluation and serving.

Each sub-command lives in its own module and only parses options, calls one library function and prints.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="lmrec",
    help="Predict what users do next, with language models. Start with `lmrec demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

#: (module, attribute) of each sub-command group or command registrar, in the order `--help` lists them.
_GROUPS = ["data", "text", "models", "catalogue", "training", "multitask", "updates", "serving",
           "experiments", "privacy", "demo"]


def _register() -> None:
    for name in _GROUPS:
        try:
            mod = importlib.import_module(f"lmrec.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lmrec.cli.{name}":
                continue  # that part of lmrec is not installed in this checkout
            raise
        mod.register(app)


_register()

