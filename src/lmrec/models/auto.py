"""Auto: lmrec's flagship, a blend of SeqRec, EASE (or ItemKNN alone on big catalogues), ItemKNN and ContentLM
whose weights are fitted on validation data.

No single model wins everywhere: on MovieLens SeqRec leads and EASE is weak, on short-history Amazon data EASE
leads and the sequence model trails. Auto fits every component that suits the data, turns each component's
row of scores into z-scores, and chooses the blend weights on the validation users by NDCG@10, so that it
falls back to the best component where the others add nothing and combines them where they do.

The rules, all data-derived or validation-chosen (none fitted to one data set):

* **Components** (``components="auto"``): SeqRec always; EASE when the catalogue has at most
  ``ease_max_items`` items (its dense inverse must fit in memory); ItemKNN always (sparse, any size);
  ContentLM when the items have informative text (:func:`text_is_informative`: most items have a non-zero
  text vector of their own, not one shared text such as an empty title).
* **SeqRec's items**: ``fused`` (ids + text) when the text is informative, ``id`` otherwise.
* **SeqRec's loss**: ``loss="auto"`` (:func:`~lmrec.models.seqrec.model.auto_loss`): the full softmax while
  one batch's logits (batch × window × items, float32) fit in 512 MiB, the log-Q corrected sampled softmax
  beyond (with Auto's batch of 64 windows of at most 50 events: above about 42,000 items).
* **Early stopping** (SeqRec's validation every ``eval_every`` epochs) ranks the whole catalogue for each
  validation user: it uses a seeded sample of at most ``valid_cells`` / items users (never fewer than
  :data:`MIN_STOP_USERS`, never more than ``valid_users``), so that its cost stays bounded on big catalogues
  (on 100,000 items: 2,500 users instead of every user).
* **EASE's λ**: the best of ``ease_lams`` on validation NDCG@10 (EASE alone).
* **Scales**: each component's row is z-scored over its finite scores. A score a component cannot give
  (``-inf``, e.g. EASE on an item added after fitting, or SeqRec-id's untrained items) becomes that row's
  lowest z-score: it neither wins nor poisons the blend. A row a component cannot score at all contributes
  nothing from that component.
* **Weights**: a grid over the simplex (step ``weight_step``) on at most ``valid_users`` validation users
  (a seeded sample), each evaluated by NDCG@10 with the history excluded, on the union of each component's
  top ``candidates`` items plus the targets. Among weightings within ``tie_tolerance`` (relative) of the
  best, the one with the fewest components wins (ties → the simpler blend). Components with weight 0 are
  dropped.
* **No validation set** (``protocol none``, for serving): each user's last training event (users with at least
  3 events) is held out, components are fitted on the rest and the weights chosen on the held-out events, then
  (``refit``) the components that got a weight are fitted again on every event, SeqRec for the number of
  epochs that was best on the held-out events.

The model's ``repr`` and :attr:`search_` (saved as ``auto.json``) report the components, weights, each
component's validation NDCG@10 alone and the best blend without each component (the validation ablation).
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.ranking import first_occurrences, full_ranking_metrics, hit_matrix, mask_items, ndcg, topk
from lmrec.data.schema import PAD
from lmrec.data.splits import leave_one_out
from lmrec.models.base import (
    Recommender,
    create_model,
    load_model,
    register,
    scores_for_items,
    uninformative_text,
)
from lmrec.models.capabilities import (
    CandidateRetrieval,
    ColdStartItems,
    IncrementalUpdates,
    LinearScores,
    SparseScores,
    UpdateReport,
)
from lmrec.models.incremental import UpdateClock, absorb_events

COMPONENTS = ("seqrec", "ease", "itemknn", "content-lm")
#: Scores at or below this are "cannot rank" (SeqRec gives -1e9 to id items it has no trained vector for).
MISSING_BELOW = -1e8
AUTO_FILE = "auto.json"
#: The fewest validation users a component's early stopping is given (when there are that many).
MIN_STOP_USERS = 1000
COMPONENTS_DIR = "components"

#: SeqRec inside Auto: the settings measured in docs/benchmarks.md (section ``seqrec``), with the data-derived
#: ``max_len`` capped at 50 so that a fit stays within minutes on a few CPU cores. The schedule is pinned to
#: the cosine decay over ``epochs`` that the ``auto`` section measured, whatever SeqRec's own default, and so
#: is the weight averaging (none: with SeqRec's ``ema_decay=0.99`` the blend was lower on validation, section
#: ``auto-averaging``, though SeqRec alone was higher), and so is the random id table the sections measured
#: (an id-only SeqRec, ``text="off"``, would otherwise take the spectral start).
SEQREC_DEFAULTS: dict[str, Any] = {
    "max_len": "auto", "max_len_cap": 50, "d_model": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.3,
    "batch_size": 64, "lr": 2e-3, "epochs": 40, "eval_every": 2, "patience": 3, "schedule": "cosine",
    "ema_decay": 0.0, "loss": "auto", "id_init": "random",
}


@dataclass(frozen=True)
class AutoConfig:
    #: ``auto`` (the rules above) or a comma-separated subset of seqrec, ease, itemknn, content-lm.
    components: str = "auto"
    #: Text components: ``auto`` (when the text is informative), ``on`` or ``off`` (no text vectors needed).
    text: str = "auto"
    #: SeqRec's item representation: ``auto`` (fused with informative text, else id), ``id``, ``text`` or
    #: ``fused``.
    seqrec_repr: str = "auto"
    #: Largest catalogue for which EASE is a component (its dense inverse is O(n²) memory, O(n³) time).
    ease_max_items: int = 20_000
    #: EASE's λ, chosen on validation among these.
    ease_lams: tuple[float, ...] = (100.0,)
    #: Step of the weight grid over the simplex.
    weight_step: float = 0.1
    #: Validation users the weights are fitted on (a seeded sample above this).
    valid_users: int = 5000
    #: Score cells (users × items) of one early-stopping validation of a component: its users are a seeded
    #: sample of at most ``valid_cells // n_items`` of them (at least :data:`MIN_STOP_USERS`, at most
    #: ``valid_users``). 250 million float32 cells are 1 GB of scores, ranked in blocks.
    valid_cells: int = 250_000_000
    #: Items per component (its top ones) that the weight search ranks, besides the targets.
    candidates: int = 100
    #: Blends within this relative distance of the best validation NDCG@10 count as ties: the one with the
    #: fewest components wins.
    tie_tolerance: float = 0.002
    #: Without a validation set: refit the chosen components on every event after choosing the weights.
    refit: bool = True
    seed: int = 0
    #: SeqRec's training budget in seconds (0: none); ``lmrec train --time-budget``.
    time_budget: float = 0.0
    progress: bool = False
    #: Keep components that got weight 0 (for ablations with :meth:`Auto.with_weights`); they are not scored.
    keep_all: bool = False
    #: Overrides of SeqRec's settings (on top of :data:`SEQREC_DEFAULTS`), e.g. ``{"epochs": 10}``.
    seqrec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.text not in ("auto", "on", "off"):
            raise ValueError(f"text must be auto, on or off, got {self.text!r}")
        if self.seqrec_repr not in ("auto", "id", "text", "fused"):
            raise ValueError(f"seqrec_repr must be auto, id, text or fused, got {self.seqrec_repr!r}")
        names = self.component_names()
        if names is not None:
            unknown = set(names) - set(COMPONENTS)
            if unknown or not names:
                raise ValueError(f"components: choose among {', '.join(COMPONENTS)} (or auto), got "
                                 f"{self.components!r}")
        if not 0 < self.weight_step <= 1:
            raise ValueError(f"weight_step must be in (0, 1], got {self.weight_step}")
        object.__setattr__(self, "ease_lams", tuple(float(x) for x in (
            self.ease_lams if isinstance(self.ease_lams, list | tuple) else [self.ease_lams])))

    def component_names(self) -> list[str] | None:
        if self.components.strip() == "auto":
            return None
        return [c.strip() for c in self.components.split(",") if c.strip()]


def text_is_informative(vectors: np.ndarray | None) -> bool:
    """Whether most items have text of their own: no more than half the items lack a vector, and no single
    vector (the one of an empty or boilerplate text) is shared by more than half of them (the rule of
    :func:`~lmrec.models.base.uninformative_text`, which also warns when a text model is fitted)."""
    if vectors is None or len(vectors) <= 1:
        return False
    every_item = np.arange(len(vectors)) > PAD
    return uninformative_text(vectors, every_item) is None


def normalise_rows(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row z-scores over the finite scores (column 0, padding, excluded); items a component cannot score
    (non-finite or below :data:`MISSING_BELOW`) get the row's lowest z-score. Returns ``(z, has)``: ``has[r]``
    is false for rows without any finite score (their ``z`` is 0)."""
    # The arithmetic of the plain formula (float64 mean and variance over the finite scores), in fewer passes
    # over the row: this runs for every component on every request.
    s = np.asarray(scores, dtype=np.float32)
    ok = s > MISSING_BELOW  # false for NaN and -inf too
    ok &= s < np.inf
    ok[:, PAD] = False
    n = np.count_nonzero(ok, axis=1)
    has = n > 0
    mean = np.where(ok, s, np.float32(0)).sum(axis=1) / np.maximum(n, 1)
    d = np.subtract(s, mean[:, None])  # float64
    np.copyto(d, 0.0, where=~ok)
    var = (d * d).sum(axis=1) / np.maximum(n, 1)
    std = np.sqrt(var)
    std[std <= 1e-12] = 1.0
    d /= std[:, None]
    z = d.astype(np.float32)
    low = np.where(ok, z, np.float32(np.inf)).min(axis=1)
    low[~has] = 0.0
    np.copyto(z, low[:, None], where=~ok)
    z[~has] = 0.0
    return z, has


