"""``lmrec data import|stats|split``: bring behaviour data in, look at it, and cut it for evaluation."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from lmrec.cli.common import DEFAULT_STORE, StoreOpt, console, friendly_errors, progress

if TYPE_CHECKING:
    from lmrec.data.cleaning import CleaningConfig, CleaningReport
    from lmrec.data.dataset import Dataset, DatasetStats

FORMATS_HELP = ("movielens, amazon, sequences, item-text, recbole, csv, tsv, parquet, jsonl, generic "
                "(and retailrocket, taobao where installed)")

data_app = typer.Typer(
    help="Import, inspect and split behaviour data.\n\n"
    "Start with `lmrec data stats movielens-100k`, then `lmrec data import movielens-100k` to fill the store "
    "and `lmrec data split --protocol leave-one-out` to write train/valid/test files.",
    no_args_is_help=True,
)

SourceArg = Annotated[
    str,
    typer.Argument(
        help="A built-in dataset (movielens-100k) or a file, folder or zip; "
        "its format is detected when possible."
    ),
]
FormatOpt = Annotated[str | None, typer.Option(
    "--format", "-f", help=f"Input format when detection is not enough: {FORMATS_HELP}.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Stop at the first bad row (and say which file, row and field) instead of dropping it.")]
MinUserOpt = Annotated[int, typer.Option("--min-user-events", help="Drop users with fewer events than this.")]
MinItemOpt = Annotated[int, typer.Option("--min-item-events", help="Drop items with fewer events than this.")]
KcoreOpt = Annotated[bool, typer.Option(
    "--kcore", help="Repeat both minimum-count filters until they hold together (the k-core).")]
TypesOpt = Annotated[str, typer.Option(
    "--event-types", help="Extra event types to accept besides view, click, cart, purchase, rating...; "
                          "comma-separated (e.g. --event-types wishlist,share).")]
MapOpt = Annotated[list[str] | None, typer.Option(
    "--map", "-m", help="Name a column of a generic table: lmrec_field=column, repeatable "
                        "(-m user_id=customer -m item_id=sku -m timestamp=ts). Fields: user_id, item_id, "
                        "timestamp, event_type, value, event_id.")]
OptionOpt = Annotated[list[str] | None, typer.Option(
    "--option", help="A loader option name=value, repeatable (--option layout=pairs, --option item_key=asin, "
                     "--option separator=';', --option default_event_type=purchase).")]
NameOpt = Annotated[str | None, typer.Option(
    "--name", help="The dataset's name in the store (default: the source's: movielens-100k, or the file's "
                   "stem). A store holds one dataset: importing another name into it is refused; give the "
                   "store's name to add more of the same data from a file named otherwise.")]
ItemsOpt = Annotated[
    Path | None,
    typer.Option(
        "--items",
        help="An item file to read with the events, for every format: a CSV/TSV/Parquet/JSONL table, a "
        "RecBole .item/.text file, item_id<TAB>text lines (header detected), Amazon metadata; an item2index "
        "file beside it (or -o item_map=FILE) maps its ids when they are not the events'.",
    ),
]
UsersOpt = Annotated[
    Path | None,
    typer.Option("--users", help="A user file to read with the events (columns user_id, profile, ...)."),
]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="A TOML/YAML file with loader options under \\[loader] (mapping, items, ...).")]
ChunkOpt = Annotated[int, typer.Option(
    "--chunk-rows", min=1, help="Rows read and written at a time; lower it to use less memory.")]


def _cleaning(strict: bool, min_user: int, min_item: int, kcore: bool, event_types: str) -> CleaningConfig:
    from lmrec.data.cleaning import CleaningConfig

    return CleaningConfig(strict=strict, min_user_events=min_user, min_item_events=min_item, kcore=kcore,
                          event_types=tuple(t.strip() for t in event_types.split(",") if t.strip()))


def _options(mapping: list[str] | None, config: Path | None, options: list[str] | None = None,
             items: Path | None = None, users: Path | None = None) -> dict[str, Any]:
    from lmrec.data.loaders.options import loader_options

    opts = loader_options(mapping or [], config, options or [])
    if items is not None:
        opts["items"] = str(items)
    if users is not None:
        opts["users"] = str(users)
    return opts


@contextlib.contextmanager
def _library_errors() -> Iterator[None]:
    """Turn errors from the storage and table libraries into one-line messages (a locked store, a corrupt
    Parquet file...), which :func:`friendly_errors` then prints without a traceback."""
    import duckdb
    import polars.exceptions as plx
    import pyarrow as pa

    try:
        yield
    except duckdb.Error as exc:
        from lmrec.store.duckdb_store import is_lock_error, lock_holder

        if is_lock_error(exc):
            raise RuntimeError(
                f"the store is held by another process{lock_holder(exc)}, a running `lmrec serve` most "
                "likely: stop it to import, or send the events through it (POST /v1/events)") from None
        raise RuntimeError(f"store: {str(exc).splitlines()[0]}") from exc
    except (pa.ArrowException, plx.PolarsError) as exc:
        raise ValueError(f"cannot read the input: {str(exc).splitlines()[0]}") from exc
    except TypeError as exc:  # a loader option of the wrong kind, from a config file
        raise ValueError(str(exc)) from exc


def _print_report(lines: list[str]) -> None:
    for i, line in enumerate(lines):
        console.print(("[bold]" if i == 0 else "[dim]") + line.replace("[", r"\["))


@data_app.command("import")
def import_(
    source: SourceArg,
    store: StoreOpt = DEFAULT_STORE,
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
    event_types: TypesOpt = "",
    mapping: MapOpt = None,
    option: OptionOpt = None,
    items: ItemsOpt = None,
    users: UsersOpt = None,
    config: ConfigOpt = None,
    chunk_rows: ChunkOpt = 1_000_000,
    name: NameOpt = None,
) -> None:
    """Import events, items and users into the store, in chunks and in one transaction.

    Re-importing the same data adds nothing (events are keyed by id). Every dropped row is counted by reason;
    with --strict the first bad row stops the import and nothing is written. Ctrl-C also leaves the store as
    it was. A store holds one dataset: importing a different one into it is refused (use --store
    OTHER.duckdb); train, evaluate, embed, similar... read lmrec.duckdb when it is here.

    Examples:

      lmrec data import movielens-100k

      lmrec data import ml-1m.zip

      lmrec data import clicks.csv -m user_id=visitor -m item_id=sku -m timestamp=ts --items products.csv

      lmrec data import Beauty.jsonl.gz          (Amazon reviews; meta_Beauty.jsonl.gz is read too)

      lmrec data import Beauty.txt -f sequences --items Beauty_item_text.txt
    """
    from lmrec.data.dataset import text_coverage_line
    from lmrec.data.loaders import open_source
    from lmrec.store import Store

    with friendly_errors(), _library_errors():
        src = open_source(source, fmt, **_options(mapping, config, option, items, users))
        cfg = replace(_cleaning(strict, 0, 0, False, event_types), default_event_type=src.default_event_type)
        with Store(store) as st:
            # before the progress bar: a refusal is the only output
            st.check_dataset(name or src.name, named=name is not None)
        with Store(store) as st, progress() as bar:
            total = src.n_rows
            if total is None and src.events is not None:
                total = src.events.height
            task = bar.add_task(f"importing {src.name}", total=total, rate="")
            res = st.import_source(src, cfg, chunk_rows=chunk_rows,
                                   on_chunk=lambda n: bar.update(task, advance=n, rate=""), dataset=name)
            counts = st.counts()
            held = st.dataset_name()
            coverage = st.text_coverage()
        _print_report(res.report.lines())
        console.print(
            f"inserted {res.events_inserted:,} events ({res.events_already_present:,} already present), "
            f"{res.items_upserted:,} items, {res.users_upserted:,} users → {store} (dataset {held!r}) "
            "now holds "
            f"{counts['events']:,} events, {counts['items']:,} items, {counts['users']:,} users"
        )
        console.print(f"{store}: {text_coverage_line(*coverage)}")
        if src.has_split:
            console.print(
                "[yellow]note:[/] the store keeps events, not their split (train/valid/test); to evaluate on "
                f"the given split, read the files: lmrec evaluate --dataset {source} --protocol given"
            )


def print_stats(stats: DatasetStats) -> None:
    """A dataset's statistics as a table on the console."""
    t = Table(title=f"{stats.name}", show_header=False)
    t.add_row("users", f"{stats.n_users:,}")
    t.add_row("items", f"{stats.n_items:,} ({stats.n_items_with_events:,} with events)")
    t.add_row("events", f"{stats.n_events:,}")
    for k, v in stats.events_by_type.items():
        t.add_row(f"  {k}", f"{v:,}")
    if stats.n_impressions:
        t.add_row("impressions", f"{stats.n_impressions:,} (items shown; not history)")
    t.add_row("density", f"{stats.density:.4%}")
    sl = stats.sequence_length
    t.add_row("events per user", f"min {sl['min']:.0f} · median {sl['median']:.0f} · mean {sl['mean']:.1f} · "
                                 f"max {sl['max']:.0f}")
    ip = stats.item_popularity
    t.add_row("events per item", f"min {ip['min']:.0f} · median {ip['median']:.0f} · mean {ip['mean']:.1f} · "
                                 f"max {ip['max']:.0f}")
    if stats.first_timestamp is not None and stats.last_timestamp is not None:
        from datetime import UTC, datetime

        a = datetime.fromtimestamp(stats.first_timestamp, UTC).date()
        b = datetime.fromtimestamp(stats.last_timestamp, UTC).date()
        t.add_row("time span", f"{a} → {b}")
    if stats.value:
        t.add_row("value", f"min {stats.value['min']:g} · mean {stats.value['mean']:.3f} · "
                           f"max {stats.value['max']:g}")
    console.print(t)


