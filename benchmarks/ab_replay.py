"""Online A/B experiments in replay on the synthetic shop: does the test find the better arm, and does an A/A
test stay quiet at the nominal rate? (issue 17, part 2, run on the part-5 replay simulator)

Data: :func:`lmrec.data.synthetic_ecommerce.generate_ecommerce` (``--users`` users, 180 days, seed 0), whose
ground truth (each user's taste over categories, buying propensity, price sensitivity; each item's appeal and
price) is known. Models are fitted on the events before day ``--cutoff`` (150); the experiment runs over the
two weeks that follow.

The replay (for each seed) is :func:`lmrec.evaluation.replay.replay`, the simulator that measures updates too:

1. Every user active on a replayed day (an event in the shop's log that day, new users included) is bucketed
   by :meth:`lmrec.evaluation.abtest.ExperimentSpec.assign` with the salt ``ab-replay-SEED`` (the service's
   own bucketing, passed as the replay's ``assign``).
2. Their arm's model recommends ``K`` = 10 items from their history before that day (seen items excluded):
   one answer, recorded as the service records it (:meth:`lmrec.store.experiments.ExperimentTable.record`).
3. Each shown item gets a click from the ground truth (:class:`lmrec.evaluation.replay.ShopClicks`: taste for
   the item's category at that time of year, the item's appeal; common random numbers per seed, day, user and
   item); a click is a ``click`` event seconds after the answer, then ``cart`` and ``purchase`` (valued at the
   item's price) with the generator's cart and purchase probabilities for that user and item.
4. The day's real events join the histories; the store joins answers to the events that follow them
   (:meth:`~lmrec.store.experiments.ExperimentTable.user_outcomes`, a 24 h window) and
   :func:`lmrec.evaluation.abtest.experiment_report` tests each arm against the control: the numbers below
   come from the same code path as ``GET /v1/admin/experiments/{name}``.

Experiments, each over ``--seeds`` seeds:

* ``A/B``: control ``popular`` (most popular) vs ``ease`` (EASE), 50 % / 50 %;
* ``A/A``: ``ease`` vs ``ease``, 50 % / 50 % (every difference is chance);
* ``A/B/n``: ``popular`` vs ``ease`` vs ``itemknn``, a third each, Holm-corrected.

Reported: per arm the mean of each metric over seeds; how often each test rejects at alpha = 0.05 (power for
A/B and A/B/n, the false-positive rate for A/A, with a Wilson interval over the seeds); and, for A/A, the
rate over ``--aa-extra`` further salts to pin the false-positive rate down more tightly.

    python benchmarks/ab_replay.py [--seeds 20] [--users 3000] [--aa-extra 200] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import wall_and_load, write_section  # noqa: E402

K = 10
DAY = 86_400
WEEKS = 2
METRICS = ("click_through", "add_to_cart", "conversion", "revenue_per_user")


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class ListCache:
    """A replay arm whose lists are remembered per user and history (``lists``, shared by every arm that
    serves the same model): the models never change during the experiment, so the seeds (salts) only change
    who sees which arm and the click draws, and each list is computed once per model."""

    name: str
    arm: object  # lmrec.evaluation.replay.ModelArm
    lists: dict[tuple[str, int], list[str]]

    def recommend(self, users: list[str], histories: list[list[str]], k: int) -> list[list[str]]:
        todo = [(u, h) for u, h in zip(users, histories, strict=True) if (u, len(h)) not in self.lists]
        if todo:
            fresh = self.arm.recommend([u for u, _ in todo], [h for _, h in todo], k)  # type: ignore[attr-defined]
            self.lists.update({(u, len(h)): r for (u, h), r in zip(todo, fresh, strict=True)})
        return [self.lists[(u, len(h))] for u, h in zip(users, histories, strict=True)]

    def observe(self, day: int, events: pl.DataFrame, items: pl.DataFrame | None) -> dict:
        return {}


def setup(n_users: int, cutoff: int, click_base: float) -> dict:
    """The shop, the models fitted before the cutoff (each a replay arm with its cache of lists), the events
    to replay."""
    from lmrec.data.dataset import Dataset
    from lmrec.data.synthetic_ecommerce import EPOCH_START, generate_ecommerce
    from lmrec.evaluation.replay import ModelArm, ShopClicks
    from lmrec.models import create_model

    shop = generate_ecommerce(n_users=n_users, seed=0)
    t_cut = EPOCH_START + cutoff * DAY
    train = shop.events.filter(pl.col("timestamp") < t_cut)
    ds = Dataset.build(train, shop.items, shop.users, name="shop-train",
                       event_types=("view", "cart", "purchase"))
    models = {}
    for name in ("popular", "ease", "itemknn"):
        model = create_model("most-popular" if name == "popular" else name)
        model.fit(ds)
        models[name] = (ModelArm(name, model), {})
    events = shop.events.filter(pl.col("timestamp") < t_cut + WEEKS * 7 * DAY)
    return {"shop": shop, "t_cut": t_cut, "models": models, "events": events, "events_train": train.height,
            "clicks": ShopClicks(shop.truth, EPOCH_START, base=click_base)}


def simulate(env: dict, arms: list[tuple[str, str, float]], name: str, seed: int) -> dict:
    """One experiment in replay; returns the report of :func:`lmrec.evaluation.abtest.experiment_report`."""
    from lmrec.evaluation.abtest import Arm, ExperimentSpec, experiment_report
    from lmrec.evaluation.replay import ReplayConfig, replay
    from lmrec.store import Store
    from lmrec.store.experiments import ExperimentTable

    spec = ExperimentSpec(name, tuple(Arm(a, v, s) for a, v, s in arms), salt=f"ab-replay-{seed}")
    version = {a: v for a, v, _ in arms}

    def assign(user: str) -> str:
        arm = spec.assign(user)
        return arm.name if arm is not None else ""

    cfg = ReplayConfig(days=WEEKS * 7, start=env["t_cut"], k=K, seed=seed, keep_impressions=True)
    result = replay(env["events"], [ListCache(a, *env["models"][v]) for a, v, _ in arms], cfg,
                    clicks=env["clicks"], assign=assign)
    shown = result.impressions
    assert shown is not None
    answers = [(f"{name}-{seed}-{r['day']}-{r['user_id']}", name, r["arm"], version[r["arm"]], r["user_id"],
                float(result.start + r["day"] * DAY + DAY // 2), r["item_id"])
               for r in shown.sort("position").group_by(["day", "arm", "user_id"], maintain_order=True)
               .agg("item_id").iter_rows(named=True)]
    truth, cfg_shop = env["shop"].truth, env["shop"].config
    rng = np.random.default_rng(10_000 + seed)
    n_cat = len(truth.categories)
    log_price = np.log(truth.item_price)
    log_price_z = (log_price - log_price.mean()) / log_price.std()
    logit_cart0 = np.log(cfg_shop.cart_rate / (1 - cfg_shop.cart_rate))
    logit_buy0 = np.log(cfg_shop.purchase_rate / (1 - cfg_shop.purchase_rate))
    events = []
    clicked = shown.filter(pl.col("clicked")).sort(["day", "user_id", "position"])
    for (day, user), rows in clicked.group_by(["day", "user_id"], maintain_order=True):
        u = int(str(user)[1:])
        t = int(result.start + int(day) * DAY + DAY // 2) + 1  # type: ignore[arg-type]
        for item in rows["item_id"].to_list():
            j = int(item[1:])
            c = truth.item_category[j]
            t += int(rng.integers(5, 60))
            events.append((user, item, t, "click", None))
            logit_cart = (logit_cart0 + truth.user_buy_propensity[u]
                          + 2.0 * (truth.user_taste[u, c] - 1 / n_cat) + 0.4 * np.log(truth.item_appeal[j])
                          - truth.user_price_sensitivity[u] * log_price_z[j])
            if rng.random() < _sigmoid(logit_cart):
                t += int(rng.integers(5, 120))
                events.append((user, item, t, "cart", None))
                if rng.random() < _sigmoid(logit_buy0 + truth.user_buy_propensity[u]):
                    t += int(rng.integers(30, 600))
                    events.append((user, item, t, "purchase", float(truth.item_price[j])))
    with Store(":memory:") as st:
        table = ExperimentTable(st)
        record = table.create({**spec.to_dict(), "arms": [a.__dict__ for a in spec.arms]})
        table.record(answers)
        if events:
            st.append_events(pl.DataFrame(events, schema={"user_id": pl.String, "item_id": pl.String,
                                                          "timestamp": pl.Int64, "event_type": pl.String,
                                                          "value": pl.Float64}, orient="row"))
        return experiment_report(record, table.user_outcomes(name, spec.window_s))


EXPERIMENTS = {
    "A/B": [("popular", "popular", 0.5), ("ease", "ease", 0.5)],
    "A/A": [("a1", "ease", 0.5), ("a2", "ease", 0.5)],
    "A/B/n": [("popular", "popular", 1 / 3), ("ease", "ease", 1 / 3), ("itemknn", "itemknn", 1 / 3)],
}


def _wilson(k: int, n: int) -> str:
    from lmrec.evaluation.abtest import wilson_interval

    lo, hi = wilson_interval(k, n)
    return f"{k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--cutoff", type=int, default=150,
                    help="Day of the synthetic calendar the models stop at.")
    ap.add_argument("--aa-extra", type=int, default=200,
                    help="Further A/A salts (seeds SEEDS..SEEDS+N-1) for a tighter false-positive rate.")
    ap.add_argument("--click-base", type=float, default=-4.0,
                    help="ShopClicks' base logit: the click probability of an average item is sigmoid(base).")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    env = setup(args.users, args.cutoff, args.click_base)
    replayed = env["events"].filter(pl.col("timestamp") >= env["t_cut"])
    print(f"{replayed['user_id'].n_unique()} users active in the replay, "
          f"{env['events_train']:,} training events "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    results: dict[str, list[dict]] = {k: [] for k in EXPERIMENTS}
    for seed in range(args.seeds):
        for name, arms in EXPERIMENTS.items():
            results[name].append(simulate(env, arms, name.replace("/", ""), seed))
        ab = next(t for t in results["A/B"][-1]["tests"] if t["metric"] == "click_through")
        aa = next(t for t in results["A/A"][-1]["tests"] if t["metric"] == "click_through")
        print(f"seed {seed}: A/B click-through p={ab['p_value']:.2e}, A/A p={aa['p_value']:.3f}", flush=True)
    extra = [simulate(env, EXPERIMENTS["A/A"], "AA", args.seeds + s) for s in range(args.aa_extra)]

    lines = [
        "## ab-replay: A/B tests in replay on the synthetic shop",
        "",
        f"Synthetic shop (`generate_ecommerce(n_users={args.users}, seed=0)`, 180 days); models fitted on "
        f"the {env['events_train']:,} events before day {args.cutoff}; the experiment replays the next "
        f"{WEEKS} weeks day by day with `lmrec.evaluation.replay.replay` (the simulator of the "
        f"`replay-updates` section): each of the {replayed['user_id'].n_unique():,} users active on some "
        "replayed day gets, on each day they are active, one answer from their arm (top 10 from their "
        "history before that day); histories grow with the shop's real events. Each seed is a new salt "
        "(`ab-replay-SEED`, the service's bucketing, as the replay's `assign`) and new click draws; clicks "
        f"(`ShopClicks(base={args.click_base})`: about {100 / (1 + np.exp(-args.click_base)):.1f} % of an "
        "average item's impressions), carts and purchases come from the generator's ground truth (taste, "
        "appeal, buying propensity, price), never seen by a model. Answers and events go through the store's "
        "join and "
        "`lmrec.evaluation.abtest.experiment_report`, as `GET /v1/admin/experiments/{name}` does. "
        "User-level metrics (share of exposed users who clicked / carted / bought a recommended item within "
        "24 h of an answer; revenue per exposed user); two-proportion z-tests and Welch t-tests against the "
        "control at alpha = 0.05, Holm-corrected for A/B/n. Seeds 0.."
        f"{args.seeds - 1}.",
        "",
    ]
    for name, reps in results.items():
        arms = [a["arm"] for a in reps[0]["arms"]]
        lines += [f"### {name}: " + " vs ".join(f"`{a}`" for a in arms) + f" ({args.seeds} seeds)", "",
                  "| arm | users (mean) | answers (mean) | click-through | add-to-cart | conversion | "
                  "revenue / user |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for i, a in enumerate(arms):
            rows = [r["arms"][i] for r in reps]
            cells = [f"{100 * np.mean([x['metrics'][m]['value'] for x in rows]):.2f} %"
                     for m in METRICS[:3]]
            rev = np.mean([x["metrics"]["revenue_per_user"]["value"] for x in rows])
            users, n_ans = np.mean([x["users"] for x in rows]), np.mean([x["answers"] for x in rows])
            lines.append(f"| {a}{' (control)' if i == 0 else ''} | {users:.0f} | {n_ans:.0f} | "
                         + " | ".join(cells) + f" | {rev:.2f} |")
        lines += ["", "| test | metric | rejections at alpha 0.05 (rate, Wilson 95 % interval) | "
                  "median p (adjusted) | mean difference |", "| --- | --- | --- | ---: | ---: |"]
        for arm in arms[1:]:
            for m in METRICS:
                ts = [next(t for t in r["tests"] if t["metric"] == m and t["arm"] == arm) for r in reps]
                k = sum(t["significant"] for t in ts)
                p = np.median([t["p_adjusted"] for t in ts])
                d = np.mean([t["difference"] for t in ts])
                diff = f"{d:+.2f}" if m == "revenue_per_user" else f"{100 * d:+.2f} pt"
                lines.append(f"| {arm} vs {arms[0]} | {m} | {_wilson(k, len(ts))} | {p:.2g} | {diff} |")
        lines.append("")
    if extra:
        last = args.seeds + args.aa_extra - 1
        lines += [f"### A/A over {args.aa_extra} further salts (seeds {args.seeds}..{last})", "",
                  "| metric | false positives at alpha 0.05 (rate, Wilson 95 % interval) |", "| --- | --- |"]
        for m in METRICS:
            k = sum(next(t for t in r["tests"] if t["metric"] == m)["significant"] for r in extra)
            lines.append(f"| {m} | {_wilson(k, len(extra))} |")
        anyk = sum(any(t["significant"] for t in r["tests"]) for r in extra)
        lines += [f"| any of the four | {_wilson(anyk, len(extra))} |", "",
                  "Each metric's test holds its level; the four together are four chances to be wrong (the "
                  "last row), so an experiment should name its primary metric before it starts.", ""]
    lines.append(wall_and_load(t0))
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        print(write_section("ab-replay", body))


if __name__ == "__main__":
    main()
