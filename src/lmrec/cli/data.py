"""``lmrec data import|stats|split``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmrec.cli.common import DEFAULT_STORE, StoreOpt, console, friendly_errors, progress

data_app = typer.Typer(help="Import, inspect and split behaviour data.", no_args_is_help=True)

SourceArg = Annotated[str, typer.Argument(help="A built-in dataset (movielens-100k) or a file/folder/zip.")]
FormatOpt = Annotated[str | None, typer.Option("--format", "-f", help="Input format; detected when omitted.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail on the first bad row instead of dropping it.")]
MinUserOpt = Annotated[int, typer.Option("--min-user-events", help="Drop users with fewer events.")]
MinItemOpt = Annotated[int, typer.Option("--min-item-events", help="Drop items with fewer events.")]
KcoreOpt = Annotated[bool, typer.Option("--kcore", help="Repeat the minimum-count filters to a fixed point.")]
TypesOpt = Annotated[str, typer.Option("--event-types", help="Extra event types to accept, comma-separated.")]
MapOpt = Annotated[list[str] | None, typer.Option(
    "--map", "-m", help="Column mapping for generic tables, lmrec=column (e.g. -m user_id=customer).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML/YAML file with loader options.")]


def _cleaning(strict: bool, min_user: int, min_item: int, kcore: bool, event_types: str):  # -> CleaningConfig
    from lmrec.data.cleaning import CleaningConfig

    return CleaningConfig(strict=strict, min_user_events=min_user, min_item_events=min_item, kcore=kcore,
                          event_types=tuple(t for t in event_types.split(",") if t))


def _options(mapping: list[str] | None, config: Path | None) -> dict:
    from lmrec.data.loaders.options import loader_options

    return loader_options(mapping or [], config)


def _print_report(lines: list[str]) -> None:
    for i, line in enumerate(lines):
        console.print(("[bold]" if i == 0 else "[dim]") + line.replace("[", r"\["))


@data_app.command("import")
def import_(source: SourceArg, store: StoreOpt = DEFAULT_STORE, fmt: FormatOpt = None, strict: StrictOpt = False,
            event_types: TypesOpt = "", mapping: MapOpt = None, config: ConfigOpt = None,
            chunk_rows: Annotated[int, typer.Option(help="Rows per chunk while streaming.")] = 1_000_000) -> None:
    """Import events, items and users into the store, in chunks and in one transaction.

    Re-importing the same data adds nothing (events are keyed by id). Every dropped row is counted by reason.

    Examples: `lmrec data import movielens-100k`, `lmrec data import ml-1m.zip`,
    `lmrec data import clicks.csv -f csv -m user_id=visitor -m item_id=sku -m timestamp=ts`.
    """
    from lmrec.data.loaders import open_source
    from lmrec.store import Store

    with friendly_errors():
        src = open_source(source, fmt, **_options(mapping, config))
        cfg = _cleaning(strict, 0, 0, False, event_types)
        from dataclasses import replace

        cfg = replace(cfg, default_event_type=src.default_event_type)
        with Store(store) as st, progress() as bar:
            task = bar.add_task(f"importing {src.name}", total=None, rate="")
            res = st.import_source(src, cfg, chunk_rows=chunk_rows,
                                   on_chunk=lambda n: bar.update(task, advance=n, rate=""))
            counts = st.counts()
        _print_report(res.report.lines())
        console.print(f"inserted {res.events_inserted:,} events ({res.events_already_present:,} already present), "
                      f"{res.items_upserted:,} items, {res.users_upserted:,} users → {store} now holds "
                      f"{counts['events']:,} events, {counts['items']:,} items, {counts['users']:,} users")


def print_stats(stats) -> None:  # type: ignore[no-untyped-def]
    t = Table(title=f"{stats.name}", show_header=False)
    t.add_row("users", f"{stats.n_users:,}")
    t.add_row("items", f"{stats.n_items:,} ({stats.n_items_with_events:,} with events)")
    t.add_row("events", f"{stats.n_events:,}")
    for k, v in stats.events_by_type.items():
        t.add_row(f"  {k}", f"{v:,}")
    t.add_row("density", f"{stats.density:.4%}")
    sl = stats.sequence_length
    t.add_row("events per user", f"min {sl['min']:.0f} · median {sl['median']:.0f} · mean {sl['mean']:.1f} · "
                                 f"max {sl['max']:.0f}")
    ip = stats.item_popularity
    t.add_row("events per item", f"min {ip['min']:.0f} · median {ip['median']:.0f} · mean {ip['mean']:.1f} · "
                                 f"max {ip['max']:.0f}")
    if stats.first_timestamp is not None:
        from datetime import UTC, datetime

        a = datetime.fromtimestamp(stats.first_timestamp, UTC).date()
        b = datetime.fromtimestamp(stats.last_timestamp, UTC).date()
        t.add_row("time span", f"{a} → {b}")
    if stats.value:
        t.add_row("value", f"min {stats.value['min']:g} · mean {stats.value['mean']:.3f} · max {stats.value['max']:g}")
    console.print(t)


def _load(source: str | None, store: str, fmt: str | None, strict: bool, min_user: int, min_item: int,
          kcore: bool, event_types: str, mapping: list[str] | None, config: Path | None):  # -> (Dataset, report)
    from lmrec.data.loaders import load_dataset
    from lmrec.store import Store

    cfg = _cleaning(strict, min_user, min_item, kcore, event_types)
    if source is None:
        if not Path(store).exists():
            raise FileNotFoundError(f"no store at {store}: give a SOURCE or run `lmrec data import` first")
        with Store(store, read_only=True) as st:
            return st.to_dataset(Path(store).stem, cfg), None
    return load_dataset(source, fmt, cfg, **_options(mapping, config))


@data_app.command("stats")
def stats(source: Annotated[str | None, typer.Argument(help="Dataset or file; the store when omitted.")] = None,
          store: StoreOpt = DEFAULT_STORE, fmt: FormatOpt = None, strict: StrictOpt = False,
          min_user_events: MinUserOpt = 0, min_item_events: MinItemOpt = 0, kcore: KcoreOpt = False,
          event_types: TypesOpt = "", mapping: MapOpt = None, config: ConfigOpt = None,
          json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Summary statistics of a dataset (users, items, events by type, sequence lengths, time span)."""
    with friendly_errors():
        ds, report = _load(source, store, fmt, strict, min_user_events, min_item_events, kcore, event_types,
                           mapping, config)
        if json_out:
            console.print_json(json.dumps(ds.stats().to_dict()))
            return
        if report is not None:
            _print_report(report.lines())
        print_stats(ds.stats())


