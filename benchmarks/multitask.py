"""Benchmark of the multi-task heads against single-task heads and baselines (issue 6).

Two datasets, three seeds each:

* **MovieLens-100K** (ratings + next item). Protocol: each user's last 20% of ratings by time (at least one)
  are the test set; the model and the baselines learn from the 80% before. Rating RMSE/MAE on every test
  rating, given the user's history before their cut. Next item: the first test event of each user, ranked over
  the full catalogue with the history excluded (HR@10, NDCG@10). Bias/MF regularisation is chosen on a
  validation cut (the last 12.5% of each user's training ratings) and the baselines are then refitted on all
  training ratings.
* **Synthetic e-commerce** (:mod:`lmrec.data.synthetic_ecommerce`, 2,000 users, 180 days; next item + next
  action type + user value). One global cut ``T = 30`` days before the last event: everything before it is the
  observation window (training data and model input), the 30 days after it the future window. User value =
  total purchase amount in the future window, for every user with an event before the cut; models regress
  ``log1p``. Baselines and the model are trained on earlier cuts whose 30-day windows end before the test cut
  (no label crosses it). Next action type: every event of the future window, predicted from all events before
  it (teacher forcing; the Markov chain sees the previous type). Next item: each user's first future event
  whose item is not in their history, full ranking, history excluded.

Run: ``python benchmarks/multitask.py`` (``--quick`` for a smoke run that writes nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lmrec.data.dataset import Dataset  # noqa: E402
from lmrec.data.ragged import Ragged  # noqa: E402
from lmrec.evaluation.metrics import hit_matrix, hit_rate, ndcg  # noqa: E402
from lmrec.models.multitask import MultiTask  # noqa: E402
from lmrec.models.multitask.model import head_val_losses  # noqa: E402
from lmrec.prediction import metrics as M  # noqa: E402
from lmrec.prediction import tasks  # noqa: E402
from lmrec.prediction.baselines import (  # noqa: E402
    BiasBaseline,
    BiasedMF,
    GBMValue,
    LastPeriodValue,
    MajorityType,
    MarkovType,
    RFMScore,
)

HORIZON = 30.0
#: The model settings of every run (heads and weighting vary per row).
MODEL: dict[str, Any] = {"d_model": 32, "max_len": 30, "n_layers": 2, "n_heads": 2, "epochs": 15,
                         "patience": 2,
                         "batch_size": 128, "lr": 3e-3}
#: The synthetic shop's size (the generator's seed is the run's seed).
SHOP: dict[str, Any] = {"n_users": 1000, "n_items": 500, "days": 180}
Row = dict[str, Any]


#: Per-user (or per-event) values behind a mean metric, kept in a row under ``PER_UNIT + metric`` for the
#: paired tests; the tables skip them.
PER_UNIT = "_per "


def _units(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


def _next_item_metrics(model: MultiTask, hist: Dataset, users: np.ndarray, targets: np.ndarray) -> Row:
    """HR@10 / NDCG@10 of one target per user, full ranking, history excluded (and the per-user values)."""
    idx, _ = model.recommend_indices(hist.sequences.take(users), users, k=10)
    hits, n_t = hit_matrix(idx, Ragged.from_lists([[t] for t in targets]))
    hr, nd = hit_rate(hits, 10), ndcg(hits, n_t, 10)
    return {"HR@10": float(hr.mean()), "NDCG@10": float(nd.mean()),
            PER_UNIT + "HR@10": _units(hr), PER_UNIT + "NDCG@10": _units(nd)}


def _first_new_item(hist: Dataset, future: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each user's first future event whose item is not in their history (users with a history only)."""
    seen = hist.events.select("user_idx", "item_idx").unique()
    f = future.join(seen, on=["user_idx", "item_idx"], how="anti", maintain_order="left")
    f = f.filter(pl.col("user_idx").is_in(pl.Series(np.flatnonzero(hist.sequences.lengths > 0)
                                                    .astype(np.int32)).implode()))
    first = f.group_by("user_idx", maintain_order=True).first().sort("user_idx")
    return first["user_idx"].to_numpy().astype(np.int64), first["item_idx"].to_numpy().astype(np.int64)


