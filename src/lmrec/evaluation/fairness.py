"""Group fairness of an evaluation: accuracy by user group, exposure by item group.

* **Users.** Any column of the user table's ``attributes`` (MovieLens: ``gender``, ``age``, ``occupation``)
  splits the test users into groups; each group gets the main metric's mean with a 95% bootstrap CI over its
  users, and the report gives the gap between the best and the worst group. A numeric attribute with more than
  :data:`MAX_LEVELS` distinct values is cut into quantile buckets (``age`` → four bands with integer edges,
  ``age:6`` for six); users without the attribute form an ``unknown`` group.
* **Items.** Item groups (:class:`~lmrec.data.exposure.ItemGroups`: categories/genres, or an attribute such
  as ``brand``) get their **exposure share** (share of all top-K slots), against their **catalogue share**
  (share of items) and **interaction share** (share of training events). An item in several groups counts
  a fraction to each, so every column sums to 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.exposure import ItemGroups
from lmrec.evaluation.evaluator import EvalResult
from lmrec.evaluation.stats import bootstrap_ci

#: A numeric attribute with more distinct values than this is bucketed.
MAX_LEVELS = 8
#: Quantile buckets of a numeric attribute unless ``name:N`` asks for another count.
DEFAULT_BUCKETS = 4
UNKNOWN = "unknown"


@dataclass(frozen=True)
class UserGroups:
    """Group codes ``(n,)`` (indices into ``labels``) for a list of users, by one attribute."""

    attribute: str
    codes: np.ndarray
    labels: tuple[str, ...]
    bucketed: bool = False


def parse_by(spec: str | Sequence[str] | None) -> list[str]:
    """``"gender,age"`` (or a list) → ``["gender", "age"]``; ``age:6`` keeps its bucket count."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in str(s).split(",")]
    return [s.strip() for s in items if s.strip()]


def user_attribute_values(dataset: Dataset, attribute: str) -> list[Any]:
    """The value of ``attribute`` for every user index (index 0, padding, first), ``None`` where missing."""
    values: list[Any] = [None]
    for text in dataset.users["attributes"].to_list():
        obj = json.loads(text) if text else {}
        values.append(obj.get(attribute) if isinstance(obj, dict) else None)
    return values


def user_groups(dataset: Dataset, spec: str, users: np.ndarray) -> UserGroups:
    """Groups of ``users`` (user indices) by attribute ``spec`` (``name`` or ``name:N`` buckets)."""
    name, _, n_text = spec.partition(":")
    n_buckets = int(n_text) if n_text else DEFAULT_BUCKETS
    if n_buckets < 2:
        raise ValueError(f"{spec!r}: a bucketed attribute needs at least 2 buckets")
    values = user_attribute_values(dataset, name)
    if all(v is None for v in values):
        have = _attribute_keys(dataset)
        raise ValueError(f"no user has an attribute {name!r}; the user table has "
                         f"{', '.join(have) if have else 'no attributes'}")
    vals = [values[int(u)] if 0 <= int(u) < len(values) else None for u in users]
    present = [v for v in vals if v is not None]
    numeric = bool(present) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
    if numeric and (len(set(present)) > MAX_LEVELS or n_text):
        return _buckets(name, vals, n_buckets)
    labels = sorted({str(v) for v in present}, key=lambda s: (_num_key(s), s))
    if any(v is None for v in vals):
        labels.append(UNKNOWN)
    code = {lab: i for i, lab in enumerate(labels)}
    codes = np.array([code[UNKNOWN if v is None else str(v)] for v in vals], dtype=np.int64)
    return UserGroups(name, codes, tuple(labels))


