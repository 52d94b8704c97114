"""SeqRec on tail and head targets where the tail is large enough to measure: MovieLens latest-small.

On MovieLens-100K only 16 of 943 leave-one-out test users have a tail target (≤ 5 training events), too few to
compare models there. MovieLens latest-small (../shared/data/ml-latest-small: 671 users, 9,125 movies with
titles, genres and tags) has a real long tail. Same SeqRec settings and protocol as ``benchmarks/seqrec.py``
(leave-one-out, full ranking, seen items filtered); 3 seeds; writes the ``seqrec-tail`` section.

Besides NDCG@10/HR@10 it reports HR@100 (a tail target is one of ~6,000 tail items, so the top 10 rarely holds
it for any model and HR@100 says which model brings it closer), and, for models trained with a popularity
prior (``pop_prior="fixed"``, logit adjustment), the same metrics with that prior scaled down at scoring time
(``prior_at_scoring``), the knob that trades head accuracy for tail reach without retraining.

Every run is cached as one JSON line in ``--cache``, so the benchmark resumes where it stopped.

    python benchmarks/seqrec_tail.py [--data ../shared/data/ml-latest-small] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import append_cached, read_cached  # noqa: E402
from seqrec import FUSED_VS_ID, PRIOR_SCALES, TAIL_MAX, run_one  # noqa: E402

MODELS = ["seqrec-id", "seqrec-id-prior", "seqrec-id-all", "seqrec-fused-drop", "seqrec-fused-prior",
          "seqrec-fused-all", "seqrec-fused-all-p1", "itemknn"]
LABELS = {
    "seqrec-id": "seqrec-id",
    "seqrec-id-prior": "seqrec-id + popularity prior",
    "seqrec-fused-drop": "seqrec-fused (id dropout 0.5, min 0.3), no prior",
    "seqrec-fused-prior": "seqrec-fused + popularity prior",
    "seqrec-id-all": "seqrec-id, every window of each history",
    "seqrec-fused-all": "seqrec-fused, every window of each history",
    "seqrec-fused-all-p1": "seqrec-fused, every window, id gate ½ at 1 event (fuse_pivot 1)",
    "itemknn": "itemknn (best baseline on ML-100K)",
}
KS = (10, 100)
COLUMNS = ["NDCG@10", "HR@10", "tail_NDCG@10", "tail_HR@10", "tail_HR@100", "head_NDCG@10", "head_HR@10"]


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.mean(r[key] for r in rows)


def report(rows: dict[str, list[dict[str, Any]]], seeds: list[int]) -> str:
    """The markdown section from the cached runs (``rows[model]``: one dict per seed)."""
    present = [m for m in MODELS if rows.get(m)]
    first = rows[present[0]][0]
    lines = [
        "## SeqRec on tail and head targets (MovieLens latest-small)",
        "",
        "MovieLens latest-small (671 users, 9,125 movies; text = title + genres), leave-one-out, full "
        f"ranking, seen items filtered; {first['users']} test users, of whom "
        f"**{first['tail_users']} have a tail target** (≤ {TAIL_MAX} training events; 6,058 of the 9,125 "
        f"items are tail items) and {first['head_users']} a head target. SeqRec settings as in the "
        f"`seqrec` section (max_len 50, up to 40 epochs, early stopping on validation NDCG@10); seeds "
        f"{seeds} (itemknn is deterministic: one run). Mean ± std over seeds.",
        "",
        "| model | runs | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in COLUMNS) + " |",
    ]
    for m in present:
        cells = " | ".join(_ms([r[c] for r in rows[m]]) for c in COLUMNS)
        lines.append(f"| {LABELS[m]} | {len(rows[m])} | {cells} |")
    swept = [m for m in present if "prior_at_scoring" in rows[m][0]]
    if swept:
        lines += [
            "",
            "The same trained models scored with the popularity prior scaled by `prior_at_scoring` (1 = as "
            "trained, the row above; 0 = no prior):",
            "",
            "| model | prior_at_scoring | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |",
            "| --- | ---: | " + " | ".join("---:" for _ in COLUMNS) + " |",
        ]
        for m in swept:
            for scale in PRIOR_SCALES:
                sub = [r["prior_at_scoring"][str(scale)] for r in rows[m]]
                cells = " | ".join(_ms([s[c] for s in sub]) for c in COLUMNS)
                lines.append(f"| {LABELS[m]} | {scale} | {cells} |")
    lines += ["", *_checks(rows), "", "Command: `python benchmarks/seqrec_tail.py` (resumes from "
              "`benchmarks/out/seqrec_tail.jsonl`)."]
    return "\n".join(lines)


def _checks(rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The issue's tail/head condition, for each fused setting against the id model it would replace."""
    out: list[str] = []
    pairs = [(fused, idm) for fused, ids in FUSED_VS_ID.items() for idm in ids]  # as in benchmarks/seqrec.py
    for fused, idm in pairs:
        if not (rows.get(fused) and rows.get(idm)):
            continue
        settings: list[tuple[str, list[dict[str, Any]]]] = [("as trained", rows[fused])]
        if "prior_at_scoring" in rows[fused][0]:
            settings += [(f"prior_at_scoring {s}", [r["prior_at_scoring"][str(s)] for r in rows[fused]])
                         for s in PRIOR_SCALES]
        for name, fr in settings:
            t_f, t_i = _mean(fr, "tail_NDCG@10"), _mean(rows[idm], "tail_NDCG@10")
            d_f, d_i = _mean(fr, "tail_HR@100"), _mean(rows[idm], "tail_HR@100")
            head = _mean(fr, "head_NDCG@10") / max(_mean(rows[idm], "head_NDCG@10"), 1e-12) - 1
            ok = t_f > t_i and head >= -0.02
            out.append(
                f"- {fused} ({name}) vs {idm}: tail NDCG@10 {t_f:.4f} vs {t_i:.4f}, tail HR@100 {d_f:.3f} vs "
                f"{d_i:.3f}; head NDCG@10 {head:+.1%} (allowed −2 %) → "
                f"{'**meets** the tail/head condition' if ok else 'does not meet it'}."
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"
    ap.add_argument("--data", type=Path, default=default)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--models", nargs="*", default=MODELS, choices=MODELS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path,
                    default=Path(__file__).resolve().parent / "out" / "seqrec_tail.jsonl")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not (args.data / "ratings.csv").exists():
        sys.exit(f"MovieLens latest-small not found at {args.data} (pass --data)")
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    cached = read_cached(args.cache)
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in MODELS}
    for r in cached:
        if r["model"] in rows and r["seed"] in args.seeds:
            rows[r["model"]].append(r)
    for model in args.models:
        seeds = args.seeds if model.startswith("seqrec") else args.seeds[:1]  # itemknn is deterministic
        for seed in seeds:
            if any(r["seed"] == seed for r in rows[model]):
                continue
            row = run_one("loo", model, seed, args.threads, dataset=str(args.data), ks=KS)
            print(json.dumps(row), flush=True)
            rows[model].append(row)
            append_cached(args.cache, row)
    body = report(rows, args.seeds)
    print(body)
    if not args.no_write:
        from _report import write_section

        write_section("seqrec-tail", body)


if __name__ == "__main__":
    main()