def _type_metrics(labels: np.ndarray, proba: np.ndarray, per_event: bool = False) -> Row:
    row: Row = {"type log loss": M.log_loss(labels, proba), "type macro AUC": M.macro_auc(labels, proba),
                "type accuracy": M.accuracy(labels, proba)}
    if per_event:  # each event's log loss (as M.log_loss computes it), for the paired tests
        p = np.clip(proba / proba.sum(axis=1, keepdims=True), 1e-15, 1 - 1e-15)
        row[PER_UNIT + "type log loss"] = _units(-np.log(p[np.arange(len(labels)), labels]))
    return row


def _fit_row(dataset: str, seed: int, label: str, m: Any, fit_s: float) -> Row:
    """What every row records of a fit: epochs, time, each head's validation loss and the stopping details."""
    row: Row = {"dataset": dataset, "seed": seed, "model": label, "epochs": m.train_result_["epochs_run"],
                "fit_s": fit_s, "val_loss": _val_losses(m.train_result_)}
    for key in ("best_epochs", "finetune", "alone", "head_from", "phase_s"):
        if m.train_result_.get(key):
            row[key] = m.train_result_[key]
    return row


def _val_losses(tr: dict[str, Any]) -> dict[str, float]:
    """Each head's validation loss, for the weights it predicts with: the best joint epoch's (one early
    stop), its own best epoch's (per-head stopping), or the fine-tuned weights' when the fine-tune phase kept
    them. What the stopping settings are chosen on."""
    if "val_loss" in tr:  # the model's own record (also names an alone candidate a head predicts with)
        return {h: float(v) for h, v in tr["val_loss"].items()}
    return head_val_losses(tr)  # rows of models fitted before that record


def _selected(label: str, variants: str) -> bool:
    """Whether ``--variants`` selects a row: any of its ``|``-separated parts is in the label (``=part``: is
    the label)."""
    return not variants or any(label == v[1:] if v.startswith("=") else v in label
                               for v in variants.split("|"))


def _model(heads: tuple[str, ...], seed: int, quick: bool, **kw: Any) -> MultiTask:
    base: dict[str, Any] = {**MODEL, "seed": seed, "progress": False}
    if quick:
        base.update(d_model=16, epochs=2, max_len=20)
    base.update(kw)
    return MultiTask(heads=heads, **base)


# ---------------------------------------------------------------------- MovieLens-100K
#: MovieLens variants: (label, heads, extra settings). ``user_factors`` adds the biased-MF user term to the
#: rating head; the others read the rating from the history alone.
#: The stopping settings before issue 18 (one early stop for every head), stated so the rows keep meaning it
#: whatever the defaults are.
OLD: dict[str, Any] = {"stopping": "joint", "head_finetune": False, "head_alone": False}
#: Per-head stopping as it was first added (issue 18): each head's snapshot, no fine-tune phase.
PER_HEAD: dict[str, Any] = {"stopping": "per_head", "head_finetune": False, "head_alone": False}
#: Per-head stopping followed by the per-head fine-tune phase (the default before the alone candidates).
FINETUNE: dict[str, Any] = {"stopping": "per_head", "head_finetune": True, "head_alone": False}
#: ... and each head's own single-task fit as a candidate, kept where it validates better (the default).
ALONE: dict[str, Any] = {"stopping": "per_head", "head_finetune": True, "head_alone": True}
ML_VARIANTS: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    ("multi-task (item+rating)", ("next_item", "rating"), OLD),
    ("multi-task (item+rating), per-head stopping", ("next_item", "rating"), PER_HEAD),
    ("multi-task (item+rating), per-head stopping + fine-tune", ("next_item", "rating"), FINETUNE),
    ("multi-task (item+rating), + alone candidates", ("next_item", "rating"), ALONE),
    ("single: next item", ("next_item",), {}),
    ("single: rating", ("rating",), {}),
    ("multi-task (item+rating) + user factors", ("next_item", "rating"), {**OLD, "user_factors": 32}),
    ("single: rating + user factors", ("rating",), {"user_factors": 32}),
]


