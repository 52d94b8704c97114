"""Load test of `lmrec serve` replicas on one PostgreSQL store: 1, 2 and 4 processes (`--workers N`), the
highest request rate each sustains with p99 ≤ 25 ms and no error.

Data: the synthetic catalogue of ``benchmarks/serve_load.py`` (seeded; Zipf popularity), copied from the
DuckDB store it builds into a PostgreSQL database on a throw-away durable server (``fsync=on``,
``synchronous_commit=on``; ``tests/_postgres.py``), or on ``--server postgresql://…``. For each replica count
a fresh database is copied from that one (``CREATE DATABASE … TEMPLATE``) and ``lmrec serve --workers N
--store postgresql://…`` serves it on one port. The load generator is serve_load's (a second process, open
loop, latency from the scheduled send time): mixed traffic, half ``GET /v1/users/{id}/recommendations?k=10``,
half one-event ``POST /v1/events`` (acknowledged once committed). Rates are tried in ascending order, each for
``--duration`` seconds after ``--warmup`` seconds; the first that misses the goal ends that replica count.

    python benchmarks/replicas_load.py                         # writes its section of docs/benchmarks.md
    python benchmarks/replicas_load.py --replicas 1,2 --rates 50,100 --duration 5 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from serve_load import _free_port, _run_loadgen, _wait_ready, build  # noqa: E402

P99_GOAL_MS = 25.0


def copy_to_postgres(duckdb_path: Path, server_url: str) -> str:
    """The DuckDB store's items and events in a new database; returns its name (a template)."""
    import psycopg
    from tests._postgres import create_database

    from lmrec.store import Store

    url = create_database(server_url, "load_base")
    with Store(duckdb_path) as src, Store(url) as dst:
        dst.upsert_items(src.items())
        dst.transaction(lambda: dst._insert_events(src.events()))  # noqa: SLF001 - a bulk copy
        dst.execute("ANALYZE")
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()", [name])
    return name


