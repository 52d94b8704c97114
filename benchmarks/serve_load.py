"""Load test of `lmrec serve`: a fixed request rate from a second process on loopback, latency percentiles.

Data: a seeded synthetic catalogue (default 100,000 items with titles and a category, 10,000 users, Zipf-
skewed popularity, 30 events per user on average) in a fresh DuckDB store; a model trained on it (``auto``,
lmrec's default flagship, by default) and served with ``lmrec serve`` in its own process. The load generator
is another process: an asyncio HTTP/1.1 keep-alive client that sends requests on a fixed schedule (open loop:
a slow answer does not delay the next request, and latency is measured from the scheduled send time, so
queueing is counted, not hidden).

Phases, each ``--duration`` seconds at ``--rate`` requests/s in all: ``mixed`` (the default: user
recommendations ``GET /v1/users/{id}/recommendations?k=10`` and one-event writes ``POST /v1/events``
interleaved, half each), ``recommendations`` alone, ``events`` alone. Latency percentiles are reported per
phase and, for the mixed phase, per route. Events are acknowledged once committed (the service's default).

    python benchmarks/serve_load.py               # auto, mixed, 60 s at 200 req/s; writes docs/benchmarks.md
    python benchmarks/serve_load.py --model itemknn --phases mixed,recommendations,events
    python benchmarks/serve_load.py --duration 10 --no-write
    python benchmarks/serve_load.py --items 10000 --model pipeline --section serving-pipeline \
        --model-settings '{"text": "off", "time_budget": 60, "label_users": 3000}' \
        --goal "recommendations p99 ≤ 25 ms at 200 requests/s mixed, 0 errors"

The server's CPU time per request (from ``/proc/PID/stat``, user + system, over the measured phase) is
reported too: unlike latency, it hardly depends on what else the machine runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- data and model
def build(folder: Path, n_items: int, n_users: int, events_per_user: int, model: str,
          seed: int, model_settings: dict | None = None) -> tuple[Path, str]:
    """Write the store and a trained model folder; returns the model folder and a line on the fitted model.

    A ``folder`` that already holds both (from an earlier run with the same settings, recorded in
    ``build.json``) is reused: the store is copied afresh from the one built then (``pristine.duckdb``), so
    that events sent by an earlier run are not in it."""
    path = folder / "models" / "v1"
    record = folder / "build.json"
    settings = {"items": n_items, "users": n_users, "events_per_user": events_per_user, "model": model,
                "seed": seed, **({"model_settings": model_settings} if model_settings else {})}
    if record.is_file() and (path / "model.json").is_file():
        done = json.loads(record.read_text())
        if done["settings"] != settings:
            raise SystemExit(f"{folder} holds a build with other settings ({done['settings']}); "
                             "use a new --workdir")
        (folder / "store.duckdb.wal").unlink(missing_ok=True)
        shutil.copyfile(folder / "pristine.duckdb", folder / "store.duckdb")
        return path, done["about"]
    import polars as pl

    from lmrec.models import create_model
    from lmrec.store import Store

    rng = np.random.default_rng(seed)
    genres = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Romance", "Thriller", "Animation"]
    items = pl.DataFrame({
        "item_id": [f"i{i}" for i in range(n_items)],
        "title": [f"Item {i}" for i in range(n_items)],
        "categories": [[genres[i % len(genres)]] for i in range(n_items)],
    })
    lengths = rng.poisson(events_per_user, n_users).clip(1)
    n = int(lengths.sum())
    # Zipf-like popularity: item rank r drawn with probability ∝ 1 / (r + 10)^1.1
    p = 1.0 / (np.arange(n_items) + 10.0) ** 1.1
    chosen = rng.choice(n_items, size=n, p=p / p.sum())
    users = np.repeat(np.arange(n_users), lengths)
    events = pl.DataFrame({
        "event_id": [f"e{i}" for i in range(n)],
        "user_id": [f"u{u}" for u in users.tolist()],
        "item_id": [f"i{i}" for i in chosen.tolist()],
        "timestamp": (1_600_000_000 + np.arange(n)).tolist(),
        "event_type": "view",
    })
    for name in ("store.duckdb", "store.duckdb.wal", "pristine.duckdb"):
        (folder / name).unlink(missing_ok=True)
    with Store(folder / "store.duckdb") as st:
        st.upsert_items(items)
        st.append_events(events)
        ds = st.to_dataset()
    fitted = create_model(model, **(model_settings or {}))
    encoded = ""
    if fitted.needs_item_vectors:  # encode the titles first (lmrec's cache keeps them), to time both apart
        from lmrec.text import get_encoder, item_vectors

        t0 = time.perf_counter()
        item_vectors(ds, encoder=get_encoder(None), progress=False)
        secs = time.perf_counter() - t0
        encoded = f"; the item text vectors (default encoder, through lmrec's cache) took {secs:.0f} s before"
    t0 = time.perf_counter()
    fitted.fit(ds)
    seconds = time.perf_counter() - t0
    fitted.save(path)
    about = f"`{fitted!r}` trained in {seconds:.0f} s{encoded}"
    search = getattr(fitted, "search_", None)
    if search and "fit_seconds" in search:
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in search["fit_seconds"].items())
        loss = search.get("settings", {}).get("seqrec", {}).get("loss")
        about += f"; component fits (inner and refit together): {parts}"
        seq = getattr(fitted, "components_", {}).get("seqrec")
        if seq is not None:
            about += (f"; SeqRec loss `{seq.config.loss}` (setting `{loss}`), max_len {seq.config.max_len}, "
                      f"{seq.config.epochs} epochs in the refit")
    shutil.copyfile(folder / "store.duckdb", folder / "pristine.duckdb")  # closed and checkpointed above
    record.write_text(json.dumps({"settings": settings, "about": about}))
    return path, about


# ---------------------------------------------------------------------- the load generator (second process)
class _Closed(Exception):
    """The server closed the connection before answering."""


class _Pool:
    """Keep-alive HTTP/1.1 connections over asyncio streams: a load generator that costs the CPU little (httpx
    spends about a millisecond of CPU per request, which on a small machine competes with the server)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
        try:
            return await self._exchange(conn, method, path, body)
        except (ConnectionError, asyncio.IncompleteReadError, _Closed):
            conn[1].close()
            if not reused:
                raise
            # The server closed an idle keep-alive connection (as any HTTP client, retry on a new one: the
            # request never reached it, and event ingestion is idempotent anyway).
            fresh = await asyncio.open_connection(self.host, self.port)
            return await self._exchange(fresh, method, path, body)

    async def _exchange(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], method: str, path: str,
                        body: bytes) -> int:
        reader, writer = conn
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
                + ("Content-Type: application/json\r\n" if body else "") + "\r\n")
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise _Closed
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        await reader.readexactly(length)
        self._idle.append(conn)
        return int(status_line.split()[1])

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()


