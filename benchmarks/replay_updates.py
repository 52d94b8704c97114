"""Incremental updates every simulated day vs a never-updated model, replayed in time order (issue 17, parts
1 and 5).

Data: MovieLens-100K (the last ``--days`` days of its log) and the synthetic shop
(:mod:`lmrec.data.synthetic_ecommerce`, default settings, seed 0: 2,000 users, 800 items, 180 days; the
replay covers days 90–119, while new users still arrive). Each model is fitted on every event before the
replay's first day (items and users seen by then only). Then :func:`lmrec.evaluation.replay.replay` walks
the days: every user active on a day gets ten items from their history before that day (seen items
excluded), scored with NDCG@10 against the distinct new items they interacted with that day. Two arms per
model see the same users and histories (a paired comparison): ``never`` keeps the fitted model, ``daily``
calls its ``update`` (:class:`lmrec.models.capabilities.IncrementalUpdates`) with each day's events after
the day is scored, so day ``d`` is always scored by a model that has not seen it. On the shop every
impression also gets a click from the ground-truth tastes (:class:`lmrec.evaluation.replay.ShopClicks`).

Models: ItemKNN (an update recomputes the similarity; no seed, so its seed-1 rows repeat seed 0), ALS (3
warm-started sweeps), SeqRec (``id`` items, defaults otherwise; first fit at most 40 epochs or 300 s of
training; an update is 3 epochs over the day's users plus as many replayed older users). The seed is the
models' (initialisation, update sampling); the data and the shop are the same for every seed. CPU seconds per
update are the process's CPU time during ``update`` (every thread), absorbing the events included.

    python benchmarks/replay_updates.py [--days 30] [--seeds 0] [--models itemknn als seqrec] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_cached, read_cached, wall_and_load, write_section  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "replay_updates.png"
K = 10
#: SeqRec for the replay: ``id`` items, the defaults otherwise; the first fit is capped in time.
#: lr and ema_decay as SeqRec's defaults were when the section was measured (2e-3 with an average since)
SEQREC = {"item_repr": "id", "epochs": 40, "time_budget": 300.0, "progress": False, "lr": 1e-3,
          "ema_decay": 0.0}
SHOP_START_DAY = 90


def data(name: str, days: int):  # -> (events, items, replay config, click model or None)
    import polars as pl

    from lmrec.data.synthetic_ecommerce import DAY, generate_ecommerce
    from lmrec.evaluation.replay import ReplayConfig, ShopClicks

    if name == "ml-100k":
        from lmrec.data.loaders import load_dataset

        ds, _ = load_dataset("movielens-100k")
        items = ds.items.drop("item_idx")
        events = ds.events.select("event_id", "user_id", "item_id", "timestamp", "event_type", "value")
        return events, items, ReplayConfig(days=days, k=K), None
    shop = generate_ecommerce(seed=0)
    start = shop.meta["start_timestamp"] + SHOP_START_DAY * DAY
    clicks = ShopClicks(shop.truth, shop.meta["start_timestamp"], shop.config.seasonality)
    return shop.events.filter(pl.col("timestamp") < start + days * DAY), shop.items, \
        ReplayConfig(days=days, start=start, k=K), clicks


def run(dataset: str, model_name: str, seed: int, days: int) -> dict:
    import polars as pl

    from lmrec.data.dataset import Dataset
    from lmrec.evaluation.replay import ModelArm, past_events, replay
    from lmrec.models import create_model

    events, items, cfg, clicks = data(dataset, days)
    past, start = past_events(events, cfg)
    seen_items = past["item_id"].unique().to_list()
    train = Dataset.build(past, items.filter(pl.col("item_id").is_in(seen_items)), name=f"{dataset}-past")
    settings = dict(SEQREC) if model_name == "seqrec" else {}
    if "seed" in {f for f in create_model(model_name).config.__dataclass_fields__}:
        settings["seed"] = seed
    t0 = time.process_time()
    base = create_model(model_name, **settings).fit(train)
    fit_cpu = time.process_time() - t0
    tmp = OUT / f"replay-{dataset}-{model_name}-{seed}"
    base.save(tmp)
    arms = [ModelArm("never", base), ModelArm("daily", type(base).load(tmp), update_every=1, seed=seed)]
    result = replay(events, arms, cfg, items=items, clicks=clicks)
    rows = result.days.to_dicts()
    return {"dataset": dataset, "model": model_name, "seed": seed, "days": days, "start": start,
            "past_events": past.height, "fit_cpu_seconds": round(fit_cpu, 2), "rows": rows}


def _per_day(run_: dict, arm: str, col: str) -> np.ndarray:
    return np.array([r.get(col) or 0.0 for r in run_["rows"] if r["arm"] == arm], dtype=float)


def _weighted(run_: dict, arm: str) -> float:
    nd, sc = _per_day(run_, arm, f"ndcg@{K}"), _per_day(run_, arm, "scored")
    return float((nd * sc).sum() / max(1.0, sc.sum()))


def report(runs: list[dict], t0: float) -> str:
    from lmrec.evaluation.stats import paired_test

    lines = ["## Replay: incremental updates every simulated day vs never (`replay-updates`)", "",
             __doc__.split("\n\n    python")[0].strip(), "",
             "NDCG@10 is the mean over the users scored (users with a new item that day), all days pooled; "
             "the paired test is a t-test over days (daily vs never, the same users each day). "
             "CPU s / update is the mean over the updates.", "",
             "| data | model | seed | past events | users scored | NDCG@10 never | NDCG@10 daily | Δ | "
             "days daily > never | p (t over days) | CTR never | CTR daily | CPU s / update | "
             "CPU s first fit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        never, daily = _per_day(r, "never", f"ndcg@{K}"), _per_day(r, "daily", f"ndcg@{K}")
        scored = _per_day(r, "never", "scored")
        has = scored > 0
        test = paired_test(daily[has], never[has]) if has.sum() > 2 else None
        cpu = _per_day(r, "daily", "update_cpu_seconds")
        ctr = {a: (sum(x.get("clicks") or 0 for x in r["rows"] if x["arm"] == a)
                   / max(1, sum(x.get("impressions") or 0 for x in r["rows"] if x["arm"] == a)))
               for a in ("never", "daily")}
        has_clicks = any(x.get("clicks") is not None for x in r["rows"])

        def fmt(v: float, shown: bool = has_clicks) -> str:
            return f"{v:.4f}" if shown else "–"

        wn, wd = _weighted(r, "never"), _weighted(r, "daily")
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['seed']} | {r['past_events']:,} | {int(scored.sum()):,} | "
            f"{wn:.4f} | {wd:.4f} | {wd - wn:+.4f} | "
            f"{int((daily[has] > never[has]).sum())} / {int(has.sum())} | "
            f"{'' if test is None else f'{test.p_value:.3g}'} | "
            f"{fmt(ctr['never'])} | {fmt(ctr['daily'])} | "
            f"{cpu[cpu > 0].mean() if (cpu > 0).any() else 0:.2f} | {r['fit_cpu_seconds']:.1f} |")
    lines += ["", _verdict(runs)]
    lines += ["", "Curves over days (NDCG@10 on each day's events, never and daily, first seed; a day "
              "with no user scored shows 0):", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        sub = [r for r in runs if r["dataset"] == dataset and r["seed"] == min(x["seed"] for x in runs)]
        header = "| day | users scored | " + " | ".join(f"{r['model']} never | {r['model']} daily"
                                                        for r in sub)
        lines += [f"**{dataset}**", "", header + " |", "|---" * (2 + 2 * len(sub)) + "|"]
        n_days = max(len(_per_day(r, "never", "scored")) for r in sub)
        for d in range(n_days):
            cells = [str(d), str(int(_per_day(sub[0], "never", "scored")[d]))]
            for r in sub:
                cells += [f"{_per_day(r, arm, f'ndcg@{K}')[d]:.3f}" for arm in ("never", "daily")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if PLOT.exists():
        lines += [f"![NDCG@10 per day, never vs daily]({PLOT.name})", ""]
    walls = [r.get("wall_seconds") for r in runs]
    if all(w is not None for w in walls):
        lines.append(f"The {len(runs)} runs (fit, replay, updates) took {sum(walls):.0f} s of wall time "
                     f"in all (the largest {max(walls):.0f} s).")
    loads = [r["load"] for r in runs if r.get("load")]
    if loads:
        low, high = (" / ".join(f"{v:.1f}" for v in x) for x in (min(loads), max(loads)))
        lines.append(f"Load average (1/5/15 min) when the runs ended: from {low} to {high} (a shared 2-core "
                     "machine).")
    lines.append(wall_and_load(t0))
    return "\n".join(lines)


def _verdict(runs: list[dict]) -> str:
    """One sentence per model: in how many runs daily updates beat never, and how many of those significantly
    (paired t-test over days, p < 0.05)."""
    from lmrec.evaluation.stats import paired_test

    parts = []
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model]
        better = significant = 0
        for r in mine:
            never, daily = _per_day(r, "never", f"ndcg@{K}"), _per_day(r, "daily", f"ndcg@{K}")
            has = _per_day(r, "never", "scored") > 0
            if _weighted(r, "daily") > _weighted(r, "never"):
                better += 1
                significant += bool(has.sum() > 2 and paired_test(daily[has], never[has]).p_value < 0.05)
        parts.append(f"{model}: daily beats never in {better} of {len(mine)} runs "
                     f"({significant} with p < 0.05)")
    return "Verdict (NDCG@10, all days pooled): " + "; ".join(parts) + "."


def plot(runs: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    fig, axes = plt.subplots(2, len(datasets), figsize=(6 * len(datasets), 7.5), squeeze=False)
    first = min(r["seed"] for r in runs)
    for col, dataset in enumerate(datasets):
        ax, gap = axes[0][col], axes[1][col]
        for i, r in enumerate(x for x in runs if x["dataset"] == dataset and x["seed"] == first):
            colour = f"C{i}"
            for arm, style in (("never", "--"), ("daily", "-")):
                ax.plot(_per_day(r, arm, f"ndcg@{K}"), style, color=colour, label=f"{r['model']} {arm}")
        # daily − never, as a running mean over the users scored so far (one line per seed)
        models = list(dict.fromkeys(x["model"] for x in runs))
        for r in (x for x in runs if x["dataset"] == dataset):
            sc = _per_day(r, "never", "scored")
            diff = (_per_day(r, "daily", f"ndcg@{K}") - _per_day(r, "never", f"ndcg@{K}")) * sc
            running = np.cumsum(diff) / np.maximum(1.0, np.cumsum(sc))
            gap.plot(running, color=f"C{models.index(r['model'])}", alpha=0.9 if r["seed"] == first else 0.5,
                     label=f"{r['model']} seed {r['seed']}")
        gap.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"{dataset}: NDCG@10 on each day's events (seed {first})")
        gap.set_title(f"{dataset}: NDCG@10 daily − never, running mean")
        for a in (ax, gap):
            a.set_xlabel("simulated day")
            a.legend(fontsize=7)
        ax.set_ylabel("NDCG@10")
        gap.set_ylabel("Δ NDCG@10 (cumulative)")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--models", nargs="+", default=["itemknn", "als", "seqrec"])
    p.add_argument("--data", nargs="+", default=["ml-100k", "synthetic-shop"])
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    cache = OUT / f"replay_updates-{args.days}.jsonl"
    t0 = time.perf_counter()
    done = {(r["dataset"], r["model"], r["seed"]) for r in read_cached(cache)}
    for dataset in args.data:
        for model in args.models:
            for seed in args.seeds:
                if (dataset, model, seed) in done:
                    continue
                t = time.perf_counter()
                row = run(dataset, model, seed, args.days)
                row["wall_seconds"] = round(time.perf_counter() - t, 1)
                row["load"] = [round(v, 1) for v in os.getloadavg()]
                append_cached(cache, row)
                print(f"{dataset} {model} seed {seed}: never {_weighted(row, 'never'):.4f} daily "
                      f"{_weighted(row, 'daily'):.4f} ({time.perf_counter() - t:.0f} s)", flush=True)
    runs = [r for r in read_cached(cache) if r["dataset"] in args.data and r["model"] in args.models
            and r["seed"] in args.seeds]
    plot(runs)
    text = report(runs, t0)
    print(text)
    if not args.no_write:
        write_section("replay-updates", text)
    print(json.dumps({"runs": len(runs)}))


if __name__ == "__main__":
    main()
