"""The benchmark report: Markdown, one self-contained HTML page (plots inline as base64 PNG) and JSON.

Plots: ranking metrics against the cut-off K; popularity of recommended items against the catalogue's; the
main metric by head/torso/tail target item and by short/long history. Every page states dataset, protocol,
ranking (full or "sampled (N negatives)"), seed and command.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmrec.evaluation.evaluator import BUCKETS, beyond_k
from lmrec.evaluation.fairness import fairness_markdown

if TYPE_CHECKING:
    from lmrec.evaluation.benchmark import BenchmarkResult


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _colours(n: int) -> list[Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def plot_metric_vs_k(bench: BenchmarkResult) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    cols = _colours(len(bench.results))
    for ax, metric in zip(axes, ("NDCG", "HR", "Recall"), strict=True):
        for r, c in zip(bench.results, cols, strict=True):
            y = r.curve(metric)
            ax.plot(np.arange(1, len(y) + 1), y, label=r.model, color=c, lw=1.8)
        ax.set_xlabel("K")
        ax.set_title(f"{metric}@K")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Ranking metrics against the cut-off ({bench.ranking})")
    return _png(fig)


def plot_popularity(bench: BenchmarkResult, popularity: np.ndarray) -> str:
    """Where recommendations fall on the catalogue's popularity curve, and their average popularity."""
    import matplotlib.pyplot as plt

    pop = np.asarray(popularity, dtype=np.float64)[1:]
    order = np.argsort(-pop, kind="stable")
    rank_of = np.empty(len(pop), dtype=np.int64)
    rank_of[order] = np.arange(1, len(pop) + 1)
    x = np.arange(1, len(pop) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4.4), gridspec_kw={"wspace": 0.35})
    total = pop.sum()
    if total > 0:
        ax1.plot(
            x,
            np.cumsum(pop[order]) / total,
            color="black",
            lw=2.5,
            ls="--",
            label="catalogue: share of training events",
        )
    cols = _colours(len(bench.results))
    bk = _bk(bench)
    for r, c in zip(bench.results, cols, strict=True):
        items = r.ranked[:, :bk].ravel()
        items = items[items > 0]
        if len(items) == 0:
            continue
        counts = np.bincount(rank_of[items - 1], minlength=len(pop) + 1)[1:]
        ax1.plot(x, np.cumsum(counts) / len(items), color=c, lw=1.6, label=r.model)
    ax1.set_xscale("log")
    ax1.set_ylim(0, 1.02)
    ax1.set_xlabel("the N most popular items (by training events)")
    ax1.set_ylabel(f"cumulative share of top-{bk} slots")
    ax1.set_title("How concentrated recommendations are on popular items")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7, loc="lower right")
    labels = [r.model for r in bench.results]
    arp = [float(np.mean(r.per_user[f"ARP@{bk}"])) for r in bench.results]
    ax2.barh(labels, arp, color=cols)
    ax2.axvline(float(pop.mean()), color="black", ls="--", label=f"catalogue mean ({pop.mean():.1f})")
    ax2.axvline(float(np.median(pop)), color="grey", ls=":", label=f"catalogue median ({np.median(pop):.0f})")
    ax2.set_xlabel(f"mean training events of recommended items (ARP@{bk})")
    ax2.invert_yaxis()
    ax2.legend(fontsize=8)
    ax2.set_title("Average popularity of recommendations")
    return _png(fig)


def _bk(bench: BenchmarkResult) -> int:
    return beyond_k(bench.ks)


