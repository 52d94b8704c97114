"""Cold-item vs cold-mixed on MovieLens-100K: can a rule that knows nothing win the protocol?

Writes the ``cold-protocols`` section of ``docs/benchmarks.md``. Every run (protocol × model × seed) is cached
as one JSON line in ``--cache`` so the benchmark can be resumed; ``--report`` aggregates the cache.

Protocols (full ranking over the catalogue, history items excluded; the split's seed is the run's seed):

* ``cold-item`` (:func:`lmrec.data.splits.cold_item`, ``cold_frac=0.1``): 10 % of the items are test items
  and 10 % validation items, none in training; a user's targets are the test items they touched. Every
  target is an item without training events.
* ``cold-mixed`` (:func:`lmrec.data.splits.cold_mixed`, ``cold_frac=0.2``): each user's last event is the
  test target whatever the item, with 20 % of the items held out of training (and of the histories); about
  a fifth of the targets are cold, the rest warm. Metrics are also given per share.

Models: MostPopular, the ``unseen-random`` rule (items without training events first, in a seeded random
order per user, then by popularity), ContentLM (zero-shot MiniLM text vectors), ItemKNN and SeqRec fused
(benchmarks/seqrec.py's ``seqrec-fused`` variant and settings; on cold-item its 12 cold epochs).

Examples
--------
    python benchmarks/cold_protocols.py --seeds 0 1 2            # run what is not cached, then report
    python benchmarks/cold_protocols.py --models most-popular unseen-random --seeds 0
    python benchmarks/cold_protocols.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import append_cached, read_cached  # noqa: E402

PROTOCOLS: dict[str, dict[str, Any]] = {"cold-item": {"cold_frac": 0.1}, "cold-mixed": {"cold_frac": 0.2}}
MODELS = ["most-popular", "unseen-random", "content-lm", "itemknn", "seqrec-fused"]
KS = (10,)


def run_one(protocol: str, model_name: str, seed: int, threads: int = 1) -> dict[str, Any]:
    import torch

    import lmrec.text as text
    from lmrec.data.loaders import load_dataset
    from lmrec.data.splits import cold_targets, make_split
    from lmrec.evaluation.evaluator import evaluate
    from lmrec.models import create_model, model_class

    torch.set_num_threads(threads)
    load0 = os.getloadavg()[0]
    ds, _ = load_dataset("movielens-100k")
    split = make_split(ds, protocol, seed=seed, **PROTOCOLS[protocol])
    if model_name == "seqrec-fused":
        from seqrec import COLD_EPOCHS, SEQREC_BASE, VARIANTS

        cfg = {**SEQREC_BASE, **VARIANTS["seqrec-fused"], "seed": seed, "num_threads": threads}
        if protocol == "cold-item":
            cfg["epochs"] = COLD_EPOCHS
        model = create_model("seqrec", **cfg)
    else:
        fields = getattr(model_class(model_name).Config, "__dataclass_fields__", {})
        model = create_model(model_name, **({"seed": seed} if "seed" in fields else {}))
    vectors = text.item_vectors(ds, progress=False) if model.needs_item_vectors else None
    t0 = time.perf_counter()
    meta = {"encoder": "all-MiniLM-L6-v2 (lmrec.text default)"} if vectors is not None else None
    model.fit(split.train, split.valid, item_vectors=vectors, vectors_meta=meta)
    fit_s = time.perf_counter() - t0
    res = evaluate(model, split.test, split.train, ks=KS)
    cold = cold_targets(split.test, split.train)
    out: dict[str, Any] = {"protocol": protocol, "model": model_name, "seed": seed, "fit_s": round(fit_s, 1),
                           "users": len(split.test), "cold_users": int(cold.sum()),
                           "split": {k: v for k, v in split.params.items()},
                           "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    for k in KS:
        for m in ("NDCG", "HR"):
            v = res.per_user[f"{m}@{k}"]
            out[f"{m}@{k}"] = float(v.mean())
            out[f"cold_{m}@{k}"] = float(v[cold].mean()) if cold.any() else float("nan")
            out[f"warm_{m}@{k}"] = float(v[~cold].mean()) if (~cold).any() else float("nan")
    tr = getattr(model, "train_result_", None)
    if tr is not None and hasattr(tr, "best_epoch"):
        out.update(best_epoch=tr.best_epoch, epochs_run=tr.epochs_run)
    return out



def _ms(values: list[float]) -> str:
    a = np.asarray([v for v in values if v == v], dtype=float)
    if not a.size:
        return "–"
    return f"{a.mean():.4f} ± {a.std(ddof=1) if a.size > 1 else 0.0:.4f}"


def report(rows: list[dict[str, Any]], wall_s: float | None = None, notes: str = "") -> str:
    seeds = sorted({r["seed"] for r in rows})
    loads = [x for r in rows for x in r.get("load", [])]
    lines = [
        "## Cold items: cold-item vs cold-mixed protocol (MovieLens-100K, issue 18 part 5)",
        "",
        f"Full ranking over all 1,682 items, history items excluded; mean ± std over seeds {seeds} "
        "(n = runs; the seed draws the held-out items *and* initialises the models). `unseen-random` is a "
        "rule, not a model: items without a training event first, in a seeded random order per user, then "
        "the rest by popularity. "
        "SeqRec fused: `benchmarks/seqrec.py`'s `seqrec-fused` settings (12 epochs on cold-item, as there; "
        "up to 40 with early stopping on validation NDCG@10 on cold-mixed). Text vectors: all-MiniLM-L6-v2 "
        "of title + genres. One thread per fit; the 2 CPU cores were shared with other engineers' jobs (load "
        f"average {min(loads):.1f}–{max(loads):.1f} during the runs), so `fit s` is indicative only."
        if loads else "",
        "",
    ]
    for protocol, title in (
        ("cold-item", "### cold-item (`cold_frac=0.1`: every target is an item without training events)"),
        ("cold-mixed", "### cold-mixed (`cold_frac=0.2`: each user's last event, cold or warm)"),
    ):
        sub = [r for r in rows if r["protocol"] == protocol]
        if not sub:
            continue
        by: dict[str, list[dict[str, Any]]] = {}
        for r in sub:
            by.setdefault(r["model"], []).append(r)
        lines += [title, ""]
        if protocol == "cold-mixed":
            shares = [r["cold_users"] / r["users"] for r in sub]
            lines += [
                f"Cold share of the test targets: {np.mean(shares):.3f} (from {min(shares):.3f} to "
                f"{max(shares):.3f} over seeds; {sub[0]['users']} users). A target is cold when its item has "
                "no training event.",
                "",
                "| model | n | NDCG@10 | HR@10 | cold HR@10 | warm HR@10 | cold NDCG@10 | warm NDCG@10 "
                "| fit s |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
        else:
            lines += ["| model | n | NDCG@10 | HR@10 | fit s |", "|---|---|---|---|---|"]
        for m in sorted(by, key=lambda m: -np.mean([r["HR@10"] for r in by[m]])):
            rs = by[m]
            cells = [_ms([r["NDCG@10"] for r in rs]), _ms([r["HR@10"] for r in rs])]
            if protocol == "cold-mixed":
                cells += [_ms([r[f"{p}@10"] for r in rs]) for p in ("cold_HR", "warm_HR", "cold_NDCG",
                                                                     "warm_NDCG")]
            lines.append(f"| {m} | {len(rs)} | " + " | ".join(cells)
                         + f" | {np.mean([r['fit_s'] for r in rs]):.0f} |")
        lines.append("")
    checks = []
    for protocol in PROTOCOLS:
        sub = [r for r in rows if r["protocol"] == protocol]

        def mean(model: str, key: str, sub: list[dict[str, Any]] = sub) -> float:
            v = [r[key] for r in sub if r["model"] == model]
            return float(np.mean(v)) if v else float("nan")

        rule = mean("unseen-random", "HR@10")
        if rule != rule:
            continue
        others = sorted({r["model"] for r in sub} - {"unseen-random"})
        beaten = [m for m in others if rule > mean(m, "HR@10")]
        checks.append(f"- {protocol}: the unseen-first rule's HR@10 {rule:.4f} beats "
                      f"{len(beaten)}/{len(others)} models"
                      + (f" ({', '.join(beaten)})" if beaten else "") + ".")
    if checks:
        lines += ["### Checks", "", *checks, ""]
    if notes:
        lines += [notes.strip(), ""]
    lines += [
        "Command: `flock /tmp/lmrec-heavy.lock python benchmarks/cold_protocols.py --seeds 0 1 2` (runs what "
        "`benchmarks/out/cold_protocols.jsonl` does not hold, then writes this section)"
        + (f"; wall time of the last invocation {wall_s / 60:.1f} min." if wall_s else ".")
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--protocols", nargs="*", default=list(PROTOCOLS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path,
                    default=Path(__file__).resolve().parent / "out" / "cold_protocols.jsonl")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--notes", type=Path, default=None, help="Markdown added to the section (findings)")
    ap.add_argument("--no-write", action="store_true", help="print the section without writing the docs")
    args = ap.parse_args()
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not args.report_only:
        done = {(r["protocol"], r["model"], r["seed"]) for r in read_cached(args.cache)}
        # cheap models first, so a run cut short still has every baseline
        jobs = [(p, m, s) for m in args.models for s in args.seeds for p in args.protocols]
        for job in jobs:
            if job in done:
                continue
            row = run_one(*job, threads=args.threads)
            print(json.dumps(row), flush=True)
            append_cached(args.cache, row)
    notes = args.notes.read_text() if args.notes else ""
    body = report(read_cached(args.cache), None if args.report_only else time.perf_counter() - t0, notes)
    print(body)
    if not args.no_write:
        from _report import write_section

        write_section("cold-protocols", body)


if __name__ == "__main__":
    main()