async def _drive(url: str, kind: str, rate: float, duration: float, n_users: int, n_items: int,
                 seed: int) -> dict[str, object]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    pool = _Pool(parts.hostname or "127.0.0.1", parts.port or 80)
    rng = np.random.default_rng(seed)
    total = int(rate * duration)
    users = rng.integers(0, n_users, total)
    items = rng.integers(0, n_items, total)
    latencies: list[float] = []
    by_kind: dict[str, list[float]] = {"recommendations": [], "events": []}
    errors: dict[str, int] = {}
    start = time.perf_counter() + 0.5

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        this = kind if kind != "mixed" else ("recommendations" if i % 2 == 0 else "events")
        try:
            if this == "recommendations":
                code = await pool.request("GET", f"/v1/users/u{users[i]}/recommendations?k=10")
            else:
                body = json.dumps({"events": [{"event_id": f"load-{seed}-{i}", "user_id": f"u{users[i]}",
                                               "item_id": f"i{items[i]}", "event_type": "view"}]}).encode()
                code = await pool.request("POST", "/v1/events", body)
            outcome = str(code)
        except (OSError, asyncio.IncompleteReadError, ValueError, _Closed) as exc:
            outcome = type(exc).__name__
        latencies.append(time.perf_counter() - due)  # from the scheduled time: queueing counts
        by_kind[this].append(latencies[-1])
        if outcome != "200":
            errors[outcome] = errors.get(outcome, 0) + 1

    await asyncio.gather(*(one(i) for i in range(total)))
    wall = time.perf_counter() - start
    pool.close()
    ms = np.array(latencies) * 1000
    split = {k: {"requests": len(v), **{f"p{q}_ms": float(np.percentile(np.array(v) * 1000, q))
                                        for q in (50, 95, 99)}} for k, v in by_kind.items() if v}
    return {"kind": kind, "requests": total, "errors": errors, "seconds": wall, "throughput": total / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()), "by_kind": split}


def loadgen_main(argv: list[str]) -> None:
    url, kind, rate, duration, n_users, n_items, seed = argv
    out = asyncio.run(_drive(url, kind, float(rate), float(duration), int(n_users), int(n_items), int(seed)))
    print(json.dumps(out))


