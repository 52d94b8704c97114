"""Time and peak memory of full-ranking evaluation: 6,000 users × 100,000 synthetic items.

    .venv/bin/python benchmarks/eval_scale.py [--users 6000] [--items 100000] [--seed 0]

Synthetic leave-one-out data with Zipf-distributed item popularity (about 50 events per user). Two models are
evaluated over the whole catalogue (every user's history removed): MostPopular (the cost of ranking alone) and
ItemKNN (a sparse item-item model, the cost of scoring too). Peak memory is the process's resident set size,
sampled every 5 ms while evaluating, against its size before. Writes the "eval-scale" section.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_section  # noqa: E402


class PeakRSS:
    """Samples the resident set size in a thread; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.start_rss = self.proc.memory_info().rss
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def synthetic(n_users: int, n_items: int, per_user: int, seed: int):  # -> Dataset
    import numpy as np
    import polars as pl

    from lmrec.data.dataset import Dataset

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8  # Zipf-like popularity
    weights /= weights.sum()
    lengths = np.clip(rng.poisson(per_user, n_users), 3, None)
    users = np.repeat(np.arange(n_users), lengths)
    items = rng.choice(n_items, size=int(lengths.sum()), p=weights)
    ev = pl.DataFrame({"user_id": users.astype(str), "item_id": items.astype(str)}).unique(
        maintain_order=True
    )
    ev = ev.with_columns(
        pl.int_range(pl.len()).cast(pl.Int64).alias("timestamp"),
        pl.int_range(pl.len()).cast(pl.String).alias("event_id"),
        pl.lit("click").alias("event_type"),
        pl.lit(None, pl.Float64).alias("value"),
    )
    catalogue = pl.DataFrame({"item_id": np.arange(n_items).astype(str)})
    return Dataset.build(ev, catalogue, name=f"synthetic-{n_users}x{n_items}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=6000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--per-user", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from lmrec.data.splits import leave_one_out
    from lmrec.evaluation import evaluate
    from lmrec.models import create_model
    from lmrec.models.base import default_batch_size

    t0 = time.perf_counter()
    ds = synthetic(args.users, args.items, args.per_user, args.seed)
    split = leave_one_out(ds)
    build_s = time.perf_counter() - t0
    print(f"{ds!r}; {split.describe()} (built in {build_s:.1f} s)", flush=True)
    rows = []
    for name, cfg in (("most-popular", {}), ("itemknn", {"k": 20})):
        t1 = time.perf_counter()
        model = create_model(name, **cfg).fit(split.train)
        fit_s = time.perf_counter() - t1
        with PeakRSS() as mem:
            res = evaluate(model, split.test, split.train, (10, 20))
        extra = (mem.peak - mem.start_rss) / 2**20
        rows.append(
            (
                name,
                fit_s,
                res.seconds,
                len(split.test) / res.seconds,
                mem.peak / 2**30,
                extra,
                res.mean("NDCG@10"),
            )
        )
        print(
            f"{name}: fit {fit_s:.1f} s, evaluate {res.seconds:.1f} s, peak RSS {mem.peak / 2**30:.2f} GiB "
            f"(+{extra:.0f} MiB while evaluating)",
            flush=True,
        )
    bs = default_batch_size(ds.item_map.size)
    dense_gib = args.users * ds.item_map.size * 4 / 2**30
    table = "\n".join(
        [
            "| model | fit s | evaluate s | users/s | peak RSS (GiB) | added while evaluating (MiB) | "
            "NDCG@10 |",
            "|---|---|---|---|---|---|---|",
        ]
        + [
            f"| {n} | {f:.1f} | {e:.1f} | {u:,.0f} | {p:.2f} | {x:.0f} | {nd:.4f} |"
            for n, f, e, u, p, x, nd in rows
        ]
    )
    body = f"""## Evaluation at scale: {args.users:,} users × {args.items:,} items (full ranking)

Synthetic leave-one-out data ({ds.n_events:,} events, Zipf-like item popularity, seed {args.seed}); every test
user ranked against the whole catalogue with their history removed, K = 10, 20. Users are scored in chunks of
{bs} rows (a {bs} × {ds.item_map.size:,} float32 block, {bs * ds.item_map.size * 4 / 2**20:.0f} MiB), so
memory does not grow with the number of users: one dense score matrix for all users would need
{dense_gib:.1f} GiB. The synthetic events are drawn independently per user (no collaborative structure), so
the NDCG column only shows that the pipeline runs; accuracy is measured on real data in "baselines".

{table}

Peak RSS is the whole process (Python, the dataset, the split and the model included), sampled every 5 ms;
the target is to stay under 4 GiB. 2 CPU cores shared with other jobs, so times are indicative only.
"""
    write_section("eval-scale", body)


if __name__ == "__main__":
    main()
