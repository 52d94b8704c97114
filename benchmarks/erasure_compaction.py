"""What an erasure costs: deleting one user and rewriting the store file so that no byte of them is left.

Data: seeded synthetic stores (10 events per user, 10,000 items, Zipf-skewed) of 100,000 and 1,000,000
events, plus an item table with titles; one user with 30 events is erased. Timed: the delete (one
transaction), the compaction (``Store.compact``: ``COPY FROM DATABASE`` into a fresh file, atomic rename),
and a raw-bytes search of the file afterwards (must find nothing). During the compaction the service holds the
store lock, so this is also how long event writes wait after an erasure.

    python benchmarks/erasure_compaction.py [--sizes 100000 1000000] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import wall_and_load, write_section  # noqa: E402

USER = "zq-erase-me-7781"


def build(path: Path, n_events: int, seed: int = 0) -> None:
    from lmrec.store import Store

    rng = np.random.default_rng(seed)
    n_items = 10_000
    p = 1.0 / (np.arange(n_items) + 10.0) ** 1.1
    items = rng.choice(n_items, size=n_events, p=p / p.sum())
    users = np.arange(n_events) // 10
    with Store(path) as st:
        st.upsert_items(pl.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                                      "title": [f"Item number {i}" for i in range(n_items)]}))
        st.append_events(pl.DataFrame({
            "event_id": [f"e{i}" for i in range(n_events)],
            "user_id": [f"u{u}" for u in users.tolist()],
            "item_id": [f"i{i}" for i in items.tolist()],
            "timestamp": (1_600_000_000 + np.arange(n_events)).tolist()}))
        st.append_events(pl.DataFrame({
            "event_id": [f"zq-ev-{i}" for i in range(30)], "user_id": [USER] * 30,
            "item_id": [f"i{i}" for i in range(30)], "timestamp": list(range(1_500_000_000, 1_500_000_030))}))
        st.execute("CHECKPOINT")


def measure(n_events: int, workdir: Path) -> dict[str, float]:
    from lmrec.store import Store

    path = workdir / f"store-{n_events}.duckdb"
    build(path, n_events)
    with Store(path) as st:
        t0 = time.perf_counter()
        removed = st.delete_user(USER)
        t_delete = time.perf_counter() - t0
        st.execute("CHECKPOINT")
        left_before = path.read_bytes().count(USER.encode())
        t0 = time.perf_counter()
        sizes = st.compact()
        t_compact = time.perf_counter() - t0
    left_after = path.read_bytes().count(USER.encode())
    wal = Path(str(path) + ".wal")
    if wal.exists():
        left_after += wal.read_bytes().count(USER.encode())
    return {"events": n_events, "deleted": removed["events"], "delete_s": t_delete, "compact_s": t_compact,
            "mb_before": sizes["bytes_before"] / 2**20, "mb_after": sizes["bytes_after"] / 2**20,
            "hits_before": left_before, "hits_after": left_after}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            r = measure(n, Path(tmp))
            print(r, flush=True)
            rows.append(r)
    lines = [
        "## Erasure compaction (issue 16: no byte left behind)",
        "",
        "One user with 30 events erased from a synthetic store (10 events per user, 10,000 items with "
        "titles); the delete, then `Store.compact()` (what the service runs after every erasure while "
        "holding the store "
        "lock), then a raw-bytes search of the file and its WAL for the user's id.",
        "",
        "| events in store | rows deleted | delete (s) | compaction (s) | file MB before → after "
        "| id found in file after delete, before compaction | after compaction |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['events']:,} | {r['deleted']} | {r['delete_s']:.3f} | {r['compact_s']:.2f} | "
                     f"{r['mb_before']:.1f} → {r['mb_after']:.1f} | {r['hits_before']} | {r['hits_after']} |")
    lines += ["", wall_and_load(t_all)]
    print("\n".join(lines))
    if not args.no_write:
        write_section("erasure-compaction", "\n".join(lines))


if __name__ == "__main__":
    main()
