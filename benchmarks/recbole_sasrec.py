"""lmrec's SeqRec side by side with RecBole's SASRec on the Amazon Office 2014 dev set (issue 18).

One run builds lmrec's leave-one-out split (the one ``lmrec evaluate seqrec`` uses), writes it as RecBole
atomic files (``Office.{train,valid,test}.inter``, read with ``benchmark_filename``), trains RecBole's SASRec
in RecBole's own virtual environment (``benchmarks/.recbole-venv``, created on first use) with the sizes
lmrec's SeqRec defaults take on this data, and trains lmrec's SeqRec with its defaults (``id`` and ``fused``)
on the same split, one after the other, at the same torch thread count. Both rank every item with the user's
history removed, select on validation NDCG@10 with their own early stopping, and both test rankings are
re-scored by one metric function here (:func:`rescore`).

    python benchmarks/recbole_sasrec.py                 # runs what is not cached yet, then writes the section
    python benchmarks/recbole_sasrec.py --smoke         # 1 epoch each on 500 users (checks the whole path)
    python benchmarks/recbole_sasrec.py --seeds 0 1 2   # the same for each seed (one run per model and seed)
    python benchmarks/recbole_sasrec.py --report        # only rewrite the section from the cache

Finished runs are cached in ``benchmarks/.cache/recbole_sasrec.jsonl`` (one line per model and seed; a line
without a seed is seed 0), so a run that is interrupted resumes after the last finished model. Section
``recbole-sasrec`` of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy.stats import ttest_rel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_cached, machine, read_cached, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
OFFICE = HERE.parents[1] / "shared" / "data" / "amazon-office-2014"
VENV = HERE / ".recbole-venv"
CACHE = HERE / ".cache" / "recbole_sasrec.jsonl"
WORK = HERE / ".cache" / "recbole"
RUNNER = HERE / "_recbole_runner.py"
#: what RecBole 1.2 needs beside itself: it imports pkg_resources (setuptools < 81) through ray, and its
#: pinned pandas/numpy code paths predate numpy 2 and pandas 3; torch is the version lmrec pins (CPU wheel).
RECBOLE_PIP = ["recbole==1.2.1", "numpy<2", "pandas<3", "setuptools<81", "torch==2.13.0"]
TOPK = 100
#: lmrec's rows: SeqRec's defaults but for these settings
LMREC_SETTINGS = {"lmrec-seqrec-id": {}, "lmrec-seqrec-id-text": {"id_init": "svd+text"},
                  "lmrec-seqrec-fused": {"item_repr": "fused"}}
MODELS = (*LMREC_SETTINGS, "recbole-sasrec")
K = 10


# ---------------------------------------------------------------- the split as RecBole atomic files

HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\thist_list:token_seq\n"


def _row(user: int, hist: np.ndarray, target: int, max_len: int, full_hist: np.ndarray) -> str:
    return (f"{user}\t{' '.join(map(str, hist[-max_len:].tolist()))}\t{target}\t"
            f"{' '.join(map(str, full_hist.tolist()))}\n")


def write_atomic(split, folder: Path, max_len: int, name: str = "Office") -> dict[str, Path]:
    """Write ``split`` (leave-one-out) as RecBole's pre-split sequential atomic files.

    Each line is one example: ``user_id``, ``item_id_list`` (the newest ``max_len`` items before the
    target, oldest first), ``item_id`` (the target) and ``hist_list`` (the whole history, the items to leave
    out of the ranking). Train: every position of every user's training sequence after the first (the rows
    RecBole's own data augmentation makes; ``hist_list`` is the truncated list there, unused in training).
    Valid and test: one row per evaluated user, in the split's order, with the split's history and target.
    Tokens are lmrec's user and item indices.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = {part: folder / f"{name}.{part}.inter" for part in ("train", "valid", "test")}
    seqs = split.train.sequences
    with open(paths["train"], "w") as fh:
        fh.write(HEADER)
        for u in range(len(seqs)):
            s = seqs[u]
            for i in range(1, len(s)):
                h = s[max(0, i - max_len):i]
                fh.write(_row(u, h, int(s[i]), max_len, h))
    for part, ev in (("valid", split.valid), ("test", split.test)):
        with open(paths[part], "w") as fh:
            fh.write(HEADER)
            for r in range(len(ev)):
                targets = ev.targets[r]
                if len(targets) != 1:
                    raise ValueError(f"{part} row {r} has {len(targets)} targets; leave-one-out has one")
                h = ev.history[r]
                fh.write(_row(int(ev.users[r]), h, int(targets[0]), max_len, h))
    return paths


