"""Shared CLI pieces: the console, progress bars, errors shown without tracebacks, cleaning options."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Piped output (make demo | tee, CI logs) has no terminal width: Rich would fall back to 80 columns and
# truncate the benchmark tables, so give it room. A real terminal keeps its own width.
_PIPED_WIDTH = 160
console = Console(stderr=False, width=None if sys.stdout.isatty() else _PIPED_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else _PIPED_WIDTH)

DEFAULT_STORE = os.environ.get("LMREC_STORE", "lmrec.duckdb")

StoreOpt = Annotated[str, typer.Option("--store",
                                       help="DuckDB store file ($LMREC_STORE, default lmrec.duckdb).")]


def progress(transient: bool = False) -> Progress:
    """A Rich progress bar with rate and time left, used by every long step."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Show lmrec's input errors as one red line and exit 1, instead of a traceback."""
    from lmrec.data.cleaning import DataError
    from lmrec.data.idmap import UnknownIdError
    from lmrec.interrupt import MESSAGE, Interrupted

    try:
        yield
    except (DataError, FileNotFoundError, ValueError, UnknownIdError, RuntimeError) as exc:
        if os.environ.get("LMREC_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except (KeyboardInterrupt, Interrupted):
        err_console.print(f"[yellow]{MESSAGE}[/]")
        raise typer.Exit(130) from None