# ---------------------------------------------------------------------- orchestration
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--events-per-user", type=int, default=30)
    ap.add_argument("--model", default="auto", help="The model served (default: auto, the flagship).")
    ap.add_argument("--model-settings", type=json.loads, default=None,
                    help='The model\'s settings as JSON, e.g. \'{"time_budget": 120}\'.')
    ap.add_argument("--phases", default="mixed",
                    help="Comma-separated: mixed (half recommendations, half one-event writes), "
                         "recommendations, events.")
    ap.add_argument("--rate", type=float, default=200.0, help="Requests per second.")
    ap.add_argument("--duration", type=float, default=60.0, help="Seconds per phase.")
    ap.add_argument("--warmup", type=float, default=5.0, help="Unmeasured seconds before each phase.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="Keep data here (default: a temp folder).")
    ap.add_argument("--no-write", action="store_true", help="Print only; do not update docs/benchmarks.md.")
    ap.add_argument("--section", default="serving",
                    help="The docs/benchmarks.md section written (another model: another section).")
    ap.add_argument("--goal", default="recommendations p99 ≤ 15 ms and events p99 ≤ 25 ms at 200 requests/s "
                    "mixed, 0 errors", help="The goal line of the section.")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="lmrec-serve-load-")
    folder = args.workdir or Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    wall0 = t0 = time.perf_counter()
    model_dir, about = build(folder, args.items, args.users, args.events_per_user, args.model, args.seed,
                             args.model_settings)
    print(f"data and model ready in {time.perf_counter() - t0:.0f}s: {about}", flush=True)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LMREC_TEXT_ENCODER": "none"}
    server = subprocess.Popen(
        [sys.executable, "-c", "from lmrec.entry import main; main()", "serve", str(model_dir),
         "--store", str(folder / "store.duckdb"),
         "--port", str(port), "--dev", "--log-level", "warning"], env=env, cwd=REPO)
    results = []
    load_before = os.getloadavg()
    try:
        t0 = time.perf_counter()
        _wait_ready(url, server)
        startup = time.perf_counter() - t0
        print(f"server ready in {startup:.1f}s", flush=True)
        for i, kind in enumerate(args.phases.split(",")):
            if args.warmup > 0:
                _run_loadgen(url, kind, args.rate, args.warmup, args, seed=1000 + i)
            cpu0 = _cpu_seconds(server.pid)
            res = _run_loadgen(url, kind, args.rate, args.duration, args, seed=args.seed + i)
            cpu1 = _cpu_seconds(server.pid)
            if cpu0 is not None and cpu1 is not None:
                res["server_cpu_ms_per_request"] = (cpu1 - cpu0) * 1000 / res["requests"]
            print(json.dumps(res), flush=True)
            results.append(res)
    finally:
        server.terminate()
        server.wait(timeout=30)
        tmp.cleanup()

    load_after = os.getloadavg()
    wall = time.perf_counter() - wall0
    print(f"load average before {load_before}, after {load_after}; wall {wall:.0f}s", flush=True)
    if not args.no_write:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from _report import write_section

        rows = "\n".join(
            f"| {r['kind']}{' (all)' if r['kind'] == 'mixed' else ''} | {r['requests']:,} | "
            f"{sum(r['errors'].values())} | {r['throughput']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |"
            for r in results)
        rows += "".join(
            f"\n| {r['kind']}: {k} | {v['requests']:,} | | | {v['p50_ms']:.1f} | {v['p95_ms']:.1f} | "
            f"{v['p99_ms']:.1f} | |"
            for r in results if r["kind"] == "mixed" for k, v in r["by_kind"].items())
        title = "Serving load (`lmrec serve`)"
        if args.section != "serving":
            title += f", model `{args.model}`"
        body = (
            f"## {title}\n\n"
            f"{args.items:,} items, {args.users:,} users, ~{args.events_per_user} events per user "
            f"(synthetic, Zipf popularity, seed {args.seed}); model `{args.model}`: {about}. "
            "One uvicorn process; "
            "load from a second process "
            f"(asyncio keep-alive HTTP/1.1 client, open loop) at {args.rate:.0f} requests/s for "
            f"{args.duration:.0f} s per phase after {args.warmup:.0f} s of warm-up, on loopback. Latency is "
            "measured from each request's scheduled send time. Server start-up (model, catalogue, recent "
            f"histories): {startup:.1f} s.\n\n"
            "| phase | requests | errors | throughput (req/s) | p50 ms | p95 ms | p99 ms | max ms |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" + rows + "\n\n"
            + "".join(f"Server CPU per request ({r['kind']}, user + system from /proc, whatever the load): "
                      f"{r['server_cpu_ms_per_request']:.2f} ms. " for r in results
                      if "server_cpu_ms_per_request" in r)
            + "Events are acknowledged only once committed (the default, group commit). "
            f"Goal: {args.goal}. "
            "The server and the load generator share the machine's CPU; its load average (1, 5, 15 min) was "
            f"{' '.join(f'{x:.2f}' for x in load_before)} before the phases and "
            f"{' '.join(f'{x:.2f}' for x in load_after)} after them ({os.cpu_count()} cores): well above the "
            f"core count means other work competed. Wall time of the whole run: {wall:.0f} s.")
        print(f"wrote {write_section(args.section, body)}")


def _run_loadgen(url: str, kind: str, rate: float, duration: float, args: argparse.Namespace,
                 seed: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--_loadgen", url, kind, str(rate), str(duration), str(args.users),
         str(args.items), str(seed)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_loadgen":
        loadgen_main(sys.argv[2:])
    else:
        main()
