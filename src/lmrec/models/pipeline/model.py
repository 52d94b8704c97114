"""Pipeline: retrieve with several models, rank their merged candidates with a learned ranker.

The learned generalisation of :class:`~lmrec.models.auto.Auto`'s blend: where Auto fits one weight per
component, the pipeline trains LightGBM LambdaRank on each candidate's features (every retriever's score and
rank, the language-model match, item, user and category side features; :mod:`.features`).

Fitting (the same protocol as Auto):

* **With a validation set** (a split's ``valid``): the retrievers are fitted on the training events (SeqRec
  early-stopped on validation, as Auto does), and the ranker learns from the validation targets: each
  validation user's merged candidates, the target positive, the other candidates negative (sampled:
  unlabelled). Its number of trees is early-stopped on a held-out share of those users.
* **Without one** (``protocol none``, for serving): each user's last training event (users with at least 3
  events) is held out with Auto's inner split; the retrievers are fitted on the rest, the ranker learns from
  the held-out events, then (``refit``) the retrievers are fitted again on every event (SeqRec for its best
  inner epoch count). In this path the held-out user's explicit negative feedback (``dislike``, ``skip``,
  ``remove_from_cart``: :data:`~lmrec.data.schema.NEGATIVE_EVENT_TYPES`) and impressions without a click
  (``impression`` events) within ``negative_window`` seconds before the held-out event are added to the
  candidates as negatives; a held-out event that is itself negative labels its item negative.

Labels never come from data the model is not given: the fit sees the training part of the split only, and
every feature is computed from the fitting data and the history (tests/models/test_pipeline.py proves it).

Scores: each candidate gets the ranker's score (ties broken by the retrievers' mean z-score); every other
item scores below every candidate, in the order of that mean z-score, so filters and long lists still fill.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.schema import IMPRESSION, NEGATIVE_EVENT_TYPES, PAD
from lmrec.data.splits import EvalSet, leave_one_out
from lmrec.models.auto import Auto, normalise_rows, text_is_informative
from lmrec.models.base import Recommender, create_model, load_model, register, scores_for_items
from lmrec.models.capabilities import ColdStartItems, PredictionHeads, RankingReasons
from lmrec.models.pipeline import features as F
from lmrec.models.pipeline.ranker import GRIDS, RANKERS, grid_points, select
from lmrec.models.pipeline.retrievers import (
    AUTO_FITTED,
    MODEL_RETRIEVERS,
    CategoryIndex,
    parse_retrievers,
    static_order,
    top_candidates,
    trending_counts,
)

PIPELINE_FILE = "pipeline.json"
RANKER_FILE = "ranker.txt"
COMPONENTS_DIR = "components"
#: Rows scored at once.
BATCH = 256
#: Retrievers whose scores are the same for every history: one cached row, z-scores and order serve all.
ROW_INDEPENDENT = ("popular", "trending")


@dataclass(frozen=True)
class PipelineConfig:
    #: ``auto`` or a comma-separated list among seqrec, ease, itemknn, als, multitask, content-lm, popular,
    #: trending, categories. ``auto``: SeqRec, EASE (catalogues up to ``ease_max_items``), ItemKNN, ALS,
    #: ContentLM (with informative item text), popular, trending, and categories (when items have categories).
    retrievers: str = "auto"
    #: Items each retriever proposes (its top N unseen items); the candidates are their union.
    candidates: int = 100
    #: Feature groups the ranker reads: behaviour, lm, side (comma-separated; behaviour is required).
    features: str = "behaviour,lm,side"
    #: The ranker (see :data:`~lmrec.models.pipeline.ranker.RANKERS`) and overrides of its settings.
    ranker: str = "lightgbm"
    ranker_params: dict[str, Any] = field(default_factory=dict)
    #: Select the ranker's capacity from its fixed grid (:data:`~lmrec.models.pipeline.ranker.GRIDS`) by
    #: NDCG@10 on the held-out label users; keys given in ``ranker_params`` are fixed, not searched.
    ranker_search: bool = True
    #: Text: ``auto`` (SeqRec fused and ContentLM when the text is informative), ``on`` or ``off``.
    text: str = "auto"
    #: Label users the ranker learns from (a seeded sample above this).
    label_users: int = 20_000
    #: Candidates per label user kept for training: every positive and hard negative, and the others sampled
    #: uniformly (seeded) up to this many.
    train_candidates: int = 300
    #: Share of the label users held out to early-stop the ranker.
    heldout_share: float = 0.2
    #: Seconds before a held-out event in which negative feedback and impressions count as its negatives.
    negative_window: float = 3600.0
    #: Without a validation set: fit the retrievers again on every event after training the ranker.
    refit: bool = True
    ease_max_items: int = 20_000
    seed: int = 0
    #: SeqRec's training budget in seconds (0: none).
    time_budget: float = 0.0
    progress: bool = False
    #: Overrides of SeqRec's settings (on top of Auto's SeqRec defaults).
    seqrec: dict[str, Any] = field(default_factory=dict)
    #: Settings of the ``multitask`` retriever (its heads' outputs are features too).
    multitask: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parse_retrievers(self.retrievers)
        F.parse_groups(self.features)
        if self.ranker not in RANKERS:
            raise ValueError(f"ranker must be one of {', '.join(RANKERS)}, got {self.ranker!r}")
        if self.text not in ("auto", "on", "off"):
            raise ValueError(f"text must be auto, on or off, got {self.text!r}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {self.candidates}")
        if not 0 <= self.heldout_share < 1:
            raise ValueError(f"heldout_share must be in [0, 1), got {self.heldout_share}")


@register("pipeline")
class Pipeline(Recommender, ColdStartItems, RankingReasons):
    """Retrieve and rank: several retrievers propose candidates, LightGBM LambdaRank orders them."""

    Config = PipelineConfig
    fast_config = {"retrievers": "itemknn,ease,content-lm,popular,categories", "candidates": 10,
                   "ranker_params": {"num_boost_round": 30, "min_data_in_leaf": 5}}

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.retrievers_: dict[str, Recommender] = {}
        self.names_: list[str] = []
        self.side_: F.SideData | None = None
        self.ranker_: Any = None
        self.columns_: list[int] = []
        self.feature_names_: list[tuple[str, str]] = []
        self.search_: dict[str, Any] = {}
        self.plan_: dict[str, dict[str, Any]] = {}
        self._train: dict[str, Any] | None = None  # the ranker's training rows, in memory only (ablations)
        self._cats: tuple[Any, CategoryIndex] | None = None
        #: popular and trending score every row alike: their row, z-scores and order, computed once
        self._static: dict[str, tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = {}

    @property  # type: ignore[override]
    def needs_item_vectors(self) -> bool:
        return self.config.text != "off"

    # ------------------------------------------------------------------ fitting
    def _names(self, dataset: Dataset) -> list[str]:
        cfg: PipelineConfig = self.config
        names = parse_retrievers(cfg.retrievers)
        text = cfg.text == "on" or (cfg.text == "auto" and text_is_informative(self.item_vectors_))
        if names is None:
            names = ["seqrec"]
            if dataset.n_items <= cfg.ease_max_items:
                names.append("ease")
            names += ["itemknn", "als"]
            if text:
                names.append("content-lm")
            names += ["popular", "trending"]
            if any(self.item_categories_ or []):
                names.append("categories")
        if "content-lm" in names and self.item_vectors_ is None:
            raise ValueError("pipeline: the content-lm retriever needs item vectors (text='off' was given)")
        return names

    def _auto_helper(self) -> Auto:
        """An Auto whose component machinery (plan, settings, bounded early stopping) fits the retrievers."""
        cfg: PipelineConfig = self.config
        helper = Auto(components=",".join(n for n in self.names_ if n in AUTO_FITTED) or "itemknn",
                      text=cfg.text, ease_max_items=cfg.ease_max_items, seed=cfg.seed,
                      time_budget=cfg.time_budget, progress=cfg.progress, seqrec=dict(cfg.seqrec))
        helper.item_vectors_, helper.text_space_ = self.item_vectors_, self.text_space_
        return helper

    def _fit_retrievers(self, data: Dataset, valid: Any, plan: dict[str, dict[str, Any]] | None,
                        timings: dict[str, float]) -> dict[str, Recommender]:
        cfg: PipelineConfig = self.config
        out: dict[str, Recommender] = {}
        helper = self._auto_helper()
        if plan is None:
            plan = helper._plan(data) if any(n in AUTO_FITTED for n in self.names_) else {}
            plan = {n: s for n, s in plan.items() if n in self.names_}
            if "als" in self.names_:
                plan["als"] = {"seed": cfg.seed}
            if "multitask" in self.names_:
                plan["multitask"] = {"seed": cfg.seed, **dict(cfg.multitask)}
        auto_plan = {n: s for n, s in plan.items() if n in AUTO_FITTED}
        if auto_plan:
            out.update(helper._fit_components(auto_plan, data, valid, timings))
            self.search_.update({k: v for k, v in helper.search_.items() if k == "early_stopping_users"})
        for name, settings in plan.items():
            if name not in AUTO_FITTED:
                t0 = time.perf_counter()
                model = create_model(MODEL_RETRIEVERS[name], **settings)
                vec = self.item_vectors_ if model.needs_item_vectors else None
                model.fit(data, item_vectors=vec, vectors_meta=self.text_space_ if vec is not None else None)
                out[name] = model
                timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 2)
        self.plan_ = plan
        return out

    def _use_data(self, data: Dataset) -> None:
        """The side data that features and simple retrievers read: from the retrievers' fitting events (and a
        multi-task retriever's head outputs)."""
        self.side_ = F.SideData.from_dataset(data, trending_counts(data))
        for m in self.retrievers_.values():
            if isinstance(m, PredictionHeads):
                self.side_.add_heads(m, data.user_map.size)
                break

    def _fit(self, dataset: Dataset, valid: Any = None) -> None:
        cfg: PipelineConfig = self.config
        self.names_ = self._names(dataset)
        self.search_ = {"retrievers": list(self.names_)}
        timings: dict[str, float] = {}
        extra: Ragged | None = None
        inner = None
        if valid is not None and len(valid):
            self.retrievers_ = self._fit_retrievers(dataset, valid, None, timings)
            self._use_data(dataset)
            labels = valid
            self.search_["labels"] = "validation targets; retrievers fitted on the training events"
        else:
            if not (dataset.sequences.lengths >= 3).any():
                raise ValueError("pipeline: no user has the 3 events needed to hold one out for the ranker's "
                                 "labels; give a validation set")
            inner = leave_one_out(dataset)
            self.retrievers_ = self._fit_retrievers(inner.train_valid, inner.test, None, timings)
            self._use_data(inner.train_valid)
            labels, extra = held_out_labels(dataset, inner.test, cfg.negative_window)
            self.search_["labels"] = ("each user's last training event (retrievers fitted on the events "
                                      "before it)")
        self.feature_names_ = F.feature_names(self.names_, self.side_)  # type: ignore[arg-type]
        groups = F.parse_groups(cfg.features)
        self.columns_ = [i for i, (_, g) in enumerate(self.feature_names_) if g in groups]
        t0 = time.perf_counter()
        self._train_ranker(labels, extra)
        timings["ranker"] = round(time.perf_counter() - t0, 2)
        if inner is not None and cfg.refit:
            plan = dict(self.plan_)
            sr = self.retrievers_.get("seqrec")
            tr = getattr(sr, "train_result_", None)
            if "seqrec" in plan and tr is not None and tr.best_epoch > 0:
                plan["seqrec"] = {**plan["seqrec"], "epochs": int(tr.best_epoch)}
            self.retrievers_ = self._fit_retrievers(dataset, None, plan, timings)
            self._use_data(dataset)
            self.search_["labels"] += "; retrievers then refitted on every event"
        self.search_["fit_seconds"] = timings
        self.search_["settings"] = self.plan_

    def _label_rows(self, labels: EvalSet, extra: Ragged | None) -> dict[str, Any]:
        """Candidates, features and relevance of the label users (batched); per-retriever recall."""
        cfg: PipelineConfig = self.config
        rng = np.random.default_rng(cfg.seed)
        rows = np.arange(len(labels))
        if len(rows) > cfg.label_users:
            rows = np.sort(rng.choice(len(rows), cfg.label_users, replace=False))
        xs, ys, sizes = [], [], []
        hits = {n: 0.0 for n in [*self.names_, "merged"]}
        n_rows = 0
        for start in range(0, len(rows), BATCH):
            r = rows[start : start + BATCH]
            hist, users, targets = labels.history.take(r), labels.users[r], labels.targets.take(r)
            ex = extra.take(r) if extra is not None else None
            cand, ok, x, tops, _ = self._frame(hist, users, ex)
            rel = _member(cand, targets) & ok
            has_t = targets.lengths > 0
            n_t = np.maximum(targets.lengths, 1)
            n_rows += int(has_t.sum())
            for name, top in tops.items():
                hits[name] += float((_member(top, targets).sum(axis=1) / n_t)[has_t].sum())
            hits["merged"] += float((rel.sum(axis=1) / n_t)[has_t].sum())
            hard = _member(cand, ex) if ex is not None else np.zeros_like(ok)
            for i in range(len(r)):
                keep = ok[i]
                if not rel[i].any() or rel[i].sum() == keep.sum():
                    continue
                # Every positive and hard negative, and the other candidates sampled uniformly: a choice that
                # looked at their ranks would teach the ranker that a candidate deep in every list is often
                # the positive (the positives are kept wherever they rank).
                must = np.flatnonzero(keep & (rel[i] | hard[i]))
                rest = np.flatnonzero(keep & ~(rel[i] | hard[i]))
                room = max(0, cfg.train_candidates - len(must))
                if len(rest) > room:
                    rest = rng.choice(rest, size=room, replace=False)
                # in a random order: rows sorted by label would let tied scores rank positives first, which
                # flatters the early-stopping metric of the first rounds
                order = rng.permutation(np.concatenate([must, rest]))
                xs.append(x[i, order])
                ys.append(rel[i, order].astype(np.float32))
                sizes.append(len(order))
        recall = {n: round(h / max(n_rows, 1), 4) for n, h in hits.items()}
        return {"x": np.concatenate(xs) if xs else np.zeros((0, len(self.feature_names_)), np.float32),
                "y": np.concatenate(ys) if ys else np.zeros(0, np.float32),
                "sizes": np.asarray(sizes, dtype=np.int64), "recall": recall, "label_users": len(rows)}

    def _train_ranker(self, labels: EvalSet, extra: Ragged | None) -> None:
        cfg: PipelineConfig = self.config
        data = self._label_rows(labels, extra)
        self._train = data
        self.search_["candidates_per_retriever"] = cfg.candidates
        self.search_["label_users"] = data["label_users"]
        self.search_["recall"] = data["recall"]
        self.search_["ranker_groups"] = len(data["sizes"])
        self.ranker_ = self._fit_ranker(data, self.columns_)

    def _fit_ranker(self, data: dict[str, Any], columns: list[int],
                    params: dict[str, Any] | None = None) -> Any:
        """The ranker on the label rows' ``columns``: one per point of the ranker's grid (or with ``params``
        only), trees early-stopped on a held-out share of the label users, the point with the best held-out
        NDCG@10 kept; the choice and every point's score go to ``search_["ranker"]``."""
        cfg: PipelineConfig = self.config
        sizes = data["sizes"]
        if not len(sizes):
            raise ValueError("pipeline: no label user has a positive among the candidates; raise candidates")
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        order = np.random.default_rng(cfg.seed + 1).permutation(len(sizes))
        n_out = int(round(cfg.heldout_share * len(sizes))) if len(sizes) >= 10 else 0
        out_g, in_g = np.sort(order[:n_out]), np.sort(order[n_out:])

        def rows_of(g: np.ndarray) -> np.ndarray:
            if not len(g):
                return np.zeros(0, dtype=np.int64)
            return np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in g])

        tr, va = rows_of(in_g), rows_of(out_g)
        x = data["x"][:, columns]
        build, _ = RANKERS[cfg.ranker]
        fixed = dict(cfg.ranker_params)
        if params is not None:
            points = [dict(params)]
        elif cfg.ranker_search:
            points = grid_points(GRIDS.get(cfg.ranker, ()), fixed)
        else:
            points = [{}]
        heldout = (x[va], data["y"][va], sizes[out_g]) if len(va) else None
        ranker, summary = select(build, points, fixed, cfg.seed, [self.feature_names_[c][0] for c in columns],
                                 (x[tr], data["y"][tr], sizes[in_g]), heldout)
        self.search_["ranker"] = {"name": cfg.ranker, "train_groups": len(in_g), "heldout_groups": len(out_g),
                                  **summary}
        return ranker

    def with_features(self, groups: str, select: bool = False) -> Pipeline:
        """A copy whose ranker is trained again on the same label rows with only these feature groups (the
        ablation; the retrievers are shared). Only right after ``fit`` (the rows are not saved). The ranker
        keeps the settings this fit selected, or (``select``) selects its own from the grid."""
        if self._train is None:
            raise ValueError("with_features needs the training rows of a fit in this process")
        other = copy.copy(self)
        other.config = replace(self.config, features=groups)
        wanted = F.parse_groups(groups)
        other.columns_ = [i for i, (_, g) in enumerate(self.feature_names_) if g in wanted]
        other.search_ = dict(self.search_)
        chosen = None if select else self.search_.get("ranker", {}).get("params")
        other.ranker_ = other._fit_ranker(self._train, other.columns_, chosen)
        return other

    # ------------------------------------------------------------------ scoring
    def _cat_index(self) -> CategoryIndex:
        assert self.item_categories_ is not None
        key = (id(self.item_categories_), len(self.item_categories_))
        if self._cats is None or self._cats[0] != key:
            self._cats = (key, CategoryIndex(self.item_categories_))
        return self._cats[1]

    def _static_row(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The row of scores of ``popular`` or ``trending`` (the same for every history), its z-scores and
        its items best first; recomputed when the catalogue or the side data change."""
        assert self.side_ is not None
        counts = self.side_.popularity if name == "popular" else self.side_.trending
        width = self.n_items + 1
        got = self._static.get(name)
        if got is None or got[0][0] is not counts or got[0][1] != width:  # the array itself: never a stale id
            key = (counts, width)
            s = np.broadcast_to(np.log1p(counts), (1, width)).astype(np.float32)
            s[:, PAD] = -np.inf
            z = normalise_rows(s)[0]
            got = (key, s, z, static_order(np.where(np.arange(width) == PAD, -np.inf, z[0])))
            self._static[name] = got
        return got[1], got[2], got[3]

    def _retriever_scores(self, hist: Ragged, users: np.ndarray,
                          prof: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each retriever's scores ``(rows, n_items + 1)`` (popular, trending: one row, broadcast)."""
        assert self.side_ is not None
        width = self.n_items + 1
        self.side_.grow(width)
        out: dict[str, np.ndarray] = {}
        for name in self.names_:
            if name in self.retrievers_:
                s = np.asarray(self.retrievers_[name].score(hist, users), dtype=np.float32)
            elif name in ROW_INDEPENDENT:
                out[name] = np.broadcast_to(self._static_row(name)[0], (len(hist), width))
                continue
            elif name == "categories":
                s = self._cat_index().scores(hist, self.side_.popularity, prof)
            else:  # pragma: no cover - guarded by _names
                raise ValueError(f"unknown retriever {name}")
            s = s.astype(np.float32, copy=False)
            s[:, PAD] = -np.inf
            out[name] = s
        return out

    def _normalised(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each retriever's per-row z-scores (popular and trending: their one row, broadcast)."""
        out = {}
        for name, s in raw.items():
            if name in ROW_INDEPENDENT:
                out[name] = np.broadcast_to(self._static_row(name)[1], s.shape)
            else:
                out[name] = normalise_rows(s)[0]
        return out

    def _merge(self, zs: dict[str, np.ndarray], hist: Ragged, extra: Ragged | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """:func:`top_candidates` of the z-scores, popular's and trending's lists read from their cached
        order."""
        orders = {n: self._static_row(n)[2] for n in zs if n in ROW_INDEPENDENT}
        return top_candidates(zs, hist, self.config.candidates, extra, orders)

    def _frame(self, hist: Ragged, users: np.ndarray, extra: Ragged | None = None):  # noqa: ANN202
        """Candidates ``(rows, width)``, which are real, their features ``(rows, width, F)``, each
        retriever's top list and the retrievers' mean z-score ``(rows, n_items + 1)``."""
        assert self.side_ is not None
        cfg: PipelineConfig = self.config
        cats = self._cat_index()
        prof = cats.profile(hist)  # once per request: the categories retriever and the features read it
        raw = self._retriever_scores(hist, users, prof)
        zs = self._normalised(raw)
        mean = None
        for z in zs.values():
            mean = z.astype(np.float32, copy=True) if mean is None else mean + z
        assert mean is not None
        mean /= len(raw)
        cand, ok, ranks, tops = self._merge(zs, hist, extra)
        vec = self.item_vectors_ if self.item_vectors_ is not None and "lm" in F.parse_groups(cfg.features) \
            else None
        x = F.build(self.names_, raw, zs, ranks, cfg.candidates, cand, hist, users, self.side_.popularity,
                    self.side_, cats, vec, prof)
        return cand, ok, x, tops, mean

    def score(self, histories: Ragged, users: np.ndarray | None = None,
              items: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted()
        users_arr = np.zeros(len(histories), dtype=np.int64) if users is None else np.asarray(users, np.int64)
        width = self.n_items + 1
        out = np.empty((len(histories), width), dtype=np.float32)
        for start in range(0, len(histories), BATCH):
            r = np.arange(start, min(start + BATCH, len(histories)))
            out[r] = self._score_rows(histories.take(r), users_arr[r])
        return scores_for_items(out, items)

    def _score_rows(self, hist: Ragged, users: np.ndarray) -> np.ndarray:
        cand, ok, x, _, mean = self._frame(hist, users)
        finite = np.isfinite(mean)
        lo = np.where(finite, mean, np.inf).min(axis=1, keepdims=True)
        hi = np.where(finite, mean, -np.inf).max(axis=1, keepdims=True)
        base = np.where(finite, (mean - lo) / np.maximum(hi - lo, 1e-9), -np.inf).astype(np.float32)
        pred = np.full(cand.shape, -np.inf, dtype=np.float64)
        if ok.any():
            pred[ok] = self.ranker_.predict(x[ok][:, self.columns_])
        out = base.copy()
        rows_with = ok.any(axis=1)
        floor = np.where(ok, pred, np.inf).min(axis=1)
        for i in np.flatnonzero(rows_with):
            row = base[i] + np.float32(floor[i] - 2.0)  # every non-candidate below every candidate
            c = cand[i, ok[i]]
            row[c] = (pred[i, ok[i]] + 1e-4 * base[i, c]).astype(np.float32)
            out[i] = row
        out[:, PAD] = -np.inf
        return out

    # ------------------------------------------------------------------ explanations and recall
    def ranking_reasons(self, histories: Ragged, users: np.ndarray | None, items: np.ndarray,
                        top: int = 3) -> list[list[tuple[str, float]]]:
        """For each row, why the ranker placed ``items[row]`` where it did: the feature groups (a retriever,
        ``lm_cosine``, ``category``, ``popularity``...) with the largest positive contributions
        (LightGBM ``pred_contrib``), best first."""
        self._check_fitted()
        users_arr = np.zeros(len(histories), dtype=np.int64) if users is None else np.asarray(users, np.int64)
        items = np.asarray(items, dtype=np.int64)
        extra = Ragged.from_lists([[int(i)] for i in items])
        cand, ok, x, _, _ = self._frame(histories, users_arr, extra)
        names = [reason_key(self.feature_names_[c][0]) for c in self.columns_]
        out = []
        for i, item in enumerate(items.tolist()):
            pos = np.flatnonzero((cand[i] == item) & ok[i])
            if not len(pos) or not hasattr(self.ranker_, "contributions"):
                out.append([])
                continue
            contrib = self.ranker_.contributions(x[i, pos[:1]][:, self.columns_])[0, :-1]
            agg: dict[str, float] = {}
            for n, v in zip(names, contrib.tolist(), strict=True):
                agg[n] = agg.get(n, 0.0) + float(v)
            ranked = sorted(((n, v) for n, v in agg.items() if v > 0), key=lambda t: -t[1])
            out.append(ranked[:top])
        return out

    def retriever_recall(self, eval_set: EvalSet, max_users: int = 5000) -> dict[str, float]:
        """Recall@``candidates`` of each retriever's list and of the merged candidates on ``eval_set`` (a
        seeded sample of at most ``max_users`` rows): where the ranker's candidates lose targets."""
        self._check_fitted()
        rows = np.arange(len(eval_set))
        if len(rows) > max_users:
            rng = np.random.default_rng(self.config.seed)
            rows = np.sort(rng.choice(len(rows), max_users, replace=False))
        hits = {n: 0.0 for n in [*self.names_, "merged"]}
        n = 0
        for start in range(0, len(rows), BATCH):
            r = rows[start : start + BATCH]
            hist, users, targets = eval_set.history.take(r), eval_set.users[r], eval_set.targets.take(r)
            raw = self._retriever_scores(hist, users)
            zs = self._normalised(raw)
            cand, ok, _, tops = self._merge(zs, hist)
            has_t = targets.lengths > 0
            n_t = np.maximum(targets.lengths, 1)
            n += int(has_t.sum())
            for name, top in tops.items():
                hits[name] += float((_member(top, targets).sum(axis=1) / n_t)[has_t].sum())
            hits["merged"] += float(((_member(cand, targets) & ok).sum(axis=1) / n_t)[has_t].sum())
        return {k: v / max(n, 1) for k, v in hits.items()}

    # ------------------------------------------------------------------ catalogue and users
    def _on_items_added(self, indices: np.ndarray) -> None:
        assert self.item_map is not None and self.item_categories_ is not None
        ids = list(self.item_map.raws(indices))
        cats = [self.item_categories_[int(i)] for i in indices]
        vecs = None if self.item_vectors_ is None else self.item_vectors_[indices]
        for m in self.retrievers_.values():
            m.add_items(ids, cats, vectors=vecs if m.item_vectors_ is not None else None)
        if self.side_ is not None:
            self.side_.grow(self.n_items + 1)

    def set_item_categories(self, indices: np.ndarray, categories: Any) -> None:
        super().set_item_categories(indices, categories)
        for m in self.retrievers_.values():
            m.set_item_categories(indices, categories)

    def _forget_rows(self, rows: np.ndarray, raw_ids: list[str]) -> None:
        for m in self.retrievers_.values():
            m.forget_users(raw_ids)
        if self.side_ is not None and len(rows):
            keep = rows[rows < len(self.side_.user_events)]
            self.side_.user_mix[keep] = np.nan
            self.side_.user_events[keep] = np.nan

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        assert self.side_ is not None
        return {**self.side_.state(), "columns": np.asarray(self.columns_, dtype=np.int64)}

    def _save_extra(self, path: Path) -> None:
        for name, m in self.retrievers_.items():
            m.save(path / COMPONENTS_DIR / name)
        (path / RANKER_FILE).write_text(self.ranker_.to_text())
        assert self.side_ is not None
        (path / PIPELINE_FILE).write_text(json.dumps(
            {"retrievers": self.names_, "fitted": list(self.retrievers_),
             "event_types": self.side_.event_types, "head_names": self.side_.head_names,
             "features": self.feature_names_, "search": self.search_},
            indent=1, default=str))

    def _load_state(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        info = json.loads((path / PIPELINE_FILE).read_text())
        self.names_ = list(info["retrievers"])
        self.retrievers_ = {n: load_model(path / COMPONENTS_DIR / n) for n in info["fitted"]}
        self.side_ = F.SideData.from_state(arrays, tuple(info["event_types"]),
                                           tuple(info.get("head_names", ())))
        self.feature_names_ = [(n, g) for n, g in info["features"]]
        self.columns_ = arrays["columns"].astype(int).tolist()
        self.search_ = info.get("search", {})
        _, load = RANKERS[self.config.ranker]
        names = [self.feature_names_[c][0] for c in self.columns_]
        self.ranker_ = load((path / RANKER_FILE).read_text(), names)

    def __repr__(self) -> str:
        if not self.names_:
            return f"Pipeline({self.config})"
        return f"Pipeline(retrievers={','.join(self.names_)}, ranker={self.config.ranker})"


def reason_key(feature: str) -> str:
    """The reason a feature speaks for: its retriever, or a side group."""
    if ":" in feature and not feature.startswith("user_mix"):
        return feature.split(":", 1)[0]
    return {"item_popularity": "popular", "item_trending": "trending", "category_share": "categories",
            "category_steps_since": "categories", "lm_cosine": "content-lm", "price": "price",
            "price_gap": "price", "item_age_days": "fresh", "item_idle_days": "fresh"}.get(
        feature, "activity" if feature.startswith("user_") or feature == "history_length" else feature)


def _member(cand: np.ndarray, sets: Ragged | None) -> np.ndarray:
    """``out[r, j]``: whether ``cand[r, j]`` is in row ``r`` of ``sets`` (PAD never is)."""
    if sets is None or not len(sets.values):
        return np.zeros(cand.shape, dtype=bool)
    width = np.int64(max(int(cand.max(initial=0)), int(sets.values.max(initial=0))) + 1)
    keys = sets.row_ids().astype(np.int64) * width + sets.values.astype(np.int64)
    ck = np.arange(len(cand), dtype=np.int64)[:, None] * width + cand.astype(np.int64)
    return np.isin(ck, keys) & (cand != PAD)


def held_out_labels(dataset: Dataset, held: EvalSet, window: float) -> tuple[EvalSet, Ragged]:
    """The inner split's labels from ``dataset`` (the training events only): each held-out user's last event
    is positive unless its type is negative feedback or an impression; negative feedback and impressions
    of the user within ``window`` seconds before it are negatives (returned as extra candidates)."""
    cols = ["user_idx", "item_idx", "timestamp", "event_type"]
    ev = dataset.events.select(cols)
    last = ev.group_by("user_idx", maintain_order=True).agg(
        pl.col("timestamp").last().alias("t_last"), pl.col("event_type").last().alias("type_last"))
    negative = set(NEGATIVE_EVENT_TYPES) | {IMPRESSION}
    users = np.asarray(held.users, dtype=np.int64)
    shown = dataset.impressions  # what users were shown, kept apart from their interactions
    if shown is not None and shown.height:
        ev = pl.concat([ev, shown.select(cols).cast(ev.schema)])
    window_ev = (ev.join(last, on="user_idx")
                 .filter(pl.col("timestamp") >= pl.col("t_last") - window)
                 .filter(pl.col("event_type").is_in(sorted(negative))))
    neg_by_user: dict[int, list[int]] = {}
    for u, i in zip(window_ev["user_idx"].to_list(), window_ev["item_idx"].to_list(), strict=True):
        neg_by_user.setdefault(int(u), []).append(int(i))
    bad_last = set(last.filter(pl.col("type_last").is_in(sorted(negative)))["user_idx"].to_list())
    targets, extra = [], []
    for row, u in enumerate(users.tolist()):
        t = held.targets[row]
        if u in bad_last:
            targets.append([])
            extra.append(sorted(set(neg_by_user.get(u, [])) | set(t.tolist())))
        else:
            targets.append(t.tolist())
            extra.append(sorted(set(neg_by_user.get(u, [])) - set(t.tolist())))
    return (EvalSet(held.name, held.users, held.history, Ragged.from_lists(targets)),
            Ragged.from_lists(extra))
