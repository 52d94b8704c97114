"""Auto with and without SeqRec's weight average (issue 18): does the average that helps SeqRec alone help
the validation-fitted blend?

SeqRec's defaults keep a moving average of its weights (``ema_decay=0.99``); Auto pins its SeqRec component to
``ema_decay=0`` (``lmrec.models.auto.SEQREC_DEFAULTS``), the setting its own section was measured with. This
fits Auto twice per data set and seed, identical but for the component's ``ema_decay``, and records what a
default is chosen on (the blend's validation NDCG@10, and SeqRec's alone, from ``Auto.search_``) beside the
test figures. Leave-one-out, full ranking, history items excluded; one JSON line per fit in
``benchmarks/.cache/auto_averaging.jsonl``; ``--report`` writes the ``auto-averaging`` section.

    python benchmarks/auto_averaging.py --data ml100k --seeds 0
    python benchmarks/auto_averaging.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import append_cached, command, read_cached, write_section  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "auto_averaging.jsonl"
ARMS = (0.0, 0.99)


def run(data: str, seed: int, ema: float) -> dict:
    from auto import load

    import lmrec.text as text
    from lmrec.data.splits import leave_one_out
    from lmrec.evaluation.evaluator import evaluate
    from lmrec.models import create_model

    ds = load(data)
    split = leave_one_out(ds)
    vectors = text.item_vectors(ds, progress=False)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    auto = create_model("auto", seed=seed, keep_all=True, seqrec={"ema_decay": ema}).fit(
        split.train, split.valid, item_vectors=vectors, vectors_meta={"encoder": "all-MiniLM-L6-v2"})
    fit_s = time.perf_counter() - t0
    seqrec = auto.components_["seqrec"]
    return {
        "data": data, "seed": seed, "ema_decay": ema, "fit_s": round(fit_s, 1),
        "valid_blend": auto.search_["valid_ndcg10"], "valid_seqrec": auto.search_["alone"]["seqrec"],
        "weights": auto.weights_, "seqrec_repr": seqrec.config.item_repr,
        "test_auto": evaluate(auto, split.test, split.train, ks=(10,)).mean("NDCG@10"),
        "test_seqrec": evaluate(seqrec, split.test, split.train, ks=(10,)).mean("NDCG@10"),
        "load": [round(load0, 2), round(os.getloadavg()[0], 2)], "command": command(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def report(rows: list[dict]) -> str:
    lines = [
        "## Auto with and without SeqRec's weight average (issue 18)",
        "",
        "Auto (`keep_all=True`, its defaults otherwise) fitted twice per data set and seed, its SeqRec "
        "component with `ema_decay` 0 (Auto's setting, as its section was measured) or 0.99 (SeqRec's own "
        "default). Validation: what Auto chooses on (the blend's NDCG@10 at its chosen weights, and SeqRec's "
        "alone, on Auto's validation users); test: leave-one-out, full ranking, history excluded. Fits ran "
        "two at a time (load columns).",
        "",
        "| data | seed | ema_decay | SeqRec | weights | valid NDCG@10 blend | valid SeqRec alone | test auto "
        "| test SeqRec | fit s | load start→end |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["data"], r["seed"], r["ema_decay"])):
        w = ", ".join(f"{k} {v:g}" for k, v in r["weights"].items())
        lines.append(
            f"| {r['data']} | {r['seed']} | {r['ema_decay']:g} | {r['seqrec_repr']} | {w} "
            f"| {r['valid_blend']:.4f} | {r['valid_seqrec']:.4f} | {r['test_auto']:.4f} "
            f"| {r['test_seqrec']:.4f} "
            f"| {r['fit_s']:.0f} | {r['load'][0]:.1f}→{r['load'][1]:.1f} |")
    by = {(r["data"], r["seed"], r["ema_decay"]): r for r in rows}
    pairs = [(by[d, s, ARMS[0]], by[d, s, ARMS[1]])
             for (d, s, e) in by if e == ARMS[0] and (d, s, ARMS[1]) in by]
    if pairs:
        def change(key: str) -> str:
            return f"{statistics.fmean(b[key] / a[key] - 1 for a, b in pairs):+.1%}"
        lines += ["", f"Mean change with the average over {len(pairs)} pair(s): blend validation "
                      f"{change('valid_blend')}, SeqRec validation {change('valid_seqrec')}, test auto "
                      f"{change('test_auto')}, test SeqRec {change('test_seqrec')}."]
    lines += ["", "Commands: " + "; ".join(sorted({f"`{r['command']}`" for r in rows}))]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="*", default=["ml100k", "office"],
                    choices=["ml100k", "office", "mlsmall"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--report", action="store_true", help="only write the section from the cache")
    args = ap.parse_args()
    if not args.report:
        done = {(r["data"], r["seed"], r["ema_decay"]) for r in read_cached(CACHE)}
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        for data in args.data:
            for seed in args.seeds:
                for ema in ARMS:
                    if (data, seed, ema) in done:
                        continue
                    row = run(data, seed, ema)
                    print(json.dumps(row), flush=True)
                    append_cached(CACHE, row)
    print(write_section("auto-averaging", report(read_cached(CACHE))))


if __name__ == "__main__":
    main()
