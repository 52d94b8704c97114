"""Schemathesis against a running `lmrec serve`, with keys and in dev mode: no generated request gets a 5xx.

A small synthetic store (``serve_load.build``) and an item-kNN model; the service runs in its own process.
Each mode runs schemathesis (examples, coverage, fuzzing and stateful phases; check ``not_a_server_error``)
with ``--max-examples`` per operation; requests are counted by the service's Prometheus metrics, by status.

    python benchmarks/fuzz_api.py                      # ≥ 10,000 requests in all; writes docs/benchmarks.md
    python benchmarks/fuzz_api.py --max-examples 20 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from serve_load import _free_port, _wait_ready, build  # noqa: E402


def _statuses(url: str) -> dict[str, int]:
    import httpx

    out: dict[str, int] = {}
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for m in re.finditer(r'lmrec_requests_total\{[^}]*status="(\d+)"\} ([0-9.e+]+)', text):
        out[m.group(1)] = out.get(m.group(1), 0) + int(float(m.group(2)))
    return out


def run_mode(model: Path, store: Path, work: Path, with_keys: bool, max_examples: int, seed: int,
             target: int) -> dict:
    from lmrec.store import Store
    from lmrec.store.keys import KeyStore

    headers: list[str] = []
    if with_keys:
        with Store(store) as st:
            key, _ = KeyStore(st).create("fuzz", ["admin"])
        headers = ["-H", f"X-API-Key: {key}"]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "LMREC_TEXT_ENCODER": "none",
           "LMREC_BACKUP_DIR": str(work / "backups")}
    cmd = [sys.executable, "-c", "from lmrec.entry import main; main()", "serve", str(model),
           "--store", str(store),
           "--port", str(port), "--log-level", "warning", *([] if with_keys else ["--dev"])]
    server = subprocess.Popen(cmd, env=env, cwd=work, stdout=open(work / "server.log", "ab"),  # noqa: SIM115
                              stderr=subprocess.STDOUT)
    try:
        _wait_ready(url, server)
        exe = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
        t0 = time.perf_counter()
        runs, worst = 0, 0
        # Schemathesis stops an operation once its inputs are exhausted; further seeds explore further, until
        # the service has answered ``target`` requests in this mode.
        while runs < 20 and sum(_statuses(url).values()) < target:
            proc = subprocess.run([exe, "run", f"{url}/openapi.json", "--checks", "not_a_server_error",
                                   "--max-examples", str(max_examples), "--seed", str(seed + runs),
                                   "--no-color", "--continue-on-failure", "--request-timeout", "60",
                                   # our key header, not generated ones (those are tested, without a
                                   # key, by the dev-mode-off 401 checks of the first run)
                                   *(["--generation-with-security-parameters", "false"]
                                     if with_keys and runs % 2 else []), *headers],
                                  capture_output=True, text=True, cwd=work)
            runs += 1
            worst = max(worst, proc.returncode)
        seconds = time.perf_counter() - t0
        statuses = _statuses(url)
    finally:
        server.terminate()
        server.wait(timeout=60)
    tail = proc.stdout.strip().splitlines()[-3:]
    return {"mode": "keys" if with_keys else "dev (no keys)", "requests": sum(statuses.values()),
            "server_errors": sum(n for c, n in statuses.items() if c.startswith("5")), "statuses": statuses,
            "schemathesis_exit": worst, "runs": runs, "seconds": round(seconds, 1), "summary": " ".join(tail)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-examples", type=int, default=150, help="Per operation and phase.")
    ap.add_argument("--target", type=int, default=5_500, help="Requests to reach per mode (seeds repeat).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lmrec-fuzz-") as tmp:
        work = Path(tmp)
        model = build(work, 2_000, 500, 20, "itemknn", args.seed)
        rows = [run_mode(model, work / "store.duckdb", work, keys, args.max_examples, args.seed, args.target)
                for keys in (True, False)]
    for r in rows:
        print(json.dumps(r), flush=True)
    load = os.getloadavg()
    if args.no_write:
        return
    from _report import write_section

    lines = ["## API fuzzing (schemathesis)", "",
             f"`schemathesis run` (all phases, check `not_a_server_error`, {args.max_examples} examples per "
             f"operation, seeds from {args.seed}, repeated with the next seed until the mode reached "
             f"{args.target:,} requests) against `lmrec serve` in its own process (2,000 synthetic items, "
             f"item-kNN), once with an admin key and once in dev mode. Requests counted by the service's "
             f"metrics. Load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.", "",
             "| mode | requests | 5xx | statuses | schemathesis runs | worst exit | seconds |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    lines += [f"| {r['mode']} | {r['requests']:,} | {r['server_errors']} | "
              f"{', '.join(f'{c}: {n:,}' for c, n in sorted(r['statuses'].items()))} | "
              f"{r['runs']} | {r['schemathesis_exit']} | {r['seconds']} |" for r in rows]
    lines += ["", f"Total: {sum(r['requests'] for r in rows):,} requests, "
                  f"{sum(r['server_errors'] for r in rows)} server errors."]
    write_section("fuzz", "\n".join(lines))


if __name__ == "__main__":
    main()
