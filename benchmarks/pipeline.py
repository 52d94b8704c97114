"""The retrieve-and-rank pipeline against its retrievers alone (the single models), on four data sets.

Writes the ``pipeline`` section of ``docs/benchmarks.md``. Leave-one-out, full ranking over every item,
history items excluded. Every run (data set × seed) fits one ``pipeline`` on ``split.train`` (retrievers on
the training events, SeqRec early-stopped on ``split.valid`` within a time budget; the LightGBM ranker learns
from the validation targets, its trees early-stopped on a held-out fifth of the validation users) and tests on
``split.test``: the pipeline; each model retriever alone (the very models the pipeline fitted: SeqRec, EASE,
ItemKNN, ALS, ContentLM, most popular); each retriever's recall@N and the merged candidates' recall on the
test targets; and the feature-group ablation (the ranker trained again on the same rows with behaviour
features only, then + language model; the full pipeline adds the side features). Per-user NDCG@10 is cached
as one JSON line per run (``--cache``) so the benchmark resumes; ``--report`` aggregates what is cached.

Data sets: ``ml100k`` (built in), ``mlsmall`` (``../shared/data/ml-latest-small``), ``office`` (Amazon Office
2014) and ``shop`` (:mod:`lmrec.data.synthetic_ecommerce`, seed 0, its default size: 2,000 users, 800 items,
180 days; views, carts and purchases).

Examples
--------
    python benchmarks/pipeline.py --only ml100k office --seeds 0 1 2
    python benchmarks/pipeline.py --report
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
DATASETS = ("ml100k", "mlsmall", "office", "shop")
#: SeqRec's training budget inside the pipeline (seconds; the machine has 2 shared cores).
SEQREC_BUDGET = 120.0
#: Single models: the pipeline's retrievers that are lmrec models, tested alone.
SINGLES = ("seqrec", "ease", "itemknn", "als", "content-lm", "most-popular")
ABLATION = {"behaviour": "behaviour only", "behaviour,lm": "+ language model"}
#: What a cached line was measured with: lines of another protocol are neither resumed nor reported (the
#: earlier lines had the ranker's LightGBM settings fixed; since ``ranker-grid-1`` each fit selects them).
PROTOCOL = "ranker-grid-1"


def load(name: str):  # -> Dataset
    if name == "shop":
        from lmrec.data.synthetic_ecommerce import generate_ecommerce

        return generate_ecommerce(seed=0).dataset()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from auto import load as load_auto

    return load_auto(name)


def run_one(name: str, seed: int, budget: float) -> dict[str, Any]:
    import lmrec.text as text
    from lmrec.data.splits import leave_one_out
    from lmrec.evaluation.evaluator import evaluate
    from lmrec.models import create_model

    load0 = os.getloadavg()[0]
    ds = load(name)
    split = leave_one_out(ds)
    vectors = text.item_vectors(ds, progress=False)
    meta = {"encoder": "all-MiniLM-L6-v2"}
    out: dict[str, Any] = {"protocol": PROTOCOL, "data": name, "seed": seed, "users": len(split.test),
                           "items": ds.n_items,
                           "events": ds.n_events, "models": {}, "seqrec_budget": budget}

    def test(label: str, model, fit_s: float | None = None) -> None:
        t0 = time.perf_counter()
        res = evaluate(model, split.test, split.train, ks=(10,))
        out["models"][label] = {
            "NDCG@10": res.mean("NDCG@10"), "HR@10": res.mean("HR@10"),
            "per_user": np.round(res.per_user["NDCG@10"], 5).tolist(),
            "fit_s": None if fit_s is None else round(fit_s, 1), "eval_s": round(time.perf_counter() - t0, 1),
        }
        print(f"  {name} seed {seed} {label}: NDCG@10 {out['models'][label]['NDCG@10']:.4f}", flush=True)

    t0 = time.perf_counter()
    pipe = create_model("pipeline", seed=seed, time_budget=budget).fit(
        split.train, split.valid, item_vectors=vectors, vectors_meta=meta)
    fit_s = time.perf_counter() - t0
    out["search"] = pipe.search_
    test("pipeline", pipe, fit_s)
    fits = pipe.search_.get("fit_seconds", {})
    for comp, model in pipe.retrievers_.items():
        label = f"seqrec-{model.config.item_repr}" if comp == "seqrec" else comp
        test(label, model, fits.get(comp))
    pop = create_model("most-popular").fit(split.train)
    test("most-popular", pop, 0.0)
    out["test_recall"] = pipe.retriever_recall(split.test)
    out["latency_ms"] = one_request_latency(pipe, split.test)
    for groups, label in ABLATION.items():
        t1 = time.perf_counter()
        other = pipe.with_features(groups)
        test(f"pipeline ({label})", other, time.perf_counter() - t1)
        out.setdefault("ablation_ranker", {})[label] = other.search_["ranker"]
    out["load_avg"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return out


def one_request_latency(model, eval_set, n: int = 200) -> dict[str, float]:
    """In-process time of one request (one user's top 10, history excluded), for ``n`` test users in turn:
    the model's share of a served request, without HTTP."""
    rows = np.random.default_rng(0).choice(len(eval_set), size=min(n, len(eval_set)), replace=False)
    times = []
    for r in rows.tolist():
        t0 = time.perf_counter()
        model.recommend_indices(eval_set.history.take([r]), eval_set.users[[r]], k=10)
        times.append((time.perf_counter() - t0) * 1000)
    a = np.asarray(times)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}