@data_app.command("split")
def split(source: Annotated[str | None, typer.Argument(help="Dataset or file; the store when omitted.")] = None,
          protocol: Annotated[str, typer.Option(help="leave-one-out | temporal | cold-item")] = "leave-one-out",
          out: Annotated[Path, typer.Option(help="Folder for train/valid/test Parquet files.")] = Path("split"),
          seed: Annotated[int, typer.Option(help="Seed (cold-item split).")] = 0,
          valid_frac: Annotated[float, typer.Option(help="Temporal: share of events for validation.")] = 0.1,
          test_frac: Annotated[float, typer.Option(help="Temporal: share of events for test.")] = 0.1,
          cold_frac: Annotated[float, typer.Option(help="Cold-item: share of items held out.")] = 0.1,
          store: StoreOpt = DEFAULT_STORE, fmt: FormatOpt = None, min_user_events: MinUserOpt = 0,
          min_item_events: MinItemOpt = 0, kcore: KcoreOpt = False, event_types: TypesOpt = "",
          mapping: MapOpt = None, config: ConfigOpt = None) -> None:
    """Split a dataset by a protocol and write train events and valid/test targets as Parquet."""
    from lmrec.data.split_io import write_split
    from lmrec.data.splits import make_split

    with friendly_errors():
        ds, _ = _load(source, store, fmt, False, min_user_events, min_item_events, kcore, event_types, mapping,
                      config)
        params: dict = {}
        if protocol == "temporal":
            params = {"valid_frac": valid_frac, "test_frac": test_frac}
        elif protocol == "cold-item":
            params = {"cold_frac": cold_frac, "seed": seed}
        sp = make_split(ds, protocol, **params)
        write_split(sp, out)
        console.print(sp.describe())
        console.print(f"written to {out}/ (train.parquet, valid.parquet, test.parquet, split.json)")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
