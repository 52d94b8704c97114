"""Onboarding new users by active learning vs asking about popular or random items (issue 17, part 3).

Data: MovieLens-100K. Each seed cuts the users into 5 random folds; each fold in turn is held out entirely
(its users are the "new users") and a model is fitted on the other users' events only, so every user is new
once. A held-out user is simulated from their real ratings: asked about an item, they answer "yes" when they
rated it. After ``n`` questions (3, 5, 10) ten items are recommended, every item asked about excluded.
Strategies:

* ``adaptive`` — :class:`lmrec.models.onboarding.Onboarding`: one question at a time, the item that best
  splits the training users still consistent with the answers (entropy), from the 300 most popular items;
  the model then recommends from the "yes" items as the user's history;
* ``adaptive+neighbours`` — the same questions; the recommendations come from the training users weighted by
  how consistent they are with all answers, "no" included (``Onboarding.consistent_scores``, what the
  service's ``POST /v1/onboarding/questions`` returns);
* ``popular`` — the ``n`` most popular items; the model recommends from the "yes" items;
* ``random`` — ``n`` random items from the same 300-item pool (a random item of the whole catalogue is almost
  never known); likewise.

Reported: HR@10 of the user's newest rated item not asked about (one target, as leave-one-out), NDCG@10 and
Recall@10 over all of the user's other rated items, and the mean number of "yes" answers; the adaptive
strategies vs popular and vs random with paired t-tests per user (all seeds pooled).

    python benchmarks/onboarding.py [--seeds 0 1 2] [--models itemknn ease] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import wall_and_load, write_section  # noqa: E402

K = 10
ANSWERS = (3, 5, 10)
STRATEGIES = ("adaptive", "adaptive+neighbours", "popular", "random")


def run(model_name: str, seed: int, folds: int = 5) -> dict[str, dict[int, np.ndarray]]:
    """Every user is a new user once: the users are cut into ``folds`` random folds, and each fold is held out
    of a model fitted on the others."""

    from lmrec.data.loaders import load_dataset

    ds, _ = load_dataset("movielens-100k")
    users = np.array(ds.user_map.raw_ids, dtype=object)
    perm = np.random.default_rng(seed).permutation(len(users))
    out: dict[str, dict[int, list[tuple[float, float, float, int]]]] = {
        s: {n: [] for n in ANSWERS} for s in STRATEGIES}
    for f in range(folds):
        held = set(users[perm[f::folds]].tolist())
        _run_fold(ds, model_name, seed, held, out)
    return {s: {n: np.array(v) for n, v in per.items()} for s, per in out.items()}


def _run_fold(ds: object, model_name: str, seed: int, held: set[str],
              out: dict[str, dict[int, list[tuple[float, float, float, int]]]]) -> None:
    import polars as pl

    from lmrec.models import create_model
    from lmrec.models.onboarding import Onboarding, popular_questions

    raw = ds.events  # type: ignore[attr-defined]
    # The same vocabularies; held-out users keep no event (their ids are known, their histories empty).
    train = ds.with_events(raw.filter(~pl.col("user_id").is_in(list(held))), name="ml100k-train")
    model = create_model(model_name).fit(train)
    onboarding = Onboarding(model)
    known = set(model.item_map.raw_ids)
    pool = [str(model.item_map.raw(int(i))) for i in onboarding.pool]
    # Each held-out user's rated items, oldest first (the last one is the HR@10 target).
    ordered = {u: [i for i in g.sort("timestamp", maintain_order=True)["item_id"].to_list() if i in known]
               for (u,), g in raw.filter(pl.col("user_id").is_in(list(held))).group_by("user_id")}
    rated = {u: set(v) for u, v in ordered.items()}
    for u in sorted(rated):
        items = rated[u]
        if len(items) < 5:
            continue
        urng = np.random.default_rng([seed, int(u)])
        rand_order = [pool[i] for i in urng.permutation(len(pool))]
        adaptive_all = onboarding.ask(lambda i, items=items: i in items, max(ANSWERS))
        adaptive_order = list(adaptive_all)
        popular_order = popular_questions(model, max(ANSWERS))
        for n in ANSWERS:
            for strategy, order in (("adaptive", adaptive_order), ("popular", popular_order),
                                    ("random", rand_order), ("adaptive+neighbours", adaptive_order)):
                asked = order[:n]
                yes = [i for i in asked if i in items]
                relevant = items - set(asked)
                if not relevant:
                    continue
                if strategy == "adaptive+neighbours":
                    sc = onboarding.consistent_scores({i: i in items for i in asked})
                    sc[0] = -np.inf
                    sc[model.item_map.indices(asked)] = -np.inf
                    top = [str(model.item_map.raw(int(i))) for i in np.argsort(-sc, kind="stable")[:K]]
                else:
                    ids, _ = model.recommend(histories=[yes], k=K, exclude=[asked], unknown="popular")
                    top = [i for i in ids[0] if i]
                hits = np.array([i in relevant for i in top], dtype=np.float64)
                dcg = float((hits / np.log2(np.arange(2, len(hits) + 2))).sum())
                idcg = float((1 / np.log2(np.arange(2, min(len(relevant), K) + 2))).sum())
                last = next(i for i in reversed(ordered[u]) if i in relevant)  # their newest item not asked
                out[strategy][n].append((float(last in top), dcg / idcg,
                                         float(hits.sum()) / min(len(relevant), K), len(yes)))


def main() -> None:
    from lmrec.evaluation.stats import paired_test

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=["itemknn", "ease"])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    lines = [
        "## Onboarding new users by active learning (issue 17, part 3)",
        "",
        "MovieLens-100K; per seed the users are cut into 5 random folds, each held out in turn (every "
        "user is new once) and simulated from their real ratings (\"yes\" when they rated the item asked "
        "about); the model is fitted on the other folds. After n questions 10 items are recommended, "
        "every item asked about excluded. HR@10: the user's newest rated item not asked about is in the "
        "list; NDCG@10 and Recall@10: over every other item the user rated. `adaptive` asks one question "
        "at a time, the item that best splits the training users still consistent with the answers "
        "(`lmrec.models.onboarding`), and the model recommends from the \"yes\" items; "
        "`adaptive+neighbours` asks the same and recommends from the training users weighted by their "
        "consistency with every answer (what the service returns); `popular`, the n most popular items; "
        "`random`, n random items of the same 300-item pool. Mean over "
        f"held-out users, seeds {args.seeds} pooled.",
        "",
        "| model | questions | strategy | users | yes answers | HR@10 | NDCG@10 | Recall@10 |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    tests = []
    for m in args.models:
        per_seed = [run(m, s) for s in args.seeds]
        for n in ANSWERS:
            pooled = {s: np.vstack([r[s][n] for r in per_seed]) for s in STRATEGIES}
            for s, v in pooled.items():
                lines.append(f"| {m} | {n} | {s} | {len(v)} | {v[:, 3].mean():.2f} | {v[:, 0].mean():.4f} | "
                             f"{v[:, 1].mean():.4f} | {v[:, 2].mean():.4f} |")
            for ours in ("adaptive", "adaptive+neighbours"):
                for other in ("popular", "random"):
                    h = paired_test(pooled[ours][:, 0], pooled[other][:, 0])
                    t = paired_test(pooled[ours][:, 1], pooled[other][:, 1])
                    tests.append(f"- {m}, {n} questions: {ours} vs {other}: HR@10 {h.mean_difference:+.4f} "
                                 f"(p = {h.p_value:.2g}), NDCG@10 {t.mean_difference:+.4f} "
                                 f"(p = {t.p_value:.2g}); paired t-tests over {t.n} users")
            print("\n".join(lines[-3:]), flush=True)
    lines += ["", *tests, "", wall_and_load(t0)]
    print("\n".join(lines))
    if not args.no_write:
        write_section("onboarding", "\n".join(lines))


if __name__ == "__main__":
    main()
