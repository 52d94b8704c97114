"""MultiTask: one sequence representation, several predictions — next item, rating, next action type, user
value.

A user's events (item, type and value bucket, time gap) go through the SeqRec causal encoder
(:class:`~lmrec.models.seqrec.network.SequenceEncoder`); its state after event ``t`` feeds four heads:

* **next item** — dot product with the shared item vectors, trained with full softmax cross-entropy over the
  catalogue (Klenitskiy & Vasilev, RecSys 2023). This makes the model a
  :class:`~lmrec.models.base.Recommender`.
* **rating** — ``μ + b_i + a·d_t + MLP([h_t, e_i, h_t ⊙ e_i])`` for the item ``i`` of event ``t + 1``: a
  biased
  factorisation whose user part is read from the sequence. ``d_t`` is the user's shrunk mean rating deviation
  so
  far, a statistic of the input (the user bias that biased MF learns per user). Squared error.
* **next action type** — a linear softmax over the dataset's event types for event ``t + 1``. Cross-entropy.
* **user value** — at a cut time, ``log1p`` of the user's value over the next ``horizon_days`` (total purchase
  amount, or number of events) from ``[h_last, RFM features]``: the state after the last event before the cut
  and the user's recency, frequency, monetary... at the cut (:func:`lmrec.prediction.tasks.rfm_frame`; the
  sequence cannot know how long ago its last event was). Trained at several earlier cuts whose windows end
  before the latest training event. Squared error.

Each event's value enters the input: the type embedding is indexed by (type, value bucket), so a 5-star and a
1-star rating, or a cheap and an expensive purchase, are different tokens.

The heads are trained jointly with fixed weights (``w_*``), or with learned homoscedastic-uncertainty weights
(Kendall, Gal & Cipolla, CVPR 2018: ``Σ exp(-s_k) L_k + s_k``, ``weighting="uncertainty"``), or one at a time
(``heads=("rating",)``). Early stopping watches the sum of the active heads' validation losses, each relative
to
its first value; validation holds out the last training event of a seeded share of users (and the latest value
cut).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.models.base import NEG_INF, Recommender, register, scores_for_items
from lmrec.models.capabilities import ItemEmbeddings, PredictionHeads
from lmrec.models.seqrec.network import ItemEncoder, NetworkConfig, SequenceEncoder, gap_buckets
from lmrec.prediction.tasks import DAY, RFM_FEATURES, rfm_frame, value_cuts

log = logging.getLogger(__name__)

HEADS = ("next_item", "rating", "next_type", "value")
WEIGHTINGS = ("fixed", "uncertainty")
META_FILE = "multitask.json"
WEIGHTS_FILE = "weights.pt"
#: Shrinkage (pseudo-ratings at the global mean) of the running user-mean feature of the rating head.
RATING_SHRINK = 5.0


@dataclass(frozen=True)
class MultiTaskConfig:
    """Hyper-parameters of :class:`MultiTask`.

    Parameters
    ----------
    heads:
        Heads to train (a subset of :data:`HEADS`); heads the data cannot support are dropped at fit time
        (no ratings → no rating head; one event type → no type head; too short a log → no value head).
    w_next_item, w_rating, w_next_type, w_value:
        Loss weights (fixed weighting), or multipliers of the learned terms (uncertainty weighting).
    weighting:
        ``"fixed"`` or ``"uncertainty"`` (Kendall et al. 2018).
    rating_type:
        The event type whose ``value`` is a rating.
    value_target:
        ``"amount"`` (sum of purchase values) or ``"count"`` (number of events) in the future window.
    horizon_days:
        The value head's future window ``T``.
    value_cuts, value_step_days:
        Training cuts for the value head (the latest is validation), ``value_step_days`` apart.
    value_buckets:
        Buckets of event values in the input tokens (0: values are not an input).
    user_factors, user_reg:
        Rating head only: add a per-user bias and a ``user_factors``-dimensional user × item factor term
        (biased MF next to the sequence state) with L2 penalty ``user_reg``; 0 (the default) keeps the rating
        a
        function of the history alone.
    item_repr:
        ``"id"``, ``"text"`` or ``"fused"``: item vectors from ids, from the items' language-model text
        vectors
        (``fit(..., item_vectors=...)`` or :func:`lmrec.text.item_vectors`), or both
        (:class:`~lmrec.models.seqrec.network.ItemEncoder`).
    d_model, max_len, encoder, n_layers, n_heads, dropout, n_gap_buckets:
        The SeqRec encoder (:class:`~lmrec.models.seqrec.network.NetworkConfig`).
    epochs, batch_size, lr, weight_decay, patience, device, seed, progress:
        Training (:class:`~lmrec.training.trainer.TrainConfig`).
    valid_users:
        Share of users (seeded) whose last training event is held out for early stopping (with the latest
        value cut); 0 trains for ``epochs`` without validation.
    num_threads:
        CPU threads for training (0: all cores). One is the default because small models on a shared machine
        run many times faster single-threaded than with threads contending for cores.
    """

    heads: tuple[str, ...] = HEADS
    w_next_item: float = 1.0
    w_rating: float = 1.0
    w_next_type: float = 1.0
    w_value: float = 1.0
    weighting: str = "fixed"
    rating_type: str = "rating"
    value_target: str = "amount"
    horizon_days: float = 30.0
    value_cuts: int = 5
    value_step_days: float = 7.0
    value_buckets: int = 5
    user_factors: int = 0
    user_reg: float = 0.05
    item_repr: str = "id"
    d_model: int = 64
    max_len: int = 50
    encoder: str = "transformer"
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    n_gap_buckets: int = 28
    epochs: int = 40
    valid_users: float = 0.1
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 4
    device: str = "auto"
    num_threads: int = 1
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(self.heads))  # a JSON round trip gives a list
        unknown = set(self.heads) - set(HEADS)
        if unknown or not self.heads:
            raise ValueError(f"heads must be a non-empty subset of {HEADS}, got {self.heads}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.value_target not in ("amount", "count"):
            raise ValueError(f"value_target must be 'amount' or 'count', got {self.value_target!r}")

    def weight(self, head: str) -> float:
        return float(getattr(self, f"w_{head}"))


@dataclass
class _Events:
    """Per-user event arrays aligned with ``Dataset.sequences`` (row = user index)."""

    items: Ragged
    tokens: Ragged  # 1 + type * (value_buckets + 1) + bucket; 0 is padding
    types: Ragged
    times: Ragged
    ratings: Ragged  # float, NaN where the event is not a rating
    values: Ragged  # float, NaN where the event has no value
    rating_dev: Ragged  # float: shrunk mean rating deviation up to and including each event


@dataclass
class _Spec:
    """What the network was built for (saved next to the weights)."""

    n_items: int
    event_types: list[str]
    heads: list[str]
    value_edges: list[float]
    rating_mu: float = 0.0
    rating_range: list[float] = field(default_factory=lambda: [1.0, 5.0])
    side_mean: list[float] = field(default_factory=list)
    side_std: list[float] = field(default_factory=list)
    value_cut_end: int = 0  # the time "now" defaults to: just after the last training event
    n_users: int = 0
    user_factors: int = 0
    item_repr: str = "id"  # the representation used (config's, unless the text vectors were degenerate)
    text_dim: int = 0

    @property
    def n_types(self) -> int:
        return len(self.event_types)


class MultiTaskNetwork(nn.Module):
    """The SeqRec encoder and the four heads. Takes tensors already on its device."""

    def __init__(self, net_cfg: NetworkConfig, spec: _Spec, text_vectors: np.ndarray | None = None,
                 item_counts: np.ndarray | None = None) -> None:
        super().__init__()
        d = net_cfg.d_model
        self.encoder = SequenceEncoder(net_cfg, ItemEncoder(net_cfg, text_vectors, item_counts))
        self.heads = tuple(spec.heads)
        self.register_buffer("rating_mu", torch.tensor(float(spec.rating_mu)))
        self.item_bias = nn.Embedding(net_cfg.n_items + 1, 1, padding_idx=PAD)
        nn.init.zeros_(self.item_bias.weight)
        self.rating_dev_w = nn.Parameter(torch.tensor(1.0))
        self.rating_mlp = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, 1))
        self.type_head = nn.Linear(d, max(1, spec.n_types))
        n_side = len(RFM_FEATURES)
        self.value_mlp = nn.Sequential(nn.Linear(d + n_side, d), nn.GELU(), nn.Linear(d, 1))
        self.log_vars = nn.Parameter(torch.zeros(len(HEADS)))  # uncertainty weighting, s_k per head
        self.user_factors = spec.user_factors
        if spec.user_factors > 0:
            # The optional biased-MF term of the rating head: b_u + p_u · q_i.
            self.user_bias = nn.Embedding(spec.n_users + 1, 1)
            self.user_vec = nn.Embedding(spec.n_users + 1, spec.user_factors)
            self.item_vec = nn.Embedding(net_cfg.n_items + 1, spec.user_factors)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.normal_(self.user_vec.weight, std=0.01)
            nn.init.normal_(self.item_vec.weight, std=0.01)

    def hidden(self, items: torch.Tensor, tokens: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` states; position ``t`` has seen events ``0..t``.

        The encoder's state plus the running mean of the input item vectors: a long-term taste term next to
        the
        order-aware one, so that what a user is like (not only what tends to come next) shapes every head.
        """
        h = self.encoder(items, tokens, gaps)  # (B, T, d)
        e = self.encoder.items(items)  # (B, T, d), padding rows are zero
        n = (items != PAD).cumsum(dim=1).clamp_min(1).unsqueeze(-1)  # (B, T, 1)
        return h + e.cumsum(dim=1) / n

    def item_table(self) -> torch.Tensor:
        return self.encoder.items()  # (n_items + 1, d)

    def rating(self, h: torch.Tensor, items: torch.Tensor, dev: torch.Tensor,
               users: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted rating of ``items`` (``(...,)``) given states ``h`` (``(..., d)``), deviations ``dev``
        and,
        with user factors, the user indices (unknown users: index 0, no user term)."""
        e = self.encoder.items(items)  # (..., d)
        x = torch.cat([h, e, h * e], dim=-1)
        r = (self.rating_mu + self.item_bias(items).squeeze(-1) + self.rating_dev_w * dev
             + self.rating_mlp(x).squeeze(-1))
        if self.user_factors > 0 and users is not None:
            r = r + self.user_bias(users).squeeze(-1) + (self.user_vec(users) * self.item_vec(items)).sum(-1)
        return r

    def user_penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Mean squared norm of the user-term parameters used (the L2 penalty of the biased-MF term)."""
        if self.user_factors <= 0:
            return torch.zeros((), device=items.device)
        return (self.user_vec(users).pow(2).sum(-1) + self.item_vec(items).pow(2).sum(-1)
                + self.user_bias(users).squeeze(-1).pow(2)).mean()

    def type_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.type_head(h)

    def value(self, h: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """Predicted ``log1p`` value from the last state ``(B, d)`` and standardised RFM features."""
        return self.value_mlp(torch.cat([h, side], dim=-1)).squeeze(-1)


class _LossModule(nn.Module):
    """``forward(**batch) -> (loss, 1)`` for :class:`~lmrec.training.trainer.Trainer`: the weighted head
    losses, each already a mean over its own targets."""

    def __init__(self, network: MultiTaskNetwork, cfg: MultiTaskConfig, allowed: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.cfg = cfg
        self.register_buffer("allowed", allowed)

    def head_losses(self, **b: torch.Tensor) -> dict[str, torch.Tensor]:
        net = self.network
        out: dict[str, torch.Tensor] = {}
        heads = net.heads
        if any(h in heads for h in ("next_item", "rating", "next_type")):
            h = net.hidden(b["items"], b["tokens"], b["gaps"])  # (B, T, d)
            tgt = b["tgt_items"]  # (B, T), PAD where no target
            has = tgt != PAD
            if "next_item" in heads:
                from lmrec.training.losses import full_softmax_ce

                n = has.sum().clamp_min(1)
                out["next_item"] = full_softmax_ce(h[has], tgt[has], net.item_table(), self.allowed) / n
            if "next_type" in heads:
                ok = b["tgt_types"] >= 0
                logits = net.type_logits(h[ok])
                out["next_type"] = F.cross_entropy(logits.float(), b["tgt_types"][ok]) if ok.any() \
                    else h.sum() * 0.0
            if "rating" in heads:
                ok = ~torch.isnan(b["tgt_ratings"])
                if ok.any():
                    users = b["users"].unsqueeze(1).expand_as(tgt)[ok]
                    pred = net.rating(h[ok], tgt[ok], b["rating_dev"][ok], users)
                    out["rating"] = F.mse_loss(pred.float(), b["tgt_ratings"][ok].float())
                    if self.training:  # the penalty shapes training only; validation compares errors
                        out["rating"] = out["rating"] + self.cfg.user_reg * net.user_penalty(users, tgt[ok])
                else:
                    out["rating"] = h.sum() * 0.0
        if "value" in heads:
            ok = b["val_ok"]
            if ok.any():
                hv = net.hidden(b["val_items"][ok], b["val_tokens"][ok], b["val_gaps"][ok])[:, -1]  # (n, d)
                pred = net.value(hv, b["val_side"][ok])
                out["value"] = F.mse_loss(pred.float(), b["val_target"][ok].float())
            else:
                out["value"] = net.log_vars.sum() * 0.0
        return out

    def forward(self, **b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses = self.head_losses(**b)
        total = torch.zeros((), device=self.allowed.device)
        for name, loss in losses.items():
            w = self.cfg.weight(name)
            if self.cfg.weighting == "uncertainty":
                s = self.network.log_vars[HEADS.index(name)]
                total = total + w * (torch.exp(-s) * loss + s)
            else:
                total = total + w * loss
        return total, torch.ones((), device=total.device)


def _value_edges(values: np.ndarray, n: int) -> np.ndarray:
    """Bucket edges: midpoints between distinct values when there are at most ``n`` (ratings), else quantiles
    of ``log1p`` (amounts)."""
    v = values[np.isfinite(values)]
    if n <= 0 or v.size == 0:
        return np.zeros(0)
    uniq = np.unique(v)
    if len(uniq) <= n:
        return (uniq[:-1] + uniq[1:]) / 2
    return np.unique(np.expm1(np.quantile(np.log1p(np.maximum(v, 0)), np.linspace(0, 1, n + 1)[1:-1])))


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
        self.spec_: _Spec | None = None
        self.events_: _Events | None = None
        self.train_result_: dict[str, Any] | None = None

    @property  # type: ignore[override]
    def needs_item_vectors(self) -> bool:
        """Text or fused item representations read the items' language-model vectors."""
        return self.config.item_repr != "id"

    # ------------------------------------------------------------------ data preparation
    def _events(self, ds: Dataset) -> _Events:
        """Per-user arrays the network reads, for any dataset sharing this model's vocabularies."""
        assert self.spec_ is not None
        spec, cfg = self.spec_, self.config
        ev = ds.events
        # The model's type vocabulary is the training one; unseen types map to the first.
        type_names = ev["event_type"].to_list()
        lookup = {t: i for i, t in enumerate(spec.event_types)}
        types = np.fromiter((lookup.get(t, 0) for t in type_names), dtype=np.int64, count=len(type_names))
        values = ev["value"].fill_null(float("nan")).to_numpy().astype(np.float64)
        edges = np.asarray(spec.value_edges)
        nb = cfg.value_buckets if len(edges) or cfg.value_buckets == 0 else 0
        if nb:
            bucket = np.where(np.isfinite(values), 1 + np.searchsorted(edges, np.nan_to_num(values)), 0)
        else:
            bucket = np.zeros(len(values), dtype=np.int64)
        tokens = 1 + types * (cfg.value_buckets + 1) + bucket
        is_rating = (ev["event_type"] == cfg.rating_type).to_numpy() & np.isfinite(values)
        ratings = np.where(is_rating, values, np.nan)
        # Running shrunk mean deviation of the user's ratings, including the current event.
        users = ev["user_idx"].to_numpy()
        dev = np.where(is_rating, values - spec.rating_mu, 0.0)
        cs = pl.DataFrame({"u": users, "d": dev, "c": is_rating.astype(np.float64)}).with_columns(
            pl.col("d").cum_sum().over("u"), pl.col("c").cum_sum().over("u"))
        rating_dev = (cs["d"].to_numpy() / (cs["c"].to_numpy() + RATING_SHRINK))
        off = ds.sequences.offsets
        return _Events(ds.sequences, Ragged(off, tokens.astype(np.int64)), Ragged(off, types),
                       ds.timestamps, Ragged(off, ratings), Ragged(off, values), Ragged(off, rating_dev))

    def _windows(self, ev: _Events, users: np.ndarray, ends: np.ndarray) -> dict[str, np.ndarray]:
        """Left-padded inputs of the ``max_len`` events before position ``ends[i]`` of user ``users[i]``."""
        L = self.config.max_len
        n = len(users)
        items = np.zeros((n, L), dtype=np.int64)
        tokens = np.zeros((n, L), dtype=np.int64)
        times = np.zeros((n, L), dtype=np.int64)
        valid = np.zeros((n, L), dtype=bool)
        dev = np.zeros(n, dtype=np.float32)
        off = ev.items.offsets
        for r, (u, e) in enumerate(zip(users, ends, strict=True)):
            s0 = off[u]
            a, b = s0 + max(0, e - L), s0 + e
            k = b - a
            if k:
                items[r, L - k:] = ev.items.values[a:b]
                tokens[r, L - k:] = ev.tokens.values[a:b]
                times[r, L - k:] = ev.times.values[a:b]
                valid[r, L - k:] = True
                dev[r] = ev.rating_dev.values[b - 1]
        gaps = gap_buckets(times, self.config.n_gap_buckets, valid)
        return {"items": items, "tokens": tokens, "gaps": gaps, "dev": dev}

    def _train_rows(self, ds: Dataset, ev: _Events) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Training and validation rows: sequence windows (+ value examples), as the Trainer's row arrays."""
        L = self.config.max_len
        lengths = ev.items.lengths
        seq_rows: list[tuple[int, int, bool]] = []  # (user, end, is_validation)
        candidates = np.flatnonzero(lengths >= 3)
        rng = np.random.default_rng(self.config.seed)
        n_val = int(round(self.config.valid_users * len(candidates)))
        held = set(rng.choice(candidates, size=n_val, replace=False).tolist()) if n_val else set()
        for u in np.flatnonzero(lengths >= 2):
            n = int(lengths[u])
            end = n
            if int(u) in held:
                seq_rows.append((int(u), n, True))  # validation: only the last event is a target
                end = n - 1  # this user's training windows stop before it
            while end >= 2:
                seq_rows.append((int(u), end, False))
                end -= L
        train = [r for r in seq_rows if not r[2]]
        val = [r for r in seq_rows if r[2]]

        def seq_arrays(rows: list[tuple[int, int, bool]], last_only: bool) -> dict[str, np.ndarray]:
            us = np.array([r[0] for r in rows], dtype=np.int64)
            ends = np.array([r[1] for r in rows], dtype=np.int64)
            inp = self._windows(ev, us, ends - 1)  # inputs: events end-L-1 .. end-2
            nxt = self._windows(ev, us, ends)  # targets: the following events
            tgt = nxt["items"].copy()
            off = ev.items.offsets
            # target types / ratings aligned with the input positions
            t_types = np.full(tgt.shape, -1, dtype=np.int64)
            t_rat = np.full(tgt.shape, np.nan, dtype=np.float32)
            dev = np.zeros(tgt.shape, dtype=np.float32)
            for r, (u, e) in enumerate(zip(us, ends, strict=True)):
                k = min(L, e - 1)
                a, b = off[u] + e - k, off[u] + e  # target events
                t_types[r, L - k:] = ev.types.values[a:b]
                t_rat[r, L - k:] = ev.ratings.values[a:b]
                dev[r, L - k:] = ev.rating_dev.values[a - 1:b - 1]
            tgt[inp["items"] == PAD] = PAD
            # A window that starts the sequence also predicts its first event from the empty "start" state
            # (the
            # padded column just before it), so first items are targets too and not only ever negatives.
            starts = (ends - 1 < L) & (ends >= 1)
            first_col = L - ends[starts]
            tgt[np.flatnonzero(starts), first_col] = ev.items.values[off[us[starts]]]
            t_types[np.flatnonzero(starts), first_col] = ev.types.values[off[us[starts]]]
            if last_only:
                tgt[:, :-1] = PAD
                t_types[:, :-1] = -1
                t_rat[:, :-1] = np.nan
            t_types[tgt == PAD] = -1
            t_rat[tgt == PAD] = np.nan
            return {"items": inp["items"], "tokens": inp["tokens"], "gaps": inp["gaps"], "tgt_items": tgt,
                    "tgt_types": t_types, "tgt_ratings": t_rat, "rating_dev": dev, "users": us}

        tr = seq_arrays(train, False) if train else None
        va = seq_arrays(val, True) if val else None
        vtr, vva = self._value_rows(ds, ev)
        return _merge_rows(tr, vtr, self.config.seed), _merge_rows(va, vva, self.config.seed)

    def _side(self, frame: pl.DataFrame) -> np.ndarray:
        """Standardised ``log1p`` RFM features (statistics from training)."""
        assert self.spec_ is not None
        x = np.log1p(np.maximum(frame.select(list(RFM_FEATURES)).to_numpy().astype(np.float64), 0.0))
        return ((x - np.asarray(self.spec_.side_mean)) / np.asarray(self.spec_.side_std)).astype(np.float32)

    def _value_rows(self, ds: Dataset, ev: _Events) -> tuple[dict[str, np.ndarray] | None,
                                                              dict[str, np.ndarray] | None]:
        assert self.spec_ is not None
        if "value" not in self.spec_.heads:
            return None, None
        cfg = self.config
        val_cut, cuts = value_cuts(ds, cfg.horizon_days, cfg.value_cuts, cfg.value_step_days)
        frames = {c: rfm_frame(ds.events, c, cfg.horizon_days, cfg.value_target) for c in [val_cut, *cuts]}
        x = np.vstack([np.log1p(np.maximum(f.select(list(RFM_FEATURES)).to_numpy(), 0.0)) for c, f in
                       frames.items() if c != val_cut])
        self.spec_.side_mean = x.mean(0).tolist()
        self.spec_.side_std = np.maximum(x.std(0), 1e-6).tolist()

        def rows(cut_list: list[int]) -> dict[str, np.ndarray] | None:
            parts = []
            for c in cut_list:
                f = frames[c]
                users = f["user_idx"].to_numpy().astype(np.int64)
                ends = np.array([np.searchsorted(ev.times[u], c, side="left") for u in users], dtype=np.int64)
                w = self._windows(ev, users, ends)
                parts.append({"val_items": w["items"], "val_tokens": w["tokens"], "val_gaps": w["gaps"],
                              "val_side": self._side(f),
                              "val_target": np.log1p(f["target"].to_numpy()).astype(np.float32)})
            if not parts:
                return None
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

        return rows(cuts), rows([val_cut])

    # ------------------------------------------------------------------ fitting
    def _fit(self, dataset: Dataset, valid: Any = None) -> None:
        from lmrec.training.trainer import TrainConfig, Trainer, seed_everything

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
        self.spec_ = _Spec(
            n_items=dataset.n_items, event_types=list(dataset.event_types), heads=heads,
            value_edges=_value_edges(vals.drop_nulls().to_numpy(), cfg.value_buckets).tolist(),
            rating_mu=float(ratings.mean()) if len(ratings) else 0.0,
            rating_range=[float(ratings.min()), float(ratings.max())] if len(ratings) else [0.0, 1.0],
            value_cut_end=_end_time(dataset),
            n_users=dataset.n_users, user_factors=cfg.user_factors if "rating" in heads else 0,
        )
        text = None
        if cfg.item_repr != "id":
            from lmrec.models.base import resolve_item_vectors

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
        train_rows, val_rows = self._train_rows(dataset, ev)
        self.network_ = self._build_network(text, dataset.item_popularity)
        allowed = torch.as_tensor(dataset.item_popularity > 0)
        allowed[PAD] = False
        module = _LossModule(self.network_, cfg, allowed)
        first: dict[str, float] = {}

        def evaluate(m: nn.Module) -> dict[str, float]:
            assert isinstance(m, _LossModule)
            dev = m.allowed.device
            with torch.no_grad():
                losses = _batched_losses(m, val_rows, dev, cfg.batch_size)
            for k, v in losses.items():
                first.setdefault(k, v if v > 0 else 1.0)
            out = {f"val_{k}": v for k, v in losses.items()}
            out["score"] = -sum(v / first[k] for k, v in losses.items())
            return out

        tc = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                         weight_decay=cfg.weight_decay,
                         patience=cfg.patience, seed=cfg.seed, device=cfg.device, progress=cfg.progress,
                         warmup_frac=0.05, num_threads=cfg.num_threads)
        use_valid = bool(val_rows) and cfg.valid_users > 0
        result = Trainer(module, tc, evaluate if use_valid else None, metric="score").fit(train_rows)
        self.network_ = module.network.cpu().eval()
        self.train_result_ = result.to_dict()

    def _build_network(self, text: np.ndarray | None = None,
                       counts: np.ndarray | None = None) -> MultiTaskNetwork:
        """The network for this spec; when loading, text vectors and counts are placeholders that the saved
        state (buffers included) overwrites."""
        assert self.spec_ is not None
        cfg, spec = self.config, self.spec_
        n_tokens = max(1, spec.n_types) * (cfg.value_buckets + 1)
        net_cfg = NetworkConfig(n_items=spec.n_items, d_model=cfg.d_model, max_len=cfg.max_len,
                                encoder=cfg.encoder, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                                dropout=cfg.dropout, n_types=n_tokens, n_gap_buckets=cfg.n_gap_buckets,
                                item_repr=spec.item_repr, text_dim=spec.text_dim)
        if spec.item_repr != "id" and text is None:
            shape = (spec.n_items + 1, spec.text_dim)
            text = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        if counts is None:
            counts = np.ones(spec.n_items + 1)
        return MultiTaskNetwork(net_cfg, spec, text, np.asarray(counts, dtype=np.float32))

    # ------------------------------------------------------------------ inference on index space
    def _check(self) -> tuple[MultiTaskNetwork, _Spec]:
        self._check_fitted()
        assert self.network_ is not None and self.spec_ is not None
        return self.network_, self.spec_

    @torch.no_grad()
    def _last_hidden(self, ev: _Events, users: np.ndarray, ends: np.ndarray,
                     batch: int = 512) -> tuple[torch.Tensor, np.ndarray]:
        """States after event ``ends[i] - 1`` of each user, ``(n, d)``, and the rating deviations there."""
        net, _ = self._check()
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

    def _context(self, context: Dataset | None) -> _Events:
        if context is None:
            assert self.events_ is not None
            return self.events_
        return self._events(context)

    def predict_ratings(self, users: np.ndarray, items: np.ndarray,
                        context: Dataset | None = None) -> np.ndarray:
        """Rating of ``items[i]`` by ``users[i]`` (indices) given each user's events in ``context`` (the
        training
        data by default), clipped to the training rating range."""
        net, spec = self._check()
        if "rating" not in spec.heads:
            raise ValueError("this model has no rating head (the training data had no ratings)")
        ev = self._context(context)
        users = np.asarray(users, dtype=np.int64)
        uniq, inv = np.unique(users, return_inverse=True)
        h, dev = self._last_hidden(ev, uniq, ev.items.lengths[uniq])
        with torch.no_grad():
            item_t = torch.as_tensor(np.asarray(items, dtype=np.int64))
            u_t = torch.as_tensor(np.where(users < spec.n_users + 1, users, 0))
            r = net.rating(h[inv], item_t, torch.from_numpy(dev[inv]), u_t)
        return np.clip(r.numpy().astype(np.float64), *spec.rating_range)

    def predict_next_type(self, users: np.ndarray, context: Dataset | None = None,
                          ends: np.ndarray | None = None) -> np.ndarray:
        """Probabilities ``(n, n_types)`` (columns in :attr:`event_types` order) of the type of each user's
        next
        event: after their last event in ``context``, or after event ``ends[i] - 1`` when ``ends`` is
        given."""
        net, spec = self._check()
        if "next_type" not in spec.heads:
            raise ValueError("this model has no next-type head (one event type only)")
        ev = self._context(context)
        users = np.asarray(users, dtype=np.int64)
        e = ev.items.lengths[users] if ends is None else np.asarray(ends, dtype=np.int64)
        h, _ = self._last_hidden(ev, users, e)
        with torch.no_grad():
            return torch.softmax(net.type_logits(h).float(), dim=-1).numpy().astype(np.float64)

    def predict_value(self, users: np.ndarray, context: Dataset | None = None,
                      at: int | None = None) -> np.ndarray:
        """Each user's predicted value over the ``horizon_days`` after ``at`` (original scale: an amount or a
        count), from their events in ``context`` before ``at`` (default: just after the last training event or
        the newest event of ``context``, whichever is later)."""
        net, spec = self._check()
        if "value" not in spec.heads:
            raise ValueError("this model has no value head (the log was too short for its horizon)")
        users = np.asarray(users, dtype=np.int64)
        if at is None:
            # "Now": after the last training event, or after the newest event of the given context (a service
            # passes the user's stored events, which may be newer than the model).
            at = max(spec.value_cut_end, _end_time(context) if context is not None else 0)
        at = int(at)
        if context is None:
            assert self.user_histories_ is not None
            ev = self._context(None)
            events = _events_frame(ev, spec)
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
        h, _ = self._last_hidden(ev, users, ends)
        with torch.no_grad():
            out = net.value(h, torch.from_numpy(self._side(frame))).numpy().astype(np.float64)
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
        it = np.zeros((n, L), dtype=np.int64)
        tok = np.zeros((n, L), dtype=np.int64)
        ts = np.zeros((n, L), dtype=np.int64)
        known_ts = np.zeros((n, L), dtype=bool)
        for r in range(n):
            h = histories[r][-L:]
            k = len(h)
            if not k:
                continue
            it[r, L - k:] = h
            tok[r, L - k:] = 1  # the first type with no value, for events known only by their item
            full = histories[r]
            u = users_arr[r]
            if 0 < u < len(self.events_.items):
                stored = self.events_.items[u]
                m = min(len(stored), len(full))
                if m and np.array_equal(stored[:m], full[:m]):
                    # positions of the window that fall inside the stored prefix
                    start = len(full) - k
                    j = np.arange(start, start + k)
                    inside = j < m
                    tok[r, L - k:][inside] = self.events_.tokens[u][j[inside]]
                    ts[r, L - k:][inside] = self.events_.times[u][j[inside]]
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
                at: int | None = None) -> list[dict[str, Any]]:
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
        ids, scores = self.recommend(user_list, k=k)
        out: list[dict[str, Any]] = []
        for r, u in enumerate(user_list):
            out.append({"user": u, "next_items": [{"item": str(i), "score": float(s)} for i, s in
                                                  zip(ids[r], scores[r], strict=True) if i != ""]})
        if items and "rating" in spec.heads:
            iidx = self.item_map.indices(items)
            rat = self.predict_ratings(np.repeat(uidx, len(iidx)), np.tile(iidx, len(uidx)))
            for r in range(len(user_list)):
                out[r]["ratings"] = {it: float(v) for it, v in
                                     zip(items, rat[r * len(iidx):(r + 1) * len(iidx)], strict=True)}
        if "next_type" in spec.heads:
            p = self.predict_next_type(uidx)
            for r in range(len(user_list)):
                out[r]["next_type"] = {t: float(v) for t, v in zip(spec.event_types, p[r], strict=True)}
        if "value" in spec.heads:
            start = spec.value_cut_end if at is None else int(at)
            v = self.predict_value(uidx, at=start)
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

    def _load_state(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        meta = json.loads((path / META_FILE).read_text())
        self.spec_ = _Spec(**meta["spec"])
        self.train_result_ = meta.get("train")
        off = arrays["ev_offsets"]
        self.events_ = _Events(*(Ragged(off, arrays[f"ev_{k}"]) for k in
                                 ("items", "tokens", "types", "times", "ratings", "values", "rating_dev")))
        net = self._build_network()
        net.load_state_dict(torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        self.network_ = net.eval()


def _end_time(ds: Dataset) -> int:
    """Just after the last event: where "now" is for a model fitted on ``ds``."""
    return int(ds.events["timestamp"].max()) + 1 if ds.n_events else 0  # type: ignore[arg-type]


def _events_frame(ev: _Events, spec: _Spec) -> pl.DataFrame:
    """The stored training events as the table :func:`rfm_frame` reads."""
    users = ev.items.row_ids()
    names = np.asarray(spec.event_types, dtype=object)[ev.types.values] if len(ev.types.values) else []
    return pl.DataFrame({"user_idx": users.astype(np.int32), "timestamp": ev.times.values.astype(np.int64),
                         "event_type": pl.Series(list(names), dtype=pl.String),
                         "value": pl.Series(ev.values.values, dtype=pl.Float64).fill_nan(None)})


def _merge_rows(seq: dict[str, np.ndarray] | None, val: dict[str, np.ndarray] | None,
                seed: int) -> dict[str, np.ndarray]:
    """Pair sequence windows with value examples row by row (the shorter list is cycled, in a seeded order),
    so the Trainer sees one array per field with a shared first dimension."""
    if seq is None and val is None:
        return {}
    n = max(len(next(iter(d.values()))) for d in (seq, val) if d)
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for d, ok_key in ((seq, "seq_ok"), (val, "val_ok")):
        if d is None:
            continue
        m = len(next(iter(d.values())))
        idx = np.concatenate([np.arange(m), rng.integers(0, m, n - m)]) if n > m else np.arange(n)
        out.update({k: v[idx] for k, v in d.items()})
        out[ok_key] = np.ones(n, dtype=bool)
    if "val_ok" not in out:
        out["val_ok"] = np.zeros(n, dtype=bool)
    if seq is None:  # value only: empty sequence fields so the loss module's signature holds
        L = next(iter(val.values())).shape[1] if val else 1  # type: ignore[union-attr]
        for k in ("items", "tokens", "gaps", "tgt_items", "tgt_types"):
            out[k] = np.zeros((n, L), dtype=np.int64)
        out["users"] = np.zeros(n, dtype=np.int64)
        out["tgt_ratings"] = np.full((n, L), np.nan, dtype=np.float32)
        out["rating_dev"] = np.zeros((n, L), dtype=np.float32)
    if "val_items" not in out:
        L = out["items"].shape[1]
        out.update({"val_items": np.zeros((n, L), dtype=np.int64),
                    "val_tokens": np.zeros((n, L), dtype=np.int64),
                    "val_gaps": np.zeros((n, L), dtype=np.int64),
                    "val_side": np.zeros((n, len(RFM_FEATURES)), dtype=np.float32),
                    "val_target": np.zeros(n, dtype=np.float32)})
    out.pop("seq_ok", None)
    return out


def _batched_losses(m: _LossModule, rows: dict[str, np.ndarray], device: torch.device,
                    batch: int) -> dict[str, float]:
    """Per-head validation losses (means over batches weighted by batch size)."""
    n = len(next(iter(rows.values())))
    sums: dict[str, float] = {}
    for s in range(0, n, batch):
        b = {k: torch.from_numpy(v[s:s + batch]).to(device) for k, v in rows.items()}
        for k, v in m.head_losses(**b).items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(b["items"])
    return {k: v / max(1, n) for k, v in sums.items() if math.isfinite(v)}


__all__ = ["HEADS", "MultiTask", "MultiTaskConfig", "MultiTaskNetwork"]
_ = DAY  # re-exported unit for callers building cut times