def read_atomic(path: Path) -> list[tuple[int, list[int], int, list[int]]]:
    """The rows of one atomic file written by :func:`write_atomic`: (user, item list, target, history)."""
    rows = []
    with open(path) as fh:
        if fh.readline() != HEADER:
            raise ValueError(f"{path}: not a file written by write_atomic")
        for line in fh:
            u, lst, t, hist = line.rstrip("\n").split("\t")
            rows.append((int(u), [int(x) for x in lst.split()], int(t), [int(x) for x in hist.split()]))
    return rows


# ---------------------------------------------------------------- one metric function for every ranking

def rescore(topk: np.ndarray, targets: np.ndarray, k: int = K) -> dict[str, float]:
    """NDCG@k and HR@k of rankings ``topk`` (n, ≥ k) against one target per row (written here, independent
    of lmrec's evaluator and RecBole's)."""
    top = np.asarray(topk)[:, :k]
    hit = top == np.asarray(targets)[:, None]
    rank = np.where(hit.any(1), hit.argmax(1), -1)
    gain = np.where(rank >= 0, 1.0 / np.log2(np.maximum(rank, 0) + 2.0), 0.0)
    return {f"NDCG@{k}": float(gain.mean()), f"HR@{k}": float((rank >= 0).mean())}


# ---------------------------------------------------------------- RecBole's virtual environment

def recbole_python() -> Path:
    """RecBole's interpreter, creating its virtual environment on first use."""
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", *RECBOLE_PIP], check=True)
    return py


# ---------------------------------------------------------------- the runs

def load_split(smoke: bool):
    from lmrec.data.loaders import load_dataset
    from lmrec.data.splits import leave_one_out

    ds, _ = load_dataset(OFFICE / "Office.inter.tsv", mapping={"user_id": "user_idx"},
                         items=OFFICE / "Office.items.jsonl")
    split = leave_one_out(ds)
    if smoke:  # the first 500 evaluated users only (training keeps everyone: the path is what is checked)
        rows = np.arange(min(500, len(split.test)))
        split = type(split)(split.protocol, split.train, split.train_valid, split.valid.subset(rows),
                            split.test.subset(rows), split.params)
    return split


def run_lmrec(split, name: str, threads: int, smoke: bool, seed: int = 0) -> dict:
    from lmrec.evaluation import evaluate
    from lmrec.models import create_model

    settings: dict = {"num_threads": threads, "seed": seed, **LMREC_SETTINGS[name]}
    if smoke:
        settings["epochs"] = 1
    load0 = os.getloadavg()[0]
    wall0 = time.perf_counter()
    m = create_model("seqrec", **settings)
    m.fit(split.train, split.valid)
    r = m.train_result_
    top, _ = m.recommend_indices(split.test.history, split.test.users, k=TOPK)
    targets = np.array([t[0] for t in split.test.targets], dtype=np.int64)
    res = evaluate(m, split.test, split.train, (K,))
    return {
        "model": name, "seed": seed, "settings": settings, "max_len": m.config.max_len,
        "n_test": len(split.test),
        "n_items": split.train.n_items, "n_events": split.train.n_events,
        "batch_size": m.config.batch_size, "lr": m.config.lr, "dropout": m.config.dropout,
        "ema_decay": m.config.ema_decay, "id_init": m.config.id_init,
        "fit_seconds": r.seconds, "epochs_run": r.epochs_run, "best_epoch": r.best_epoch,
        "stop_reason": r.stop_reason, "s_per_epoch": r.seconds / max(1, r.epochs_run),
        "reported": {f"NDCG@{K}": res.mean(f"NDCG@{K}"), f"HR@{K}": res.mean(f"HR@{K}")},
        "rescored": rescore(top, targets), "threads": r.threads,
        "load": [load0, os.getloadavg()[0]], "wall_seconds": time.perf_counter() - wall0,
    }


