"""Every baseline on MovieLens-100K, leave-one-out, full ranking, with 95% CIs; writes the "baselines"
section.

    .venv/bin/python benchmarks/evaluate_baselines.py [--seed 0] [--out benchmarks/out/ml100k-baselines]

Models are fitted on the training part with their defaults (tuned on the validation split beforehand; see each
model's Config) and tested once on the test part. The full report (HTML with plots, JSON) goes to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/ml100k-baselines"))
    args = ap.parse_args()

    from lmrec.data.loaders import load_dataset
    from lmrec.evaluation import DEFAULT_MODELS, run_benchmark

    ds, _ = load_dataset("movielens-100k")
    res = run_benchmark(
        ds,
        "leave-one-out",
        DEFAULT_MODELS,
        ks=(5, 10, 20),
        out_dir=args.out,
        seed=args.seed,
        command=" ".join(sys.argv),
    )
    from rich.console import Console

    Console(width=200).print(res.table())
    configs = "\n".join(
        f"- `{r.model}`: " + ", ".join(f"{k}={v}" for k, v in r.config.items() if not k.startswith("_"))
        for r in res.results
    )
    bk = 10
    body = f"""## Baselines on MovieLens-100K (leave-one-out, full ranking)

{res.split_description}. **Ranking: {res.ranking}** over all {ds.n_items:,} items, each user's history
removed; seed {res.seed}; mean ± 95% percentile-bootstrap CI over the {res.n_users():,} test users
(1,000 resamples); p: paired t-test on NDCG@10 against the best model ({res.best()}).
Hyper-parameters are the models' defaults, chosen on the validation split (never on test).

{res.markdown_table(["NDCG@5", "NDCG@10", "NDCG@20", "HR@10", "Recall@20", "MRR@10", "MAP@10"])}

Beyond accuracy (top-{bk}; Coverage/Gini over the catalogue, the rest averaged over users):

{res.markdown_table(res.beyond_metrics(), with_p=False)}

Fit / evaluation seconds: {", ".join(f"{r.model} {r.fit_seconds:.1f}/{r.seconds:.1f}" for r in res.results)}
(2 CPU cores shared with other jobs, so times are indicative only).

Settings:
{configs}

The report with plots (metric vs K, popularity of recommendations, head/torso/tail and short/long history)
is written to `{args.out}/report.html`; every number is in `{args.out}/results.json`.
"""
    write_section("baselines", body)


if __name__ == "__main__":
    main()