def movielens(seed: int, quick: bool, variants: str = "") -> list[Row]:
    from lmrec.data.loaders import load_dataset

    ds, _ = load_dataset("movielens-100k")
    hist, future = tasks.per_user_cut(ds, 0.2)
    test = tasks.rating_pairs(future)
    first = future.group_by("user_idx", maintain_order=True).first().sort("user_idx")
    nx_users, nx_items = first["user_idx"].to_numpy().astype(np.int64), first["item_idx"].to_numpy()
    rows: list[Row] = []

    # baselines: regularisation chosen on a validation cut, then refitted on all training ratings
    train, vfut = tasks.per_user_cut(hist, 0.125)
    tr, va, full = tasks.rating_pairs(train.events), tasks.rating_pairs(vfut), tasks.rating_pairs(hist.events)
    nu, ni = ds.user_map.size, ds.item_map.size
    reg_b = min((5.0, 10.0, 25.0), key=lambda r: M.rmse(va.ratings, BiasBaseline(r, r).fit(tr, nu, ni)
                                                         .predict(va.users, va.items)))
    reg_m = min((5.0, 10.0, 20.0), key=lambda r: M.rmse(va.ratings, BiasedMF(reg=r, seed=seed).fit(tr, nu, ni)
                                                         .predict(va.users, va.items)))
    for name, est in (("bias (ALS)", BiasBaseline(reg_b, reg_b)), ("biased MF (ALS, 10 f.)",
                                                                    BiasedMF(reg=reg_m, seed=seed))):
        pred = est.fit(full, nu, ni).predict(test.users, test.items)
        rows.append({"dataset": "ml-100k", "seed": seed, "model": name,
                     "RMSE": M.rmse(test.ratings, pred), "MAE": M.mae(test.ratings, pred)})

    for label, heads, kw in ML_VARIANTS:
        if not _selected(label, variants):
            continue
        t0 = time.perf_counter()
        m = _model(heads, seed, quick, **kw).fit(hist)
        row = _fit_row("ml-100k", seed, label, m, time.perf_counter() - t0)
        if "rating" in heads:
            pred = m.predict_ratings(test.users, test.items, context=hist)
            row.update(RMSE=M.rmse(test.ratings, pred), MAE=M.mae(test.ratings, pred))
            row[PER_UNIT + "RMSE"] = _units((pred - test.ratings) ** 2)  # squared errors (paired test)
        if "next_item" in heads:
            row.update(_next_item_metrics(m, hist, nx_users, nx_items))
        rows.append(row)
        print(row, flush=True)
    return rows