def run_replicas(n: int, model_dir: Path, server_url: str, template: str, args: argparse.Namespace,
                 work: Path) -> dict[str, object]:
    import psycopg

    db = f"load_r{n}"
    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {db}")
        con.execute(f"CREATE DATABASE {db} TEMPLATE {template}")
    url = server_url.rsplit("/", 1)[0] + "/" + db
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LMREC_TEXT_ENCODER": "none", "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    log = open(work / f"serve{n}.log", "ab")  # noqa: SIM115 - the server's output, closed below
    server = subprocess.Popen(
        [sys.executable, "-c", "from lmrec.entry import main; main()", "serve", str(model_dir),
         "--store", url, "--port", str(port), "--dev", "--log-level", "warning", "--workers", str(n)],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    steps = []
    try:
        t0 = time.perf_counter()
        _wait_ready(base, server)
        time.sleep(2.0 * n)  # the other workers finish loading (a worker accepts only once it is ready)
        startup = time.perf_counter() - t0
        for i, rate in enumerate(float(r) for r in args.rates.split(",")):
            if args.warmup > 0:
                _run_loadgen(base, "mixed", rate, args.warmup, args, seed=1000 + i)
            res = _run_loadgen(base, "mixed", rate, args.duration, args, seed=args.seed + 100 * n + i)
            res["rate"] = rate
            res["loadavg"] = os.getloadavg()
            res["ok"] = res["p99_ms"] <= P99_GOAL_MS and not res["errors"]
            print(json.dumps({"replicas": n, **res}), flush=True)
            steps.append(res)
            if not res["ok"]:
                break
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
    best = max((s for s in steps if s["ok"]), key=lambda s: s["rate"], default=None)
    return {"replicas": n, "startup_s": startup, "steps": steps, "best": best}


def command_extra(args: argparse.Namespace) -> str:
    """The options beyond the defaults that the section's command line must show."""
    out = ""
    if args.model != "itemknn":
        out += f" --model {args.model}"
    if args.model_settings:
        out += f" --model-settings '{json.dumps(args.model_settings)}'"
    if args.users != 2_000:
        out += f" --users {args.users}"
    if args.items != 10_000:
        out += f" --items {args.items}"
    if args.section != "replicas-postgresql":
        out += f" --section {args.section}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", default="1,2,4")
    ap.add_argument("--rates", default="25,50,100,150,200,300,400", help="Requests/s to try, ascending.")
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--events-per-user", type=int, default=30)
    ap.add_argument("--model", default="itemknn")
    ap.add_argument("--model-settings", type=json.loads, default=None,
                    help='Settings of the model trained, as JSON (e.g. \'{"text": "off"}\').')
    ap.add_argument("--workdir", type=Path, default=None,
                    help="Keep the built store and model here and reuse them (default: a temp folder).")
    ap.add_argument("--section", default="replicas-postgresql", help="Section of docs/benchmarks.md written.")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--server", default=None,
                    help="A PostgreSQL server URL (default: start a throw-away one).")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from tests._postgres import TempPostgres

    wall0 = time.perf_counter()
    load_before = os.getloadavg()
    server = TempPostgres(durable=True, max_connections=300) if args.server is None else None
    server_url = server.url if server is not None else args.server
    try:
        with tempfile.TemporaryDirectory(prefix="lmrec-replicas-load-") as tmp:
            work = Path(tmp)
            built = args.workdir or work
            built.mkdir(parents=True, exist_ok=True)
            model_dir, about = build(built, args.items, args.users, args.events_per_user, args.model,
                                     args.seed, args.model_settings)
            template = copy_to_postgres(built / "store.duckdb", server_url)
            results = [run_replicas(int(n), model_dir, server_url, template, args, work)
                       for n in args.replicas.split(",")]
    finally:
        if server is not None:
            server.stop()
    load_after, wall = os.getloadavg(), time.perf_counter() - wall0
    print(json.dumps({"load_before": load_before, "load_after": load_after, "wall_s": wall}), flush=True)
    if args.no_write:
        return
    from _report import write_section

    def row(r: dict) -> str:
        b = r["best"]
        if b is None:
            first = r["steps"][0] if r["steps"] else None
            miss = (f"none (at {first['rate']:.0f} req/s: p99 {first['p99_ms']:.1f} ms, "
                    f"{sum(first['errors'].values())} errors)") if first else "none"
            return f"| {r['replicas']} | {miss} | | | | | | |"
        kinds = b["by_kind"]
        return (f"| {r['replicas']} | {b['rate']:.0f} | {b['throughput']:.1f} | {b['p50_ms']:.1f} | "
                f"{b['p99_ms']:.1f} | {kinds['recommendations']['p99_ms']:.1f} | "
                f"{kinds['events']['p99_ms']:.1f} | "
                f"{' '.join(f'{x:.2f}' for x in b['loadavg'])} |")

    def step(s: dict) -> str:
        errors = sum(s["errors"].values())
        return f"{s['rate']:.0f}/s p99 {s['p99_ms']:.1f} ms" + (f" {errors} errors" if errors else "")

    steps = "; ".join(f"{r['replicas']} replica(s): " + ", ".join(step(s) for s in r["steps"])
                      for r in results)
    fmt = " ".join
    title_model = "" if args.model == "itemknn" else f", model `{args.model}`"
    body = (
        f"## Replicas on PostgreSQL (`lmrec serve --workers N`){title_model}\n\n"
        f"{args.items:,} items, {args.users:,} users, ~{args.events_per_user} events per user (synthetic, "
        f"seed {args.seed}); model `{args.model}`: {about}. The store is a PostgreSQL 16 database on the "
        "same machine (throw-away server, durable settings `fsync=on`, `synchronous_commit=on`), a fresh "
        "copy per replica count; `lmrec serve --workers N --store postgresql://…` serves it on one port. "
        "Mixed load (half recommendations, half one-event writes acknowledged once committed) from a second "
        f"process, open loop, {args.duration:.0f} s per rate after {args.warmup:.0f} s of warm-up, rates "
        f"tried in ascending order ({args.rates} req/s). Goal: p99 ≤ {P99_GOAL_MS:.0f} ms and 0 errors. "
        f"Command: `python benchmarks/replicas_load.py --replicas {args.replicas} --rates {args.rates} "
        f"--duration {args.duration:g}{command_extra(args)}`.\n\n"
        "| replicas | highest rate meeting the goal (req/s) | throughput | p50 ms | p99 ms | "
        "recommendations p99 ms | events p99 ms | load average (1, 5, 15 min) during the step |\n"
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"
        + "\n".join(row(r) for r in results) + "\n\n"
        f"Every step: {steps}.\n\n"
        f"The machine has {os.cpu_count()} cores, shared with the load generator, the PostgreSQL server and "
        f"other work: load average {fmt(f'{x:.2f}' for x in load_before)} before the run and "
        f"{fmt(f'{x:.2f}' for x in load_after)} after it. More replicas than cores cannot add throughput "
        "here; the figures show that replicas share one store correctly under load, not how they scale on "
        f"a larger machine. Wall time of the whole run: {wall:.0f} s.")
    print(f"wrote {write_section(args.section, body)}")


if __name__ == "__main__":
    main()
