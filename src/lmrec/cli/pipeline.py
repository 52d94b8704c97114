"""The demo pipeline on the built-in MovieLens-100K: data → text vectors → models → evaluation table → report.

Each stage calls the library (nothing here that a user could not call) and reports as it goes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.rule import Rule

from lmrec.cli.common import console

#: SeqRec as the demo trains it: the settings of ``benchmarks/seqrec.py`` (the numbers in docs/benchmarks.md),
#: so the demo's table can be checked against them. ``max_len`` 50 keeps the demo within minutes on 2 CPU
#: cores (the median MovieLens-100K user has 65 ratings; the library's ``max_len="auto"`` caps at 50 too).
DEMO_SEQREC: dict[str, Any] = {
    "max_len": 50, "d_model": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.3, "batch_size": 64, "lr": 2e-3,
    "epochs": 40, "eval_every": 3, "patience": 3,
    # no weight average, as in benchmarks/seqrec.py and Auto's SeqRec (the demo's table compares them)
    "ema_decay": 0.0,
    "id_init": "random",  # as measured there (the id model's default is the spectral start since)
}


def _stage(n: int, title: str) -> float:
    console.print(Rule(f"[bold]{n} · {title}"))
    return time.perf_counter()


#: Shares of the demo's training budget: SeqRec id, SeqRec fused, and auto's SeqRec (its other components fit
#: in seconds).
BUDGET_SHARES = {"seqrec-id": 0.25, "seqrec-fused": 0.3, "auto": 0.45}


def run_demo(out: Path, seed: int = 0, quick: bool = False, budget: float = 420.0) -> dict[str, Any]:
    """Run the whole pipeline and write ``out/report``; returns the numbers it printed.

    ``budget``: seconds of neural training in all (0: none), shared by the sequence models as
    :data:`BUDGET_SHARES` says; each stops at its share or at its own early stopping, whichever comes first,
    so the demo stays within minutes on a busy machine."""
    from lmrec.cli.data import print_stats
    from lmrec.data.loaders import DEFAULT_DATASET, open_source
    from lmrec.data.splits import leave_one_out
    from lmrec.evaluation import run_benchmark
    from lmrec.evaluation.benchmark import DEFAULT_MODELS
    from lmrec.models import available_models
    from lmrec.store import Store
    from lmrec.text import embed_dataset_items

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "lmrec.duckdb"
    results: dict[str, Any] = {"seed": seed}

    t = _stage(1, "data: MovieLens-100K → store → dataset → leave-one-out split")
    source = open_source(DEFAULT_DATASET)
    with Store(store_path) as store:
        res = store.import_source(source, dataset=DEFAULT_DATASET)
        console.print(f"store {store_path}: {res.events_inserted:,} new events "
                      f"({res.events_already_present:,} already there)")
        ds = store.to_dataset(DEFAULT_DATASET)
    print_stats(ds.stats())
    split = leave_one_out(ds)
    console.print(split.describe())
    results["dataset"] = ds.stats().to_dict()
    console.print(f"[dim]{time.perf_counter() - t:.1f} s")

    t = _stage(2, "text: item titles and genres → language-model vectors (cached)")
    vectors, stats = embed_dataset_items(ds, store=store_path, progress=True)
    console.print(f"{stats.n_texts:,} item texts: {stats.n_encoded:,} encoded, {stats.n_cached:,} from the "
                  f"cache → vectors {vectors.shape[0] - 1:,} × {vectors.shape[1]}")
    results["text"] = {"encoded": stats.n_encoded, "cached": stats.n_cached, "dim": int(vectors.shape[1])}
    console.print(f"[dim]{time.perf_counter() - t:.1f} s")

    t = _stage(3, "models → 4 · evaluation (leave-one-out, full ranking, seen items filtered)")
    models: list[Any] = list(DEFAULT_MODELS)
    share = {name: round(budget * f, 1) for name, f in BUDGET_SHARES.items()} if budget > 0 else {}
    if share:
        parts = ", ".join(f"{n} {s:.0f} s" for n, s in share.items())
        console.print(f"training budget {budget:.0f} s: {parts} (each model also stops early when validation "
                      "stops improving)")
    if "seqrec" in available_models():
        cfg = dict(DEMO_SEQREC, seed=seed)
        if quick:
            cfg.update(epochs=6, patience=0)
        models += [("seqrec-id", "seqrec",
                    {**cfg, "item_repr": "id", "time_budget": share.get("seqrec-id", 0.0)}),
                   ("seqrec-fused", "seqrec",
                    {**cfg, "item_repr": "fused", "time_budget": share.get("seqrec-fused", 0.0)})]
    if "auto" in available_models():
        # lmrec's default model: a blend of SeqRec, EASE, ItemKNN and ContentLM, weights fitted on validation
        auto_seqrec = {"epochs": 6, "patience": 0} if quick else {}
        models.append(("auto", "auto", {"seed": seed, "seqrec": auto_seqrec,
                                        "time_budget": share.get("auto", 0.0)}))
    bench = run_benchmark(ds, split, models=models, ks=(5, 10, 20), out_dir=out / "report", seed=seed,
                          item_vectors=vectors, progress=True, command="lmrec demo")
    console.print(bench.table())
    console.print(f"[dim]{time.perf_counter() - t:.1f} s")

    _stage(5, "report")
    results["benchmark"] = bench.to_dict()
    (out / "demo.json").write_text(json.dumps(results, indent=2, default=str))
    console.print(f"best model by NDCG@10: [bold]{bench.best()}[/]")
    console.print(f"report: [bold]{bench.report_html}[/]  (Markdown and JSON beside it)")
    console.print(f"[bold green]demo finished in {time.perf_counter() - t_start:.0f} s[/]")
    return results