def run_recbole(split, max_len: int, threads: int, smoke: bool, epochs: int, lm: dict,
                budget: float = 0.0, seed: int = 0) -> dict:
    py = recbole_python()
    data = WORK / ("smoke" if smoke else "full")
    write_atomic(split, data / "Office", max_len)
    config = {
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id_list", "item_id", "hist_list"]},
        "alias_of_item_id": ["item_id_list", "hist_list"],
        "MAX_ITEM_LIST_LENGTH": max_len,
        # lmrec's SeqRec sizes on this data: d 64, 2 layers, 2 heads, feed-forward 1 x d, dropout on the
        # hidden states only (lmrec has no attention dropout), GELU, full-softmax cross-entropy
        "hidden_size": 64, "inner_size": 64, "n_layers": 2, "n_heads": 2,
        "hidden_dropout_prob": lm["dropout"], "attn_dropout_prob": 0.0, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12, "initializer_range": 0.02, "loss_type": "CE",
        "train_neg_sample_args": None,
        # lmrec's optimiser settings: AdamW, lr, decoupled weight decay 0.1, gradient norm clipped at 1
        # (RecBole keeps the learning rate constant: it has no warm-up or cosine schedule)
        "learner": "adamw", "learning_rate": lm["lr"], "weight_decay": 0.1,
        "clip_grad_norm": {"max_norm": 1.0},
        "train_batch_size": lm["batch_size"], "eval_batch_size": 1024,
        "epochs": epochs, "stopping_step": 10, "eval_step": 1,
        "eval_args": {"group_by": "user", "order": "TO", "split": {"LS": "valid_and_test"}, "mode": "full"},
        "metrics": ["NDCG", "Hit"], "topk": [K], "valid_metric": f"NDCG@{K}", "metric_decimal_place": 6,
        "seed": seed, "reproducibility": True, "use_gpu": False, "show_progress": False, "worker": 0,
        "log_wandb": False,
    }
    out = data / "run"
    job = {"dataset": "Office", "data_path": str(data), "out": str(out), "threads": threads, "topk": TOPK,
           "budget_s": budget, "config": config}
    out.mkdir(parents=True, exist_ok=True)
    (data / "job.json").write_text(json.dumps(job, indent=1))
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONPATH": ""}
    load0 = os.getloadavg()[0]
    wall0 = time.perf_counter()
    subprocess.run([str(py), str(RUNNER), str(data / "job.json")], env=env, check=True)
    wall = time.perf_counter() - wall0
    res = json.loads((out / "result.json").read_text())
    top = np.load(out / "topk.npz")
    # the rows RecBole tested are the split's test users with the split's targets (order may differ)
    order = {int(u): r for r, u in enumerate(split.test.users)}
    rows = np.array([order[int(u)] for u in top["users"]])
    want = np.array([split.test.targets[r][0] for r in rows])
    if len(rows) != len(split.test) or not np.array_equal(top["targets"], want):
        raise RuntimeError("RecBole's test rows are not the split's test users and targets")
    return {
        "model": "recbole-sasrec", "seed": seed, "recbole": res["recbole"], "torch": res["torch"],
        "max_len": max_len,
        "batch_size": lm["batch_size"], "lr": lm["lr"], "dropout": lm["dropout"], "epochs_cap": epochs,
        "fit_seconds": res["fit_seconds"], "epochs_run": res["epochs_run"], "best_epoch": res["best_epoch"],
        "stop_reason": ("time budget" if res["out_of_time"] else
                        "patience" if res["epochs_run"] < epochs else "epochs"),
        "s_per_epoch": res["fit_seconds"] / max(1, res["epochs_run"]), "budget_s": budget,
        "train_s_per_epoch": float(np.mean(res["train_seconds"])) if res["train_seconds"] else 0.0,
        "valid_s_per_epoch": float(np.mean(res["valid_seconds"])) if res["valid_seconds"] else 0.0,
        "reported": {f"NDCG@{K}": res["test_result"][f"ndcg@{K}"], f"HR@{K}": res["test_result"][f"hit@{K}"]},
        "rescored": rescore(top["topk"], top["targets"]), "threads": {str(res["threads"]): 0},
        "n_params": res["n_params"], "train_rows": res["train_rows"],
        "load": [load0, os.getloadavg()[0]], "wall_seconds": wall,
    }


# ---------------------------------------------------------------- the section

