"""What logging impressions costs a recommendation answer, and that every answer is stored.

One MovieLens-100K store and an item-kNN model; two engines on copies of that store, one with
``log_impressions`` on and one off. The same users are asked for top-10 recommendations on both, alternating
request by request (so machine load hits both alike), and the latency of ``Engine.user_recommendations``
(in process, no HTTP) is measured. At the end the logging engine's writer is flushed and the store must hold
``requests × 10`` impressions.

    python benchmarks/impression_logging.py                     # 2,000 requests; writes its section
    python benchmarks/impression_logging.py --requests 200 --no-write
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _report import wall_and_load, write_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()

    from lmrec.data.loaders import open_source
    from lmrec.data.schema import IMPRESSION
    from lmrec.models import create_model
    from lmrec.serving.engine import Engine, RecRequest
    from lmrec.serving.settings import ServingSettings
    from lmrec.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="lmrec-impressions-"))
    try:
        with Store(tmp / "base.duckdb") as st:
            st.import_source(open_source("movielens-100k"))
            ds = st.to_dataset()
            st.execute("CHECKPOINT")
        create_model("itemknn").fit(ds).save(tmp / "models" / "v1")
        users = ds.user_map.raw_ids
        engines = {}
        for name, on in (("on", True), ("off", False)):
            shutil.copy(tmp / "base.duckdb", tmp / f"{name}.duckdb")
            settings = ServingSettings(model_dir=tmp / "models" / "v1", store=str(tmp / f"{name}.duckdb"),
                                       dev_mode=True, text_encoder="none", log_impressions=on)
            engines[name] = Engine.open(settings)
        rng = np.random.default_rng(args.seed)
        asked = rng.choice(users, size=args.requests)
        req = RecRequest(k=10)
        for e in engines.values():  # warm up: every user's history in the overlay
            for u in asked[:50]:
                e.user_recommendations(str(u), req)
        times: dict[str, list[float]] = {"on": [], "off": []}
        for i, u in enumerate(asked):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            for name in order:
                t = time.perf_counter()
                engines[name].user_recommendations(str(u), req)
                times[name].append(time.perf_counter() - t)
        on = engines["on"]
        on.writer.flush()
        stored = int(on.store.execute("SELECT count(*) FROM events WHERE event_type = ?", [IMPRESSION])[0][0])
        off_stored = int(engines["off"].store.execute(
            "SELECT count(*) FROM events WHERE event_type = ?", [IMPRESSION])[0][0])
        expected = (args.requests + 50) * 10
        for e in engines.values():
            e.close()
            e.store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def row(name: str) -> str:
        a = np.array(times[name]) * 1000
        return (f"| {name} | {len(a):,} | {np.median(a):.2f} | {np.percentile(a, 95):.2f} | "
                f"{np.percentile(a, 99):.2f} | {a.mean():.2f} |")

    body = "\n".join([
        "## Impression logging: what it costs an answer",
        "",
        f"MovieLens-100K, item-kNN, top-10 for {args.requests:,} users drawn at random (seed {args.seed}), "
        "asked of two in-process engines in alternation: `log_impressions` on (each answer queued as 10 "
        "impression events on the events writer, not waited for) and off. Latency of "
        "`Engine.user_recommendations`, milliseconds:",
        "",
        "| log_impressions | requests | median | p95 | p99 | mean |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        row("on"),
        row("off"),
        "",
        f"Impressions in the store after a flush: {stored:,} of {expected:,} expected (with logging off: "
        f"{off_stored}).",
        "",
        wall_and_load(t0),
    ])
    print(body)
    if not args.no_write:
        write_section("impression-logging", body)


if __name__ == "__main__":
    main()