def simplex_grid(n: int, step: float) -> np.ndarray:
    """Every weight vector of ``n`` non-negative multiples of ``step`` that sum to 1 (``(points, n)``)."""
    m = int(round(1 / step))
    pts = [c for c in itertools.product(range(m + 1), repeat=n) if sum(c) == m]
    return np.asarray(pts, dtype=np.float64) / m


@register("auto")
class Auto(Recommender, CandidateRetrieval, ColdStartItems, IncrementalUpdates):
    """The flagship hybrid: a validation-fitted blend of SeqRec, EASE, ItemKNN and ContentLM (see the module
    docstring for every rule). Items added after fitting are scored at once: by their text through ContentLM
    and fused SeqRec when those are components, otherwise below every known item."""

    Config = AutoConfig
    fast_config = {"seqrec": {"d_model": 16, "n_layers": 1, "max_len": 20, "epochs": 4, "batch_size": 16,
                              "lr": 3e-3, "text_reduced_dim": 8, "adapter_hidden": 32, "dropout": 0.1,
                              "patience": 0}, "weight_step": 0.25}

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.components_: dict[str, Recommender] = {}
        self.weights_: dict[str, float] = {}
        self.search_: dict[str, Any] = {}
        self._moments: dict[str, tuple[np.ndarray, _Moments]] = {}  # by component: (table, its moments)

    @property  # type: ignore[override]
    def needs_item_vectors(self) -> bool:
        return self.config.text != "off"

    # ------------------------------------------------------------------ fitting
    def _plan(self, dataset: Dataset) -> dict[str, dict[str, Any]]:
        """The components to fit and their settings."""
        cfg: AutoConfig = self.config
        text = cfg.text == "on" or (cfg.text == "auto" and text_is_informative(self.item_vectors_))
        if cfg.text == "on" and self.item_vectors_ is None:
            raise ValueError("auto: text='on' needs item vectors")
        names = cfg.component_names()
        if names is None:
            names = ["seqrec"]
            if dataset.n_items <= cfg.ease_max_items:
                names.append("ease")
            names.append("itemknn")
            if text:
                names.append("content-lm")
        if "content-lm" in names and self.item_vectors_ is None:
            raise ValueError("auto: content-lm needs item vectors (text='off' was given)")
        repr_ = cfg.seqrec_repr if cfg.seqrec_repr != "auto" else ("fused" if text else "id")
        if repr_ != "id" and self.item_vectors_ is None:
            raise ValueError(f"auto: SeqRec item_repr={repr_!r} needs item vectors")
        plan: dict[str, dict[str, Any]] = {}
        for name in names:
            if name == "seqrec":
                s = {**SEQREC_DEFAULTS, "item_repr": repr_, "seed": cfg.seed, "progress": cfg.progress,
                     "time_budget": cfg.time_budget, **cfg.seqrec}
                plan[name] = s
            else:
                plan[name] = {}
        return plan

    def _fit_one(self, name: str, settings: dict[str, Any], data: Dataset, valid: Any) -> Recommender:
        model = create_model(name, **settings)
        vec = self.item_vectors_ if model.needs_item_vectors else None
        model.fit(data, valid, item_vectors=vec, vectors_meta=self.text_space_ if vec is not None else None)
        return model

    def _fit_components(self, plan: dict[str, dict[str, Any]], data: Dataset, valid: Any,
                        timings: dict[str, float]) -> dict[str, Recommender]:
        cfg: AutoConfig = self.config
        out: dict[str, Recommender] = {}
        stop_valid = valid
        if valid is not None and len(valid):
            limit = min(cfg.valid_users, max(MIN_STOP_USERS, cfg.valid_cells // max(1, data.n_items)))
            if len(valid) > limit:
                stop_valid = valid.subset(_sample_rows(len(valid), limit, cfg.seed))
            self.search_["early_stopping_users"] = len(stop_valid)
        for name, settings in plan.items():
            t0 = time.perf_counter()
            if name == "ease" and len(cfg.ease_lams) > 1 and valid is not None and len(valid):
                rows = _sample_rows(len(valid), cfg.valid_users, cfg.seed)
                sub = valid.subset(rows)
                best, best_score, scores = None, -1.0, {}
                for lam in cfg.ease_lams:
                    m = self._fit_one(name, {**settings, "lam": lam}, data, valid)
                    score = _ndcg_alone(m, sub)
                    scores[str(lam)] = score
                    if score > best_score:
                        best, best_score = m, score
                assert best is not None
                self.search_["ease_lam"] = {"chosen": best.config.lam, "valid_ndcg10": scores}
                plan[name] = {**settings, "lam": best.config.lam}
                out[name] = best
            else:
                out[name] = self._fit_one(name, settings, data, stop_valid)
            timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 2)
        return out

    def _fit(self, dataset: Dataset, valid: Any = None) -> None:
        cfg: AutoConfig = self.config
        plan = self._plan(dataset)
        timings: dict[str, float] = {}
        self.search_ = {}
        if valid is not None and len(valid):
            comps = self._fit_components(plan, dataset, valid, timings)
            self._choose_weights(comps, valid)
            self.search_["fitted_on"] = "train, weights on the given validation set"
        else:
            inner = leave_one_out(dataset) if _has_users_to_hold_out(dataset) else None
            if inner is None or not len(inner.test):
                comps = self._fit_components(plan, dataset, None, timings)
                self.weights_ = {n: 1.0 / len(comps) for n in comps}
                self.search_["fitted_on"] = "every event; equal weights (no user has 3 events to hold out)"
            else:
                comps = self._fit_components(plan, inner.train_valid, inner.test, timings)
                self._choose_weights(comps, inner.test)
                self.search_["fitted_on"] = "every event but each user's last, weights on those last events"
                if cfg.refit:
                    keep = {n: s for n, s in plan.items() if self.weights_.get(n, 0) > 0}
                    if "seqrec" in keep:
                        tr = getattr(comps["seqrec"], "train_result_", None)
                        if tr is not None and tr.best_epoch > 0:
                            keep["seqrec"] = {**keep["seqrec"], "epochs": int(tr.best_epoch)}
                    comps = self._fit_components(keep, dataset, None, timings)
                    self.search_["fitted_on"] = ("weights on each user's held-out last event, then the "
                                                 "components refitted on every event")
        self.search_["fit_seconds"] = timings
        self.search_["settings"] = plan
        self.components_ = {n: comps[n] for n in comps if cfg.keep_all or self.weights_.get(n, 0) > 0}
        self.weights_ = {n: w for n, w in self.weights_.items() if w > 0}

    def _choose_weights(self, comps: dict[str, Recommender], valid: Any) -> None:
        """Fit the blend weights on ``valid`` (never on test data): see the module docstring."""
        cfg: AutoConfig = self.config
        names = list(comps)
        rows = _sample_rows(len(valid), cfg.valid_users, cfg.seed)
        sub = valid.subset(rows)
        cand, gathered, ok, targets = self._candidates(comps, sub)
        grid = np.ones((1, 1)) if len(names) == 1 else simplex_grid(len(names), cfg.weight_step)
        values = np.array([_blend_ndcg(w, cand, gathered, ok, targets) for w in grid])
        best = float(values.max())
        nnz = (grid > 0).sum(axis=1)
        close = values >= best * (1 - cfg.tie_tolerance)
        # fewest components among the near-best, then the best value, then the grid order
        order = np.lexsort((-values, nnz))
        pick = int(next(i for i in order if close[i]))
        self.weights_ = {n: float(round(w, 6)) for n, w in zip(names, grid[pick], strict=True)}
        alone = {n: float(values[int(np.flatnonzero(grid[:, i] == 1)[0])]) for i, n in enumerate(names)}
        ablation = {}
        for i, n in enumerate(names):
            mask = grid[:, i] == 0
            if mask.any() and len(names) > 1:
                j = int(np.flatnonzero(mask)[np.argmax(values[mask])])
                w_j = {m: float(round(w, 6)) for m, w in zip(names, grid[j], strict=True)}
                ablation[n] = {"valid_ndcg10": float(values[j]), "weights": w_j}
        self.search_.update(
            valid_users=len(rows), grid_points=len(grid), valid_ndcg10=float(values[pick]),
            weights=self.weights_, alone=alone, without=ablation,
            components={n: repr(m) for n, m in comps.items()},
        )

    def _candidates(self, comps: dict[str, Recommender], ev: Any):
        """Per row: candidate items (each component's top ``candidates`` unseen items and the targets), the
        z-scores of every component at them ``(C, rows, W)``, which candidates are valid, and the targets."""
        cfg: AutoConfig = self.config
        n = len(ev)
        max_t = int(min(50, max(1, ev.targets.lengths.max(initial=1))))
        t_pad = ev.targets.last(max_t, pad=PAD).astype(np.int64)
        zs: list[list[np.ndarray]] = [[] for _ in comps]
        cands = []
        bs = 256
        for start in range(0, n, bs):
            r = np.arange(start, min(start + bs, n))
            hist, users = ev.history.take(r), ev.users[r]
            zrows = []
            tops = []
            for m in comps.values():
                z, has = normalise_rows(m.score(hist, users))
                zrows.append(z)
                zm = z.copy()
                zm[:, PAD] = -np.inf
                mask_items(zm, hist)
                zm[~has] = -np.inf
                k = min(cfg.candidates, zm.shape[1] - 1)
                idx, val = topk(zm, k)
                idx[~np.isfinite(val)] = PAD
                tops.append(idx)
            c = np.concatenate([*tops, t_pad[r]], axis=1)
            cands.append(c)
            for z_list, z in zip(zs, zrows, strict=True):
                z_list.append(np.take_along_axis(z, c, axis=1))
        cand = np.concatenate(cands)
        gathered = np.stack([np.concatenate(z) for z in zs])
        # valid: not padding, not seen, first occurrence in the row
        ok = first_occurrences(cand)
        width = np.int64(self.n_items + 1)
        seen_keys = ev.history.row_ids().astype(np.int64) * width + ev.history.values.astype(np.int64)
        keys = np.arange(n, dtype=np.int64)[:, None] * width + cand
        ok &= ~np.isin(keys, seen_keys)
        return cand, gathered, ok, ev.targets

    # ------------------------------------------------------------------ scoring
    def score(self, histories: Ragged, users: np.ndarray | None = None,
              items: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted()
        out = np.zeros((len(histories), self.n_items + 1), dtype=np.float32)
        any_has = np.zeros(len(histories), dtype=bool)
        for name, w in self.weights_.items():
            z, has = normalise_rows(self.components_[name].score(histories, users))
            z *= np.float32(w)
            out += z
            any_has |= has
        out[~any_has] = -np.inf
        out[:, PAD] = -np.inf
        return scores_for_items(out, items)

    # ------------------------------------------------------------------ candidates (large catalogues)
    def retrieval_spaces(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The inner-product space of every blended component whose scores are one (SeqRec, ContentLM):
        its table, with the items whose score does not depend on the history marked not scorable."""
        out = {}
        for name in self.weights_:
            m = self.components_[name]
            if isinstance(m, LinearScores):
                table, fixed = m.linear_table()
                out[name] = (table, np.isnan(fixed))
        return out

    def candidates(
        self, histories: Ragged, users: np.ndarray | None, n: int,
        search: Callable[[str, np.ndarray, int], np.ndarray],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per row, the union of every blended component's top ``n`` (from the caller's index of its space:
        SeqRec, ContentLM; from its sparse row: ItemKNN; by scoring the catalogue: the others) and the
        blend's scores of them, as :meth:`score` gives them, without scoring the catalogue: each
        component's normalisation over every item comes from its table's moments or its sparse row. One
        difference: an item a component cannot rank gets the lowest z-score among the row's candidates,
        not among every item."""
        self._check_fitted()
        parts: dict[str, tuple[str, Any]] = {}
        found: list[list[np.ndarray]] = [[] for _ in range(len(histories))]
        for name in self.weights_:
            m = self.components_[name]
            if isinstance(m, LinearScores):
                q = m.linear_queries(histories, users)
                parts[name] = ("linear", q)
                idx: Any = search(name, q, n)
            elif isinstance(m, SparseScores):
                rows = m.sparse_scores(histories, users)
                parts[name] = ("sparse", rows)
                idx = _sparse_top(rows, n)
            else:
                full = m.score(histories, users)
                parts[name] = ("full", normalise_rows(full))
                idx = topk(full, n)[0]
            for r in range(len(histories)):
                found[r].append(np.asarray(idx[r], dtype=np.int64))
        out = []
        for r in range(len(histories)):
            items = np.setdiff1d(np.concatenate(found[r]), [PAD])
            out.append((items, self._blend_row(parts, r, items)))
        return out

    def _blend_row(self, parts: dict[str, tuple[str, Any]], r: int, items: np.ndarray) -> np.ndarray:
        total = np.zeros(len(items), dtype=np.float64)
        any_has = False
        for name, (kind, data) in parts.items():
            if kind == "full":
                z_full, has_full = data
                z, has = z_full[r, items], bool(has_full[r])
            else:
                z, has = self._z_on(name, kind, data, r, items)
            if has:
                total += self.weights_[name] * z
                any_has = True
        if not any_has:
            return np.full(len(items), -np.inf, dtype=np.float32)
        return total.astype(np.float32)

    def _z_on(self, name: str, kind: str, data: Any, r: int, items: np.ndarray) -> tuple[np.ndarray, bool]:
        """One component's z-scores of ``items`` for row ``r``, and whether the row has any finite score."""
        if kind == "linear":
            m = self.components_[name]
            assert isinstance(m, LinearScores)
            table, fixed = m.linear_table()
            mom = self._moments_of(name, table, fixed)
            q = data[r].astype(np.float64)
            if not q.any():
                return np.zeros(len(items)), False
            s = table[items].astype(np.float64) @ q
            f = fixed[items]
            s = np.where(np.isnan(f), s, f)
            count = mom.count
            total, squares = q @ mom.sums + mom.const_sum, q @ mom.gram @ q + mom.const_squares
        else:
            row = data[r]  # (1, width) CSR: the listed items; every other fitted item scores 0
            row.sum_duplicates()  # sorted, distinct indices
            listed, vals = row.indices.astype(np.int64), row.data.astype(np.float64)
            width = row.shape[1]
            inside = items < width
            at = np.searchsorted(listed, items[inside])
            hit = at < len(listed)
            hit[hit] = listed[at[hit]] == items[inside][hit]
            got = np.zeros(int(inside.sum()))
            got[hit] = vals[at[hit]]
            s = np.full(len(items), -np.inf)
            s[inside] = got
            count = width - 1  # every fitted item but padding; items added later cannot be ranked
            real = vals[listed != PAD]
            total, squares = float(real.sum()), float((real ** 2).sum())
        if count <= 0:
            return np.zeros(len(items)), False
        mean = total / count
        std = float(np.sqrt(max(squares / count - mean * mean, 0.0)))
        std = std if std > 1e-12 else 1.0
        ok = (s > MISSING_BELOW) & (s < np.inf) & (items != PAD)
        z = (s - mean) / std
        low = float(z[ok].min()) if ok.any() else 0.0
        return np.where(ok, z, low), True

    def _moments_of(self, name: str, table: np.ndarray, fixed: np.ndarray) -> _Moments:
        cached = self._moments.get(name)
        if cached is not None and cached[0] is table:
            return cached[1]
        free = np.isnan(fixed)
        free[PAD] = False
        const = fixed[~free]
        const = const[(const > MISSING_BELOW) & (const < np.inf)].astype(np.float64)
        t = table[free].astype(np.float64)
        mom = _Moments(count=int(free.sum()) + len(const), sums=t.sum(axis=0), gram=t.T @ t,
                       const_sum=float(const.sum()), const_squares=float((const ** 2).sum()))
        self._moments[name] = (table, mom)
        return mom

    def with_weights(self, weights: dict[str, float]) -> Auto:
        """A copy that blends with other ``weights`` (for ablations); components not kept cannot be added."""
        missing = {n for n, w in weights.items() if w > 0} - set(self.components_)
        if missing:
            raise ValueError(f"components {sorted(missing)} were not kept (fit with keep_all, or refit)")
        other = copy.copy(self)
        other.weights_ = {n: float(w) for n, w in weights.items() if w > 0}
        return other

    # ------------------------------------------------------------------ incremental updates
    def update(self, events: pl.DataFrame, items: pl.DataFrame | None = None, *, passes: int | None = None,
               seed: int = 0) -> UpdateReport:
        """Absorb ``events`` and update every component: those with
        :class:`~lmrec.models.capabilities.IncrementalUpdates` (SeqRec, ItemKNN) by their own update, the
        others (EASE, ContentLM: one closed-form solve each) refitted on the old and new events with their
        settings. The blend weights stay as validated."""
        clock = UpdateClock()
        absorbed = absorb_events(self, events, items)  # new items reach the components (_on_items_added)
        n_passes = 1  # a refit counts as one
        for comp in self.components_.values():
            if isinstance(comp, IncrementalUpdates):
                n_passes = max(n_passes, comp.update(events, items, passes=passes, seed=seed).passes)
            else:
                vec = comp.item_vectors_
                comp.fit(absorbed.dataset, item_vectors=vec,
                         vectors_meta=comp.text_space_ if vec is not None else None)
        wall, cpu = clock.seconds()
        return UpdateReport(absorbed.n_events, absorbed.new_users, absorbed.new_items,
                            int((absorbed.dataset.sequences.lengths > 0).sum()), n_passes, wall, cpu)

    # ------------------------------------------------------------------ new items
    def _on_items_added(self, indices: np.ndarray) -> None:
        assert self.item_map is not None and self.item_categories_ is not None
        ids = list(self.item_map.raws(indices))
        cats = [self.item_categories_[int(i)] for i in indices]
        vecs = None if self.item_vectors_ is None else self.item_vectors_[indices]
        for m in self.components_.values():
            m.add_items(ids, cats, vectors=vecs if m.item_vectors_ is not None else None)

    def set_item_categories(self, indices: np.ndarray, categories: Any) -> None:
        super().set_item_categories(indices, categories)
        for m in self.components_.values():
            m.set_item_categories(indices, categories)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": np.asarray(list(self.weights_.values()), dtype=np.float64)}

    def _forget_rows(self, rows: np.ndarray, raw_ids: list[str]) -> None:
        for m in self.components_.values():
            m.forget_users(raw_ids)

    def _save_extra(self, path: Path) -> None:
        for name in self.weights_:
            self.components_[name].save(path / COMPONENTS_DIR / name)
        (path / AUTO_FILE).write_text(json.dumps(
            {"components": list(self.weights_), "weights": self.weights_, "search": self.search_},
            indent=1, default=str))

    def _load_state(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        info = json.loads((path / AUTO_FILE).read_text())
        self.weights_ = {n: float(info["weights"][n]) for n in info["components"]}
        self.search_ = info.get("search", {})
        self.components_ = {n: load_model(path / COMPONENTS_DIR / n) for n in self.weights_}

    def __repr__(self) -> str:
        if not self.weights_:
            return f"Auto({self.config})"
        parts = ", ".join(f"{n}={w:.2f}" for n, w in self.weights_.items())
        return f"Auto({parts})"


@dataclass(frozen=True)
class _Moments:
    """What the mean and spread of ``query · table[i]`` over every rankable item need: their count, the sum
    and Gram matrix of the free rows, and the sum and squares of the items with a fixed score."""

    count: int
    sums: np.ndarray
    gram: np.ndarray
    const_sum: float
    const_squares: float


def _sparse_top(rows: Any, n: int) -> list[np.ndarray]:
    """Per row of a sparse score matrix, its ``n`` largest listed items (padding never)."""
    out = []
    for r in range(rows.shape[0]):
        row = rows.getrow(r)
        idx, val = row.indices.astype(np.int64), row.data
        keep = idx != PAD
        idx, val = idx[keep], val[keep]
        if len(idx) > n:
            part = np.argpartition(-val, n - 1)[:n]
            idx = idx[part]
        out.append(idx)
    return out


def _has_users_to_hold_out(ds: Dataset) -> bool:
    return bool((ds.sequences.lengths >= 3).any())


def _sample_rows(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _blend_ndcg(w: np.ndarray, cand: np.ndarray, gathered: np.ndarray, ok: np.ndarray,
                targets: Ragged, k: int = 10) -> float:
    """Mean NDCG@k of the blend ``w`` over the rows with a target, ranking each row's candidates."""
    b = np.tensordot(w.astype(np.float32), gathered, axes=1)
    b[~ok] = -np.inf
    idx, val = topk(b, k)
    ranked = np.take_along_axis(cand, idx, axis=1)
    ranked[~np.isfinite(val)] = PAD
    hits, n_t = hit_matrix(ranked, targets)
    has = n_t > 0
    return float(ndcg(hits, n_t, k)[has].mean()) if has.any() else 0.0


def _ndcg_alone(model: Recommender, ev: Any) -> float:
    users = np.asarray(ev.users, dtype=np.int64)
    return full_ranking_metrics(lambda r: model.score(ev.history.take(r), users[r]), ev.history, ev.targets,
                                k=10)["ndcg@10"]
