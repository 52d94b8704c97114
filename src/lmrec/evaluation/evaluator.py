"""Score a fitted model on an :class:`~lmrec.data.splits.EvalSet`: full ranking by default, sampled when
asked.

Full ranking ranks every item of the catalogue for every user, with the items of the user's history removed
(they are known, not predictions). It is the default because sampled ranking (the target among, say, 100
random negatives) inflates numbers several-fold and can even reorder models (Krichene & Rendle, "On Sampled
Metrics for Item Recommendation", KDD 2020). Sampled ranking is available by name and is labelled "sampled (N
negatives)" everywhere it is reported.

Users are processed in chunks whose dense score block is bounded (see
:func:`lmrec.models.base.default_batch_size`), so memory does not grow with the number of users.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.exposure import ExposurePolicy, ItemGroups, popularity_buckets, rerank_rows
from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.data.splits import EvalSet
from lmrec.evaluation import metrics as M
from lmrec.evaluation.stats import Interval, bootstrap_ci
from lmrec.models.base import NEG_INF, Recommender, default_batch_size, topk

RANKING_METRICS = ("HR", "Recall", "Precision", "NDCG", "MRR", "MAP")
BUCKETS = ("head", "torso", "tail")


@dataclass(frozen=True)
class Ranking:
    """How candidates are ranked: ``full`` (the whole catalogue) or ``sampled`` (targets + negatives)."""

    mode: str = "full"
    n_negatives: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("full", "sampled"):
            raise ValueError(f"ranking must be 'full' or 'sampled', got {self.mode!r}")
        if self.mode == "sampled" and self.n_negatives < 1:
            raise ValueError("sampled ranking needs n_negatives >= 1")

    @property
    def label(self) -> str:
        """The label every table and report carries."""
        return "full ranking" if self.mode == "full" else f"sampled ({self.n_negatives} negatives)"

    @classmethod
    def parse(cls, spec: str | Ranking, seed: int = 0) -> Ranking:
        """``"full"``, ``"sampled"`` (100 negatives) or ``"sampled-500"``."""
        if isinstance(spec, Ranking):
            return spec
        if spec == "full":
            return cls("full", seed=seed)
        if spec.startswith("sampled"):
            n = spec.removeprefix("sampled").lstrip("-:") or "100"
            return cls("sampled", int(n), seed)
        raise ValueError(f"unknown ranking {spec!r}: use 'full' or 'sampled' / 'sampled-N'")


@dataclass
class EvalResult:
    """Per-user results of one model on one evaluation set."""

    model: str
    ranking: str  # label, e.g. "full ranking" or "sampled (100 negatives)"
    ks: tuple[int, ...]
    users: np.ndarray  # (n,) user indices
    per_user: dict[str, np.ndarray]  # "NDCG@10" -> (n,) values
    aggregate: dict[str, float]  # catalogue-level numbers (coverage, Gini) that have no per-user value
    ranked: np.ndarray  # (n, max K) recommended item indices (0 = padding)
    target_bucket: np.ndarray  # (n,) 0/1/2 head/torso/tail bucket of the user's first target
    history_length: np.ndarray  # (n,)
    seconds: float
    hits: np.ndarray  # (n, max K) bool: is the item at each rank a target
    n_targets: np.ndarray  # (n,)
    fit_seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def curve(self, metric: str = "NDCG") -> np.ndarray:
        """Mean of a ranking metric at every cut-off ``1..max K`` (for metric-vs-K plots)."""
        fns = {
            "HR": lambda k: M.hit_rate(self.hits, k),
            "Recall": lambda k: M.recall(self.hits, self.n_targets, k),
            "Precision": lambda k: M.precision(self.hits, k),
            "NDCG": lambda k: M.ndcg(self.hits, self.n_targets, k),
            "MRR": lambda k: M.reciprocal_rank(self.hits, k),
            "MAP": lambda k: M.average_precision(self.hits, self.n_targets, k),
        }
        return np.array(
            [
                float(fns[metric](k).mean()) if len(self.hits) else np.nan
                for k in range(1, self.hits.shape[1] + 1)
            ]
        )

    def mean(self, metric: str) -> float:
        if metric in self.aggregate:
            return self.aggregate[metric]
        return float(np.nanmean(self.per_user[metric])) if len(self.users) else float("nan")

    def summary(self, n_boot: int = 1000, seed: int = 0) -> dict[str, Interval]:
        """Mean and bootstrap 95% CI of every per-user metric; catalogue metrics have no interval."""
        out = {m: bootstrap_ci(v, n_boot=n_boot, seed=seed) for m, v in self.per_user.items()}
        out.update({m: Interval(v, v, v) for m, v in self.aggregate.items()})
        return out

    def by_group(
        self, metric: str, groups: np.ndarray, labels: Sequence[str]
    ) -> dict[str, tuple[float, int]]:
        """Mean of ``metric`` and user count for each group label (groups hold indices into ``labels``)."""
        v = self.per_user[metric]
        return {
            lab: (
                float(np.nanmean(v[groups == g])) if (groups == g).any() else float("nan"),
                int((groups == g).sum()),
            )
            for g, lab in enumerate(labels)
        }

    def history_groups(self) -> tuple[np.ndarray, list[str]]:
        """Short (≤ median length) vs long history, with the median in the labels."""
        med = float(np.median(self.history_length)) if len(self.history_length) else 0.0
        return (self.history_length > med).astype(np.int8), [f"short (≤{med:.0f})", f"long (>{med:.0f})"]


def _sample_negatives(eval_set: EvalSet, n_items: int, n: int, seed: int) -> np.ndarray:
    """``(users, n)`` items drawn uniformly from the catalogue, none in the user's history or targets.

    One generator for the whole set, in user order, so every model sees the same negatives for the same seed.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((len(eval_set), n), dtype=np.int64)
    for r in range(len(eval_set)):
        seen = np.union1d(eval_set.history[r], eval_set.targets[r])
        available = n_items - int(((seen > 0) & (seen <= n_items)).sum())
        if available < n:
            raise ValueError(f"user row {r} has only {available} unseen items, fewer than {n} negatives")
        picked: np.ndarray = np.zeros(0, dtype=np.int64)
        while len(picked) < n:
            draw = rng.integers(1, n_items + 1, size=2 * (n - len(picked)) + 8)
            draw = draw[~np.isin(draw, seen)]
            picked = np.concatenate([picked, draw[~np.isin(draw, picked)]])
            _, first = np.unique(picked, return_index=True)
            picked = picked[np.sort(first)]
        out[r] = picked[:n]
    return out