PREAMBLE = (
    "Same leave-one-out split (lmrec's `leave_one_out`: last event test, the one before validation; "
    "{n_test:,} test users, {n_items:,} items, {n_events:,} training events), written as RecBole atomic "
    "files (`benchmark_filename`). Full ranking over "
    "every item with the user's history removed, for both (RecBole's SASRec ranks history items for "
    "sequential models, so the benchmark's `MaskedSASRec` sets their scores to −inf; it changes nothing "
    "else). Each model stops by its own early stopping on validation NDCG@10 (patience 10 validations, one "
    "per epoch, at most 200 epochs) and is tested with its best validation weights. Same sizes: lmrec's "
    "SeqRec defaults on this data (d 64, 2 layers, 2 heads, feed-forward 64, dropout {dropout} on hidden "
    "states, no attention dropout, GELU, full-softmax CE, max_len {max_len} as `max_len=\"auto\"` chooses "
    "on Office, batch {batch}, AdamW lr {lr} (RecBole's row: {rb_lr}), weight decay 0.1, gradient "
    "clipping 1); lmrec's id table starts as its default does for id items (`id_init` {id_init}; RecBole's "
    "is random), but in `lmrec-seqrec-id-text`: `id_init=\"svd+text\"`, half its columns from those "
    "spectral factors and half from the items' text vectors (their top principal components; the same id "
    "network, which reads the text only to start); RecBole keeps the "
    "learning rate constant (no warm-up/cosine) and trains on one row per prefix (its data augmentation), "
    "lmrec on every `max_len` window (`windows=\"all\"`); lmrec validates and keeps the moving average "
    "of its weights (`ema_decay` {ema}; RecBole has no such option, 0 means none). Torch threads: "
    "{threads} for both (lmrec with `num_threads={threads}` instead of its adaptive default, so that both "
    "run at one count). Seeds {seeds}, one run per model and seed (both libraries seeded with it). "
    "s/epoch: fit wall time ÷ epochs run, "
    "training and the epoch's validation together. NDCG@10/HR@10: every model's test top-100 re-scored by "
    "the one metric function in the script; reported: lmrec's evaluator and RecBole's own test result "
    "(both with history removed)."
)


def _seed(row: dict) -> int:
    return int(row.get("seed", 0))  # rows before seeds were recorded ran seed 0


