"""OpenMP's wait policy and a fixed thread count, quiet and beside other processes: does PyTorch's intra-op
pool collapse when another process takes a core, which policy prevents it, and at what cost on a quiet
machine?

Each trial is a fresh process that fits SeqRec with a fixed ``num_threads`` for 4 epochs (no early stop), with
``--burners`` CPU-burning processes beside it. ``--fit ml100k-id``: ids, ``max_len`` 50, on MovieLens-100K's
leave-one-out training part; ``--fit office-fused``: the defaults with fused items on the Amazon Office set
(many short parallel regions a step: the text adapter over the whole catalogue, short sequences). Three
policies, alternated trial by trial so that a change in the machine's load hits all of them:

* ``spin``: the OpenMP runtime's own default (none of the variables set, and torch imported before lmrec, so
  lmrec's default cannot apply): GNU OpenMP spins 300,000 rounds before an idle pool thread sleeps;
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE``: idle pool threads sleep at once (lmrec's default until
  2026-11-29);
* ``lmrec``: what ``import lmrec`` sets unless the user chose (``GOMP_SPINCOUNT=1000``, ``KMP_BLOCKTIME=0``):
  a short spin, then sleep.

Reported per fit, policy and burner count: wall and CPU seconds of the fit (median and range over trials).

    python benchmarks/omp_wait_policy.py --fit office-fused --burners 0 1 --trials 2   # cached per row
    python benchmarks/omp_wait_policy.py --report                                       # the section only
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
if sys.argv[3] == "office-fused":
    office = sys.argv[4]
    ds, _ = load_dataset(office + "/Office.inter.tsv", mapping={"user_id": "user_idx"},
                         items=office + "/Office.items.jsonl")
    settings = {"item_repr": "fused"}
else:
    ds, _ = load_dataset("movielens-100k")
    settings = {"max_len": 50}
train = leave_one_out(ds).train
model = create_model("seqrec", num_threads=int(sys.argv[2]), epochs=4, patience=100, seed=0, **settings)
t, c = time.perf_counter(), time.process_time()
model.fit(train)
print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c,
                  "env": {k: os.environ.get(k) for k in sys.argv[5].split(",")}}))
"""
OFFICE = ROOT.parent / "shared" / "data" / "amazon-office-2014"
#: The variables a policy is made of (lmrec's defaults: lmrec.OPENMP_DEFAULTS), unset before each trial.
OPENMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
FITS = ("ml100k-id", "office-fused")
POLICIES = ("spin", "passive", "lmrec")
#: what each fit is, for the report
FIT_TEXT = {"ml100k-id": "SeqRec with ids, max_len 50, on MovieLens-100K's leave-one-out training part",
            "office-fused": "SeqRec's defaults with fused items on the Amazon Office set's leave-one-out "
                            "training part"}


def trial(policy: str, threads: int, fit: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    for k in OPENMP_VARS:
        env.pop(k, None)
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run([sys.executable, "-c", TRIAL, policy, str(threads), fit, str(OFFICE),
                          ",".join(OPENMP_VARS)], env=env,
                         capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--burners", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--fit", choices=FITS, default="office-fused")
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
            got: dict[str, list[dict]] = {p: [] for p in POLICIES}
            for _ in range(args.trials):
                for policy in got:
                    r = trial(policy, args.threads, args.fit)
                    got[policy].append(r)
                    print(f"{args.fit} burners {burners} {policy}: wall {r['wall']:.1f} s, "
                          f"cpu {r['cpu']:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
        append_cached(CACHE, {"fit": args.fit, "burners": burners, "threads": args.threads, "trials": got,
                              "load": [round(load0, 1), round(os.getloadavg()[0], 1)],
                              "wall_s": round(time.perf_counter() - t0), "command": command(),
                              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    # the latest run of each fit, burner count and thread count (rows from before --fit are ml100k-id)
    rows = {(r.get("fit", "ml100k-id"), r["burners"], r["threads"]): r for r in read_cached(CACHE)}

    def cell(vals: list[float]) -> str:
        return f"{statistics.median(vals):.1f} ({min(vals):.1f}–{max(vals):.1f})"

    lines = ["## OpenMP wait policy: a fixed thread count, quiet and beside other processes", "",
             "A fixed `num_threads`, 4 epochs, seed 0, one fresh process per trial, policies alternated "
             "trial by trial, beside `burners` CPU-burning processes on this 2-core machine. Fits: "
             + "; ".join(f"`{k}`: {v}" for k, v in FIT_TEXT.items()) + ". Policies: `spin`, the OpenMP "
             "runtime's default (none of the variables set, torch loaded before lmrec: GNU OpenMP spins "
             "300,000 rounds); `passive`: `OMP_WAIT_POLICY=PASSIVE` (lmrec's default until 2026-11-29); "
             "`lmrec`: what `import lmrec` sets now unless the user chose (`GOMP_SPINCOUNT=1000`, "
             "`KMP_BLOCKTIME=0`); rows measured before that have no `lmrec` policy. Median (range) over the "
             "trials; the fit's wall and CPU seconds (every thread). Load: the 1-minute load average before "
             "and after the row's trials.",
             "", "| fit | burners | threads | policy | trials | wall s | CPU s | load | measured | command |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- | --- | --- |"]
    for (fit, burners, threads), r in sorted(rows.items()):
        for policy, rs in r["trials"].items():
            lines.append(f"| {fit} | {burners} | {threads} | {policy} | {len(rs)} | "
                         f"{cell([x['wall'] for x in rs])} | {cell([x['cpu'] for x in rs])} | "
                         f"{r['load'][0]} → {r['load'][1]} | {r['when']} | `{r['command']}` |")
    lines.append("")
    for (fit, burners, threads), r in sorted(rows.items()):
        wall = {p: statistics.median(x["wall"] for x in rs) for p, rs in r["trials"].items()}
        cpu = {p: statistics.median(x["cpu"] for x in rs) for p, rs in r["trials"].items()}
        told = ", ".join(f"{p} {wall[p] / wall['spin']:.2f}× (CPU {cpu[p] / cpu['spin']:.2f}×)"
                         for p in wall if p != "spin")
        lines.append(f"- {fit}, {burners} burner(s), {threads} threads, wall time against spin's: {told}.")
    lines += ["", f"Load average at the report: {os.getloadavg()[0]:.1f} (1 min)."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        print(write_section("omp-wait-policy", body))


if __name__ == "__main__":
    main()