# ---------------------------------------------------------------------- synthetic e-commerce
def ecommerce(seed: int, quick: bool, variants: str = "") -> list[Row]:
    from lmrec.data.synthetic_ecommerce import DAY, generate_ecommerce

    shop = generate_ecommerce(seed=seed, **({"n_users": 300, "n_items": 100} if quick else SHOP))
    ds = shop.dataset()
    test_cut, _ = tasks.value_cuts(ds, HORIZON, 1)
    end = test_cut + int(HORIZON * DAY)
    hist, future = tasks.time_cut(ds, test_cut, int(HORIZON * DAY))
    test_v = tasks.value_labels(ds, test_cut, HORIZON)
    test_t = tasks.type_examples(ds, test_cut, end)
    nx_users, nx_items = _first_new_item(hist, future)
    n_types = len(ds.event_types)
    rows: list[Row] = []

    val_cut, train_cuts = tasks.value_cuts(hist, HORIZON, 5, 7.0)
    train_sets = [tasks.value_labels(hist, c, HORIZON) for c in [val_cut, *train_cuts]]

    def value_row(name: str, pred: np.ndarray) -> Row:
        return {"dataset": "synthetic", "seed": seed, "model": name,
                "value capture@10%": M.top_decile_capture(test_v.target, pred),
                "value Spearman": M.spearman(test_v.target, pred),
                "value RMSE(log)": M.rmse_log(test_v.target, pred)}

    rows.append(value_row("RFM score", RFMScore().fit(train_sets[0]).predict(test_v)))
    rows.append(value_row("last period's value", LastPeriodValue().predict(test_v)))
    rows.append(value_row("LightGBM on RFM", GBMValue(seed=seed).fit(train_sets).predict(test_v)))
    hist_t = tasks.type_examples(hist, 0)
    for name, est in (("majority type", MajorityType().fit(hist_t.labels, n_types)),
                      ("Markov (prev. type)", MarkovType().fit(hist_t, n_types))):
        p = est.predict_proba(test_t)
        rows.append({"dataset": "synthetic", "seed": seed, "model": name, **_type_metrics(test_t.labels, p)})

    only = variants
    runs: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
        ("multi-task (item+type+value)", ("next_item", "next_type", "value"), OLD),
        ("multi-task, value weight 0.2, patience 4", ("next_item", "next_type", "value"),
         {**OLD, "w_value": 0.2, "patience": 4}),
        # each head stops on its own validation loss and predicts with its own best epoch's weights
        ("multi-task, per-head stopping", ("next_item", "next_type", "value"), PER_HEAD),
        # ... and is then fine-tuned alone from that snapshot (kept only if it validates better)
        ("multi-task, per-head stopping + fine-tune", ("next_item", "next_type", "value"), FINETUNE),
        # ... and each head's single-task fit as a candidate, kept where it validates better
        ("multi-task, + alone candidates", ("next_item", "next_type", "value"), ALONE),
        ("single: next item", ("next_item",), {}),
        ("single: next type", ("next_type",), {}),
        ("single: value", ("value",), {}),
    ]
    if seed == 0:  # uncertainty weighting once, for lack of CPU time
        runs.insert(1, ("multi-task, uncertainty weights (seed 0)", ("next_item", "next_type", "value"),
                            {**OLD, "weighting": "uncertainty"}))
    for label, heads, kw in runs:
        if not _selected(label, only):
            continue
        t0 = time.perf_counter()
        m = _model(heads, seed, quick, **kw).fit(hist)
        row = _fit_row("synthetic", seed, label, m, time.perf_counter() - t0)
        if "value" in m.heads:
            pred = m.predict_value(test_v.users, context=hist, at=test_cut)
            row.update({k: v for k, v in value_row(label, pred).items() if k.startswith("value")})
            err = np.log1p(np.maximum(pred, 0.0)) - np.log1p(test_v.target)
            row[PER_UNIT + "value RMSE(log)"] = _units(err ** 2)  # squared errors (paired test)
        if "next_type" in m.heads:
            p = m.predict_next_type(test_t.users, context=ds, ends=test_t.positions)
            row.update(_type_metrics(test_t.labels, p, per_event=True))
        if "next_item" in m.heads:
            row.update(_next_item_metrics(m, hist, nx_users, nx_items))
        rows.append(row)
        print(row, flush=True)
    return rows