def plot_groups(bench: BenchmarkResult) -> str:
    import matplotlib.pyplot as plt

    groups = bench.groups()
    fig, axes = plt.subplots(1, 2, figsize=(14, 4))
    cols = _colours(len(bench.results))
    for ax, key, title in (
        (axes[0], "target", "by popularity of the target item"),
        (axes[1], "history", "by length of the user's history"),
    ):
        per_model = groups[key]
        if not per_model:
            continue
        bucket_names = list(next(iter(per_model.values())).keys())
        width = 0.8 / max(1, len(per_model))
        x = np.arange(len(bucket_names))
        for i, (model, c) in enumerate(zip(per_model, cols, strict=True)):
            vals = [per_model[model][b][0] for b in bucket_names]
            ax.bar(x + i * width - 0.4 + width / 2, np.nan_to_num(vals), width, color=c, label=model)
        counts = [next(iter(per_model.values()))[b][1] for b in bucket_names]
        ax.set_xticks(x, [f"{b}\n({n} users)" for b, n in zip(bucket_names, counts, strict=True)])
        ax.set_ylabel(bench.main_metric)
        ax.set_title(f"{bench.main_metric} {title}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    return _png(fig)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1500px;
    color:#222}
h1{font-size:1.6em} h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:0.9em;margin:0.6em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left;font-weight:600}
.meta{color:#555;font-size:0.92em}
.badge{background:#eef;border:1px solid #99c;padding:2px 6px;border-radius:4px}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
code{background:#f6f6f6;padding:1px 4px}
"""


def _md_to_html_table(md: str) -> str:
    lines = [line.strip().strip("|").split("|") for line in md.strip().splitlines()]
    head, rows = lines[0], lines[2:]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h.strip())}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _group_markdown(bench: BenchmarkResult) -> str:
    g = bench.groups()
    parts = []
    for key, title in (("target", "By popularity of the target item"), ("history", "By history length")):
        per_model = g[key]
        if not per_model:
            continue
        buckets = list(next(iter(per_model.values())).keys())
        counts = [next(iter(per_model.values()))[b][1] for b in buckets]
        head = ["model"] + [f"{b} (n={n})" for b, n in zip(buckets, counts, strict=True)]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for model, vals in per_model.items():
            rows.append("| " + " | ".join([model] + [_num(vals[b][0]) for b in buckets]) + " |")
        parts.append((f"{title} ({bench.main_metric})", "\n".join(rows)))
    return "\n\n".join(f"### {t}\n\n{tbl}" for t, tbl in parts)


def _num(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(bench: BenchmarkResult, out_dir: Path) -> dict[str, Path]:
    """Write the report files; returns their paths (``md``, ``html``, ``json``, ``per_user``)."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    popularity = _popularity(bench)
    names = ("NDCG", "HR", "Recall", "Precision", "MRR", "MAP")
    accuracy_by_k = {k: bench.markdown_table([f"{m}@{k}" for m in names], with_p=False) for k in bench.ks}
    accuracy = "\n\n".join(f"### @{k}\n\n{t}" for k, t in accuracy_by_k.items())
    beyond = bench.markdown_table(bench.beyond_metrics(), with_p=False)
    headline = bench.markdown_table()
    groups_md = _group_markdown(bench)
    fair_md = fairness_markdown(bench.fairness) if bench.fairness else ""
    timing = "\n".join(
        ["| model | fit s | eval s | users/s |", "|---|---|---|---|"]
        + [
            f"| {r.model} | {r.fit_seconds:.2f} | {r.seconds:.2f} "
            f"| {len(r.users) / max(r.seconds, 1e-9):,.0f} |"
            for r in bench.results
        ]
    )
    meta = (
        f"**Dataset** {bench.dataset} · **split** {bench.split_description} · **ranking** "
        f"{bench.ranking} · **seed** {bench.seed} · **K** {', '.join(map(str, bench.ks))} · "
        f"CIs: 95% percentile bootstrap over users ({bench.n_boot} resamples); p: paired "
        f"{bench.test_method}-test on {bench.main_metric} against the best model "
        f"(**{bench.best()}**)."
    )
    cmd = f"\n\nCommand: `{bench.command}`" if bench.command else ""
    if bench.exposure != "none":
        cmd += f"\n\nExposure re-ranking applied to every list: {bench.exposure}."
    if bench.tuning:
        cmd += "\n\nTuned on the validation split (never on test): " + "; ".join(
            f"{m}: {t['best']} ({t['metric']} {t['score']:.4f}, {len(t['trials'])} settings tried)"
            for m, t in bench.tuning.items()
        )
    md = (
        f"# Benchmark: {bench.title()}\n\n{meta}{cmd}\n\n## Summary\n\n{headline}\n\n"
        f"## Accuracy (mean ± 95% CI)\n\n{accuracy}\n\n## Beyond accuracy\n\n{beyond}\n\n"
        "Coverage: share of the catalogue recommended to anyone; Gini: inequality of exposure; ARP: mean "
        "training events of recommended items; Novelty: mean self-information (bits); Tail: share of "
        "recommended items from the long tail (the least popular items holding the last third of events); "
        "ILD: 1 − mean pairwise cosine of the items' text vectors.\n\n"
        f"## Groups\n\n{groups_md}\n\n"
        + (f"## Fairness\n\n{fair_md}\n\n" if fair_md else "")
        + f"## Time\n\n{timing}\n\n"
        "Plots are in `report.html`; every number is in `results.json`, per-user values in "
        "`per_user.parquet`.\n"
    )
    (out_dir / "report.md").write_text(md)

    imgs = [
        ("Metrics against K", plot_metric_vs_k(bench)),
        ("Popularity of recommended items against the catalogue", plot_popularity(bench, popularity)),
        (f"{bench.main_metric} by target popularity and by history length", plot_groups(bench)),
    ]
    body = [
        f"<h1>Benchmark: {html.escape(bench.title())}</h1>",
        f"<p class='meta'><span class='badge'>{html.escape(bench.ranking)}</span> "
        f"{html.escape(meta.replace('**', ''))}</p>",
    ]
    if bench.command:
        body.append(f"<p class='meta'>Command: <code>{html.escape(bench.command)}</code></p>")
    body += [
        "<h2>Summary</h2>",
        _md_to_html_table(headline),
        "<h2>Accuracy (mean ± 95% CI)</h2>",
    ]
    for k, tbl in accuracy_by_k.items():
        body += [f"<h3>@{k}</h3>", _md_to_html_table(tbl)]
    body += ["<h2>Beyond accuracy</h2>", _md_to_html_table(beyond)]
    for title, b64 in imgs:
        body.append(
            f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>"
        )
    for block in groups_md.split("### ")[1:]:
        title, tbl = block.split("\n", 1)
        body += [f"<h3>{html.escape(title)}</h3>", _md_to_html_table(tbl)]
    if fair_md:
        body.append("<h2>Fairness</h2>")
        for block in fair_md.split("### ")[1:]:
            title, rest = block.split("\n", 1)
            tbl, _, note = rest.strip().partition("\n\n")
            body += [f"<h3>{html.escape(title)}</h3>", _md_to_html_table(tbl)]
            if note:
                body.append(f"<p class='meta'>{html.escape(note)}</p>")
    body += ["<h2>Time</h2>", _md_to_html_table(timing)]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(bench.title())}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    (out_dir / "report.html").write_text(page)
    (out_dir / "results.json").write_text(json.dumps(_json_safe(bench.to_dict()), indent=2))
    per_user = _write_per_user(bench, out_dir / "per_user.parquet")
    return {
        "md": out_dir / "report.md",
        "html": out_dir / "report.html",
        "json": out_dir / "results.json",
        "per_user": per_user,
    }


def _popularity(bench: BenchmarkResult) -> np.ndarray:
    """Training events per item index; without them (a hand-built result) item exposure stands in."""
    if bench.train_popularity is not None:
        return bench.train_popularity
    n = max(int(r.ranked.max(initial=0)) for r in bench.results) if bench.results else 0
    return np.bincount(np.concatenate([r.ranked.ravel() for r in bench.results]), minlength=n + 1)


def _write_per_user(bench: BenchmarkResult, path: Path) -> Path:
    import polars as pl

    frames = []
    for r in bench.results:
        cols: dict[str, Any] = {
            "model": [r.model] * len(r.users),
            "user_idx": r.users.astype(np.int64),
            "user_id": (
                list(bench.user_ids)
                if bench.user_ids is not None and len(bench.user_ids) == len(r.users)
                else [""] * len(r.users)
            ),
            "target_bucket": [BUCKETS[b] for b in r.target_bucket],
            "history_length": r.history_length.astype(np.int64),
        }
        cols.update({m: v.astype(np.float64) for m, v in r.per_user.items()})
        frames.append(pl.DataFrame(cols))
    if frames:
        pl.concat(frames, how="diagonal").write_parquet(path)
    return path
