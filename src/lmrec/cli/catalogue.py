"""``lmrec models [NAME]``: every model lmrec has, and each one's settings with their defaults."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from lmrec.cli.common import console, friendly_errors


def models(name: Annotated[str | None, typer.Argument(help="A model: list its settings.")] = None) -> None:
    """List the registered models, or one model's settings with type and default (what `--set` takes)."""
    with friendly_errors():
        from lmrec.models import model_catalogue, model_class

        catalogue = model_catalogue()
        if name is None:
            t = Table("model", "what it is", "settings")
            for n, summary, fields in catalogue:
                t.add_row(n, summary, str(len(fields)))
            console.print(t)
            console.print("`lmrec models NAME` lists a model's settings; set them with `--set key=value`.")
            return
        model_class(name)  # an unknown name is an error that lists the known ones
        _, summary, fields = next(c for c in catalogue if c[0] == name)
        t = Table("setting", "type", "default", title=f"{name}: {summary}")
        for f, kind, default in fields:
            t.add_row(f, kind, repr(default))
        console.print(t)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
