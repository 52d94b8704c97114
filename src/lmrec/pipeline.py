"""The demo pipeline: each stage calls the library and reports as it goes. Later stages join as lmrec grows."""

from __future__ import annotations

import time
from pathlib import Path

from rich.rule import Rule

from lmrec.cli.common import console


def run_demo(out: Path, seed: int = 0, quick: bool = False) -> dict[str, object]:
    from lmrec.cli.data import print_stats
    from lmrec.data.loaders import DEFAULT_DATASET, open_source
    from lmrec.data.splits import leave_one_out
    from lmrec.store import Store

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}

    console.print(Rule("[bold]1 · data"))
    source = open_source(DEFAULT_DATASET)
    with Store(out / "lmrec.duckdb") as store:
        res = store.import_source(source)
        console.print(f"store {out / 'lmrec.duckdb'}: {res.events_inserted:,} new events "
                      f"({res.events_already_present:,} already there)")
        ds = store.to_dataset(DEFAULT_DATASET)
    print_stats(ds.stats())
    split = leave_one_out(ds)
    console.print(split.describe())
    results["dataset"] = ds.stats().to_dict()

    console.print(f"[bold green]demo finished in {time.perf_counter() - t0:.0f} s[/]")
    return results