# ---------------------------------------------------------------------- report
def _table(rows: list[Row], dataset: str, columns: list[str]) -> str:
    """Mean ± std over seeds per model, in first-seen order."""
    sub = [r for r in rows if r["dataset"] == dataset]
    models = list(dict.fromkeys(r["model"] for r in sub))
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in models:
        cells = []
        for c in columns:
            vals = np.array([r[c] for r in sub if r["model"] == name and c in r], dtype=np.float64)
            cells.append("—" if vals.size == 0 else (f"{vals.mean():.4f} ± {vals.std():.4f}" if vals.size > 1
                                                      else f"{vals[0]:.4f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(rows: list[Row], seeds: list[int], extra: str = "") -> str:
    ml = _table(rows, "ml-100k", ["RMSE", "MAE", "HR@10", "NDCG@10", "epochs", "fit_s"])
    ec_v = _table([r for r in rows if "value Spearman" in r], "synthetic",
                  ["value capture@10%", "value Spearman", "value RMSE(log)"])
    ec_t = _table([r for r in rows if "type log loss" in r], "synthetic",
                  ["type log loss", "type macro AUC", "type accuracy"])
    ec_i = _table([r for r in rows if "HR@10" in r and r["dataset"] == "synthetic"], "synthetic",
                  ["HR@10", "NDCG@10", "epochs", "fit_s"])
    m = MODEL
    return f"""## Multi-task heads (issue 6)

Seeds {seeds} (model initialisation and, for the synthetic shop, the generator); mean ± std over seeds.
Full-ranking next-item metrics, history excluded; nothing is sampled. The CPU (2 cores) was shared with five
other engineers' jobs during the run, so `fit_s` (seconds per fit) is indicative only, and the model is small
for that reason. Model: `multitask`, SeqRec Transformer encoder ({m["n_layers"]} layers, d = {m["d_model"]},
last {m["max_len"]} events), AdamW lr {m["lr"]}, batch {m["batch_size"]}, at most {m["epochs"]} epochs, early
stopping (patience {m["patience"]} unless stated) on the held-out last event of 10% of users (and the latest
value cut); loss weights 1 unless stated. Synthetic shop: {SHOP["n_users"]:,} users, {SHOP["n_items"]} items,
{SHOP["days"]} days. The runs were split over parallel processes (`--only`, `--variants`, `--rows`) and merged
with `--merge`; the baselines are deterministic given the seed, so the rows they repeat are identical.

### MovieLens-100K: rating and next item

Protocol: each user's last 20% of ratings by time are the test set (20,381 ratings; the first of them is the
next-item target); everything is learned from the 80% before; the model reads the user's events before the
cut. Bias and MF regularisation are chosen on a validation cut inside the training ratings, then refitted on
all of them. "+ user factors": the rating head also has a per-user bias and a 32-dimensional user × item
factor term (`user_factors=32`); without it the rating is read from the history alone.

{ml}

### Synthetic e-commerce: user value over the next 30 days

Observation window: all events before the cut (30 days before the last event); future window: the 30 days
after it; value = total purchase amount. Training labels come from 6 earlier cuts (weekly) whose windows end
before the test cut. Top-decile capture = share of the future spend held by the 10% of users ranked highest
(random ≈ 0.10).

{ec_v}

### Synthetic e-commerce: next action type (view / cart / purchase)

Every event in the future window, predicted from all events before it.

{ec_t}

### Synthetic e-commerce: next new item

{ec_i}
{extra}
"""


#: Per dataset and head: (metric, higher is better) compared between joint training and the head alone.
HEAD_METRICS: dict[str, list[tuple[str, str, bool]]] = {
    "synthetic": [("next item", "HR@10", True), ("next item", "NDCG@10", True),
                  ("next type", "type macro AUC", True), ("next type", "type log loss", False),
                  ("value", "value capture@10%", True), ("value", "value Spearman", True),
                  ("value", "value RMSE(log)", False)],
    "ml-100k": [("next item", "HR@10", True), ("next item", "NDCG@10", True), ("rating", "RMSE", False),
                ("rating", "MAE", False)],
}
#: Per dataset: the head trained alone, and the joint models (old single stop, per-head stopping, new).
SINGLE = {"next item": "single: next item", "next type": "single: next type", "value": "single: value",
          "rating": "single: rating"}
#: Per dataset, the joint models compared: the old single stop, the previous default (per-head stopping +
#: fine-tune) and the new one (+ each head's alone candidate).
JOINT = {"synthetic": ("multi-task (item+type+value)", "multi-task, per-head stopping + fine-tune",
                       "multi-task, + alone candidates"),
         "ml-100k": ("multi-task (item+rating)", "multi-task (item+rating), per-head stopping + fine-tune",
                     "multi-task (item+rating), + alone candidates")}


def _paired(sub: list[Row], a: str, b: str, metric: str) -> tuple[float, float, int] | None:
    """Paired t-test of model ``a`` against ``b`` on ``metric``'s per-user (per-event, per-rating) values,
    pooled over the seeds both ran (pairs within a seed): mean difference, p-value, pairs."""
    from lmrec.evaluation.stats import paired_test

    key = PER_UNIT + metric
    xs, ys = [], []
    for seed in sorted({r["seed"] for r in sub}):
        ra = [r for r in sub if r["model"] == a and r["seed"] == seed and key in r]
        rb = [r for r in sub if r["model"] == b and r["seed"] == seed and key in r]
        if ra and rb:
            xs.append(np.asarray(ra[0][key]))
            ys.append(np.asarray(rb[0][key]))
    if not xs:
        return None
    t = paired_test(np.concatenate(xs), np.concatenate(ys), "t")
    return t.mean_difference, t.p_value, t.n


def per_head_report(rows: list[Row], seeds: list[int], extra: str = "") -> str:
    """Per dataset, head and metric: the head alone, joint training with one early stop (the old default),
    per-head stopping + fine-tune (the previous default) and the new default (+ alone candidates); the new
    one against the head alone and against the previous default, paired."""

    def cell(v: np.ndarray) -> str:
        return "—" if not v.size else (f"{v.mean():.4f} ± {v.std():.4f}" if v.size > 1 else f"{v[0]:.4f}")

    lines = ["| data | head | metric | single task | joint, one stop (old) | per-head + fine-tune "
             "(previous) | + alone candidates (new) | new − single | paired t-test vs single | vs previous |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    cost = ["| data | model | epochs (joint phase) | fit_s | joint / fine-tune / alone phases, s |",
            "|---|---|---|---|---|"]
    valid = ["| data | head | single task | joint, one stop (old) | per-head + fine-tune (previous) | "
             "+ alone candidates (new) | seeds new ≤ single | served alone |",
             "|---|---|---|---|---|---|---|---|"]

    def ptest(sub: list[Row], a: str, b: str, metric: str) -> str:
        t = _paired(sub, a, b, metric)
        if t is None:
            return "—"
        unit = "sq. errors" if metric.startswith(("RMSE", "value RMSE")) else "per unit"
        return f"p = {t[1]:.2g} (n = {t[2]:,}, {unit})"

    for data, metrics in HEAD_METRICS.items():
        sub = [r for r in rows if r["dataset"] == data]
        if not sub:
            continue

        def vals(model: str, metric: str, sub: list[Row] = sub) -> np.ndarray:
            return np.array([r[metric] for r in sub if r["model"] == model and metric in r], dtype=np.float64)

        old, prev, new = JOINT[data]
        for head, metric, higher in metrics:
            single = SINGLE[head]
            s, n = vals(single, metric), vals(new, metric)
            diff = f"{n.mean() - s.mean():+.4f}" if n.size and s.size else "—"
            name = metric + ("" if higher else " ↓")
            lines.append(f"| {data} | {head} | {name} | {cell(s)} | {cell(vals(old, metric))} | "
                         f"{cell(vals(prev, metric))} | {cell(n)} | {diff} | "
                         f"{ptest(sub, new, single, metric)} | {ptest(sub, new, prev, metric)} |")
        for head in dict.fromkeys(h for h, _, _ in metrics):
            key = head.replace(" ", "_")

            def val(model: str, key: str = key, sub: list[Row] = sub) -> np.ndarray:
                return np.array([r["val_loss"][key] for r in sub if r["model"] == model
                                 and key in r.get("val_loss", {})], dtype=np.float64)

            vs, vn = val(SINGLE[head]), val(new)
            wins = "—" if not (vs.size and vn.size) else f"{int((vn <= vs).sum())} of {min(vs.size, vn.size)}"
            served = [r.get("head_from", {}).get(key) for r in sub if r["model"] == new]
            alone = f"{served.count('alone')} of {len(served)}" if served else "—"
            valid.append(f"| {data} | {head} | {cell(vs)} | {cell(val(old))} | {cell(val(prev))} | "
                         f"{cell(vn)} | {wins} | {alone} |")
        for model in dict.fromkeys([*(SINGLE[h] for h, _, _ in metrics), old, prev, new]):
            if vals(model, "fit_s").size:
                ep, fit = cell(vals(model, "epochs")), cell(vals(model, "fit_s"))
                ph = [r.get("phase_s", {}) for r in sub if r["model"] == model]
                phases = " / ".join(f"{np.mean([p[k] for p in ph if k in p]):.1f}" if any(k in p for p in ph)
                                    else "—" for k in ("joint", "finetune", "alone")) if any(ph) else "—"
                cost.append(f"| {data} | {model} | {ep} | {fit} | {phases} |")
    notes = []
    for r in rows:
        if r["model"] in {j[2] for j in JOINT.values()} and r.get("alone"):
            cand = ", ".join(f"{h} {a['val_joint']:.4f} vs {a['val_alone']:.4f}"
                             + (" (alone)" if a["kept"] else "") for h, a in r["alone"].items())
            ft = ", ".join(f"{h} {f['val_before']:.4f} → {f['val_after']:.4f}"
                           + ("" if f["kept"] else " (snapshot kept)")
                           for h, f in r.get("finetune", {}).items())
            best = ", ".join(f"{h} {e}" for h, e in r.get("best_epochs", {}).items())
            notes.append(f"* {r['dataset']}, seed {r['seed']}: best joint epoch per head {best}; fine-tune "
                         f"(validation loss before → after): {ft}; joint phases vs alone: {cand}.")
    m = MODEL
    return f"""## Multi-task heads: per-head stopping, fine-tuning and alone candidates (issue 18 part 6)

Seeds {seeds} (the model; for the synthetic shop also the generator), mean ± std over seeds; protocols and
metrics as in "Multi-task heads" above (synthetic shop: {SHOP["n_users"]:,} users, {SHOP["n_items"]} items,
{SHOP["days"]} days; MovieLens-100K: each user's last 20% of ratings held out, rating read from the history
alone). Model: `multitask`, {m["n_layers"]} layers, d = {m["d_model"]}, last {m["max_len"]} events,
lr {m["lr"]}, batch {m["batch_size"]}, at most {m["epochs"]} epochs (each phase), patience {m["patience"]},
equal loss weights.
*Single task*: the head trained alone (`heads=(head,)`). *Joint, one stop (old)*: `stopping="joint"`, one
early stop on the sum of the heads' relative validation losses. *Per-head + fine-tune (previous default)*:
`stopping="per_head", head_finetune=True, head_alone=False`: each head keeps the whole model's snapshot at
its own best validation epoch and leaves the objective after {m["patience"]} epochs without improving, then is
trained alone from that snapshot (fresh optimiser and schedule) and keeps the result if it validates better.
*+ alone candidates (new default)*: `head_alone=True` as well: each head is also trained alone from scratch
(exactly the single-task model) and predicts with whichever validates better on its own loss. "new − single":
difference of the means (↓: lower is better); the paired t-tests pool the per-user (next item), per-event
(type) or per-example squared-error (rating, value) values of all seeds, pairs within a seed; capture,
Spearman and AUC are set-level metrics with no per-user value and get no test.

Validation loss of each head (what the settings are chosen on; the weights each head predicts with; lower
is better; each head's mean over the same held-out targets for every model of a seed):

{chr(10).join(valid)}

Test:

{chr(10).join(lines)}

Cost (fit_s: the whole fit, s; phases: its joint, fine-tune and alone phases, s, where the model recorded
them):

{chr(10).join(cost)}

{chr(10).join(notes)}
{extra}"""


def _body(section: str, rows: list[Row], seeds: list[int], extra: str = "") -> str:
    if section == "multitask-per-head":
        return per_head_report(rows, seeds, extra)
    return report(rows, seeds, extra)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; writes nothing")
    ap.add_argument("--only", choices=["ml-100k", "synthetic"], default=None)
    ap.add_argument("--rows", type=Path, default=None, help="also write every row as JSON lines here")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="report rows written earlier with --rows (e.g. by parallel --only runs) instead of "
                         "running")
    ap.add_argument("--notes", type=Path, default=None, help="Markdown appended to the section")
    ap.add_argument("--variants", default="",
                    help="run only the model variants whose label contains this (several: 'a|b'; '=label': "
                         "that label exactly)")
    ap.add_argument("--section", default="multitask",
                    help="docs section to write ('multitask-per-head': the per-head stopping comparison)")
    ap.add_argument("--no-write", action="store_true",
                    help="print the section without writing docs/benchmarks.md")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    if args.merge:
        import json

        merged = [json.loads(line) for f in args.merge for line in f.read_text().splitlines() if line.strip()]
        notes = args.notes.read_text() if args.notes else ""
        body = _body(args.section, merged, sorted({r["seed"] for r in merged}), notes)
        print(body)
        if not args.no_write:
            from _report import write_section

            write_section(args.section, body)
        return
    datasets: list[tuple[str, Callable[[int, bool, str], list[Row]]]] = [("ml-100k", movielens),
                                                                         ("synthetic", ecommerce)]
    rows: list[Row] = []
    for name, fn in datasets:
        if args.only and name != args.only:
            continue
        for seed in args.seeds:
            rows.extend(fn(seed, args.quick, args.variants))
    if args.rows:
        import json

        args.rows.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    wall = (time.perf_counter() - t_start) / 60
    body = _body(args.section, rows, args.seeds,
                 f"\nWall time: {wall:.1f} min; load average at the end {os.getloadavg()[0]:.1f}.\n")
    print(body)
    if not args.quick and not args.no_write:
        from _report import write_section

        write_section(args.section, body)


if __name__ == "__main__":
    main()
