"""Shared CLI pieces: the console, progress bars, errors shown without tracebacks, cleaning options."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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

StoreOpt = Annotated[str, typer.Option(
    "--store", help="The store: a DuckDB file, or a postgresql://... URL shared by replicas "
                    "($LMREC_STORE, default lmrec.duckdb).")]

# ----------------------------------------------------------------------------------------------------
# One vocabulary for what a command reads. Every command that reads data takes --data/-d (a built-in name, a
# data file or folder, a saved dataset folder, or a store file) or --store (an lmrec store); with neither, the
# store lmrec.duckdb in the working folder when it exists, else the command's built-in default. Old names are
# hidden aliases: --dataset (train, evaluate, benchmark, tune, seqrec train, recommend) and --source (embed,
# similar).
DataOpt = Annotated[str | None, typer.Option(
    "--data", "-d",
    help="What to read: a built-in dataset (movielens-100k), a data file or folder, a saved dataset folder, "
         "or a store file (.duckdb). Default: the store (--store).")]
DataStoreOpt = Annotated[str | None, typer.Option(
    "--store",
    help="Read the data from this lmrec store (filled by `lmrec data import`). With neither --data nor "
         "--store: lmrec.duckdb ($LMREC_STORE) in this folder when it exists, else movielens-100k.")]
DatasetAlias = Annotated[str | None, typer.Option("--dataset", hidden=True, help="Old name of --data.")]
SourceAlias = Annotated[str | None, typer.Option("--source", hidden=True, help="Old name of --data.")]

#: What a data-reading command falls back to when it is given nothing and no store is here.
BUILTIN_DEFAULT = "movielens-100k"


@dataclass(frozen=True)
class DataChoice:
    """Which data a command reads and why, as the command line chose it.

    ``spec`` is ``None`` when nothing was given and no store is here: the command's own default (a config
    file's ``data.dataset``, else :data:`BUILTIN_DEFAULT`). ``explicit``: given with --data or --store (a
    flag, which beats a config file); otherwise the store found here is only a default.
    """

    spec: str | None
    why: str
    explicit: bool = False


def choose_data(data: str | None, store: str | None, *aliases: str | None) -> DataChoice:
    """Resolve --data / --store / the old aliases into one :class:`DataChoice`."""
    given = list(dict.fromkeys(v for v in (data, *aliases) if v))
    if len(given) > 1:
        raise ValueError(f"the data was given twice ({' and '.join(given)}): --dataset and --source are old "
                         "names of --data")
    if given and store:
        raise ValueError("give --data or --store, not both (a store file may also be given as --data)")
    if given:
        return DataChoice(given[0], "--data", explicit=True)
    if store:
        if not Path(store).expanduser().exists():
            raise FileNotFoundError(f"no store at {store}: fill it with "
                                    f"`lmrec data import ... --store {store}`")
        return DataChoice(store, "--store", explicit=True)
    if Path(DEFAULT_STORE).exists():
        return DataChoice(DEFAULT_STORE, "the store here; no --data or --store given")
    return DataChoice(None, f"no --data or --store given and no {DEFAULT_STORE} here")


def say_data(spec: str, choice: DataChoice, config: Path | None = None) -> None:
    """Print which data a command reads, and why (every data-reading command says it)."""
    if choice.explicit or choice.spec is not None and spec == choice.spec:
        why = choice.why
    elif config is not None and spec != BUILTIN_DEFAULT:
        why = f"data.dataset in {config}"
    else:
        why = f"the built-in default; {choice.why}"
    kind = "store " if _is_store(spec) else ""
    console.print(f"data: {kind}[bold]{spec}[/] [dim]({why})[/]")


def _is_store(spec: str) -> bool:
    from lmrec.store import is_store_file

    return is_store_file(spec)


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
    import duckdb

    from lmrec.data.cleaning import DataError
    from lmrec.data.idmap import UnknownIdError
    from lmrec.interrupt import MESSAGE, Interrupted
    from lmrec.store.duckdb_store import is_lock_error, lock_holder

    try:
        yield
    except (DataError, FileNotFoundError, ValueError, UnknownIdError, RuntimeError) as exc:
        if os.environ.get("LMREC_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except duckdb.Error as exc:  # a store another process holds, a damaged file...: one line, no traceback
        if os.environ.get("LMREC_DEBUG"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if is_lock_error(exc):
            first = (f"the store is held by another process{lock_holder(exc)}, a running `lmrec serve` most "
                     "likely: stop it, or act through it with --url http://HOST:PORT")
        err_console.print(f"[bold red]error:[/] store: {first}")
        raise typer.Exit(1) from None
    except (KeyboardInterrupt, Interrupted):
        err_console.print(f"[yellow]{MESSAGE}[/]")
        raise typer.Exit(130) from None


def data_config(choice: DataChoice) -> tuple[dict[str, str], dict[str, str]]:
    """``(flags, defaults)`` for :func:`lmrec.experiment.build_config`: --data/--store beat a config file's
    ``data.dataset``; the store found here only fills in for it."""
    if choice.spec is None:
        return {}, {}
    entry = {"data.dataset": choice.spec}
    return (entry, {}) if choice.explicit else ({}, entry)


NprocOpt = Annotated[int, typer.Option(
    "--nproc", min=1, help="Processes to shard the work over (torchrun; each writes its part, then the parts "
                           "are joined into exactly one process's output). Under torchrun itself, its "
                           "processes are used.")]


def relaunch_under_torchrun(nproc: int, command: str) -> None:
    """Run this same command line as ``nproc`` processes under torchrun (one machine); exit with its
    status."""
    import sys

    args = list(sys.argv[1:])
    if command not in args:
        raise ValueError(f"--nproc re-runs the `lmrec {command}` command line under torchrun; from Python, "
                         "shard the work with lmrec.models.export.shard_range in each process instead")
    for i, a in enumerate(args):  # drop --nproc N / --nproc=N: the workers see torchrun's environment instead
        if a == "--nproc":
            del args[i:i + 2]
            break
        if a.startswith("--nproc="):
            del args[i]
            break
    rc = run_torchrun(nproc, "lmrec.entry", args)
    if rc:
        raise typer.Exit(rc)


def run_torchrun(nproc: int, module: str, args: list[str]) -> int:
    """Run ``python -m module args`` as ``nproc`` processes under torchrun on this machine (standalone
    rendezvous), show the command, and return its exit status."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", module, *args]
    console.print(f"[dim]{' '.join(cmd)}[/]")
    return subprocess.call(cmd)
