"""Does an encoder fine-tuned on behaviour still understand items nobody has touched? Amazon Office 2014,
the cold-mixed protocol.

Protocol: :func:`lmrec.data.splits.cold_mixed` (``cold_frac=0.2``): a fifth of the items are held out of
training (and of the histories); each user's last event is the test target whatever the item, so about a fifth
of the targets are cold (no training events) and the rest warm. Full ranking, history items excluded; NDCG@10
over all test users and over the cold and warm targets apart. The split's seed is the run's seed.

Encoders: ``minilm`` (all-MiniLM-L6-v2, lmrec's default), ``static`` (``tokenlearn-static-model``) and
``static-ft`` (that model fine-tuned through the text recommender on the split's **training** events,
:func:`lmrec.text.finetune_static_encoder` with its defaults; the held-out items' texts are encoded with the
tuned tokens they share with trained items, their other tokens as the base had them). Models: ContentLM
(text only) and SeqRec with fused items (the library's defaults), each fitted on the training part.

Each finished fit is one cached JSON line (``--cache``), so the run resumes; ``--report`` writes section
``text-finetune-cold`` of docs/benchmarks.md.

    python benchmarks/finetune_cold.py --seeds 0 1 2
    python benchmarks/finetune_cold.py --report
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

from _report import append_cached, read_cached, write_section  # noqa: E402
from finetune_office import STATIC, _ms, empty_folder, find, load_office  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "finetune_cold.jsonl"
ENCODERS = ("minilm", "static", "static-ft")
MODELS = ("content-lm", "seqrec-fused")
COLD_FRAC = 0.2
LABELS = {"minilm": "MiniLM", "static": f"{STATIC} (static, 64-d)",
          "static-ft": f"{STATIC} fine-tuned through the recommender"}


def run_seed(seed: int, args) -> None:
    import torch

    from lmrec.data.splits import cold_mixed, cold_targets
    from lmrec.evaluation.evaluator import evaluate
    from lmrec.models import create_model
    from lmrec.text import StaticFinetuneConfig, finetune_static_encoder, get_encoder, item_vectors

    torch.set_num_threads(args.threads)
    ds = load_office()
    split = cold_mixed(ds, cold_frac=COLD_FRAC, seed=seed)
    cold = cold_targets(split.test, split.train)
    store = args.work / "vectors.duckdb"
    for label in ENCODERS:
        done = read_cached(args.cache)
        todo = [m for m in MODELS if not find(done, encoder=label, model=m, seed=seed)]
        if not todo:
            continue
        finetune: dict[str, Any] | None = None
        source: str | None = {"minilm": None, "static": STATIC}.get(label)
        if label == "static-ft":
            folder = empty_folder(args.work / f"static-ft-cold-s{seed}")
            res = finetune_static_encoder(split, folder, base=STATIC, config=StaticFinetuneConfig(seed=seed),
                                          device="cpu", store=store)
            assert res.validation is not None
            source = str(folder)
            finetune = {"epochs": res.epochs, "seconds": round(res.seconds, 1),
                        "valid_base": res.validation["base"], "valid_ft": res.validation["fine-tuned"]}
        enc = get_encoder(source, device="cpu", threads=args.threads)
        vecs = item_vectors(ds, encoder=enc, store=store, progress=False)
        meta = {"encoder": enc.name, "revision": enc.revision}
        for name in todo:
            load0, t0 = os.getloadavg()[0], time.perf_counter()
            settings = {"item_repr": "fused", "seed": seed, "num_threads": args.threads,
                        "progress": False} if name == "seqrec-fused" else {}
            model = create_model("seqrec" if name == "seqrec-fused" else name, **settings)
            model.fit(split.train, split.valid, item_vectors=vecs, vectors_meta=meta)
            per_user = evaluate(model, split.test, split.train, ks=(10,)).per_user["NDCG@10"]
            row = {"encoder": label, "model": name, "seed": seed, "users": len(per_user),
                   "cold_users": int(cold.sum()), "NDCG@10": float(per_user.mean()),
                   "cold_NDCG@10": float(per_user[cold].mean()),
                   "warm_NDCG@10": float(per_user[~cold].mean()),
                   "per_user": np.round(per_user, 5).tolist(), "cold": cold.astype(int).tolist(),
                   "fit_s": round(time.perf_counter() - t0, 1), "finetune": finetune,
                   "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)]}
            append_cached(args.cache, row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("per_user", "cold")}), flush=True)


def report(args) -> str:
    from lmrec.evaluation.stats import paired_test

    rows = read_cached(args.cache)
    if not rows:
        raise SystemExit(f"nothing cached in {args.cache}: run the fits first")
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        "## Fine-tuned text and items nobody has touched (Amazon Office, cold-mixed)",
        "",
        f"Amazon Office 2014, `cold_mixed(cold_frac={COLD_FRAC})`: a fifth of the items held out of "
        "training and of the histories, each user's last event the test target whatever the item (cold: an "
        "item without training events). Full ranking, history items excluded; test NDCG@10, mean ± sd over "
        "seeds (n); `cold` and `warm` average over the users whose target is (not) cold. `static-ft` is "
        "fine-tuned through the text recommender on each seed's training events "
        "(`lmrec.text.finetune_static_encoder`, defaults); ContentLM and fused SeqRec (the library's "
        "defaults) are fitted on the training part.",
        "",
        "| encoder | model | n | NDCG@10 | cold NDCG@10 | warm NDCG@10 | cold users | fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in ENCODERS:
        for name in MODELS:
            got = [r for r in rows if r["encoder"] == label and r["model"] == name]
            if not got:
                continue
            lines.append(f"| {LABELS[label]} | {name} | {len(got)} | {_ms([g['NDCG@10'] for g in got])} | "
                         f"{_ms([g['cold_NDCG@10'] for g in got])} | "
                         f"{_ms([g['warm_NDCG@10'] for g in got])} | "
                         f"{np.mean([g['cold_users'] for g in got]):.0f} of {got[0]['users']:,} | "
                         f"{np.mean([g['fit_s'] for g in got]):.0f} |")
    lines += ["", "Paired t-tests over (seed, user) pairs (each seed has its own split and targets):", "",
              "| model | comparison | targets | change | p |", "|---|---|---|---|---|"]
    for name in MODELS:
        for a_lab, b_lab in (("static-ft", "static"), ("static-ft", "minilm")):
            for part in ("all", "cold", "warm"):
                a_all, b_all = [], []
                for s in seeds:
                    a = find(rows, encoder=a_lab, model=name, seed=s)
                    b = find(rows, encoder=b_lab, model=name, seed=s)
                    if a is None or b is None:
                        continue
                    mask = np.asarray(a["cold"], dtype=bool)
                    keep = {"all": np.ones_like(mask), "cold": mask, "warm": ~mask}[part]
                    a_all.append(np.asarray(a["per_user"])[keep])
                    b_all.append(np.asarray(b["per_user"])[keep])
                if not a_all:
                    continue
                x, y = np.concatenate(a_all), np.concatenate(b_all)
                t = paired_test(x, y)
                lines.append(f"| {name} | {LABELS[a_lab]} vs {LABELS[b_lab]} | {part} | "
                             f"{(x.mean() / y.mean() - 1) * 100:+.1f} % | {t.p_value:.3g} |")
    fts = {r["seed"]: r["finetune"] for r in rows if r.get("finetune")}
    if fts:
        lines += ["", "Fine-tunes (validation NDCG@10 of the text recommender, base → fine-tuned; the "
                  "held-out items are in the ranking): " + "; ".join(
                      f"seed {s}: {f['epochs']} epochs, {f['seconds']:.0f} s, {f['valid_base']:.4f} → "
                      f"{f['valid_ft']:.4f}" for s, f in sorted(fts.items())) + "."]
    loads = "; ".join(f"{r['encoder']} {r['model']} seed {r['seed']}: {r['load_avg'][0]:.1f}→"
                      f"{r['load_avg'][1]:.1f}" for r in rows)
    lines += ["", f"Load average (1 min, start→end of each fit): {loads}. One CPU thread per process.", "",
              f"Run: `python benchmarks/finetune_cold.py --seeds {' '.join(map(str, seeds))}` (one cached "
              "line per fit), then `--report`."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lmrec-finetune-cold"))
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--report", action="store_true", help="only write the section from the cache")
    args = ap.parse_args()
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    if not args.report:
        args.work.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            run_seed(seed, args)
    body = report(args)
    print(body)
    print("wrote", write_section("text-finetune-cold", body))


if __name__ == "__main__":
    main()