def report(rows: list[dict], threads: int) -> str:
    by = {(r["model"], _seed(r)): r for r in rows}  # the newest row of each model and seed
    seeds = sorted({seed for _, seed in by})
    first = {name: next((by[name, s] for s in seeds if (name, s) in by), None) for name in MODELS}
    rb, lm = first["recbole-sasrec"], first["lmrec-seqrec-id"]
    lines = [
        "## lmrec SeqRec vs RecBole SASRec (Amazon Office 2014, issue 18)",
        "",
        PREAMBLE.format(dropout=lm["dropout"] if lm else 0.3, max_len=lm["max_len"] if lm else "?",
                        batch=lm["batch_size"] if lm else "?", lr=lm["lr"] if lm else "?", threads=threads,
                        ema=lm.get("ema_decay", 0.0) if lm else "?",
                        rb_lr=", ".join(sorted({f"{by[k]['lr']:g}" for k in by if k[0] == "recbole-sasrec"}))
                        or "?",
                        id_init=lm.get("id_init", "random") if lm else "?", seeds=", ".join(map(str, seeds)),
                        n_test=lm["n_test"] if lm else 0, n_items=lm["n_items"] if lm else 0,
                        n_events=lm["n_events"] if lm else 0),
        "",
        "| model | seed | s/epoch | epochs run (best) | time to converge s | NDCG@10 | HR@10 "
        "| NDCG@10 reported | HR@10 reported | load avg start→end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        for seed in seeds:
            r = by.get((name, seed))
            if r is None:
                continue
            lines.append(
                f"| {name} | {seed} | {r['s_per_epoch']:.2f} | {r['epochs_run']} ({r['best_epoch']}) "
                f"| {'' if r['stop_reason'] == 'patience' else '> '}{r['fit_seconds']:.0f} "
                f"| {r['rescored']['NDCG@10']:.4f} | {r['rescored']['HR@10']:.4f} "
                f"| {r['reported']['NDCG@10']:.4f} | {r['reported']['HR@10']:.4f} "
                f"| {r['load'][0]:.1f}→{r['load'][1]:.1f} |")
    if rb:
        late = [s for s in seeds if ("recbole-sasrec", s) in by and by["recbole-sasrec", s]["stop_reason"]
                != "patience"]
        cap = "" if not late else (
            f" RecBole **did not converge** at seed(s) {', '.join(map(str, late))} (stopped by its time "
            "budget or epoch cap; the table shows its best epoch so far): its time to converge there is "
            "more than the figure shown, so the ratio to it is an upper bound.")
        lines += ["", f"RecBole {rb['recbole']} (torch {rb['torch']}, its own virtual environment): "
                      f"{rb['train_s_per_epoch']:.1f} s training + {rb['valid_s_per_epoch']:.1f} s "
                      f"validation per epoch (seed {_seed(rb)}), {rb['train_rows']:,} training rows, "
                      f"{rb['n_params']:,} parameters.{cap}"]
    if rb and lm:
        lines += ["", "Ratios (lmrec SeqRec ÷ RecBole SASRec of the same seed; issue 18's target: ≤ 0.1 for "
                      "both times and a higher NDCG@10):", ""]
        for name in LMREC_SETTINGS:
            pairs = [(by[name, s], by["recbole-sasrec", s]) for s in seeds
                     if (name, s) in by and ("recbole-sasrec", s) in by]
            for r, b in pairs:
                d = r["rescored"]["NDCG@10"] - b["rescored"]["NDCG@10"]
                lines.append(
                    f"- {name}, seed {_seed(r)}: time/epoch {r['s_per_epoch'] / b['s_per_epoch']:.3f}× "
                    f"RecBole's; time to converge {r['fit_seconds'] / b['fit_seconds']:.3f}×; "
                    f"NDCG@10 {d:+.4f} ({100 * d / b['rescored']['NDCG@10']:+.0f} %), HR@10 "
                    f"{r['rescored']['HR@10'] - b['rescored']['HR@10']:+.4f}")
            if len(pairs) > 1:
                ours = np.array([r["rescored"]["NDCG@10"] for r, _ in pairs])
                theirs = np.array([b["rescored"]["NDCG@10"] for _, b in pairs])
                epoch = np.mean([r["s_per_epoch"] / b["s_per_epoch"] for r, b in pairs])
                conv = [r["fit_seconds"] / b["fit_seconds"] for r, b in pairs]
                p = ttest_rel(ours, theirs).pvalue
                lines.append(
                    f"- **{name}, {len(pairs)} seeds: time/epoch {epoch:.3f}× on the mean; time to converge "
                    f"{np.mean(conv):.3f}× on the mean (largest {max(conv):.3f}×); NDCG@10 {ours.mean():.4f} "
                    f"against {theirs.mean():.4f} ({100 * (ours.mean() / theirs.mean() - 1):+.1f} %, higher "
                    f"in {int((ours > theirs).sum())} of {len(pairs)} seeds; paired t-test over seeds "
                    f"p = {p:.2g})**")
    wall = sum(r["wall_seconds"] for r in by.values())
    lines += ["", f"Wall time of the runs (fit, test and export; RecBole's includes its data loading): "
                  f"{wall:,.0f} s. Machine: {machine()}; the 2-core CPU is shared with other engineers' jobs "
                  "(load averages above)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for both libraries (default 2)")
    ap.add_argument("--recbole-epochs", type=int, default=200, help="RecBole's epoch cap (200, as lmrec)")
    ap.add_argument("--recbole-budget", type=float, default=0.0,
                    help="seconds of RecBole training after which it stops at the end of the epoch (0: none)")
    ap.add_argument("--recbole-until", default="",
                    help="HH:MM UTC: sets --recbole-budget when RecBole starts, to end its training by then")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0], help="seeds to run (default 0)")
    ap.add_argument("--smoke", action="store_true", help="1 epoch each, 500 test users; nothing is cached")
    ap.add_argument("--report", action="store_true", help="only rewrite the section from the cache")
    ap.add_argument("--cache", type=Path, default=CACHE)
    args = ap.parse_args()

    if not args.report:
        split = load_split(args.smoke)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        done = {} if args.smoke else {(r["model"], _seed(r)): r for r in read_cached(args.cache)}
        for seed in args.seeds:
            lm = done.get(("lmrec-seqrec-id", seed))
            for name in args.models:
                if (name, seed) in done:
                    print(f"{name}, seed {seed}: cached", flush=True)
                    continue
                if name == "recbole-sasrec":
                    if lm is None:
                        raise SystemExit("run lmrec-seqrec-id first: RecBole takes its sizes from it")
                    budget = args.recbole_budget
                    if args.recbole_until:
                        now = datetime.now(UTC)
                        hh, mm = map(int, args.recbole_until.split(":"))
                        budget = max(300.0, (now.replace(hour=hh, minute=mm, second=0) - now).total_seconds())
                        print(f"RecBole budget: {budget:.0f} s (until {args.recbole_until} UTC)", flush=True)
                    row = run_recbole(split, lm["max_len"], args.threads, args.smoke,
                                      1 if args.smoke else args.recbole_epochs, lm, budget, seed)
                else:
                    row = run_lmrec(split, name, args.threads, args.smoke, seed)
                    if name == "lmrec-seqrec-id":
                        lm = row
                print(json.dumps(row), flush=True)
                if not args.smoke:
                    append_cached(args.cache, row)
                    done[name, seed] = row
        if args.smoke:
            return
    print(write_section("recbole-sasrec", report(read_cached(args.cache), args.threads)))


if __name__ == "__main__":
    main()
