"""SeqRec on tail and head targets where the tail is large enough to measure: MovieLens latest-small and the
Amazon Office 2014 set (``--data office``).

On MovieLens-100K only 16 of 943 leave-one-out test users have a tail target (≤ 5 training events), too few to
compare models there. MovieLens latest-small (../shared/data/ml-latest-small: 671 users, 9,125 movies with
titles, genres and tags) has a real long tail. Same SeqRec settings and protocol as ``benchmarks/seqrec.py``
(leave-one-out, full ranking, seen items filtered); 3 seeds; writes the ``seqrec-tail`` section.

Besides NDCG@10/HR@10 it reports HR@100 (a tail target is one of ~6,000 tail items, so the top 10 rarely holds
it for any model and HR@100 says which model brings it closer), and, for models trained with a popularity
prior (``pop_prior="fixed"``, logit adjustment), the same metrics with that prior scaled down at scoring time
(``prior_at_scoring``), the knob that trades head accuracy for tail reach without retraining.

Every run also records the same metrics on the validation targets (``valid``), which is what designs are
chosen on (never the test targets). On Office the settings are the same except ``max_len="auto"`` (24 there:
users have about 7 events). Every run is cached as one JSON line in ``--cache`` (one file per data set by
default), so the benchmark resumes where it stopped.

    python benchmarks/seqrec_tail.py [--data latest-small|office|FOLDER] [--seeds 0 1 2] [--models ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import append_cached, read_cached  # noqa: E402
from seqrec import (  # noqa: E402
    FUSED_VS_ID,
    GATE_LIFTS,
    PRIOR_SCALES,
    SEQREC_BASE,
    TAIL_MAX,
    VARIANTS,
    run_one,
)

MODELS = ["seqrec-id", "seqrec-id-prior", "seqrec-id-all", "seqrec-fused-drop", "seqrec-fused-prior",
          "seqrec-fused-all", "seqrec-fused-all-p1", "seqrec-fused-all-learned", "seqrec-fused-all-nogate",
          "seqrec-fused-all-residual", "seqrec-fused-all-outfull", "seqrec-id-all-ema",
          "seqrec-fused-all-ema", "seqrec-id-all-ema-100", "seqrec-fused-all-ema-100",
          "seqrec-id-all-ema-100-svd", "itemknn"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: --data names: (folder or loader name, section id, title, text)
DATA = {
    "latest-small": (str(SHARED / "ml-latest-small"), "seqrec-tail", "MovieLens latest-small",
                     "MovieLens latest-small (671 users, 9,125 movies; text = title + genres)"),
    "office": ("office", "seqrec-tail-office", "Amazon Office 2014",
               "Amazon Office 2014 (about 7 events per user; text = title, brand, categories, description)"),
}
LABELS = {
    "seqrec-id": "seqrec-id",
    "seqrec-id-prior": "seqrec-id + popularity prior",
    "seqrec-fused-drop": "seqrec-fused (id dropout 0.5, min 0.3), no prior",
    "seqrec-fused-prior": "seqrec-fused + popularity prior",
    "seqrec-id-all": "seqrec-id, every window of each history",
    "seqrec-fused-all": "seqrec-fused, every window of each history (count gate, the default)",
    "seqrec-fused-all-p1": "seqrec-fused, every window, id gate ½ at 1 event (fuse_pivot 1)",
    "seqrec-fused-all-learned": "seqrec-fused, every window, learned per-item id gate (fuse_gate learned)",
    "seqrec-fused-all-nogate": "seqrec-fused, every window, no id gate (fuse_gate none)",
    "seqrec-fused-all-residual": "seqrec-fused, every window, ids as zero-started residuals of text, no gate "
                                 "(fuse_gate residual)",
    "seqrec-fused-all-outfull": "seqrec-fused, every window, targets on whole trained ids, inputs gated "
                                "(output_gate_lift 1)",
    "seqrec-id-all-ema": "seqrec-id, every window, weight average (ema_decay 0.99)",
    "seqrec-fused-all-ema": "seqrec-fused, every window, count gate, weight average (ema_decay 0.99)",
    "seqrec-id-all-ema-100": "seqrec-id, every window, weight average, up to 100 epochs",
    "seqrec-fused-all-ema-100": "seqrec-fused, every window, count gate, weight average, up to 100 epochs",
    "seqrec-id-all-ema-100-svd": "seqrec-id, every window, weight average, up to 100 epochs, spectral id "
                                 "start (id_init svd)",
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


def report(rows: dict[str, list[dict[str, Any]]], seeds: list[int], data: str = "latest-small",
           section: str | None = None) -> str:
    """The markdown section from the cached runs (``rows[model]``: one dict per seed); ``section``: the
    section written when it is not the data set's own."""
    _, default_section, title, described = DATA[data]
    present = [m for m in MODELS if rows.get(m)]
    first = rows[present[0]][0]
    settings = ("max_len 50" if data == "latest-small" else 'max_len "auto" (24 here)')
    lines = [
        f"## SeqRec on tail and head targets ({title})" if section in (None, default_section)
        else f"## SeqRec on tail and head targets: id gate designs ({title})",
        "",
        f"{described}, leave-one-out, full ranking, seen items filtered; {first['users']} test users, of "
        f"whom **{first['tail_users']} have a tail target** (≤ {TAIL_MAX} training events) and "
        f"{first['head_users']} a head target. SeqRec settings as in the `seqrec` section ({settings}, up "
        f"to 40 epochs, early stopping on validation NDCG@10); seeds {seeds} (itemknn is deterministic: one "
        "run). Mean ± std over seeds.",
        "",
        "| model | runs | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " | fit s | load |",
        "| --- | ---: | " + " | ".join("---:" for _ in COLUMNS) + " | ---: | ---: |",
    ]
    for m in present:
        cells = " | ".join(_ms([r[c] for r in rows[m]]) for c in COLUMNS)
        fit = statistics.mean(r["fit_s"] for r in rows[m])
        loads = [r["load"] for r in rows[m] if "load" in r]
        load = f"{statistics.mean(loads):.1f}" if loads else "–"
        lines.append(f"| {LABELS[m]} | {len(rows[m])} | {cells} | {fit:.0f} | {load} |")
    validated = [m for m in present if "valid" in rows[m][0]]
    if validated:
        lines += [
            "",
            "The same runs on the **validation** targets (each user's second-to-last event; tail = ≤ "
            f"{TAIL_MAX} training events), what the design was chosen on:",
            "",
            "| model | runs | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |",
            "| --- | ---: | " + " | ".join("---:" for _ in COLUMNS) + " |",
        ]
        for m in validated:
            vr = [r["valid"] for r in rows[m] if "valid" in r]
            cells = " | ".join(_ms([r[c] for r in vr]) for c in COLUMNS)
            lines.append(f"| {LABELS[m]} | {len(vr)} | {cells} |")
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
    # (a model whose output side is already lifted to 1 scores the same at every scoring lift)
    lifted = [m for m in present if "id_gate_at_scoring" in rows[m][0]
              and VARIANTS.get(m, {}).get("output_gate_lift", 0.0) < 1.0]
    if lifted:
        lines += [
            "",
            "The same trained fused models scored with every trained item's id gate lifted, `g + "
            "id_gate_at_scoring · (1 − g)` (0 = as trained, the rows above; 1 = every trained id at full "
            "weight), on **validation** (what a default is chosen on) and test:",
            "",
            "| model | id_gate_at_scoring | part | "
            + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |",
            "| --- | ---: | --- | " + " | ".join("---:" for _ in COLUMNS) + " |",
        ]
        for m in lifted:
            have = [r for r in rows[m] if "id_gate_at_scoring" in r]
            for part in ("valid", "test"):
                base = [r["valid"] if part == "valid" else r for r in have]
                cells = " | ".join(_ms([b[c] for b in base]) for c in COLUMNS)
                lines.append(f"| {LABELS[m]} | 0 (as trained) | {part} | {cells} |")
                for lift in GATE_LIFTS:
                    sub = [r["id_gate_at_scoring"][str(lift)] for r in have]
                    sub = [x["valid"] if part == "valid" else x for x in sub]
                    cells = " | ".join(_ms([x[c] for x in sub]) for c in COLUMNS)
                    lines.append(f"| {LABELS[m]} | {lift} | {part} | {cells} |")
    flag = "" if data == "latest-small" else f" --data {data}"
    if section not in (None, default_section):
        flag += f" --section {section}"
    lines += ["", *_checks(rows), "", f"Command: `python benchmarks/seqrec_tail.py{flag}` (resumes from "
              f"`benchmarks/out/{DATA[data][1].replace('-', '_')}.jsonl`); `fit s` is the mean training time "
              "and `load` the mean 1-minute load average at the start of each run (2 shared cores)."]
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
    ap.add_argument("--data", default="latest-small", choices=sorted(DATA))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--models", nargs="*", default=MODELS, choices=MODELS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--section", default=None,
                    help="docs/benchmarks.md section to write (default: the data set's, e.g. seqrec-tail)")
    args = ap.parse_args()
    source, section, _, _ = DATA[args.data]
    if args.data == "latest-small" and not (Path(source) / "ratings.csv").exists():
        sys.exit(f"MovieLens latest-small not found at {source}")
    base = dict(SEQREC_BASE) if args.data == "latest-small" else {**SEQREC_BASE, "max_len": "auto"}
    cache = args.cache or Path(__file__).resolve().parent / "out" / f"{section.replace('-', '_')}.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in MODELS}
    for r in read_cached(cache):
        if r["model"] in rows and r["seed"] in args.seeds:
            rows[r["model"]].append(r)
    for model in args.models:
        seeds = args.seeds if model.startswith("seqrec") else args.seeds[:1]  # itemknn is deterministic
        for seed in seeds:
            if any(r["seed"] == seed for r in rows[model]):
                continue
            load, t0 = os.getloadavg()[0], time.perf_counter()
            row = run_one("loo", model, seed, args.threads, dataset=source, ks=KS, valid=True, base=base)
            row.update(load=round(load, 2), wall_s=round(time.perf_counter() - t0, 1))
            print(json.dumps(row), flush=True)
            rows[model].append(row)
            append_cached(cache, row)
    body = report(rows, args.seeds, args.data, args.section)
    print(body)
    if not args.no_write:
        from _report import write_section

        write_section(args.section or section, body)


if __name__ == "__main__":
    main()
