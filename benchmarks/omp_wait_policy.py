"""OpenMP's wait policy and a fixed thread count on a busy machine: does PyTorch's intra-op pool collapse when
another process takes a core, and does ``OMP_WAIT_POLICY=PASSIVE`` (what ``import lmrec`` sets unless the
user chose) prevent it, at what cost on a quiet machine?

Each trial is a fresh process that fits SeqRec (ids, ``max_len`` 50, a fixed ``num_threads``, 4 epochs,
no early stop) on MovieLens-100K's leave-one-out training part, with ``--burners`` CPU-burning processes
beside it. Two policies, alternated trial by trial so that a change in the machine's load hits both:

* ``spin``: the OpenMP runtime's own default (``OMP_WAIT_POLICY`` unset, and torch imported before lmrec,
  so lmrec's default cannot apply): an idle pool thread spins for a while before it sleeps;
* ``passive``: lmrec's default: idle pool threads sleep at once.

Reported per policy and burner count: wall and CPU seconds of the fit (median and range over trials).

    python benchmarks/omp_wait_policy.py --burners 1 --trials 2   # rows are cached per burner count
    python benchmarks/omp_wait_policy.py --burners 0 --trials 3   # e.g. on a quiet machine; then both
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_cached, command, read_cached, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "omp_wait_policy.jsonl"
TRIAL = """
import json, os, sys, time
if sys.argv[1] == "spin":
    import torch  # the OpenMP runtime loads here, reading the environment without lmrec's default
from lmrec.data.loaders import load_dataset
from lmrec.data.splits import leave_one_out
from lmrec.models import create_model
import torch
ds, _ = load_dataset("movielens-100k")
train = leave_one_out(ds).train
model = create_model("seqrec", num_threads=int(sys.argv[2]), epochs=4, patience=100, max_len=50, seed=0)
t, c = time.perf_counter(), time.process_time()
model.fit(train)
print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c,
                  "policy_env": os.environ.get("OMP_WAIT_POLICY")}))
"""


def trial(policy: str, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_WAIT_POLICY", None)
    out = subprocess.run([sys.executable, "-c", TRIAL, policy, str(threads)], env=env, capture_output=True,
                         text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--burners", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--report", action="store_true", help="only write the section from the cache")
    args = ap.parse_args()
    if args.report:
        args.burners = []
    for burners in args.burners:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
        load0 = os.getloadavg()[0]
        try:
            got: dict[str, list[dict]] = {"spin": [], "passive": []}
            for _ in range(args.trials):
                for policy in got:
                    r = trial(policy, args.threads)
                    got[policy].append(r)
                    print(f"burners {burners} {policy}: wall {r['wall']:.1f} s, cpu {r['cpu']:.1f} s "
                          f"(load {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
        append_cached(CACHE, {"burners": burners, "threads": args.threads, "trials": got,
                              "load": [round(load0, 1), round(os.getloadavg()[0], 1)],
                              "wall_s": round(time.perf_counter() - t0), "command": command(),
                              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    rows = {(r["burners"], r["threads"]): r for r in read_cached(CACHE)}  # the latest run of each

    def cell(vals: list[float]) -> str:
        return f"{statistics.median(vals):.1f} ({min(vals):.1f}–{max(vals):.1f})"

    lines = ["## OpenMP wait policy: a fixed thread count beside other processes", "",
             "SeqRec (ids, max_len 50, a fixed `num_threads`, 4 epochs, seed 0) on MovieLens-100K's "
             "leave-one-out training part, one fresh process per trial, policies alternated trial by trial, "
             "beside `burners` CPU-burning processes on this 2-core machine. `spin`: the OpenMP runtime's "
             "default (`OMP_WAIT_POLICY` unset, torch loaded before lmrec); `passive`: "
             "`OMP_WAIT_POLICY=PASSIVE`, what `import lmrec` sets unless the variable is already set. Median "
             "(range) over the trials; the fit's wall and CPU seconds (every thread). Load: the 1-minute "
             "load average before and after the row's trials (other engineers' jobs may share the machine).",
             "", "| burners | threads | policy | trials | wall s | CPU s | load | measured | command |",
             "| ---: | ---: | --- | ---: | ---: | ---: | --- | --- | --- |"]
    for (burners, threads), r in sorted(rows.items()):
        for policy, rs in r["trials"].items():
            lines.append(f"| {burners} | {threads} | {policy} | {len(rs)} | "
                         f"{cell([x['wall'] for x in rs])} | {cell([x['cpu'] for x in rs])} | "
                         f"{r['load'][0]} → {r['load'][1]} | {r['when']} | `{r['command']}` |")
    lines.append("")
    for (burners, threads), r in sorted(rows.items()):
        wall = {p: statistics.median(x["wall"] for x in rs) for p, rs in r["trials"].items()}
        cpu = {p: statistics.median(x["cpu"] for x in rs) for p, rs in r["trials"].items()}
        lines.append(f"- {burners} burner(s), {threads} threads: passive takes "
                     f"{wall['passive'] / wall['spin']:.2f}× spin's wall time and "
                     f"{cpu['passive'] / cpu['spin']:.2f}× its CPU time.")
    lines += ["", f"Load average at the report: {os.getloadavg()[0]:.1f} (1 min)."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        print(write_section("omp-wait-policy", body))


if __name__ == "__main__":
    main()