def _num_key(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        return float("inf")


def _buckets(name: str, vals: list[Any], n: int) -> UserGroups:
    """Quantile buckets with integer edges (ties kept together): ``≤24``, ``25–31``, …, ``≥44``."""
    x = np.array([np.nan if v is None else float(v) for v in vals])
    ok = ~np.isnan(x)
    edges = np.unique(np.quantile(x[ok], np.linspace(0, 1, n + 1)[1:-1]).round())  # upper edges, inclusive
    codes = np.searchsorted(edges, x, side="left")  # x <= edge[0] → 0, ...
    lo = [float(np.nanmin(x))] + [e + 1 for e in edges]
    hi = [*edges, float(np.nanmax(x))]
    labels = []
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        if i == 0:
            labels.append(f"≤{b:.0f}")
        elif i == len(lo) - 1:
            labels.append(f"≥{a:.0f}")
        else:
            labels.append(f"{a:.0f}–{b:.0f}" if b > a else f"{a:.0f}")
    codes = np.where(ok, codes, len(labels))
    if (~ok).any():
        labels.append(UNKNOWN)
    return UserGroups(name, codes.astype(np.int64), tuple(labels), bucketed=True)


def _attribute_keys(dataset: Dataset) -> list[str]:
    keys: dict[str, None] = {}
    for text in dataset.users["attributes"].drop_nulls().head(1000).to_list():
        obj = json.loads(text)
        if isinstance(obj, dict):
            keys.update(dict.fromkeys(obj))
    return list(keys)


def by_user_group(result: EvalResult, groups: UserGroups, metric: str, n_boot: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
    """``{"attribute", "metric", "groups": {label: {users, mean, ci_low, ci_high}}, "gap", "best", "worst",
    "ratio"}``: the metric per group (95% bootstrap CI over the group's users) and the best−worst gap over the
    groups that have users (the ``unknown`` group is shown but left out of the gap)."""
    v = result.per_user[metric]
    out: dict[str, dict[str, float]] = {}
    for g, lab in enumerate(groups.labels):
        sel = groups.codes == g
        iv = bootstrap_ci(v[sel], n_boot=n_boot, seed=seed)
        out[lab] = {"users": int(sel.sum()), "mean": iv.mean, "ci_low": iv.low, "ci_high": iv.high}
    ranked = {lab: d["mean"] for lab, d in out.items() if d["users"] > 0 and lab != UNKNOWN}
    best = max(ranked, key=ranked.__getitem__) if ranked else None
    worst = min(ranked, key=ranked.__getitem__) if ranked else None
    gap = ranked[best] - ranked[worst] if best is not None and worst is not None else float("nan")
    ratio = (ranked[worst] / ranked[best] if best is not None and worst is not None and ranked[best] > 0
             else float("nan"))
    return {"attribute": groups.attribute, "metric": metric, "bucketed": groups.bucketed, "groups": out,
            "best": best, "worst": worst, "gap": gap, "ratio": ratio}


def exposure_shares(ranked: np.ndarray, k: int, groups: ItemGroups, popularity: np.ndarray) -> dict[str, Any]:
    """Each item group's share of the top-``k`` slots of ``ranked`` ``(users, ≥k)`` against its share of the
    catalogue and of the training events; plus the total variation distance between exposure and interaction
    shares (half the sum of absolute differences: 0 when exposure follows interactions)."""
    w = groups.padded(max(groups.membership.shape[0], len(popularity))).weights()  # (n_items + 1, G)
    top = np.asarray(ranked)[:, :k].ravel()
    top = top[top > 0]
    slots = np.bincount(top, minlength=w.shape[0]).astype(np.float64)
    in_catalogue = np.zeros(w.shape[0])
    in_catalogue[1:] = 1.0
    pop = np.zeros(w.shape[0])
    pop[: len(popularity)] = np.asarray(popularity, dtype=np.float64)[: w.shape[0]]
    pop[0] = 0.0

    def share(mass: np.ndarray) -> np.ndarray:
        per_group = np.asarray(w.T @ mass).ravel()
        total = per_group.sum()
        return per_group / total if total > 0 else per_group

    exp, cat, inter = share(slots), share(in_catalogue), share(pop)
    rows = {lab: {"exposure": float(exp[j]), "catalogue": float(cat[j]), "interactions": float(inter[j])}
            for j, lab in enumerate(groups.labels)}
    return {"by": groups.by, "k": k, "groups": rows,
            "tv_exposure_vs_interactions": float(0.5 * np.abs(exp - inter).sum()),
            "tv_exposure_vs_catalogue": float(0.5 * np.abs(exp - cat).sum())}


def fairness_report(results: Sequence[EvalResult], dataset: Dataset, popularity: np.ndarray, *,
                    by: Sequence[str] = (), item_groups: ItemGroups | None = None, metric: str = "NDCG@10",
                    k: int = 10, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``{"users": {attribute: {model: by_user_group(...)}}, "items": {model: exposure_shares(...)}}`` for
    every result (all on the same test users)."""
    out: dict[str, Any] = {"metric": metric, "k": k, "users": {}, "items": {}}
    if results:
        for spec in by:
            g = user_groups(dataset, spec, results[0].users)
            out["users"][g.attribute] = {r.model: by_user_group(r, g, metric, n_boot, seed) for r in results}
        if item_groups is not None:
            out["item_groups"] = item_groups.by
            out["items"] = {r.model: exposure_shares(r.ranked, min(k, r.ranked.shape[1]), item_groups,
                                                     popularity) for r in results}
    return out


def fairness_markdown(fair: dict[str, Any], top_groups: int = 0) -> str:
    """The fairness section of a report: per user attribute, one row per model (group means ± CI, gap);
    per model, one row per item group (exposure vs catalogue vs interaction share)."""
    parts: list[str] = []
    metric = fair.get("metric", "NDCG@10")
    for attr, per_model in fair.get("users", {}).items():
        first = next(iter(per_model.values()))
        models = list(per_model)
        head = [attr, "users", *models]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for lab, g in first["groups"].items():
            cells = [_ci(per_model[m]["groups"][lab]) for m in models]
            lines.append("| " + " | ".join([lab, str(g["users"]), *cells]) + " |")
        gaps = [_gap(per_model[m]) for m in models]
        lines.append("| " + " | ".join(["**best − worst**", "", *gaps]) + " |")
        parts.append(f"### {metric} by user {attr}\n\n" + "\n".join(lines)
                     + "\n\nMean ± 95% bootstrap CI half-width over the group's test users.")
    items = fair.get("items", {})
    if items:
        models = list(items)
        first = items[models[0]]
        labels = sorted(first["groups"], key=lambda g: -first["groups"][g]["interactions"])
        if top_groups:
            labels = labels[:top_groups]
        head = ["item group", "catalogue", "interactions", *[f"exposure: {m}" for m in models]]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for lab in labels:
            g = first["groups"][lab]
            lines.append("| " + " | ".join([lab, _pct(g["catalogue"]), _pct(g["interactions"]),
                                            *[_pct(items[m]["groups"][lab]["exposure"]) for m in models]])
                         + " |")
        tv = ["**TV distance to interactions**", "", "",
              *[f"{items[m]['tv_exposure_vs_interactions']:.3f}" for m in models]]
        lines.append("| " + " | ".join(tv) + " |")
        tv_cat = ["**TV distance to catalogue**", "", "",
                  *[f"{items[m]['tv_exposure_vs_catalogue']:.3f}" for m in models]]
        lines.append("| " + " | ".join(tv_cat) + " |")
        title = f"### Exposure share of top-{first['k']} slots by item {first['by']}"
        parts.append(f"{title}\n\n" + "\n".join(lines)
                     + "\n\nShares of all top-K slots, of the catalogue and of training events; an item in "
                       "several groups counts a fraction to each. TV distance: half the summed absolute "
                       "difference between exposure shares and interaction (or catalogue) shares.")
    return "\n\n".join(parts)


def _ci(d: dict[str, float]) -> str:
    if d["users"] == 0 or d["mean"] != d["mean"]:
        return "–"
    return f"{d['mean']:.4f} ± {(d['ci_high'] - d['ci_low']) / 2:.4f}"


def _gap(rep: dict[str, Any]) -> str:
    if rep["best"] is None:
        return "–"
    return f"{rep['gap']:.4f} ({rep['best']} vs {rep['worst']})"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def item_groups_for(dataset: Dataset, by: str | None) -> ItemGroups | None:
    """The item groups of ``dataset`` by ``by`` (``categories`` or an attribute key); ``"auto"`` is
    categories when any item has some, else none; ``None``/``"none"`` is none."""
    if by in (None, "", "none"):
        return None
    if by == "auto":
        cats = dataset.items["categories"]
        has = cats.drop_nulls().list.len().sum() if cats.len() else 0
        return ItemGroups.of_items(dataset.items) if has else None
    return ItemGroups.of_items(dataset.items, by)


__all__ = ["UserGroups", "by_user_group", "exposure_shares", "fairness_markdown", "fairness_report",
           "item_groups_for", "parse_by", "user_attribute_values", "user_groups"]