def _params_text(p: dict[str, Any] | None) -> str:
    if not p:
        return "fixed settings"
    return (f"{p.get('num_leaves')} leaves, {p.get('min_data_in_leaf')} rows a leaf, "
            f"L2 {p.get('lambda_l2', 0):g}")


def _grid_text(grid: tuple[dict[str, Any], ...]) -> str:
    return "; ".join(_params_text(p) for p in grid)


def _ms(v: list[float]) -> str:
    a = np.asarray(v, dtype=float)
    return f"{a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.4f}"


def report(rows: list[dict[str, Any]]) -> str:
    from lmrec.evaluation.stats import paired_test
    from lmrec.models.pipeline.ranker import LIGHTGBM_DEFAULTS, LIGHTGBM_GRID, ROUNDS, STOP_ROUNDS

    searched = {k for point in LIGHTGBM_GRID for k in point}
    fixed = {k: v for k, v in LIGHTGBM_DEFAULTS.items() if k != "verbosity" and k not in searched}

    budget = sorted({r.get("seqrec_budget") for r in rows})
    lines = [
        "## Pipeline: retrieve and rank against the single models",
        "",
        "Leave-one-out (last event = test, the one before = validation), full ranking over every item, items "
        "of the history excluded; mean ± std over seeds (n). Each seed fits one `pipeline` with its defaults "
        "(`retrievers=auto`: SeqRec, EASE, ItemKNN, ALS, ContentLM when the text is informative, popular, "
        "trending, categories when items have some; top 100 unseen items from each; LightGBM LambdaRank "
        f"`{json.dumps(fixed)}`, at most {ROUNDS} rounds, early-stopped after {STOP_ROUNDS} on a held-out "
        "fifth of the validation users, its capacity selected by each fit from a fixed grid of six "
        f"(`{_grid_text(LIGHTGBM_GRID)}`) by NDCG@10 on that held-out fifth, ties to the most regularised) "
        "on the training part: retrievers on the training events (SeqRec with Auto's settings, early-stopped "
        f"on validation, within a {', '.join(f'{b:g}' for b in budget)} s training budget), the ranker on "
        "the validation targets. The single models are the pipeline's own fitted retrievers tested alone, "
        "plus most-popular. p: paired t-test on per-user NDCG@10 (averaged over the seeds) of the pipeline "
        "against the best single model. Ablation: the same ranker rows, the ranker trained again (with the "
        "settings the full pipeline's fit selected) with the "
        "behaviour features only (retriever scores/ranks, popularity, history length), then + the "
        "language-model features (user text vector · item text vector, ContentLM's columns); the full "
        "pipeline adds the side features (price, category match and recency, item age/trend, the user's "
        "event-type mix). "
        "Recall@100: share of test targets in each retriever's top 100 unseen items, and in the merged "
        "candidates (what the ranker can reach). The 2-core CPU was shared with other engineers' jobs (load "
        "average below), so times are indicative. Runs: `python benchmarks/pipeline.py --only DATA --seeds "
        "0 1 2` (one cached line per data set and seed), then `python benchmarks/pipeline.py --report`.",
        "",
        "Caveats. SeqRec's 120 s budget leaves it below its full training in the `auto` section "
        "(seqrec-fused NDCG@10 there: ml100k 0.0960, mlsmall 0.0559, office 0.0716), so \"best single "
        "model\" is the best model *as fitted here*; against those fully trained SeqRec figures the "
        "pipeline's margins are smaller (office: 0.080 vs 0.0716), and Auto with its fully trained SeqRec "
        "(that section: ml100k 0.1113, mlsmall 0.0704, office 0.0849) scores above this pipeline. "
        "The ranker's settings: each fit selects the trees' capacity (leaves, rows a leaf, L2) on validation "
        "users only, from a grid fixed before these runs and the same for every data set; the one held-out "
        "fifth both early-stops the trees and scores the grid, so its held-out figure is optimistic for the "
        "chosen point (the test figures are not). Still not chosen on validation alone: the grid's "
        "strongly regularised point (7 leaves, 100 rows a leaf, L2 10) and the fixed settings above "
        "(learning rate, subsampling, truncation) are the ones set earlier after development runs on ml100k "
        "seed 0 whose test figures were seen; mlsmall, office and shop played no part in any choice. Before "
        "this selection (those fixed settings, the previous run of this section) the pipeline against the "
        "best single model was: ml100k +16.5 % (p 0.0036), mlsmall +10.7 % (p 0.21), office +52.2 % "
        "(p 4e-35), shop +10.4 % (p 0.0022). The served latency of a pipeline over HTTP is measured in "
        "the section `serving-pipeline` (`benchmarks/serve_load.py --model pipeline`); the in-process "
        "time per request is given per data set (measured before the request path's later change, which "
        "cut its CPU time by about 13 % at 10,000 items and gives the same top 10s). SeqRec's time budget "
        "makes its epochs, so its quality and the pipeline's margin over it, depend on the machine's load "
        "(office seqrec-fused here against 0.0527 in the previous run of this section).",
        "",
    ]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["data"], []).append(r)
    summary: list[tuple[str, int, str, float, float]] = []
    selection: list[tuple[str, list[dict[str, Any]]]] = []
    recalls: list[tuple[str, dict[str, float]]] = []
    for data in DATASETS:
        runs = sorted(by.get(data, []), key=lambda r: r["seed"])
        if not runs:
            continue
        r0 = runs[0]
        lines += [f"### {data} ({r0['users']:,} test users, {r0['items']:,} items, {r0['events']:,} "
                  "events)", ""]
        labels = list(dict.fromkeys(lab for r in runs for lab in r["models"]))
        means = {lab: float(np.mean([r["models"][lab]["NDCG@10"] for r in runs if lab in r["models"]]))
                 for lab in labels}
        lines += ["| model | n | NDCG@10 | HR@10 | fit s |", "|---|---|---|---|---|"]
        for lab in sorted(labels, key=lambda x: -means[x]):
            got = [r["models"][lab] for r in runs if lab in r["models"]]
            fit = [g["fit_s"] for g in got if g["fit_s"] is not None]
            lines.append(f"| {lab} | {len(got)} | {_ms([g['NDCG@10'] for g in got])} | "
                         f"{_ms([g['HR@10'] for g in got])} | {f'{np.mean(fit):.0f}' if fit else '–'} |")
        singles = [lab for lab in labels if not lab.startswith("pipeline")]
        best = max(singles, key=lambda x: means[x])
        full = [r for r in runs if best in r["models"] and "pipeline" in r["models"]]

        def per_user(lab: str, full=full) -> np.ndarray:
            return np.mean([np.asarray(r["models"][lab]["per_user"]) for r in full], axis=0)

        t = paired_test(per_user("pipeline"), per_user(best))
        rel = (means["pipeline"] / means[best] - 1) * 100
        rec_names = list(dict.fromkeys(k for r in runs for k in r.get("test_recall", {})))
        recall = {k: np.mean([r["test_recall"][k] for r in runs if k in r.get("test_recall", {})])
                  for k in rec_names}
        lines += ["", "Recall@100 on the test targets (mean over seeds): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in recall.items()) + ".", ""]
        abl = [("behaviour only", "pipeline (behaviour only)"),
               ("+ language model", "pipeline (+ language model)"), ("+ side features (full)", "pipeline")]
        lines += ["| ranker features | NDCG@10 | vs best single |", "|---|---|---|"]
        for text, lab in abl:
            if lab in means:
                got = [r["models"][lab]["NDCG@10"] for r in runs if lab in r["models"]]
                lines.append(f"| {text} | {_ms(got)} | {(means[lab] / means[best] - 1) * 100:+.1f} % |")
        rounds = "; ".join(f"seed {r['seed']}: {_params_text(r['search'].get('ranker', {}).get('params'))}, "
                           f"{r['search'].get('ranker', {}).get('rounds')} rounds, "
                           f"{r['search'].get('ranker_groups')} label users with a positive candidate"
                           for r in runs)
        selection.append((data, runs))
        loads = ", ".join(f"{r['load_avg'][0]:.1f}→{r['load_avg'][1]:.1f} ({r.get('wall_s', 0):.0f} s wall)"
                          for r in runs)
        lat = [r["latency_ms"] for r in runs if "latency_ms" in r]
        if lat:
            lines += ["", f"One request in process (one user's top 10, no HTTP; {lat[0]['n']} test users in "
                      f"turn, under the load below): p50 {np.mean([x['p50'] for x in lat]):.1f} ms, p99 "
                      f"{np.mean([x['p99'] for x in lat]):.1f} ms (mean over seeds)."]
        lines += ["", f"Best single model: **{best}**; pipeline vs it: {rel:+.1f} % NDCG@10, paired t-test "
                  f"p = {t.p_value:.3g} (n = {t.n}). Ranker: {rounds}. Load average (1 min, start→end of "
                  f"each run): {loads}.", ""]
        summary.append((data, len(full), best, rel, t.p_value))
        recalls.append((data, recall))
    lines += ["### Summary against the target (≥ +5 % NDCG@10 over the best single model with p < 0.05 on at "
              "least three of the four sets, never below −1 %)", "",
              "| data | seeds | best single | pipeline vs best | p |", "|---|---|---|---|---|"]
    for data, n_seeds, best, rb, p in summary:
        lines.append(f"| {data} | {n_seeds} | {best} | {rb:+.1f} % | {p:.3g} |")
    lines += ["", "### The ranker's selected settings (held-out NDCG@10 of the candidates, validation users "
              "only, per grid point; **bold**: chosen)", "",
              "| data | seed | " + " | ".join(_params_text(p) for p in LIGHTGBM_GRID) + " |",
              "|---|---|" + "---|" * len(LIGHTGBM_GRID)]
    for data, runs in selection:
        for r in runs:
            info = r["search"].get("ranker", {})
            got = {json.dumps(g["params"], sort_keys=True): g for g in info.get("grid", [])}
            cells = []
            for p in LIGHTGBM_GRID:
                g = got.get(json.dumps(p, sort_keys=True))
                cell = "–" if g is None or g["heldout_ndcg10"] is None else \
                    f"{g['heldout_ndcg10']:.4f} ({g['rounds']} r)"
                cells.append(f"**{cell}**" if g is not None and g["params"] == info.get("params") else cell)
            lines.append(f"| {data} | {r['seed']} | " + " | ".join(cells) + " |")
    names = list(dict.fromkeys(k for _, rec in recalls for k in rec if k != "merged"))
    lines += ["", "### Where candidates are lost: recall@100 of each retriever and of the merged candidates "
              "(test targets, mean over seeds; – where a retriever was not used)", "",
              "| data | " + " | ".join(names) + " | merged |", "|---|" + "---|" * (len(names) + 1)]
    for data, rec in recalls:
        cells = [f"{rec[n]:.3f}" if n in rec else "–" for n in [*names, "merged"]]
        lines.append(f"| {data} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cached(path: Path) -> list[dict[str, Any]]:
    """The cached lines of this protocol (older lines, measured otherwise, are left out)."""
    return [r for r in read_cached(path) if r.get("protocol") == PROTOCOL]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=[], choices=DATASETS)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=float, default=SEQREC_BUDGET, help="SeqRec's training budget (s)")
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache" / "pipeline.jsonl")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["data"], r["seed"]) for r in cached(args.cache)}
    for seed in args.seeds:  # every data set once before any second seed
        for data in args.only:
            if (data, seed) in done:
                continue
            t0 = time.perf_counter()
            row = run_one(data, seed, args.budget)
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            append_cached(args.cache, row)
            got = ", ".join(f"{k} {v['NDCG@10']:.4f}" for k, v in row["models"].items())
            print(f"{data} seed {seed}: {got} ({row['wall_s']} s)", flush=True)
    if args.report:
        from _report import write_section

        print(write_section("pipeline", report(cached(args.cache))))


if __name__ == "__main__":
    main()
