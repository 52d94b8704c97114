"""Auto (the validation-fitted blend) against its components and the baselines, on three data sets.

Writes the ``auto`` section of ``docs/benchmarks.md``. Leave-one-out, full ranking, history items excluded.
Every run (data set × seed) fits one ``auto`` with ``keep_all=True`` on ``split.train`` (weights on
``split.valid``), and tests: auto; each of its components alone (SeqRec with auto's item representation, EASE,
ItemKNN, ContentLM — the same models the baselines are, fitted the same way); SeqRec with the other item
representation (id ↔ fused), fitted separately with auto's SeqRec settings; and the ablation (auto with each
component dropped, its weights chosen again on validation). Per-user NDCG@10 is cached as one JSON line per
run (``--cache``) so the benchmark resumes; ``--report`` aggregates what is cached.

Data sets: ``ml100k`` (built in), ``mlsmall`` (``../shared/data/ml-latest-small``), ``office`` (Amazon Office
2014) and ``office-shuffled`` (each user's events in a random order: order carries no signal).

Examples
--------
    python benchmarks/auto.py --only office ml100k --seeds 0 1 2
    python benchmarks/auto.py --report
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATASETS = ("ml100k", "mlsmall", "office", "office-shuffled")
BASELINES = ("ease", "itemknn", "content-lm")


def load(name: str):  # -> Dataset
    import polars as pl

    from lmrec.data.loaders import load_dataset

    if name == "ml100k":
        ds, _ = load_dataset("movielens-100k")
    elif name == "mlsmall":
        ds, _ = load_dataset(str(SHARED / "ml-latest-small"))
    else:
        office = SHARED / "amazon-office-2014"
        ds, _ = load_dataset(
            str(office / "Office.inter.tsv"),
            mapping={"user_id": "user_idx"},
            items=str(office / "Office.items.jsonl"),
        )
        if name == "office-shuffled":
            ev = ds.events.with_columns(pl.col("timestamp").shuffle(seed=0).over("user_idx"))
            ds = ds.with_events(
                ev.sort(["user_idx", "timestamp"], maintain_order=True), name="office-shuffled"
            )
    return ds


def run_one(name: str, seed: int) -> dict[str, Any]:
    import lmrec.text as text
    from lmrec.data.splits import leave_one_out
    from lmrec.evaluation.evaluator import evaluate
    from lmrec.models import create_model
    from lmrec.models.auto import SEQREC_DEFAULTS

    load0 = os.getloadavg()[0]
    ds = load(name)
    split = leave_one_out(ds)
    vectors = text.item_vectors(ds, progress=False)
    meta = {"encoder": "all-MiniLM-L6-v2"}
    out: dict[str, Any] = {
        "data": name,
        "seed": seed,
        "users": len(split.test),
        "items": ds.n_items,
        "events": ds.n_events,
        "models": {},
    }

    def test(label: str, model, fit_s: float | None = None) -> None:
        t0 = time.perf_counter()
        res = evaluate(model, split.test, split.train, ks=(10,))
        out["models"][label] = {
            "NDCG@10": res.mean("NDCG@10"),
            "HR@10": res.mean("HR@10"),
            "per_user": np.round(res.per_user["NDCG@10"], 5).tolist(),
            "fit_s": None if fit_s is None else round(fit_s, 1),
            "eval_s": round(time.perf_counter() - t0, 1),
        }

    t0 = time.perf_counter()
    auto = create_model("auto", seed=seed, keep_all=True).fit(
        split.train, split.valid, item_vectors=vectors, vectors_meta=meta
    )
    auto_fit = time.perf_counter() - t0
    out["auto"] = {"weights": auto.weights_, "search": auto.search_}
    test("auto", auto, auto_fit)
    fits = auto.search_["fit_seconds"]
    repr_ = auto.components_["seqrec"].config.item_repr
    for comp, model in auto.components_.items():
        label = f"seqrec-{repr_}" if comp == "seqrec" else comp
        test(label, model, fits.get(comp))
    for comp, abl in auto.search_.get("without", {}).items():
        test(f"auto − {comp}", auto.with_weights(abl["weights"]))
    other = "id" if repr_ != "id" else "fused"
    t0 = time.perf_counter()
    sr = create_model("seqrec", **{**SEQREC_DEFAULTS, "item_repr": other, "seed": seed, "progress": False})
    sr.fit(
        split.train,
        split.valid,
        item_vectors=vectors if other != "id" else None,
        vectors_meta=meta if other != "id" else None,
    )
    test(f"seqrec-{other}", sr, time.perf_counter() - t0)
    out["max_len"] = auto.components_["seqrec"].config.max_len
    out["load_avg"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return out



def _ms(v: list[float]) -> str:
    a = np.asarray(v, dtype=float)
    return f"{a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.4f}"


def report(rows: list[dict[str, Any]]) -> str:
    from lmrec.evaluation.stats import paired_test
    from lmrec.models.auto import SEQREC_DEFAULTS

    lines = [
        "## Auto: the validation-fitted blend vs its components and the baselines",
        "",
        "Leave-one-out (last event = test, the one before = validation), full ranking over every item, "
        "items of the history excluded; mean ± std over seeds (n). Each seed fits one `auto` (SeqRec, EASE "
        "when n_items ≤ 20k, ItemKNN, ContentLM when the text is informative; weights chosen on validation "
        "NDCG@10); EASE, ItemKNN, ContentLM and one SeqRec are auto's own components tested alone (the same "
        "fits as the baselines with lmrec's defaults), the other SeqRec is fitted separately with the same "
        f"settings: `{json.dumps(SEQREC_DEFAULTS)}` (max_len: the data-derived rule, capped at 50). "
        "p: paired t-test on per-user NDCG@10 (averaged over the seeds) of auto against the best other "
        "model. `auto − X`: auto with component X dropped and its weights chosen again on validation (the "
        "ablation). The 2-core CPU was shared with other engineers' jobs (load average below), so times are "
        "indicative. Runs: `python benchmarks/auto.py --only DATA --seeds 0 1 2` (one cached line per data "
        "set and seed), then `--report`.",
        "",
    ]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["data"], []).append(r)
    summary = []
    for data in DATASETS:
        runs = sorted(by.get(data, []), key=lambda r: r["seed"])
        if not runs:
            continue
        r0 = runs[0]
        lines += [
            f"### {data} ({r0['users']:,} test users, {r0['items']:,} items, {r0['events']:,} events; "
            f"SeqRec max_len {r0.get('max_len')})",
            "",
        ]
        labels = list(dict.fromkeys(lab for r in runs for lab in r["models"]))
        lines += ["| model | n | NDCG@10 | HR@10 | fit s |", "|---|---|---|---|---|"]
        means = {}
        for lab in labels:
            got = [r["models"][lab] for r in runs if lab in r["models"]]
            means[lab] = float(np.mean([g["NDCG@10"] for g in got]))
        for lab in sorted(labels, key=lambda x: -means[x]):
            got = [r["models"][lab] for r in runs if lab in r["models"]]
            fit = [g["fit_s"] for g in got if g["fit_s"] is not None]
            lines.append(
                f"| {lab} | {len(got)} | {_ms([g['NDCG@10'] for g in got])} | "
                f"{_ms([g['HR@10'] for g in got])} | {np.mean(fit):.0f} |"
                if fit
                else f"| {lab} | {len(got)} | {_ms([g['NDCG@10'] for g in got])} | "
                f"{_ms([g['HR@10'] for g in got])} | – |"
            )
        others = [lab for lab in labels if not lab.startswith("auto")]
        best = max(others, key=lambda x: means[x])
        full = [r for r in runs if best in r["models"] and "auto" in r["models"]]

        def per_user(lab: str, full=full) -> np.ndarray:
            return np.mean([np.asarray(r["models"][lab]["per_user"]) for r in full], axis=0)

        t = paired_test(per_user("auto"), per_user(best))
        rel = {
            b: ((means["auto"] / means[b] - 1) * 100, paired_test(per_user("auto"), per_user(b)).p_value)
            for b in BASELINES
            if b in means and all(b in r["models"] for r in full)
        }
        rel_best = (means["auto"] / means[best] - 1) * 100
        weights = "; ".join(
            f"seed {r['seed']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["auto"]["weights"].items())
            for r in runs
        )
        loads = ", ".join(
            f"{r['load_avg'][0]:.1f}→{r['load_avg'][1]:.1f} ({r.get('wall_s', 0):.0f} s wall)" for r in runs
        )
        lines += [
            "",
            f"Best other model: **{best}**; auto vs it: {rel_best:+.1f} % NDCG@10, paired t-test "
            f"p = {t.p_value:.3g} (n = {t.n}). Auto vs "
            + ", ".join(f"{b} {v:+.1f} % (p = {q:.2g})" for b, (v, q) in rel.items())
            + ".",
            "",
            f"Weights chosen on validation — {weights}. Load average (1 min, start→end of each run): "
            f"{loads}.",
            "",
        ]
        summary.append((data, len(full), best, rel_best, t.p_value, rel))
    lines += [
        "### Summary against the target (auto ≥ +10 % NDCG@10 over EASE, ItemKNN and ContentLM, p < 0.05)",
        "",
        "| data | seeds | best other | auto vs best | p | vs EASE | vs ItemKNN | vs ContentLM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for data, n_seeds, best, rb, p, rel in summary:
        cells = [f"{rel[b][0]:+.1f} % (p {rel[b][1]:.2g})" if b in rel else "–" for b in BASELINES]
        lines.append(f"| {data} | {n_seeds} | {best} | {rb:+.1f} % | {p:.3g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=[], choices=DATASETS)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache" / "auto.jsonl")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["data"], r["seed"]) for r in read_cached(args.cache)}
    for data in args.only:
        for seed in args.seeds:
            if (data, seed) in done:
                continue
            t0 = time.perf_counter()
            row = run_one(data, seed)
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            append_cached(args.cache, row)
            m = row["models"]
            print(
                f"{data} seed {seed}: "
                + ", ".join(f"{k} {v['NDCG@10']:.4f}" for k, v in m.items())
                + f" ({row['wall_s']} s)",
                flush=True,
            )
    if args.report:
        from _report import write_section

        print(write_section("auto", report(read_cached(args.cache))))


if __name__ == "__main__":
    main()