def _load(source: str | None, store: str, fmt: str | None, cfg: CleaningConfig,
          options: dict[str, Any], say: bool = True) -> tuple[Dataset, CleaningReport | None]:
    """A dataset from a source, or from the store when no source is given (read from a snapshot while a
    running service holds it)."""
    from lmrec.data.loaders import load_dataset
    from lmrec.store import open_read

    if source is None:
        if not Path(store).exists():
            raise FileNotFoundError(f"no store at {store}: give a SOURCE or run `lmrec data import` first")
        with open_read(store) as st:
            ds = st.to_dataset(cleaning=cfg)
            snapshot = st.snapshot_of is not None
        note = " — held by a running service, read from a snapshot taken now" if snapshot else ""
        if say:
            console.print(f"[dim]data: store {store} (dataset {ds.name!r}){note}", highlight=False)
        return ds, None
    return load_dataset(source, fmt, cfg, **options)


@data_app.command("stats")
def stats(
    source: Annotated[
        str | None,
        typer.Argument(help="A built-in dataset or a file/folder; the store (--store) when omitted."),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    fmt: FormatOpt = None,
    strict: StrictOpt = False,
    min_user_events: MinUserOpt = 0,
    min_item_events: MinItemOpt = 0,
    kcore: KcoreOpt = False,
    event_types: TypesOpt = "",
    mapping: MapOpt = None,
    option: OptionOpt = None,
    items: ItemsOpt = None,
    config: ConfigOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Summary statistics: users, items, events by type, sequence lengths, time span, ratings.

    Shows the cleaning report too (rows read, kept, and dropped by reason).

    Examples: `lmrec data stats movielens-100k`, `lmrec data stats` (the store),
    `lmrec data stats ratings.csv --kcore --min-user-events 5 --min-item-events 5 --json`.
    """
    from lmrec.data.dataset import text_coverage_line

    with friendly_errors(), _library_errors():
        ds, report = _load(
            source,
            store,
            fmt,
            _cleaning(strict, min_user_events, min_item_events, kcore, event_types),
            _options(mapping, config, option, items),
            say=not json_out,
        )
        if json_out:
            out = ds.stats().to_dict()
            if report is not None:
                out["cleaning"] = report.to_dict()
            print(json.dumps(out))
            return
        if report is not None:
            _print_report(report.lines())
        print_stats(ds.stats())
        console.print(text_coverage_line(*ds.text_coverage())
                      + ("; the events carry a given split (--protocol given)" if ds.has_split else ""))


@data_app.command("split")
def split(
    source: Annotated[
        str | None,
        typer.Argument(help="A built-in dataset or a file/folder; the store (--store) when omitted."),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="leave-one-out (last event of each user is test, the one before valid) | "
            "temporal (the latest events by time) | cold-item (held-out items never seen in training) | "
            "cold-mixed (leave-one-out targets, a share of items held out of training) | "
            "given (the split the data carries: a split column, RecBole X.train/valid/test.inter)."
        ),
    ] = "leave-one-out",
    out: Annotated[Path, typer.Option(help="Folder for train/valid/test Parquet files.")] = Path("split"),
    seed: Annotated[int, typer.Option(help="Seed for the cold-item / cold-mixed draw.")] = 0,
    valid_frac: Annotated[float, typer.Option(help="Temporal: share of events for validation.")] = 0.1,
    test_frac: Annotated[float, typer.Option(help="Temporal: share of events for test.")] = 0.1,
    cold_frac: Annotated[
        float | None,
        typer.Option(help="Cold-item / cold-mixed: share of items held out (default 0.1 / 0.2)."),
    ] = None,
    min_events: Annotated[
        int, typer.Option(help="Leave-one-out: users with fewer events stay in training only.")
    ] = 3,
    store: StoreOpt = DEFAULT_STORE,
    fmt: FormatOpt = None,
    min_user_events: MinUserOpt = 0,
    min_item_events: MinItemOpt = 0,
    kcore: KcoreOpt = False,
    event_types: TypesOpt = "",
    mapping: MapOpt = None,
    option: OptionOpt = None,
    items: ItemsOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Split a dataset by an evaluation protocol and write it as Parquet.

    Writes OUT/train.parquet (training events), OUT/valid.parquet and OUT/test.parquet (user, target item) and
    OUT/split.json (protocol and parameters). The same data and seed give the same files.

    Example: `lmrec data split movielens-100k --protocol temporal --test-frac 0.2 --out ml-temporal`.
    """
    from lmrec.data.split_io import write_split
    from lmrec.data.splits import PROTOCOLS, make_split

    with friendly_errors(), _library_errors():
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(sorted(PROTOCOLS))}")
        ds, _ = _load(
            source,
            store,
            fmt,
            _cleaning(False, min_user_events, min_item_events, kcore, event_types),
            _options(mapping, config, option, items),
        )
        params: dict[str, Any] = {}
        if protocol in ("leave-one-out", "loo"):
            params = {"min_events": min_events}
        elif protocol == "temporal":
            params = {"valid_frac": valid_frac, "test_frac": test_frac}
        elif protocol == "cold-item":
            params = {"cold_frac": 0.1 if cold_frac is None else cold_frac, "seed": seed}
        elif protocol == "cold-mixed":
            params = {"cold_frac": 0.2 if cold_frac is None else cold_frac, "seed": seed,
                      "min_events": min_events}
        if ds.n_events == 0:
            raise ValueError("the dataset has no events to split")
        sp = make_split(ds, protocol, **params)
        write_split(sp, out)
        console.print(sp.describe())
        console.print(f"written to {out}/ (train.parquet, valid.parquet, test.parquet, split.json)")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