def _rank_sampled(
    model: Recommender, h: Ragged, u: np.ndarray, targets: Ragged, negatives: np.ndarray, k: int
) -> np.ndarray:
    """Top-``k`` items among each row's targets + negatives. Negatives come first in the candidate list and
    ties go to the lower position, so a target tied with a negative ranks below it (pessimistic)."""
    n_t = int(targets.lengths.max(initial=0))
    cand = np.concatenate([negatives, np.zeros((len(h), n_t), dtype=np.int64)], axis=1)
    t_rows, t_pos = (
        targets.row_ids(),
        np.arange(len(targets.values)) - np.repeat(targets.offsets[:-1], targets.lengths),
    )
    cand[t_rows, negatives.shape[1] + t_pos] = targets.values
    scores = model._scores_with_fallback(h, u)
    cs = np.take_along_axis(scores, cand, axis=1)
    cs[cand == PAD] = NEG_INF
    idx, _ = topk(cs, k)
    return np.take_along_axis(cand, idx, axis=1)


def evaluate(
    model: Recommender,
    eval_set: EvalSet,
    train: Dataset,
    ks: Sequence[int] = (5, 10, 20),
    *,
    ranking: str | Ranking = "full",
    seed: int = 0,
    item_vectors: np.ndarray | None = None,
    batch_size: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    name: str | None = None,
    exposure: ExposurePolicy | None = None,
    item_groups: ItemGroups | None = None,
) -> EvalResult:
    """Evaluate a fitted ``model`` on ``eval_set`` (validation or test).

    Parameters
    ----------
    model:
        A fitted recommender; only its public interface (``recommend_indices`` and the popularity fallback)
        is used.
    eval_set:
        Users, their histories (the model's input, removed from the ranking) and targets.
    train:
        The training dataset: item popularity for beyond-accuracy metrics and head/torso/tail buckets.
    ks:
        Cut-offs; ranking metrics are computed at each.
    ranking:
        ``"full"`` (default) or ``"sampled"`` / ``"sampled-N"`` / a :class:`Ranking`.
    item_vectors:
        ``(n_items + 1, d)`` text vectors for intra-list diversity (omitted when ``None``).
    on_progress:
        Called with the number of users done after each chunk.
    exposure:
        Re-rank each list with :func:`lmrec.data.exposure.rerank` (a cap per item group of ``item_groups``,
        a minimum long-tail share by training popularity) over the model's top ``exposure.pool × max K``
        candidates, so its accuracy cost is measured with the same code batch and served lists use.

    Returns
    -------
    EvalResult
        Per-user metrics ``"{HR,Recall,Precision,NDCG,MRR,MAP}@K"``; per-user beyond-accuracy metrics at the
        largest cut-off ≤ 10 (``"ARP@K"``, ``"Novelty@K"``, ``"Tail@K"``, ``"ILD@K"``); catalogue metrics
        ``"Coverage@K"`` and ``"Gini@K"`` for every K.
    """
    rk = Ranking.parse(ranking, seed=seed)
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    max_k = ks[-1]
    n_items = model.n_items
    n = len(eval_set)
    t0 = time.perf_counter()
    ranked = np.zeros((n, max_k), dtype=np.int64)
    bs = batch_size or default_batch_size(n_items + 1)
    negatives = (
        _sample_negatives(eval_set, n_items, rk.n_negatives, rk.seed) if rk.mode == "sampled" else None
    )
    policy = exposure if exposure is not None and exposure.active else None
    n_fetch = policy.candidates(max_k) if policy is not None else max_k
    tail = popularity_buckets(_aligned(train.item_popularity, n_items + 1)) == 2
    if policy is not None and policy.max_group_share < 1.0 and item_groups is None:
        raise ValueError("a cap per item group needs the item groups (item_groups=)")
    for start in range(0, n, bs):
        rows = np.arange(start, min(start + bs, n))
        h, u = eval_set.history.take(rows), eval_set.users[rows]
        if negatives is None:
            cand, _ = model.recommend_indices(h, u, n_fetch, exclude_seen=True, batch_size=bs)
        else:
            cand = _rank_sampled(model, h, u, eval_set.targets.take(rows), negatives[rows], n_fetch)
        if policy is not None:
            cand, _ = rerank_rows(cand, None, max_k, policy, item_groups, tail)
        ranked[rows] = cand[:, :max_k]
        if on_progress is not None:
            on_progress(len(rows))
    seconds = time.perf_counter() - t0

    hits, n_targets = M.hit_matrix(ranked, eval_set.targets)
    per_user: dict[str, np.ndarray] = {}
    aggregate: dict[str, float] = {}
    for k in ks:
        per_user[f"HR@{k}"] = M.hit_rate(hits, k)
        per_user[f"Recall@{k}"] = M.recall(hits, n_targets, k)
        per_user[f"Precision@{k}"] = M.precision(hits, k)
        per_user[f"NDCG@{k}"] = M.ndcg(hits, n_targets, k)
        per_user[f"MRR@{k}"] = M.reciprocal_rank(hits, k)
        per_user[f"MAP@{k}"] = M.average_precision(hits, n_targets, k)
        aggregate[f"Coverage@{k}"] = M.catalogue_coverage(ranked[:, :k], n_items)
        aggregate[f"Gini@{k}"] = M.gini_index(ranked[:, :k], n_items)
    bk = beyond_k(ks)
    pop = _aligned(train.item_popularity, n_items + 1)
    buckets = popularity_buckets(pop)
    n_users_train = max(1, int((train.sequences.lengths > 0).sum()))
    top = ranked[:, :bk]
    per_user[f"ARP@{bk}"] = M.average_popularity(top, pop)
    per_user[f"Novelty@{bk}"] = M.novelty(top, pop, n_users_train)
    per_user[f"Tail@{bk}"] = M.tail_share(top, buckets == 2)
    if item_vectors is not None:
        per_user[f"ILD@{bk}"] = M.intra_list_diversity(top, _aligned_rows(item_vectors, n_items + 1))

    first_target = np.zeros(n, dtype=np.int64)
    has_target = eval_set.targets.lengths > 0
    first_target[has_target] = eval_set.targets.values[eval_set.targets.offsets[:-1][has_target]]
    return EvalResult(
        model=name or model.name,
        ranking=rk.label,
        ks=ks,
        users=np.asarray(eval_set.users),
        per_user=per_user,
        aggregate=aggregate,
        ranked=ranked,
        target_bucket=buckets[first_target],
        history_length=eval_set.history.lengths.copy(),
        seconds=seconds,
        hits=hits,
        n_targets=n_targets,
        config=_config_dict(model) | ({"_exposure": policy.describe()} if policy is not None else {}),
    )


def beyond_k(ks: Sequence[int]) -> int:
    """The cut-off for per-user beyond-accuracy metrics: the largest K ≤ 10, else the smallest K."""
    small = [k for k in ks if k <= 10]
    return max(small) if small else min(ks)


def _aligned(a: np.ndarray, size: int) -> np.ndarray:
    a = np.asarray(a)
    if len(a) >= size:
        return a[:size]
    return np.concatenate([a, np.zeros(size - len(a), dtype=a.dtype)])


def _aligned_rows(v: np.ndarray, size: int) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    if len(v) >= size:
        return v[:size]
    return np.concatenate([v, np.zeros((size - len(v), v.shape[1]), dtype=np.float32)])


def _config_dict(model: Recommender) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    return asdict(model.config) if is_dataclass(model.config) else {}
