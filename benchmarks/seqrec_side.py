"""SeqRec with side features: an ablation of feature groups (behaviour only; + language model; + side
features) on the Amazon Office 2014 set and the synthetic shop. Writes the ``seqrec-side`` section.

Four variants per data set, the same training settings otherwise:

* ``id``: item ids only (behaviour);
* ``id+side``: ids plus the item side features (Office: category, brand; synthetic shop: category, brand,
  price in quantile buckets), added to every item vector on the input and output side;
* ``fused``: ids fused with the items' MiniLM text vectors (the language model);
* ``fused+side``: both.

Leave-one-out (each user's last event is the test target, the one before the validation target), full
ranking over the whole catalogue with the history's items excluded, NDCG@10 on the test targets; the
checkpoint is the best validation NDCG@10 (never test). The paired test compares per-user NDCG@10 of each
``+side`` variant with its base on the same users (paired t-test and Wilcoxon signed-rank; seeds pooled by
averaging each user's NDCG over seeds). Tail = test target with ≤ 5 training events.

Every run is cached as one JSON line (``benchmarks/out/seqrec_side.jsonl``), so the script resumes.

    python benchmarks/seqrec_side.py [--data office synthetic] [--seeds 0] [--budget 180]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import append_cached, read_cached, wall_and_load  # noqa: E402

OFFICE = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-office-2014"
#: Training settings shared by every variant (those of benchmarks/seqrec.py with max_len from the data).
BASE: dict[str, Any] = {"max_len": "auto", "d_model": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.3,
                        "batch_size": 64, "lr": 2e-3, "epochs": 40, "eval_every": 3, "patience": 3,
                        "progress": False}
#: data set → (title, the side feature settings of its "+side" variants)
DATA: dict[str, tuple[str, dict[str, Any]]] = {
    "office": ("Amazon Office 2014 (4,905 users, 2,420 items, 53,258 events; no user attributes)",
               {"item_features": "category,brand"}),
    "synthetic": ("synthetic shop (`lmrec.data.synthetic_ecommerce`, default settings: 2,000 users, 800 "
                  "items in 12 categories, views/carts/purchases; no user attributes)",
                  {"item_features": "category,brand,price"}),
}
VARIANTS = ("id", "id+side", "fused", "fused+side")
PAIRS = (("id+side", "id"), ("fused+side", "fused"), ("fused", "id"), ("fused+side", "id"))
TAIL_MAX = 5


def _dataset(name: str):  # -> Dataset
    from lmrec.data.loaders import load_dataset
    from lmrec.data.synthetic_ecommerce import generate_ecommerce

    if name == "office":
        ds, _ = load_dataset(str(OFFICE / "Office.inter.tsv"), mapping={"user_id": "user_idx"},
                             items=str(OFFICE / "Office.items.jsonl"))
        return ds
    return generate_ecommerce().dataset()


def run_one(data: str, variant: str, seed: int, threads: int, budget: float) -> dict[str, Any]:
    """Fit one variant with one seed; its test metrics, per-user NDCG@10 and validation score."""
    import torch

    import lmrec.text as text
    from lmrec.data.splits import leave_one_out
    from lmrec.evaluation.evaluator import evaluate
    from lmrec.models import create_model

    torch.set_num_threads(threads)
    ds = _dataset(data)
    split = leave_one_out(ds)
    cfg: dict[str, Any] = {**BASE, "item_repr": variant.split("+")[0], "seed": seed, "num_threads": threads,
                           "time_budget": budget}
    if variant.endswith("+side"):
        cfg.update(DATA[data][1])
    model = create_model("seqrec", **cfg)
    vectors = text.item_vectors(ds, progress=False) if model.needs_item_vectors else None
    t0 = time.perf_counter()
    meta = {"encoder": "all-MiniLM-L6-v2 (lmrec.text default)"} if vectors is not None else None
    model.fit(split.train, split.valid, item_vectors=vectors, vectors_meta=meta)
    fit_s = time.perf_counter() - t0
    res = evaluate(model, split.test, split.train, ks=(10,))
    ndcg = np.asarray(res.per_user["NDCG@10"], dtype=np.float64)
    targets = split.test.targets.values[split.test.targets.offsets[:-1]]
    tail = split.train.item_popularity[targets] <= TAIL_MAX
    tr = model.train_result_
    return {
        "data": data, "model": variant, "seed": seed, "fit_s": round(fit_s, 1), "users": int(len(ndcg)),
        "NDCG@10": float(ndcg.mean()), "HR@10": float(res.mean("HR@10")),
        "tail_users": int(tail.sum()), "tail_NDCG@10": float(ndcg[tail].mean()) if tail.any() else 0.0,
        "head_NDCG@10": float(ndcg[~tail].mean()), "valid_NDCG@10": tr.best_metric if tr else None,
        "best_epoch": tr.best_epoch if tr else None, "epochs_run": tr.epochs_run if tr else None,
        "max_len": model.config.max_len, "settings": {k: v for k, v in cfg.items() if k not in BASE},
        "per_user": [round(float(x), 5) for x in ndcg],
    }


def _budget(r: dict[str, Any]) -> float:
    return float(r["settings"].get("time_budget", 0.0))


def _epochs(r: dict[str, Any]) -> str:
    return f"{r['epochs_run']} ({r['best_epoch']})"


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def report(rows: list[dict[str, Any]], t0: float) -> str:
    from lmrec.evaluation.stats import paired_test

    lines = [
        "## SeqRec with side features: behaviour, + language model, + side features",
        "",
        "Leave-one-out, full ranking over the catalogue, history items excluded; checkpoint = best "
        "validation NDCG@10 (early stopping, never test). Settings: "
        f"`{json.dumps(BASE)}`, a training time budget per run (below), and the variant's: `item_repr` id or "
        "fused (MiniLM text vectors of title, categories, brand, description), with or without the side "
        "features listed per data set (`item_features`: added to every item vector, input and output side). "
        "Mean ± std over seeds. Paired tests on the per-user NDCG@10 of the same test users (each user's "
        "NDCG averaged over the seeds run). Tail: test target with ≤ 5 training events.",
        "",
        "Runs stop at a training time budget, so a variant that is slower per epoch trains fewer epochs (the "
        "`epochs (best)` column; fused computes the text adapter over the whole catalogue at every step, and "
        "the shared CPU's load varied between runs): compare each `+side` variant with its own base first. "
        "Fused against id trained to convergence on Office is in the `seqrec-tail-office` section.",
        "",
    ]
    groups = sorted({(r["data"], _budget(r)) for r in rows}, key=lambda g: (list(DATA).index(g[0]), g[1]))
    for data, budget in groups:
        title, side = DATA[data]
        mine = [r for r in rows if r["data"] == data and _budget(r) == budget]
        by = {v: sorted((r for r in mine if r["model"] == v), key=lambda r: r["seed"]) for v in VARIANTS}
        present = [v for v in VARIANTS if by[v]]
        seeds_run = sorted({r["seed"] for r in mine})
        lines += [f"### {title}, {budget:.0f} s of training per run", "",
                  f"Command: `python benchmarks/seqrec_side.py --data {data} --models {' '.join(present)} "
                  f"--seeds {' '.join(map(str, seeds_run))} --budget {budget:.0f}`.", "",
                  f"Side features: `{json.dumps(side)}`; time budget "
                  f"{mine[0]['settings'].get('time_budget')} s per run; max_len {mine[0]['max_len']}; "
                  f"{mine[0]['users']} test users, {mine[0]['tail_users']} with a tail target.", "",
                  "| variant | seeds | NDCG@10 (test) | HR@10 | tail NDCG@10 | head NDCG@10 | "
                  "valid NDCG@10 | epochs (best) | fit s | load |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for v in VARIANTS:
            rs = by[v]
            if not rs:
                continue
            lines.append(
                f"| {v} | {','.join(str(r['seed']) for r in rs)} | {_ms([r['NDCG@10'] for r in rs])} | "
                f"{_ms([r['HR@10'] for r in rs])} | {_ms([r['tail_NDCG@10'] for r in rs])} | "
                f"{_ms([r['head_NDCG@10'] for r in rs])} | {_ms([r['valid_NDCG@10'] for r in rs])} | "
                f"{'/'.join(_epochs(r) for r in rs)} | "
                f"{statistics.mean(r['fit_s'] for r in rs):.0f} | "
                f"{statistics.mean(r.get('load', float('nan')) for r in rs):.1f} |")
        lines += ["", "| comparison | users | mean Δ NDCG@10 | paired t p | Wilcoxon p | relative |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for a, b in PAIRS:
            seeds = sorted({r["seed"] for r in by[a]} & {r["seed"] for r in by[b]})
            if not seeds:
                continue
            xa = np.mean([next(r for r in by[a] if r["seed"] == s)["per_user"] for s in seeds], axis=0)
            xb = np.mean([next(r for r in by[b] if r["seed"] == s)["per_user"] for s in seeds], axis=0)
            t, w = paired_test(xa, xb, "t"), paired_test(xa, xb, "wilcoxon")
            rel = t.mean_difference / max(float(xb.mean()), 1e-12)
            lines.append(f"| {a} vs {b} (seeds {','.join(map(str, seeds))}) | {t.n} | "
                         f"{t.mean_difference:+.4f} | {t.p_value:.3g} | {w.p_value:.3g} | {rel:+.1%} |")
        lines.append("")
    lines += ["Runs resume from `benchmarks/out/seqrec_side.jsonl`; `--report` rewrites this section. "
              "`load` is the 1-minute load average at the start of each run (2 cores shared with other "
              "engineers' jobs, so times are indicative).", "",
              f"Training time of the runs shown: {sum(r['fit_s'] for r in rows):.0f} s (plus data loading, "
              "text vectors and evaluation, a minute or so per run). Writing this report: "
              f"{wall_and_load(t0)}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="*", default=list(DATA), choices=list(DATA))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--models", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--budget", type=float, default=180.0, help="training seconds per run (time_budget)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path,
                    default=Path(__file__).resolve().parent / "out" / "seqrec_side.jsonl")
    ap.add_argument("--report", action="store_true", help="only write the section from the cache")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if "office" in args.data and not (OFFICE / "Office.inter.tsv").exists():
        sys.exit(f"Amazon Office 2014 not found at {OFFICE}")
    t0 = time.perf_counter()
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    rows = read_cached(args.cache)
    if not args.report:
        for seed in args.seeds:  # every variant of a seed before the next seed: a paired set first
            for data in args.data:
                for variant in args.models:
                    if any(r["data"] == data and r["model"] == variant and r["seed"] == seed
                           and _budget(r) == args.budget for r in rows):
                        continue
                    load = os.getloadavg()[0]
                    row = run_one(data, variant, seed, args.threads, args.budget)
                    row["load"] = round(load, 2)
                    print(json.dumps({k: v for k, v in row.items() if k != "per_user"}), flush=True)
                    rows.append(row)
                    append_cached(args.cache, row)
    body = report(rows, t0)
    print(body)
    if not args.no_write:
        from _report import write_section

        write_section("seqrec-side", body)


if __name__ == "__main__":
    main()
