"""SeqRec with the library's defaults: time to converge (its own stopping rule), epochs, the thread counts the
trainer chose, validation and test NDCG@10 (leave-one-out, full ranking), on the Amazon Office 2014 dev set
and MovieLens-100K, on a quiet machine or beside CPU-burning processes.

    python benchmarks/seqrec_defaults.py --data office --seed 0        # one fit, cached
    python benchmarks/seqrec_defaults.py --data ml-100k --burners 2    # beside two CPU-burning processes
    python benchmarks/seqrec_defaults.py --data ml-100k --set schedule=cosine --set max_len_cap=50
    python benchmarks/seqrec_defaults.py --report                      # docs/benchmarks.md, seqrec-defaults

Each fit appends one line to ``benchmarks/.cache/seqrec_defaults.jsonl`` (a fit already cached with the same
data, seed, settings and burners is skipped), so the report gathers runs made at different times; every row
keeps the load average sampled during its fit and the exact command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_cached, command, read_cached, write_section  # noqa: E402

OFFICE = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-office-2014"
CACHE = Path(__file__).resolve().parent / ".cache" / "seqrec_defaults.jsonl"
#: the dev sets, and the synthetic shop (lmrec.data.synthetic_ecommerce, seed 0) as a third check of a default
DATA = ("office", "ml-100k", "shop")


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _load(name: str):  # -> Dataset
    from lmrec.data.loaders import load_dataset

    if name == "office":
        ds, _ = load_dataset(OFFICE / "Office.inter.tsv", mapping={"user_id": "user_idx"},
                             items=OFFICE / "Office.items.jsonl")
    elif name == "shop":
        from lmrec.data.synthetic_ecommerce import generate_ecommerce

        ds = generate_ecommerce(seed=0).dataset()
    else:
        ds, _ = load_dataset(name)
    return ds


class _LoadSampler:
    """The 1-minute load average every few seconds while a fit runs (mean and max)."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples = [os.getloadavg()[0]]
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=10)
        self.samples.append(os.getloadavg()[0])
        return {"load_start": self.samples[0], "load_mean": statistics.fmean(self.samples),
                "load_max": max(self.samples), "load_end": self.samples[-1]}


