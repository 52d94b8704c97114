"""MultiTask, the recommender: fitting through :mod:`lmrec.training`, next-item scores, the other heads'
predictions (rating, next type, value), and saving."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.rfm import RFM_FEATURES, rfm_frame, value_cuts
from lmrec.data.schema import PAD
from lmrec.models.base import NEG_INF, Recommender, register, resolve_item_vectors, scores_for_items
from lmrec.models.capabilities import ItemEmbeddings, PredictionHeads
from lmrec.models.multitask import features
from lmrec.models.multitask.config import MultiTaskConfig, Spec
from lmrec.models.multitask.features import (
    EVENT_ARRAYS,
    Events,
    end_time,
    events_frame,
    events_of,
    input_windows,
    side_features,
    value_edges,
)
from lmrec.models.multitask.loss import LossModule, batched_losses
from lmrec.models.multitask.network import MultiTaskNetwork
from lmrec.models.seqrec.network import gap_buckets
from lmrec.training.trainer import Trainer, TrainResult, seed_everything

log = logging.getLogger("lmrec.models.multitask")

META_FILE = "multitask.json"
WEIGHTS_FILE = "weights.pt"
#: Per-head stopping: the weights of heads whose best epoch differs from the next-item head's (absent in
#: folders saved before per-head stopping, and when every head predicts with ``weights.pt``).
HEAD_WEIGHTS_FILE = "head_weights.pt"


def head_val_losses(train_result: dict[str, Any]) -> dict[str, float]:
    """Each head's validation loss for the weights the joint phases give it: the best joint epoch's (one early
    stop), its own best epoch's (per-head stopping), or the fine-tuned weights' when the fine-tune phase kept
    them. Empty without validation."""
    by_epoch = {int(m["epoch"]): m for m in train_result.get("metrics", [])}
    if not by_epoch:
        return {}
    best = train_result.get("best_epochs") or {}
    out: dict[str, float] = {}
    for key in by_epoch[next(iter(by_epoch))]:
        if not key.startswith("val_") or key.endswith("_neg"):
            continue
        head = key[4:]
        epoch = best.get(head, train_result["best_epoch"])
        out[head] = float(by_epoch[epoch][key]) if epoch in by_epoch else math.inf
        ft = (train_result.get("finetune") or {}).get(head)
        if ft and ft["kept"]:
            out[head] = float(ft["val_after"])
    return out


@register("multitask")
class MultiTask(Recommender, ItemEmbeddings, PredictionHeads):
    """Multi-task sequence model: next item, rating of an item, next action type and user value."""

    Config = MultiTaskConfig
    uses_user_ids = False
    fast_config = {"d_model": 16, "n_layers": 1, "max_len": 20, "epochs": 10, "batch_size": 16, "lr": 3e-3,
                   "item_repr": "fused", "dropout": 0.1, "valid_users": 0.0}

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.network_: MultiTaskNetwork | None = None
        self.spec_: Spec | None = None
        self.events_: Events | None = None
        self.train_result_: dict[str, Any] | None = None
        #: The network each head predicts with (per-head stopping: its best epoch's); heads not listed use
        #: ``network_``, the next-item head's.
        self.head_networks_: dict[str, MultiTaskNetwork] = {}

    @property  # type: ignore[override]
    def needs_item_vectors(self) -> bool:
        """Text or fused item representations read the items' language-model vectors."""
        return self.config.item_repr != "id"

    # ------------------------------------------------------------------ data preparation
    def _events(self, ds: Dataset) -> Events:
        """Per-user arrays the network reads, for any dataset sharing this model's vocabularies."""
        assert self.spec_ is not None
        return events_of(ds, self.spec_, self.config)

    def _windows(self, ev: Events, users: np.ndarray, ends: np.ndarray) -> dict[str, np.ndarray]:
        """Left-padded inputs of the ``max_len`` events before position ``ends[i]`` of user ``users[i]``."""
        return input_windows(ev, users, ends, self.config.max_len, self.config.n_gap_buckets)

    # ------------------------------------------------------------------ fitting
    def _fit(self, dataset: Dataset, valid: Any = None) -> None:
        cfg = self.config
        seed_everything(cfg.seed)
        heads = list(cfg.heads)
        vals = dataset.events["value"]
        is_rating = (dataset.events["event_type"] == cfg.rating_type) & vals.is_not_null()
        if "rating" in heads and not bool(is_rating.any()):
            heads.remove("rating")
        if "next_type" in heads and len(dataset.event_types) < 2:
            heads.remove("next_type")
        if "value" in heads:
            try:
                value_cuts(dataset, cfg.horizon_days, cfg.value_cuts, cfg.value_step_days)
            except ValueError:
                heads.remove("value")
        if not heads:
            raise ValueError(f"none of the heads {cfg.heads} can be trained on {dataset.name}")
        ratings = vals.filter(is_rating).to_numpy()
        self.spec_ = Spec(
            n_items=dataset.n_items, event_types=list(dataset.event_types), heads=heads,
            value_edges=value_edges(vals.drop_nulls().to_numpy(), cfg.value_buckets).tolist(),
            rating_mu=float(ratings.mean()) if len(ratings) else 0.0,
            rating_range=[float(ratings.min()), float(ratings.max())] if len(ratings) else [0.0, 1.0],
            value_cut_end=end_time(dataset),
            n_users=dataset.n_users, user_factors=cfg.user_factors if "rating" in heads else 0,
        )
        text = None
        if cfg.item_repr != "id":
            if self.item_vectors_ is None:
                self.item_vectors_, self.text_space_ = resolve_item_vectors(dataset, None)
            text = self.item_vectors_
            seen = dataset.item_popularity[1:] > 0
            if np.ptp(text[1:][seen], axis=0).max(initial=0.0) < 1e-6:
                # Every item reads the same (no titles, say): whitening such vectors is undefined and they
                # carry nothing, so the model falls back to id vectors.
                log.warning("%s: the item text vectors are all identical; using item_repr='id'", dataset.name)
                text = None
            else:
                self.spec_.item_repr = cfg.item_repr
                self.spec_.text_dim = int(text.shape[1])
        ev = self._events(dataset)
        self.events_ = ev
        train_rows, val_rows = features.train_rows(dataset, ev, self.spec_, cfg)
        self.network_ = self._build_network(text, dataset.item_popularity)
        allowed = torch.as_tensor(dataset.item_popularity > 0)
        allowed[PAD] = False
        module = LossModule(self.network_, cfg, allowed)
        first: dict[str, float] = {}

        def evaluate(m: nn.Module) -> dict[str, float]:
            assert isinstance(m, LossModule)
            dev = m.allowed.device
            with torch.no_grad():
                losses = batched_losses(m, val_rows, dev, cfg.batch_size)
            for k, v in losses.items():
                first.setdefault(k, v if v > 0 else 1.0)
            out = {f"val_{k}": v for k, v in losses.items()}
            out["score"] = -sum(v / first[k] for k, v in losses.items())
            return out

        use_valid = bool(val_rows) and cfg.valid_users > 0
        per_head = use_valid and cfg.stopping == "per_head"
        trainer = Trainer(module, cfg.train_config(), evaluate if use_valid else None, metric="score",
                          groups={h: f"val_{h}_neg" for h in heads} if per_head else None,
                          on_group_stop=module.active.discard)
        if per_head:
            joint = evaluate

            def evaluate_heads(m: nn.Module) -> dict[str, float]:
                out = joint(m)
                out.update({f"{k}_neg": -v for k, v in out.items() if k.startswith("val_")})  # higher: better
                return out

            trainer.evaluate = evaluate_heads
        t0 = time.perf_counter()
        result = trainer.fit(train_rows)
        phase_s = {"joint": time.perf_counter() - t0}
        states = trainer.group_states
        finetuned: dict[str, dict[str, Any]] = {}
        if per_head and cfg.head_finetune and len(heads) > 1:  # one head alone has nothing to move away from
            t0 = time.perf_counter()
            states, finetuned = self._finetune_heads(module, states, train_rows, evaluate, result)
            phase_s["finetune"] = time.perf_counter() - t0
        self.network_ = module.network.cpu().eval()
        self.head_networks_ = {}
        if per_head:
            self._use_head_snapshots(states, text, dataset.item_popularity)
        self.train_result_ = result.to_dict()
        if finetuned:
            self.train_result_["finetune"] = finetuned
        if use_valid:
            self.train_result_["val_loss"] = head_val_losses(self.train_result_)
            self.train_result_["head_from"] = {
                h: "finetune" if finetuned.get(h, {}).get("kept") else "joint"
                for h in self.train_result_["val_loss"]}
            if cfg.head_alone and len(heads) > 1:
                t0 = time.perf_counter()
                self.train_result_["alone"] = self._alone_heads(dataset, text, dataset.item_popularity)
                phase_s["alone"] = time.perf_counter() - t0
        self.train_result_["phase_s"] = phase_s

    def _finetune_heads(self, module: LossModule, states: dict[str, dict[str, torch.Tensor]],
                        rows: dict[str, np.ndarray], evaluate: Any, result: TrainResult
                        ) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, dict[str, Any]]]:
        """The fine-tune phase: each head, from its own snapshot, trained on its loss alone with early
        stopping on its validation loss; it keeps the fine-tuned weights only if they validate better than
        the snapshot. Returns the heads' states and, per head, what the phase did."""
        cfg = self.config
        out: dict[str, dict[str, torch.Tensor]] = {}
        info: dict[str, dict[str, Any]] = {}
        for head, state in states.items():
            key = f"val_{head}"
            start = next(m[key] for m in result.metrics if m["epoch"] == result.best_epochs[head])
            module.load_state_dict(state)
            module.active = {head}

            def evaluate_one(m: nn.Module, key: str = key) -> dict[str, float]:
                loss = evaluate(m)[key]
                return {key: loss, "score": -loss}

            ft = Trainer(module, cfg.train_config(cfg.finetune_lr), evaluate_one, metric="score")
            r = ft.fit(rows)
            kept = -r.best_metric < start
            out[head] = {k: v.detach().clone() for k, v in module.state_dict().items()} if kept else state
            info[head] = {"val_before": start, "val_after": -r.best_metric, "best_epoch": r.best_epoch,
                          "epochs_run": r.epochs_run, "kept": kept}
            log.info("fine-tune %s: validation loss %.4f -> %.4f (epoch %d of %d)%s", head, start,
                     -r.best_metric, r.best_epoch, r.epochs_run, "" if kept else "; snapshot kept")
        module.active = set(module.network.heads)
        return out, info

    def _alone_heads(self, dataset: Dataset, text: np.ndarray | None, counts: np.ndarray
                     ) -> dict[str, dict[str, Any]]:
        """The alone candidates (``head_alone``): each head trained from scratch on its own, exactly the
        single-task model (``heads=(head,)``, every other setting the same: same seed, rows, validation and
        stopping); a head predicts with it when its validation loss is below that of the weights the joint
        phases gave the head. Both losses are the head's mean over the same held-out targets
        (:func:`~lmrec.models.multitask.loss.batched_losses`), so no head ends worse on validation than the
        head trained alone. Updates ``head_networks_``, ``network_`` and ``train_result_`` (``val_loss``,
        ``head_from``); returns, per head, what the candidate did."""
        assert self.spec_ is not None and self.train_result_ is not None
        cfg = self.config
        val, origin = self.train_result_["val_loss"], self.train_result_["head_from"]
        for head in self.spec_.heads:  # every head names its network, so moving network_ moves no other head
            self.head_networks_.setdefault(head, self.network_)  # type: ignore[arg-type]
        info: dict[str, dict[str, Any]] = {}
        for head in self.spec_.heads:
            t0 = time.perf_counter()
            # the same item vectors (not encoded again)
            alone = MultiTask(replace(cfg, heads=(head,)))
            alone.fit(dataset, item_vectors=self.item_vectors_, vectors_meta=self.text_space_)
            assert alone.train_result_ is not None and alone.network_ is not None
            loss = head_val_losses(alone.train_result_).get(head, math.inf)
            joint = val.get(head, math.inf)
            kept = loss < joint
            info[head] = {"val_joint": joint, "val_alone": loss, "kept": kept,
                          "best_epoch": (alone.train_result_.get("best_epochs") or {}).get(
                              head, alone.train_result_["best_epoch"]),
                          "epochs_run": alone.train_result_["epochs_run"], "fit_s": time.perf_counter() - t0}
            log.info("alone %s: validation loss %.4f (joint phases %.4f)%s", head, loss, joint,
                     "; kept" if kept else "")
            if kept:
                net = self._build_network(text, counts)
                # a head-alone network lacks the parameters of heads it does not have (the rating head's user
                # terms); they keep their initial values and this head never reads them
                missing, unexpected = net.load_state_dict(alone.network_.state_dict(), strict=False)
                if unexpected or any(not k.startswith(("user_", "item_vec")) for k in missing):
                    raise RuntimeError(f"alone {head} network does not fit: {missing} {unexpected}")
                self.head_networks_[head] = net.eval()
                val[head], origin[head] = loss, "alone"
        primary = "next_item" if "next_item" in self.spec_.heads else self.spec_.heads[0]
        self.network_ = self.head_networks_[primary]
        return info

    def _use_head_snapshots(self, states: dict[str, dict[str, torch.Tensor]], text: np.ndarray | None,
                            counts: np.ndarray) -> None:
        """Per-head stopping: each head predicts with the network of its best epoch (one network per distinct
        snapshot); the next-item head's becomes ``network_``. A head that never validated keeps the last."""
        nets: dict[int, MultiTaskNetwork] = {}
        for head, state in states.items():
            if id(state) not in nets:
                net = self._build_network(text, counts)
                net.load_state_dict({k.removeprefix("network."): v.cpu() for k, v in state.items()
                                     if k.startswith("network.")})
                nets[id(state)] = net.eval()
            self.head_networks_[head] = nets[id(state)]
        assert self.spec_ is not None
        primary = "next_item" if "next_item" in self.spec_.heads else self.spec_.heads[0]
        if primary in self.head_networks_:
            self.network_ = self.head_networks_[primary]

    def _build_network(self, text: np.ndarray | None = None,
                       counts: np.ndarray | None = None) -> MultiTaskNetwork:
        """The network for this spec; when loading, text vectors and counts are placeholders that the saved
        state (buffers included) overwrites."""
        assert self.spec_ is not None
        spec = self.spec_
        net_cfg = self.config.network_config(spec)
        if spec.item_repr != "id" and text is None:
            shape = (spec.n_items + 1, spec.text_dim)
            text = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        if counts is None:
            counts = np.ones(spec.n_items + 1)
        return MultiTaskNetwork(net_cfg, spec, text, np.asarray(counts, dtype=np.float32))

    # ------------------------------------------------------------------ inference on index space
    def _check(self, head: str | None = None) -> tuple[MultiTaskNetwork, Spec]:
        """The network ``head`` predicts with (default: next-item scores' own) and the spec."""
        self._check_fitted()
        assert self.network_ is not None and self.spec_ is not None
        return self.head_networks_.get(head, self.network_) if head else self.network_, self.spec_

    @torch.no_grad()
    def _last_hidden(self, ev: Events, users: np.ndarray, ends: np.ndarray, batch: int = 512,
                     head: str | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """States after event ``ends[i] - 1`` of each user, ``(n, d)``, and the rating deviations there
        (computed by ``head``'s network)."""
        net, _ = self._check(head)
        net.eval()
        hs, devs = [], []
        for s in range(0, len(users), batch):
            w = self._windows(ev, users[s:s + batch], ends[s:s + batch])
            h = net.hidden(torch.from_numpy(w["items"]), torch.from_numpy(w["tokens"]),
                           torch.from_numpy(w["gaps"]))[:, -1]
            hs.append(h)
            devs.append(w["dev"])
        if not hs:
            return torch.zeros(0, self.config.d_model), np.zeros(0, dtype=np.float32)
        return torch.cat(hs), np.concatenate(devs)

    def _context(self, context: Dataset | None) -> Events:
        if context is None:
            assert self.events_ is not None
            return self.events_
        return self._events(context)

    def predict_ratings(self, users: np.ndarray, items: np.ndarray,
                        context: Dataset | None = None) -> np.ndarray:
        """Rating of ``items[i]`` by ``users[i]`` (indices) given each user's events in ``context`` (the
        training data by default), clipped to the training rating range."""
        net, spec = self._check("rating")
        if "rating" not in spec.heads:
            raise ValueError("this model has no rating head (the training data had no ratings)")
        ev = self._context(context)
        users = np.asarray(users, dtype=np.int64)
        uniq, inv = np.unique(users, return_inverse=True)
        h, dev = self._last_hidden(ev, uniq, ev.items.lengths[uniq], head="rating")
        with torch.no_grad():
            item_t = torch.as_tensor(np.asarray(items, dtype=np.int64))
            u_t = torch.as_tensor(np.where(users < spec.n_users + 1, users, 0))
            r = net.rating(h[inv], item_t, torch.from_numpy(dev[inv]), u_t)
        return np.clip(r.numpy().astype(np.float64), *spec.rating_range)

    def predict_next_type(self, users: np.ndarray, context: Dataset | None = None,
                          ends: np.ndarray | None = None) -> np.ndarray:
        """Probabilities ``(n, n_types)`` (columns in :attr:`event_types` order) of the type of each user's
        next event: after their last event in ``context``, or after event ``ends[i] - 1`` when ``ends`` is
        given."""
        net, spec = self._check("next_type")
        if "next_type" not in spec.heads:
            raise ValueError("this model has no next-type head (one event type only)")
        ev = self._context(context)
        users = np.asarray(users, dtype=np.int64)
        e = ev.items.lengths[users] if ends is None else np.asarray(ends, dtype=np.int64)
        h, _ = self._last_hidden(ev, users, e, head="next_type")
        with torch.no_grad():
            return torch.softmax(net.type_logits(h).float(), dim=-1).numpy().astype(np.float64)

    def predict_value(self, users: np.ndarray, context: Dataset | None = None,
                      at: int | None = None) -> np.ndarray:
        """Each user's predicted value over the ``horizon_days`` after ``at`` (original scale: an amount or a
        count), from their events in ``context`` before ``at`` (default: just after the last training event or
        the newest event of ``context``, whichever is later)."""
        net, spec = self._check("value")
        if "value" not in spec.heads:
            raise ValueError("this model has no value head (the log was too short for its horizon)")
        users = np.asarray(users, dtype=np.int64)
        if at is None:
            # "Now": after the last training event, or after the newest event of the given context (a service
            # passes the user's stored events, which may be newer than the model).
            at = max(spec.value_cut_end, end_time(context) if context is not None else 0)
        at = int(at)
        if context is None:
            assert self.user_histories_ is not None
            ev = self._context(None)
            events = events_frame(ev, spec)
        else:
            ev = self._events(context)
            events = context.events
        frame = rfm_frame(events.filter(pl.col("timestamp") < at), at, self.config.horizon_days,
                          self.config.value_target)
        frame = pl.DataFrame({"user_idx": users.astype(np.int32)}).join(
            frame.with_columns(pl.col("user_idx").cast(pl.Int32)), on="user_idx", how="left",
            maintain_order="left")
        # A user with no event before `at` has zero frequency and value, and recency = a full horizon more
        # than anyone observed.
        frame = frame.with_columns([pl.col(c).fill_null(0.0) for c in RFM_FEATURES if c != "recency_days"]
                                   + [pl.col("recency_days").fill_null(10 * self.config.horizon_days)])
        ends = np.array([np.searchsorted(ev.times[u], at, side="left") if u < len(ev.items) else 0
                         for u in users], dtype=np.int64)
        h, _ = self._last_hidden(ev, users, ends, head="value")
        with torch.no_grad():
            out = net.value(h, torch.from_numpy(side_features(frame, spec))).numpy().astype(np.float64)
        return np.expm1(np.maximum(out, 0.0))

    # ------------------------------------------------------------------ the Recommender interface
    def score(self, histories: Ragged, users: np.ndarray | None = None,
              items: np.ndarray | None = None) -> np.ndarray:
        """Next-item scores. Known users whose stored events start the given history use their event types,
        values and times; other events are read as items alone."""
        net, spec = self._check()
        assert self.events_ is not None
        n = len(histories)
        users_arr = np.zeros(n, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
        L = self.config.max_len
        lengths = histories.lengths
        it = histories.last(L, pad=PAD).astype(np.int64)
        in_window = np.arange(L)[None, :] >= (L - np.minimum(lengths, L))[:, None]
        tok = in_window.astype(np.int64)  # the first type with no value, for events known only by their item
        ts = np.zeros((n, L), dtype=np.int64)
        known_ts = np.zeros((n, L), dtype=bool)
        ev = self.events_
        for r in np.flatnonzero((lengths > 0) & (users_arr > 0) & (users_arr < len(ev.items))):
            full, u = histories[r], users_arr[r]
            stored = ev.items[u]
            m = min(len(stored), len(full))
            if m and np.array_equal(stored[:m], full[:m]):
                # positions of the window that fall inside the stored prefix
                k = min(len(full), L)
                j = np.arange(len(full) - k, len(full))
                inside = j < m
                tok[r, L - k:][inside] = ev.tokens[u][j[inside]]
                ts[r, L - k:][inside] = ev.times[u][j[inside]]
                known_ts[r, L - k:][inside] = True
        gaps = gap_buckets(ts, self.config.n_gap_buckets, known_ts)
        out = np.full((n, spec.n_items + 1), NEG_INF, dtype=np.float32)
        with torch.no_grad():
            table = net.item_table()
            for s in range(0, n, 512):
                sl = slice(s, s + 512)
                h = net.hidden(torch.from_numpy(it[sl]), torch.from_numpy(tok[sl]),
                               torch.from_numpy(gaps[sl]))
                out[sl] = (h[:, -1] @ table.T).numpy()
        out[:, PAD] = NEG_INF
        # Items added after fitting (cold start) have no vector: they score -inf until refit.
        if self.n_items + 1 > out.shape[1]:
            out = np.pad(out, ((0, 0), (0, self.n_items + 1 - out.shape[1])), constant_values=NEG_INF)
        return scores_for_items(out, items)

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads this fitted model has."""
        _, spec = self._check()
        return tuple(spec.heads)

    @property
    def event_types(self) -> tuple[str, ...]:
        _, spec = self._check()
        return tuple(spec.event_types)

    def item_embeddings(self) -> np.ndarray:
        """The learned item table ``(n_items + 1, d)`` next-item scores are dot products with; items added
        after fitting get zero rows."""
        net, _ = self._check()
        with torch.no_grad():
            table = net.item_table().float().numpy()
        return np.pad(table, ((0, self.n_items + 1 - len(table)), (0, 0)))

    def predict(self, users: str | list[str], items: list[str] | None = None, k: int = 10,
                at: int | None = None, context: Dataset | None = None) -> list[dict[str, Any]]:
        """Every prediction for known users (raw ids), next to their next-item list.

        Parameters
        ----------
        users:
            Raw user ids known to the model (their training events are the history).
        items:
            Raw item ids whose rating to predict (rating head only).
        k:
            Length of the next-item list.
        at:
            Time (seconds) the value window starts; just after the last training event by default.
        context:
            The users' current events (e.g. a store's, built with the model's vocabularies:
            :func:`lmrec.serving.heads.context_for`) instead of their training events; items the model does
            not know are left out.

        Returns
        -------
        list of dict
            Per user: ``user``, ``next_items`` (``[{"item", "score"}]``), and, for the heads the model has,
            ``ratings`` (``{item: rating}``), ``next_type`` (``{type: probability}``) and ``value``
            (``{"predicted", "kind", "horizon_days", "from"}``).
        """
        _, spec = self._check()
        assert self.user_map is not None and self.item_map is not None
        user_list = [users] if isinstance(users, str) else list(users)
        uidx = self.user_map.indices(user_list)  # unknown users are an error that names them
        if context is None:
            ids, scores = self.recommend(user_list, k=k)
        else:
            seqs = context.sequences
            hist = [self.item_map.raws(seqs[u]).tolist() if u < len(seqs) else [] for u in uidx.tolist()]
            ids, scores = self.recommend(user_list, k=k, histories=hist)
        out: list[dict[str, Any]] = []
        for r, u in enumerate(user_list):
            out.append({"user": u, "next_items": [{"item": str(i), "score": float(s)} for i, s in
                                                  zip(ids[r], scores[r], strict=True) if i != ""]})
        if items and "rating" in spec.heads:
            iidx = self.item_map.indices(items)
            rat = self.predict_ratings(np.repeat(uidx, len(iidx)), np.tile(iidx, len(uidx)), context=context)
            for r in range(len(user_list)):
                out[r]["ratings"] = {it: float(v) for it, v in
                                     zip(items, rat[r * len(iidx):(r + 1) * len(iidx)], strict=True)}
        if "next_type" in spec.heads:
            p = self.predict_next_type(uidx, context=context)
            for r in range(len(user_list)):
                out[r]["next_type"] = {t: float(v) for t, v in zip(spec.event_types, p[r], strict=True)}
        if "value" in spec.heads:
            start = (max(spec.value_cut_end, end_time(context)) if context is not None else spec.value_cut_end
                     ) if at is None else int(at)
            v = self.predict_value(uidx, context=context, at=start)
            for r in range(len(user_list)):
                out[r]["value"] = {"predicted": float(v[r]), "kind": self.config.value_target,
                                   "horizon_days": self.config.horizon_days, "from": start}
        return out

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        assert self.events_ is not None
        ev = self.events_
        return {"ev_offsets": ev.items.offsets, "ev_items": ev.items.values, "ev_tokens": ev.tokens.values,
                "ev_types": ev.types.values, "ev_times": ev.times.values, "ev_ratings": ev.ratings.values,
                "ev_values": ev.values.values, "ev_rating_dev": ev.rating_dev.values}

    def _save_extra(self, path: Path) -> None:
        net, spec = self._check()
        (path / META_FILE).write_text(json.dumps({"spec": asdict(spec), "train": self.train_result_}))
        torch.save(net.state_dict(), path / WEIGHTS_FILE)
        # heads whose network is not the next-item one: one state per distinct network, and which head uses it
        own = {h: n for h, n in self.head_networks_.items() if n is not net}
        if own:
            keys: dict[int, str] = {}
            for h, n in own.items():
                keys.setdefault(id(n), h)
            torch.save({"heads": {h: keys[id(n)] for h, n in own.items()},
                        "states": {keys[id(n)]: n.state_dict() for n in own.values()}},
                       path / HEAD_WEIGHTS_FILE)
        else:
            (path / HEAD_WEIGHTS_FILE).unlink(missing_ok=True)

    def _forget_rows(self, rows: np.ndarray, raw_ids: list[str]) -> None:
        """Erased users' event rows (items, times, ratings, values) go with their histories."""
        if self.events_ is None or len(rows) == 0:
            return
        keep = rows[rows < len(self.events_.items)]
        self.events_ = Events(*(getattr(self.events_, k).emptied(keep) for k in EVENT_ARRAYS))

    def _load_state(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        meta = json.loads((path / META_FILE).read_text())
        self.spec_ = Spec(**meta["spec"])
        self.train_result_ = meta.get("train")
        off = arrays["ev_offsets"]
        self.events_ = Events(*(Ragged(off, arrays[f"ev_{k}"]) for k in EVENT_ARRAYS))
        net = self._build_network()
        net.load_state_dict(torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        self.network_ = net.eval()
        self.head_networks_ = {}
        if (path / HEAD_WEIGHTS_FILE).exists():  # per-head stopping; older folders have one network
            saved = torch.load(path / HEAD_WEIGHTS_FILE, map_location="cpu", weights_only=True)
            nets: dict[str, MultiTaskNetwork] = {}
            for key, state in saved["states"].items():
                nets[key] = self._build_network()
                nets[key].load_state_dict(state)
                nets[key].eval()
            self.head_networks_ = {h: nets[k] for h, k in saved["heads"].items()}