def run(data: str, seed: int, sets: dict[str, object], burners: int) -> dict:
    from lmrec.data.splits import leave_one_out
    from lmrec.evaluation import evaluate
    from lmrec.models import create_model

    split = leave_one_out(_load(data))
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
    try:
        m = create_model("seqrec", seed=seed, **sets)  # the library's defaults, but for ``sets``
        sampler = _LoadSampler()
        t0, c0 = time.perf_counter(), time.process_time()
        m.fit(split.train, split.valid)
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0  # every thread of this process: less sensitive to others' load
        load = sampler.stop()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    r = m.train_result_
    test = evaluate(m, split.test, split.train, (10,)).mean("NDCG@10")
    cfg = m.config
    return {"data": data, "seed": seed, "sets": sets, "burners": burners, "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "epochs": r.epochs_run, "best_epoch": r.best_epoch, "stop_reason": r.stop_reason,
            "valid_ndcg10": r.best_metric, "test_ndcg10": float(test), "max_len": cfg.max_len,
            # validation NDCG@10 after each validated epoch: [epoch, value] pairs
            "curve": [[int(v["epoch"]), float(v["ndcg@10"])] for v in r.metrics],
            "schedule": getattr(cfg, "schedule", "cosine"), "lr_drops": getattr(r, "lr_drops", []),
            "threads": r.threads, "command": command(), **load,
            "effective": {**{k: getattr(cfg, k) for k in BEFORE}, "id_init": cfg.id_init},
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _key(row: dict) -> tuple:
    return row["data"], row["seed"], json.dumps(row["sets"], sort_keys=True), row["burners"]


def _variant(row: dict) -> str:
    """The settings a fit changed, and the defaults it ran with where it did not set them: the learning rate
    (1e-3, then 2e-3, then 4e-3) and, where recorded, the id table's start as the fit resolved it (random
    before the spectral start became the id model's default)."""
    named = ", ".join(f"{k}={v}" for k, v in sorted(row["sets"].items())) or "defaults"
    eff = row.get("effective", {})
    unnamed = [f"{k} {eff[k]:g}" if k == "lr" else f"{k} {eff[k]}" for k in ("lr", "id_init")
               if k in eff and k not in row["sets"]]
    return f"{named} ({', '.join(unnamed)})" if unnamed else named


#: The two arms of the weight-averaging comparison (issue 18): the defaults before it, and the defaults since.
BEFORE = {"ema_decay": 0, "lr": 0.001}
AFTER = {"ema_decay": 0.99, "lr": 0.002}


def _averaging(rows: list[dict]) -> list[str]:
    """Weight averaging with lr 0.002 against the earlier defaults, paired by data, representation and seed
    (quiet or not: accuracy does not depend on the load; seconds do, so epochs are the fair count)."""
    def arm(r: dict) -> str | None:
        if r["burners"] or set(r["sets"]) - {"item_repr", *BEFORE}:
            return None
        # rows before "effective" was recorded name both settings in their variant
        eff = r.get("effective") or {k: r["sets"].get(k, BEFORE[k]) for k in BEFORE}
        for name, want in (("before", BEFORE), ("after", AFTER)):
            if all(abs(float(eff[k]) - v) < 1e-12 for k, v in want.items()):
                return name
        return None

    pairs: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in rows:  # in the order they ran: each arm keeps its newest fit (a refit follows a code change)
        a = arm(r)
        if a is not None:
            pairs[r["data"], r["sets"].get("item_repr", "id"), r["seed"]][a] = r
    out = ["", "### Weight averaging (`ema_decay=0.99`, `lr=0.002`) against the earlier defaults "
           "(`ema_decay=0`, `lr=0.001`), same data, representation and seed", "",
           "| data | item_repr | seeds | valid NDCG@10 before → after | test NDCG@10 before → after "
           "| epochs before → after (mean) |",
           "|---|---|---|---|---|---|"]
    by: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for (data, repr_, _), p in sorted(pairs.items()):
        if "before" in p and "after" in p:
            by[data, repr_].append((p["before"], p["after"]))
    for (data, repr_), ps in sorted(by.items()):
        def m(key: str, side: int, ps: list = ps) -> float:
            return statistics.fmean(p[side][key] for p in ps)
        out.append(
            f"| {data} | {repr_} | {', '.join(str(p[0]['seed']) for p in ps)} "
            f"| {m('valid_ndcg10', 0):.4f} → {m('valid_ndcg10', 1):.4f} "
            f"({m('valid_ndcg10', 1) / m('valid_ndcg10', 0) - 1:+.1%}) "
            f"| {m('test_ndcg10', 0):.4f} → {m('test_ndcg10', 1):.4f} "
            f"({m('test_ndcg10', 1) / m('test_ndcg10', 0) - 1:+.1%}) "
            f"| {m('epochs', 0):.1f} → {m('epochs', 1):.1f} |")
    return out


#: Stopping rules replayed on recorded curves: (patience in validations, minimum relative improvement that
#: resets it). The trainer's rule is (patience, 0).
RULES = ((10, 0.0), (5, 0.0), (5, 0.01), (10, 0.01), (3, 0.0))


def replay_stop(curve: list[list[float]], patience: int, min_delta: float = 0.0) -> tuple[int, int, float]:
    """Where a run would have stopped under another stopping rule, from its recorded validation curve.

    The best weights are kept on any improvement (as the trainer does); only a gain of more than
    ``min_delta`` (relative) over the value that last reset the count resets it. Returns the epoch it stops
    after, the best epoch by then and the best value. Exact for rules that stop no later than the recorded
    run did; a rule that would run longer stops at the end of the record.
    """
    ref, best, best_epoch, bad = -math.inf, -math.inf, 0, 0
    epoch = 0
    for epoch, value in curve:
        if value > best:
            best, best_epoch = value, int(epoch)
        if value > (ref * (1 + min_delta) if ref > 0 else ref):
            ref, bad = value, 0
        else:
            bad += 1
            if bad >= patience:
                break
    return int(epoch), best_epoch, best


def _first_reaching(curve: list[list[float]], level: float) -> int:
    """The first epoch whose validation value reaches ``level``."""
    return next(int(e) for e, v in curve if v >= level)


def _curves(rows: list[dict]) -> list[str]:
    """How fast each recorded run climbs (epochs to a share of its own best), and the stopping rules of
    :data:`RULES` replayed on the curves (epochs run, and the share of the recorded best they keep)."""
    rows = [r for r in rows if r.get("curve") and not r["burners"]]
    if not rows:
        return []
    latest = {(r["data"], _variant(r), r["seed"]): r for r in rows}
    out = ["", "### Learning curves (fits that recorded theirs)", "",
           "Epochs until validation NDCG@10 first reaches 90 %, 95 % and 98 % of the run's best, the best "
           "epoch and the epochs run; then the stopping rules replayed on each curve: epochs the run would "
           "have taken, and the share of the recorded best validation NDCG@10 it would have kept (`P`: "
           "validations without a gain; `δ`: a gain must exceed this share of the value that last reset the "
           "count).", "",
           "| data | variant | seed | 90 % | 95 % | 98 % | best (run) | valid | test | "
           + " | ".join(f"P {p}, δ {d:g}" for p, d in RULES) + " |",
           "|---|---|---|---|---|---|---|---|---|" + "---|" * len(RULES)]
    for (data, variant, seed), r in sorted(latest.items()):
        c, top = r["curve"], max(v for _, v in r["curve"])
        cells = []
        for p, d in RULES:
            stop, _, best = replay_stop(c, p, d)
            cells.append(f"{stop}, {best / top:.0%}")
        reach = " | ".join(str(_first_reaching(c, share * top)) for share in (0.9, 0.95, 0.98))
        out.append(f"| {data} | {variant} | {seed} | {reach} | {r['best_epoch']} ({r['epochs']}) "
                   f"| {r['valid_ndcg10']:.4f} | {r['test_ndcg10']:.4f} | " + " | ".join(cells) + " |")
    return out


def report() -> None:
    rows = read_cached(CACHE)
    if not rows:
        raise SystemExit(f"nothing cached in {CACHE}: run some fits first")
    lines = [
        "## SeqRec defaults: time to converge and accuracy (Office, MovieLens-100K; the synthetic shop as a "
        "third check)",
        "",
        "`create_model(\"seqrec\")` with the library's defaults (a variant names the settings it overrides), "
        "leave-one-out split, full ranking, seen items excluded; the fit ends by its own criterion "
        "(`stop`: patience on validation NDCG@10, or the `epochs` cap). Seconds are the whole `fit` (every "
        "epoch and validation). Burners: that many `while True: pass` processes beside the fit on this "
        "2-core machine. CPU s: the fit process's CPU time (every thread), the cost that depends least on "
        "what else runs on the machine (absent for fits recorded before it was). Load: the 1-minute load "
        "average sampled every 5 s during the fit (mean / max). "
        "Every fit was run through the machine's two-slot job queue, so other engineers' jobs may have "
        "shared the machine: the load column says how busy it was.",
        "",
        "### Every fit",
        "",
        "| data | variant | seed | burners | schedule | max_len | s | CPU s | s / epoch | epochs (best) "
        "| stop | LR drops at epoch | load mean / max | valid NDCG@10 | test NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["data"], _variant(r), r["burners"], r["seed"])):
        drops = ", ".join(str(e) for e in r.get("lr_drops", [])) or "–"
        cpu = f"{r['cpu_seconds']:.0f}" if "cpu_seconds" in r else "–"
        lines.append(
            f"| {r['data']} | {_variant(r)} | {r['seed']} | {r['burners']} | {r['schedule']} "
            f"| {r['max_len']} | {r['seconds']:.0f} | {cpu} | {r['seconds'] / max(1, r['epochs']):.1f} "
            f"| {r['epochs']} ({r['best_epoch']}) | {r['stop_reason']} "
            f"| {drops} | {r['load_mean']:.1f} / {r['load_max']:.1f} | {r['valid_ndcg10']:.4f} "
            f"| {r['test_ndcg10']:.4f} |")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    newest = {(r["data"], _variant(r), r["burners"], r["seed"]): r for r in rows}  # a seed fitted again: once
    for (data, variant, burners, _), r in sorted(newest.items(), key=lambda kv: kv[0][3]):
        groups[data, variant, burners].append(r)
    lines += ["", "### Means over seeds", "",
              "| data | variant | burners | seeds | s (mean, max) | epochs (mean) | valid NDCG@10 "
              "| test NDCG@10 |",
              "|---|---|---|---|---|---|---|---|"]
    for (data, variant, burners), rs in sorted(groups.items()):
        def mean_sd(key: str, rs: list[dict] = rs) -> str:
            v = [r[key] for r in rs]
            sd = f" ± {statistics.stdev(v):.4f}" if len(v) > 1 else ""
            return f"{statistics.fmean(v):.4f}{sd}"
        secs = [r["seconds"] for r in rs]
        lines.append(
            f"| {data} | {variant} | {burners} | {len(rs)} | {statistics.fmean(secs):.0f}, {max(secs):.0f} "
            f"| {statistics.fmean(r['epochs'] for r in rs):.1f} | {mean_sd('valid_ndcg10')} "
            f"| {mean_sd('test_ndcg10')} |")
    lines += ["", "### Schedule: plateau against cosine (quiet runs, seeds both have)", ""]
    for data in DATA:
        by = {sch: {r["seed"]: r for r in rows if r["data"] == data and r["burners"] == 0
                    and r["sets"] == {"schedule": sch}} for sch in ("cosine", "plateau")}
        seeds = sorted(set(by["cosine"]) & set(by["plateau"]))
        if not seeds:
            continue
        v = {sch: statistics.fmean(by[sch][s]["valid_ndcg10"] for s in seeds) for sch in by}
        sec = {sch: statistics.fmean(by[sch][s]["seconds"] for s in seeds) for sch in by}
        ep = {sch: statistics.fmean(by[sch][s]["epochs"] for s in seeds) for sch in by}
        better = "plateau" if v["plateau"] >= v["cosine"] else "cosine"
        lines.append(f"- {data}, seed(s) {', '.join(map(str, seeds))}: validation NDCG@10 plateau "
                     f"{v['plateau']:.4f} vs cosine {v['cosine']:.4f} ({better} at least as good); "
                     f"{ep['plateau']:.0f} vs {ep['cosine']:.0f} epochs, {sec['plateau']:.0f} s vs "
                     f"{sec['cosine']:.0f} s.")
    lines += _averaging(rows)
    lines += _curves(rows)
    lines += ["", "### Beside CPU-burning processes against quiet (same data, variant and seed)", ""]
    quiet = {(r["data"], _variant(r), r["seed"]): r for r in rows if r["burners"] == 0}
    for r in sorted((r for r in rows if r["burners"] > 0), key=lambda r: (r["data"], _variant(r), r["seed"])):
        q = quiet.get((r["data"], _variant(r), r["seed"]))
        if q is None:
            continue
        lines.append(f"- {r['data']}, {_variant(r)}, seed {r['seed']}: {r['burners']} burners "
                     f"{r['seconds']:.0f} s (load mean {r['load_mean']:.1f}) against {q['seconds']:.0f} s "
                     f"without (load mean "
                     f"{q['load_mean']:.1f}): {r['seconds'] / q['seconds']:.2f}× (target ≤ 3×); "
                     f"{r['epochs']} vs {q['epochs']} epochs, validation NDCG@10 {r['valid_ndcg10']:.4f} vs "
                     f"{q['valid_ndcg10']:.4f}.")
    lines += ["", "Commands (one per fit, then the report): "
              + "; ".join(sorted({f"`{r['command']}`" for r in rows}))]
    print(write_section("seqrec-defaults", "\n".join(lines)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=DATA, default="office")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--burners", type=int, default=0, help="CPU-burning processes to run beside the fit")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one SeqRec setting (a variant of the defaults)")
    ap.add_argument("--report", action="store_true", help="write the cached fits into docs/benchmarks.md")
    ap.add_argument("--force", action="store_true", help="fit again even when this fit is cached")
    args = ap.parse_args()
    if args.report:
        report()
        return
    sets = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    key = (args.data, args.seed, json.dumps(sets, sort_keys=True), args.burners)
    if not args.force and any(_key(r) == key for r in read_cached(CACHE)):
        print(f"cached: {key}")
        return
    row = run(args.data, args.seed, sets, args.burners)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    append_cached(CACHE, row)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
