"""SeqRec, the recommender: configuration, fitting through :mod:`lmrec.training`, scoring raw histories,
its item table and history states as embeddings, saving.

References
----------
Kang & McAuley, "Self-Attentive Sequential Recommendation" (SASRec), ICDM 2018.
Klenitskiy & Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?", RecSys 2023
(full softmax cross-entropy).
Hou et al., "Towards Universal Sequence Representation Learning for Recommender Systems" (UniSRec), KDD 2022
(whitened text vectors through an adapter).
Liu et al., "Large Language Models Enhanced Sequential Recommendation for Long-tail User and Item" (LLM-ESR),
NeurIPS 2024 (text view for the tail, id view for the head).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import polars as pl
import torch
from torch import nn

from lmrec.data.cooccurrence import spectral_item_factors
from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.ranking import full_ranking_metrics
from lmrec.data.schema import PAD
from lmrec.models.base import Recommender, register, scores_for_items
from lmrec.models.capabilities import (
    ColdStartItems,
    IncrementalUpdates,
    LinearScores,
    UpdateReport,
    UserEmbeddings,
)
from lmrec.models.incremental import UpdateClock, absorb_events, replay_users
from lmrec.models.seqrec.features import (
    CATEGORY_NAMES,
    CONTEXT_FEATURES,
    FeatureError,
    FeatureSet,
    fit_features,
    parse_names,
    split_spec,
)
from lmrec.models.seqrec.network import (
    CausalSelfAttention,
    FeatureArrays,
    NetworkConfig,
    SeqRecNetwork,
    text_item_factors,
)
from lmrec.models.seqrec.rows import WINDOWS, sequence_rows, side_inputs_for, window_bounds
from lmrec.training.losses import (
    LOSSES,
    bce_one_negative,
    full_softmax_ce,
    popularity_proposal,
    sampled_softmax_logq,
)
from lmrec.training.privacy import require_opacus
from lmrec.training.trainer import TrainConfig, Trainer, TrainResult, seed_everything

WEIGHTS_FILE = "seqrec.pt"
#: Score of items an ``id`` model has no trained vector for: below every real score, still rankable.
UNTRAINED_SCORE = -1e9
#: How SeqRec's id table can start (``SeqRecConfig.id_init``).
ID_INITS = ("auto", "svd", "random", "text", "svd+text")
#: the starts that read the items' text vectors (an ``id`` model with one of them needs them too)
TEXT_INITS = ("text", "svd+text")
NETWORK_FILE = "network.json"
TRAINING_FILE = "train_result.json"


class BodyRuntime(Protocol):
    """How the encoder body runs when scoring (:mod:`lmrec.models.seqrec.inference`: int8, ONNX).

    ``last_state(x, valid)`` maps embedded inputs ``(B, T, d)`` and their padding mask ``(B, T)`` to the state
    after the newest event ``(B, d)``, as ``network.sequence_encoder`` does in float.
    """

    name: str

    def last_state(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class SideInfo:
    """Per-user training event types and times, aligned with the training sequences (row = user index)."""

    sequences: Ragged
    type_sequences: Ragged
    timestamps: Ragged


@dataclass(frozen=True)
class SeqRecConfig:
    """Every setting of SeqRec: network, item representation, loss and training.

    The defaults are tuned for MovieLens-100K/-1M-sized data (see ``docs/seqrec.md``): a 2-layer, 64-wide
    Transformer over the last 50 events at most (``max_len="auto"``), full softmax, AdamW (lr 4e-3) with
    warm-up and cosine decay, an exponential moving average of the weights (``ema_decay=0.99``) validated for
    early stopping on NDCG@10 and kept as the fitted model.
    """

    # --- network
    encoder: str = "transformer"  # transformer | gru | lstm
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    #: Events of history read per prediction. ``"auto"`` (default) derives it from the training data when
    #: fitting (:func:`auto_max_len`: the 90th percentile of user history lengths, rounded up to a multiple of
    #: 8, between 8 and ``max_len_cap``); the fitted model's config holds the resolved integer.
    max_len: int | str = "auto"
    #: The most that max_len="auto" may choose (also the window under differential privacy). 50, not 200
    #: (issue 18): on MovieLens-100K validation NDCG@10 0.1047 against 0.0883 at 200, at about half the
    #: seconds per epoch (docs/benchmarks.md, section seqrec-defaults).
    max_len_cap: int = 50
    dropout: float = 0.3
    ff_mult: int = 1  # feed-forward width / d_model (1 as SASRec: the full softmax dominates the cost anyway)
    use_types: bool = False  # feed the event type of every input event
    gap_buckets: int = 0  # > 0: feed log-scale time-gap buckets (e.g. 32)
    windows: str = "all"  # all: every max_len window of each history | last: one row per user (SASRec)
    # --- side features (lmrec.models.seqrec.features; docs/seqrec.md, "Side features")
    #: Item features by name: "category" (the categories list) or a column / attributes key ("brand",
    #: "price"; "price:8" for 8 quantile buckets). Comma-separated or a list. Added to every item vector.
    item_features: tuple[str, ...] | str = ()
    #: User features by name: a users-table column or attributes key ("age", "gender"). Added to the input.
    user_features: tuple[str, ...] | str = ()
    #: Context of each input event: "hour" (UTC hour of day) and/or "weekday".
    context_features: tuple[str, ...] | str = ()
    feature_buckets: int = 8  # quantile buckets of a numeric feature (fitted on the training items/users)
    #: a categorical value on fewer training items (users) than this shares the unknown id (UNK), which
    #: values never seen in training (new items) also get
    feature_min_count: int = 2
    # --- item representation
    item_repr: str = "id"  # id | text | fused
    text_adapter: str = "whiten"  # whiten | pca | none
    text_reduced_dim: int = 128
    adapter_hidden: int = 256
    fuse_pivot: float = 5.0  # fused: training count at which the id gate starts at one half
    #: fused: how much of an item's id part is used. "count" (default): a gate of log(1 + count); "learned":
    #: that plus a per-item term from the item's text, trained end to end; "none": gate 1; "residual": gate 1
    #: with ids started at zero (item vector = text vector at first). See docs/seqrec.md for why count stays.
    fuse_gate: str = "count"
    #: fused: lift of the id gate on the output side only (targets), in training and scoring: 0 one table for
    #: inputs and targets; 1 targets use every trained item's whole id part, inputs keep the gate (issue 18)
    output_gate_lift: float = 0.0
    id_dropout: float = 0.5  # fused: drop a rare item's id part in training w.p. id_dropout * (1 - gate)
    id_dropout_min: float = 0.3  # fused: floor of that probability for every item (helps cold items)
    #: how the id table starts: "svd" the items' spectral factors of the training user-item matrix
    #: (:func:`spectral_item_factors`), so the first epoch starts from co-occurrence instead of noise;
    #: "random" a normal draw; "text" the items' text vectors (fused: as the adapter reduces them; id: their
    #: top principal components, :func:`text_item_factors`); "svd+text" half the columns each (the spectral
    #: factors first), so that an id model starts from co-occurrence and text alike (issue 18: Office
    #: validation +6.5 % over "svd"; docs/seqrec.md); "auto" (default) "svd" for item_repr="id" and "random"
    #: for fused (whose text part already starts structured; chosen on validation, docs/seqrec.md) and under
    #: differential privacy (so fused with fuse_gate="residual" keeps its zero start unless a start is asked
    #: for). An id model with a text start reads the items' text vectors as fused ones do.
    id_init: str = "auto"
    id_init_from_text: bool = False  # the older spelling of id_init="text" (kept for saved configurations)
    pop_prior: str = "none"  # none | fixed | user: scores + β·log(1 + count), β fixed or learned per user
    pop_prior_weight: float = 1.0  # the fixed β (or the starting β of "user")
    prior_at_scoring: float = 1.0  # scale of that prior when scoring: 1 as trained, < 1 favours rare items
    #: fused: when scoring, lift every trained item's id gate g to g + id_gate_at_scoring · (1 − g): 0 as
    #: trained, 1 every trained id at full weight (rare items, whose gate is small, gain the most)
    id_gate_at_scoring: float = 0.0
    # --- loss
    #: ce (full softmax) | sampled (log-Q corrected) | bce (one negative, as SASRec) | auto
    #: (:func:`auto_loss`: ce while one batch's full-softmax logits fit in ``full_softmax_bytes``, else
    #: sampled; the fitted model's config holds the resolved loss)
    loss: str = "ce"
    full_softmax_bytes: int = 512 * 2**20  # loss="auto": the largest logits block of one batch for ce
    n_negatives: int = 256  # sampled softmax: negatives shared by a batch
    sampling_alpha: float = 0.75  # sampled softmax: proposal ∝ count^alpha
    # --- training: the trainer's own settings and defaults (one source of truth, one flat --set namespace)
    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    #: 4e-3 with the weight average below, not the trainer's 1e-3 (issue 18; chosen on validation: section
    #: seqrec-defaults of docs/benchmarks.md, and docs/seqrec.md "Weight averaging"; 2e-3 until 2026-11-30)
    lr: float = 4e-3
    weight_decay: float = TrainConfig.weight_decay
    schedule: str = TrainConfig.schedule
    warmup_frac: float = TrainConfig.warmup_frac
    warmup_steps: int = TrainConfig.warmup_steps
    plateau_factor: float = TrainConfig.plateau_factor
    plateau_patience: int = TrainConfig.plateau_patience
    min_lr_ratio: float = TrainConfig.min_lr_ratio
    grad_clip: float = TrainConfig.grad_clip
    eval_every: int = TrainConfig.eval_every
    patience: int = TrainConfig.patience
    seed: int = TrainConfig.seed
    device: str = TrainConfig.device
    amp: bool = TrainConfig.amp
    num_threads: int = TrainConfig.num_threads
    checkpoint_dir: str = TrainConfig.checkpoint_dir
    resume: bool = TrainConfig.resume
    progress: bool = TrainConfig.progress
    bucket_by_length: bool = TrainConfig.bucket_by_length
    time_budget: float = TrainConfig.time_budget  # seconds of training (0: none); lmrec train --time-budget
    # --- differential privacy (DP-SGD through Opacus, per user: docs/seqrec.md, "Differential privacy")
    dp_epsilon: float = TrainConfig.dp_epsilon  # target ε (0: off); needs pip install 'lmrec[dp]'
    dp_delta: float = TrainConfig.dp_delta  # δ (0: 1 / (10 · users with training rows))
    dp_max_grad_norm: float = TrainConfig.dp_max_grad_norm  # each user's gradient is clipped to this norm
    dp_accountant: str = TrainConfig.dp_accountant  # rdp | prv
    #: Polyak averaging of the weights (0: off; TrainConfig): validation, early stopping and the fitted model
    #: use the average. 0.99, not the trainer's 0: higher validation NDCG@10 on Office and MovieLens-100K
    ema_decay: float = 0.99
    eval_batch: int = 512

    def __post_init__(self) -> None:
        # names are kept as tuples whatever form they came in ("category,brand", a list from JSON)
        for name in ("item_features", "user_features", "context_features"):
            object.__setattr__(self, name, parse_names(getattr(self, name)))
        for spec in (*self.item_features, *self.user_features):
            split_spec(spec)  # "price:8" well formed
        unknown = [c for c in self.context_features if c not in CONTEXT_FEATURES]
        if unknown:
            raise ValueError(f"context_features must be among {sorted(CONTEXT_FEATURES)}, got {unknown}")
        if self.id_init not in ID_INITS:
            raise ValueError(f"id_init must be one of {ID_INITS}, got {self.id_init!r}")
        if self.feature_buckets < 2 or self.feature_min_count < 1:
            raise ValueError("feature_buckets must be at least 2 and feature_min_count at least 1")
        if self.loss not in (*LOSSES, "auto"):
            raise ValueError(f"loss must be one of {(*LOSSES, 'auto')}, got {self.loss!r}")
        if self.windows not in WINDOWS:
            raise ValueError(f"windows must be one of {WINDOWS}, got {self.windows!r}")
        for lift in ("id_gate_at_scoring", "output_gate_lift"):
            if not 0.0 <= getattr(self, lift) <= 1.0:
                raise ValueError(f"{lift} must lie in [0, 1], got {getattr(self, lift)}")
        if self.max_len != "auto" and (not isinstance(self.max_len, int) or self.max_len < 1):
            raise ValueError(f"max_len must be a positive integer or 'auto', got {self.max_len!r}")
        if self.max_len_cap < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("max_len_cap, epochs and batch_size must be positive")
        self.train_config()  # the trainer's own checks (schedule, plateau settings)
        if self.dp_epsilon < 0:
            raise ValueError(f"dp_epsilon must be >= 0 (0: no differential privacy), got {self.dp_epsilon}")
        if self.dp_epsilon > 0:
            # Only what the DP-SGD steps compute is covered: settings reading the data otherwise are refused.
            refused = {
                "item_repr": (self.item_repr, "id", "text/fused gate and whiten on training item counts"),
                "pop_prior": (self.pop_prior, "none", "the prior is computed from training item counts"),
                "loss": (self.loss, "ce", "sampled/bce negatives are drawn by training popularity"),
                "encoder": (self.encoder, "transformer", "per-sample gradients are implemented for it"),
                "item_features": (self.item_features, (), "vocabularies and buckets are fitted on the data"),
                "user_features": (self.user_features, (), "vocabularies and buckets are fitted on the data"),
            }
            if self.id_init in ("svd", "svd+text"):
                refused["id_init"] = (self.id_init, "auto", "the spectral start reads the training matrix")
            for key, (value, need, why) in refused.items():
                if value != need:
                    raise ValueError(f"dp_epsilon > 0 needs {key}={need!r}, not {value!r} ({why})")

    def train_config(self) -> TrainConfig:
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in asdict(self).items() if k in names})

    @property
    def has_features(self) -> bool:
        """Whether item or user side features are configured (what needs a ``features.json``)."""
        return bool(self.item_features or self.user_features)

    def network_config(self, n_items: int, text_dim: int, n_types: int,
                       features: FeatureSet | None = None) -> NetworkConfig:
        if not isinstance(self.max_len, int):
            raise ValueError("max_len='auto' is resolved when fitting (auto_max_len); give an integer here")
        return NetworkConfig(
            n_items=n_items, d_model=self.d_model, max_len=self.max_len, encoder=self.encoder,
            n_layers=self.n_layers, n_heads=self.n_heads, dropout=self.dropout, ff_mult=self.ff_mult,
            item_repr=self.item_repr,
            text_dim=text_dim, text_adapter=self.text_adapter, text_reduced_dim=self.text_reduced_dim,
            adapter_hidden=self.adapter_hidden, fuse_pivot=self.fuse_pivot,
            fuse_gate=self.fuse_gate, output_gate_lift=self.output_gate_lift, id_dropout=self.id_dropout,
            id_dropout_min=self.id_dropout_min,
            pop_prior=self.pop_prior, pop_prior_weight=self.pop_prior_weight,
            n_types=n_types if self.use_types else 0, n_gap_buckets=self.gap_buckets,
            n_item_feature_ids=features.table_size("item") if features is not None else 0,
            n_user_feature_ids=features.table_size("user") if features is not None else 0,
            context_features=",".join(self.context_features),
        )


#: Percentile of the training history lengths that ``max_len="auto"`` covers.
AUTO_MAX_LEN_PERCENTILE = 90.0


def auto_max_len(lengths: np.ndarray, cap: int = 50, percentile: float = AUTO_MAX_LEN_PERCENTILE) -> int:
    """The data-derived ``max_len``: the ``percentile``-th percentile of the users' training history lengths
    (users with no events left out), rounded up to a multiple of 8, at least 8 and at most ``cap``.

    Nine users in ten then fit in one window whole; longer histories still train on all their events
    through ``windows="all"`` and are read from their newest ``max_len`` events when scoring. On short-history
    data (Amazon Office 2014, median 5 training events per user) this is 24 instead of 200, which cuts the
    cost of attention and padding without losing context; on MovieLens-100K (90th percentile 244) it is the
    cap, 50: with ``windows="all"`` every event is still trained on, and the newest 50 events predicted the
    next one better on validation than the newest 200 did.
    """
    lengths = np.asarray(lengths)
    lengths = lengths[lengths > 0]
    if len(lengths) == 0:
        return min(cap, 8)
    p = float(np.percentile(lengths, percentile))
    return int(min(max(cap, 1), max(8, 8 * int(np.ceil(p / 8)))))


def resolve_id_init(cfg: SeqRecConfig) -> str:
    """``id_init`` as a fit applies it: ``"auto"`` becomes ``"svd"`` for ``item_repr="id"`` without
    differential privacy and ``"random"`` otherwise; ``id_init_from_text`` (the older spelling) means
    ``"text"``."""
    if cfg.id_init_from_text:
        return "text"
    if cfg.id_init == "auto":
        return "svd" if cfg.item_repr == "id" and cfg.dp_epsilon == 0 else "random"
    return cfg.id_init


def auto_loss(n_items: int, batch_size: int, max_len: int, budget_bytes: int = 512 * 2**20) -> str:
    """The data-derived loss: ``"ce"`` (full softmax) while one batch's logits, ``batch_size × max_len ×
    (n_items + 1)`` float32, fit in ``budget_bytes``, else ``"sampled"`` (log-Q corrected sampled softmax).

    The full softmax's cost grows with the catalogue: one step materialises that logits block, and its
    backward pass the softmax and the gradient of the same size (about three times the block at the peak),
    with ``2 · d`` multiply-adds per logit each way. At the default budget (512 MiB: about 2 GiB at the peak,
    134 million logits, some 50 GFLOP a step at ``d = 64``) a batch of 64 windows of 50 events keeps the full
    softmax up to about 42,000 items, and 128 windows of 200 events up to about 5,200; beyond, the step's
    memory and time grow with the catalogue while the sampled softmax stays at ``n_negatives`` items a batch.
    """
    logits_bytes = 4 * int(batch_size) * int(max_len) * (int(n_items) + 1)
    return "ce" if logits_bytes <= budget_bytes else "sampled"


class NextItemLoss(nn.Module):
    """Wraps the network so that one ``forward`` returns a batch's summed next-item loss (what the Trainer
    and DistributedDataParallel need).

    ``items`` ``(B, T + 1)``: inputs are columns ``0..T-1`` and targets columns ``1..T`` (every prefix
    at once).
    """

    def __init__(self, network: SeqRecNetwork, loss: str, n_negatives: int = 256,
                 alpha: float = 0.75) -> None:
        super().__init__()
        self.network = network
        self.loss = loss
        self.n_negatives = n_negatives
        counts = network.item_encoder.counts
        # Items never seen in training are no evidence either way: they are left out of the softmax and out
        # of negative sampling (cold items then keep an unbiased, text-only score).
        self.register_buffer("allowed", counts > 0, persistent=False)
        if loss == "sampled":
            self.register_buffer("proposal", popularity_proposal(counts, alpha), persistent=False)
        if loss == "bce":
            self.register_buffer("candidates", torch.nonzero(counts > 0).flatten(), persistent=False)
        #: Compute the loss without data-dependent shapes (every position, padding weighted 0), so that
        #: ``torch.func.vmap`` can take per-row gradients (differential privacy); full softmax only.
        self.dense = False

    def _dense_ce(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed full-softmax cross-entropy over the real targets of ``(B, T, d)`` states, padding masked by
        weight rather than by indexing."""
        mask = targets != PAD
        raw = h @ self.network.item_table().T  # (B, T, n_items + 1)
        beta = self.network.prior_weights(h)
        if beta is not None:
            raw = raw + beta.unsqueeze(-1) * self.network.log_popularity()
        target_logit = raw.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # finite, even for padding
        lse = torch.logsumexp(raw.masked_fill(~self.allowed, float("-inf")).float(), dim=-1)
        return torch.where(mask, lse - target_logit.float(), torch.zeros_like(lse)).sum()

    def forward(self, items: torch.Tensor, types: torch.Tensor | None = None,
                gaps: torch.Tensor | None = None, users: torch.Tensor | None = None,
                hour: torch.Tensor | None = None,
                weekday: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = items[:, :-1], items[:, 1:]  # (B, T) each
        context = {k: v[:, :-1] for k, v in (("hour", hour), ("weekday", weekday)) if v is not None}
        h = self.network(inputs, None if types is None else types[:, :-1],
                         None if gaps is None else gaps[:, :-1], users, context or None)  # (B, T, d)
        if self.dense:
            if self.loss != "ce":
                raise ValueError(f"per-sample gradients need the full softmax (loss='ce'), not {self.loss!r}")
            return self._dense_ce(h, targets), (targets != PAD).sum()
        mask = targets != PAD  # (B, T): left padding, so a real target always has a real input
        h, y = h[mask], targets[mask]  # (N, d), (N,)
        out_items = self.network.output_items  # the output side's vectors (fused: output_gate_lift)
        beta = self.network.prior_weights(h)
        prior = None if beta is None else (beta, self.network.log_popularity())
        if self.loss == "ce":
            total = full_softmax_ce(h, y, self.network.item_table(), self.allowed, prior=prior)
        elif self.loss == "sampled":
            total = sampled_softmax_logq(h, y, out_items, self.proposal, self.n_negatives, prior=prior)
        else:
            total = bce_one_negative(h, y, out_items, self.candidates, prior=prior)
        return total, mask.sum()


@register("seqrec")
class SeqRec(Recommender, UserEmbeddings, LinearScores, ColdStartItems, IncrementalUpdates):
    """Sequential recommender: a causal Transformer (SASRec line) or GRU/LSTM over a user's last events.

    Items are represented by ids, by their language-model text vectors through a whitening adapter, or by both
    fused with a frequency gate (``item_repr``). ``score`` needs no user id: it reads the history it is given.
    Scores are dot products of the history's hidden state (:meth:`user_embeddings`) with the learned item
    table (:meth:`item_embeddings`), plus the popularity prior when ``pop_prior`` is set. See
    :class:`SeqRecConfig` for the settings and ``docs/seqrec.md`` for what to expect.

    Examples
    --------
    >>> model = create_model("seqrec", item_repr="fused", epochs=50)  # doctest: +SKIP
    >>> model.fit(split.train, split.valid)  # doctest: +SKIP
    >>> ids, scores = model.recommend(histories=[["50", "172", "133"]], k=10)  # doctest: +SKIP
    """

    Config = SeqRecConfig
    fast_config = {"d_model": 16, "n_layers": 1, "max_len": 20, "epochs": 10, "batch_size": 16, "lr": 3e-3,
                   "item_repr": "fused", "text_reduced_dim": 8, "adapter_hidden": 32,
                   "progress": False, "dropout": 0.1, "patience": 0}

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.network_: SeqRecNetwork | None = None
        self.train_result_: TrainResult | None = None
        self._known: SideInfo | None = None  # training types and times, for side inputs of known users
        #: The fitted side features (vocabularies, bucket edges), ``None`` without item/user features.
        self.features_: FeatureSet | None = None
        self._pending_attributes: dict[str, Any] = {}  # add_items(attributes=...) while it runs
        self._table: torch.Tensor | None = None  # cached item table for inference
        # (item table it was made from, the table with the prior's column, fixed scores): see linear_table
        self._linear: tuple[torch.Tensor, np.ndarray, np.ndarray] | None = None
        self._table_lift = 0.0  # the id_gate_at_scoring it was built with
        #: The encoder body's runtime when scoring (``None``: the float network; see :meth:`set_runtime`).
        self._runtime: BodyRuntime | None = None

    @property  # type: ignore[override]
    def needs_item_vectors(self) -> bool:
        return self.config.item_repr != "id" or resolve_id_init(self.config) in TEXT_INITS

    # ------------------------------------------------------------------ fitting
    def _fit(self, dataset: Dataset, valid: Any = None) -> None:
        private = self.config.dp_epsilon > 0
        if private:
            require_opacus()
        if self.config.max_len == "auto":
            # under DP the window is the cap: a percentile of the users' history lengths would read the data
            # outside the private steps
            self.config = replace(self.config, max_len=self.config.max_len_cap if private else
                                  auto_max_len(dataset.sequences.lengths, self.config.max_len_cap))
        if self.config.loss == "auto":
            self.config = replace(self.config, loss=auto_loss(dataset.n_items, self.config.batch_size,
                                                              int(self.config.max_len),
                                                              self.config.full_softmax_bytes))
        if self.config.id_init == "auto" or self.config.id_init_from_text:
            self.config = replace(self.config, id_init=resolve_id_init(self.config), id_init_from_text=False)
        cfg: SeqRecConfig = self.config
        seed_everything(cfg.seed)
        text = self.item_vectors_ if cfg.item_repr != "id" else None  # an id model's text start: _init_ids
        item_arrays, user_arrays = self._fit_features(dataset)
        net_cfg = cfg.network_config(dataset.n_items, 0 if text is None else text.shape[1],
                                     len(dataset.event_types), self.features_)
        counts = dataset.item_popularity
        if private:
            # no item counts in the network (they are statistics of the private data): every catalogue item
            # is a softmax alternative and is scored by its learned vector
            counts = np.ones_like(counts)
            counts[PAD] = 0
        network = SeqRecNetwork(net_cfg, text, counts, item_arrays, user_arrays)
        self._init_ids(network, dataset)
        self.network_ = network
        self._known = SideInfo(dataset.sequences, dataset.type_sequences, dataset.timestamps)
        self._table = None
        self._runtime = None  # a compressed form belongs to the weights it was made from
        rows = sequence_rows(dataset, cfg.max_len, with_types=cfg.use_types, gap_buckets=cfg.gap_buckets,
                             windows=cfg.windows, with_users=bool(cfg.user_features),
                             context=cfg.context_features)
        loss_module = NextItemLoss(network, cfg.loss, cfg.n_negatives, cfg.sampling_alpha)
        units = None
        if private:
            loss_module.dense = True  # per-user gradients through vmap need shapes that do not depend on data
            for m in network.modules():
                if isinstance(m, CausalSelfAttention):
                    m.explicit = True
            units, _ = window_bounds(dataset.sequences.lengths, cfg.max_len, cfg.windows)  # user of each row
        evaluate = None
        if valid is not None and len(valid) > 0:
            evaluate = self._validator(valid)
        trainer = Trainer(loss_module, cfg.train_config(), evaluate, metric="ndcg@10",
                          meta=self._checkpoint_meta(net_cfg), trim_key="items")
        self.train_result_ = trainer.fit(rows, units)
        if private:
            self.train_result_.privacy["unit"] = "user"
            loss_module.dense = False
            for m in network.modules():
                if isinstance(m, CausalSelfAttention):
                    m.explicit = False
        network.to("cpu").eval()

    def _init_ids(self, network: SeqRecNetwork, dataset: Dataset) -> None:
        """The id table's start (``id_init``, resolved); see :class:`SeqRecConfig`."""
        cfg = self.config
        if not network.cfg.uses_ids or cfg.id_init == "random":
            return
        if cfg.id_init == "text" and cfg.item_repr == "fused":
            network.item_encoder.init_ids_from_text()
            return
        d = network.cfg.d_model
        blocks = []
        if cfg.id_init in ("svd", "svd+text"):
            width = d if cfg.id_init == "svd" else d // 2
            blocks.append(spectral_item_factors(dataset, width, seed=cfg.seed))
        if cfg.id_init in TEXT_INITS:
            if self.item_vectors_ is None:
                raise ValueError(f"id_init={cfg.id_init!r} needs the items' text vectors")
            taken = sum(b.shape[1] for b in blocks if b is not None)
            # the axes of the items with training events (under DP: of the whole catalogue, no event read)
            fit_rows = dataset.item_popularity > 0 if cfg.dp_epsilon == 0 else None
            blocks.append(text_item_factors(self.item_vectors_, d - taken, fit_rows))
        # each block at one spread, so that neither half outweighs the other (init_ids rescales the whole)
        kept = [b / max(float(b[1:].std()), 1e-12) for b in blocks if b is not None and b.shape[1] > 0]
        if kept:
            network.item_encoder.init_ids(np.concatenate(kept, axis=1))

    def _fit_features(self, dataset: Dataset) -> tuple[FeatureArrays | None, FeatureArrays | None]:
        """Fit the configured item and user features on the training data (vocabularies and buckets from
        the items and users with training events); their ids per item and per user index (row 0 padding)."""
        cfg: SeqRecConfig = self.config
        self.features_ = None
        if not cfg.has_features:
            return None, None
        items_seen = np.flatnonzero(dataset.item_popularity[1:] > 0)  # table row = index - 1
        users_seen = np.flatnonzero(dataset.sequences.lengths[1:] > 0)
        self.features_ = fit_features(dataset.items, dataset.users, items_seen, users_seen,
                                      item=cfg.item_features, user=cfg.user_features,
                                      context=cfg.context_features, n_buckets=cfg.feature_buckets,
                                      min_count=cfg.feature_min_count)
        return self._encode_side("item", dataset.items), self._encode_side("user", dataset.users)

    def _encode_side(self, side: str, table: pl.DataFrame) -> FeatureArrays | None:
        """Feature ids and weights of every item (user) index of the model, row 0 padding, from ``table``
        (rows matched by id; ids the table lacks get no features)."""
        assert self.item_map is not None and self.user_map is not None
        if self.features_ is None or not self.features_.features(side):
            return None
        key, idmap = ("item_id", self.item_map) if side == "item" else ("user_id", self.user_map)
        order = pl.DataFrame({key: idmap.raw_ids}, schema={key: pl.String})
        aligned = order.join(table, on=key, how="left", maintain_order="left")
        ids, w = self.features_.encode(side, aligned)
        return (np.concatenate([np.zeros((1, ids.shape[1]), ids.dtype), ids]),
                np.concatenate([np.zeros((1, w.shape[1]), w.dtype), w]))

    def use_features_of(self, dataset: Dataset) -> SeqRec:
        """Re-read the item and user features from ``dataset``'s tables (an updated catalogue, users'
        changed attributes), encoded with the model's saved vocabularies and buckets: values it never saw
        become unknown (UNK). Items and users are matched by raw id; those the tables lack keep theirs. A
        configured feature that the data does not have at all is a :class:`FeatureError` naming it."""
        self._check_fitted()
        net = self.network_
        assert net is not None
        if self.features_ is None:
            return self
        for side in ("item", "user"):
            arrays = self._encode_side(side, dataset.items if side == "item" else dataset.users)
            if arrays is None:
                continue
            table = dataset.items if side == "item" else dataset.users
            key, idmap = ("item_id", self.item_map) if side == "item" else ("user_id", self.user_map)
            assert idmap is not None
            rows = idmap.indices(table[key].to_list(), strict=False)
            rows = rows[rows != PAD]
            module = net.item_encoder.features if side == "item" else net.sequence_encoder.user_features
            assert module is not None
            module.set_rows(rows, (arrays[0][rows], arrays[1][rows]))
        self._table = None
        return self

    def _validator(self, valid: Any):  # -> Callable[[nn.Module], dict[str, float]]
        users = np.asarray(valid.users, dtype=np.int64)

        def evaluate(module: nn.Module) -> dict[str, float]:
            net = module.network if isinstance(module, NextItemLoss) else module
            assert isinstance(net, SeqRecNetwork)
            device = next(net.parameters()).device
            with torch.inference_mode():
                # (n_items + 1, d), once per validation
                table = net.item_table(self.config.id_gate_at_scoring)

                def score_rows(r: np.ndarray) -> np.ndarray:
                    s = self._scores_tensor(net, valid.history.take(r), users[r], table, device)
                    return s.float().cpu().numpy()

                return full_ranking_metrics(score_rows, valid.history, valid.targets, k=10,
                                            batch_size=self.config.eval_batch)

        return evaluate

    def _checkpoint_meta(self, net_cfg: NetworkConfig) -> dict[str, Any]:
        assert self.item_map is not None
        return {"model": self.name, "config": _jsonable(asdict(self.config)), "network": asdict(net_cfg),
                "item_ids": self.item_map.raw_ids, "text": self.text_source()}

    def text_source(self) -> dict[str, Any]:
        """The text space and hash of the text vectors used (empty for ``item_repr="id"`` unless its id table
        starts from them)."""
        if self.item_vectors_ is None or not self.needs_item_vectors:
            return {}
        meta = self.text_space_.to_dict() if self.text_space_ is not None else {}
        digest = hashlib.sha256(np.ascontiguousarray(self.item_vectors_)).hexdigest()
        meta.setdefault("vectors_sha256", digest)
        return meta

    # ------------------------------------------------------------------ scoring
    def _hidden(self, net: SeqRecNetwork, histories: Ragged, users: np.ndarray | None,
                device: torch.device) -> torch.Tensor:
        """``(rows, d)`` states after the newest event, from the last ``max_len`` events of each history."""
        cfg: SeqRecConfig = self.config
        # Only as wide as the longest history of the chunk: left padding beyond it changes nothing.
        L = int(min(cfg.max_len, max(1, int(histories.lengths.max(initial=1)))))
        items = torch.as_tensor(histories.last(L, pad=PAD).astype(np.int64), device=device)
        side = side_inputs_for(histories, users, L, self._known, with_types=cfg.use_types,
                               gap_buckets=cfg.gap_buckets, context=cfg.context_features)
        types = torch.as_tensor(side["types"], device=device) if "types" in side else None
        gaps = torch.as_tensor(side["gaps"], device=device) if "gaps" in side else None
        context = {c: torch.as_tensor(side[c], device=device) for c in cfg.context_features} or None
        u = None
        if cfg.user_features:
            u = torch.as_tensor(np.zeros(len(histories), dtype=np.int64) if users is None
                                else np.asarray(users, dtype=np.int64), device=device)
        if self._runtime is None or net.training:
            return net(items, types, gaps, u, context)[:, -1]  # (rows, d): the state after the newest event
        # Inputs are embedded by the float network (so new items and side inputs work as in float); only the
        # encoder body runs in the chosen runtime.
        x = net.sequence_encoder.embed(items, types, gaps, u, context)
        return self._runtime.last_state(x, items != PAD).to(device=device, dtype=x.dtype)

    def _scores_tensor(self, net: SeqRecNetwork, histories: Ragged, users: np.ndarray | None,
                       table: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``(rows, n_items + 1)`` scores on ``device`` from the last ``max_len`` events of each history."""
        h = self._hidden(net, histories, users, device)
        scores = net.scores(h, table, self.config.prior_at_scoring)  # (rows, n_items + 1)
        if not net.cfg.represents_unseen:
            # An id vector never trained (no training event, or added later) says nothing about the item; left
            # alone, weight decay shrinks it to a neutral 0 that outranks every item the user is steered away
            # from. Such items rank after every known one instead (text models do represent them).
            untrained = net.item_encoder.counts[: scores.shape[1]] <= 0
            scores = scores.masked_fill(untrained, UNTRAINED_SCORE)
        return scores

    def score(self, histories: Ragged, users: np.ndarray | None = None,
              items: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted()
        net = self.network_
        assert net is not None
        if net.training:  # eval() walks every module: ~1 ms a request on a 2-layer network
            net.eval()
        device = next(net.parameters()).device
        out = np.empty((len(histories), self.n_items + 1), dtype=np.float32)
        table = self._item_table()
        with torch.inference_mode():
            bs = max(1, self.config.eval_batch)
            for start in range(0, len(histories), bs):
                rows = np.arange(start, min(start + bs, len(histories)))
                u = None if users is None else np.asarray(users)[rows]
                s = self._scores_tensor(net, histories.take(rows), u, table, device)
                out[rows] = s.float().cpu().numpy()
        out[:, PAD] = -np.inf
        return scores_for_items(out, items)

    def _item_table(self) -> torch.Tensor:
        """The cached item table ``(n_items + 1, d)`` (rebuilt after the catalogue or device changes)."""
        assert self.network_ is not None
        lift = self.config.id_gate_at_scoring
        if self._table is None or self._table.shape[0] != self.n_items + 1 or self._table_lift != lift:
            with torch.inference_mode():
                self._table = self.network_.item_table(lift)
            self._table_lift = lift
        return self._table

    def item_embeddings(self) -> np.ndarray:
        """The learned item table ``(n_items + 1, d)`` the scores are dot products with: id vectors, adapted
        text vectors or their gated sum (``item_repr``). An ``id`` model has no representation of items
        without training events (added later, say): their rows are zeros."""
        self._check_fitted()
        net = self.network_
        assert net is not None
        if net.training:  # eval() walks every module: ~1 ms a request on a 2-layer network
            net.eval()
        table = self._item_table().float().cpu().numpy().copy()
        if not net.cfg.represents_unseen:
            table[net.item_encoder.counts.cpu().numpy()[: len(table)] <= 0] = 0.0
        return table

    def user_embeddings(self, histories: Ragged, users: np.ndarray | None = None) -> np.ndarray:
        """The hidden state after each history's newest event ``(rows, d)`` (zeros for empty histories):
        ``score = user · item`` (+ the popularity prior when the model has one)."""
        self._check_fitted()
        net = self.network_
        assert net is not None
        if net.training:  # eval() walks every module: ~1 ms a request on a 2-layer network
            net.eval()
        device = next(net.parameters()).device
        out = np.zeros((len(histories), net.cfg.d_model), dtype=np.float32)
        bs = max(1, self.config.eval_batch)
        with torch.inference_mode():
            for start in range(0, len(histories), bs):
                rows = np.arange(start, min(start + bs, len(histories)))
                u = None if users is None else np.asarray(users)[rows]
                out[rows] = self._hidden(net, histories.take(rows), u, device).float().cpu().numpy()
        out[histories.lengths == 0] = 0.0
        return out

    def linear_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores as inner products (:class:`LinearScores`): the item table, with the popularity prior's item
        side as one more column when the model scores with a prior; items an ``id`` model never trained on
        score ``UNTRAINED_SCORE`` whatever the history."""
        self._check_fitted()
        net = self.network_
        assert net is not None
        table = self._item_table()
        if self._linear is not None and self._linear[0] is table:
            return self._linear[1], self._linear[2]
        with torch.inference_mode():
            t = table.float().cpu()
            if self._prior_scale() is not None:
                t = torch.cat([t, net.log_popularity()[: t.shape[0]].float().cpu().unsqueeze(1)], dim=1)
            arr = t.numpy().astype(np.float32, copy=True)
        fixed = np.full(len(arr), np.nan, dtype=np.float32)
        if not net.cfg.represents_unseen:
            fixed[net.item_encoder.counts.cpu().numpy()[: len(arr)] <= 0] = UNTRAINED_SCORE
        fixed[PAD] = -np.inf
        self._linear = (table, arr, fixed)
        return arr, fixed

    def linear_queries(self, histories: Ragged, users: np.ndarray | None = None) -> np.ndarray:
        """The hidden state after each history's newest event, with the prior's weight ``β(h)`` as one more
        column when the model scores with a prior: ``query · linear_table()[0][i]`` scores item ``i``."""
        self._check_fitted()
        net = self.network_
        assert net is not None
        if net.training:
            net.eval()
        device = next(net.parameters()).device
        scale = self._prior_scale()
        parts = []
        with torch.inference_mode():
            bs = max(1, self.config.eval_batch)
            for start in range(0, len(histories), bs):
                rows = np.arange(start, min(start + bs, len(histories)))
                u = None if users is None else np.asarray(users)[rows]
                h = self._hidden(net, histories.take(rows), u, device).float()
                if scale is not None:
                    beta = net.prior_weights(h)
                    assert beta is not None
                    h = torch.cat([h, (scale * beta.float()).unsqueeze(1)], dim=1)
                parts.append(h.cpu().numpy())
        d = net.cfg.d_model + (scale is not None)
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, d), np.float32)

    def _prior_scale(self) -> float | None:
        """The popularity prior's scale when scoring, ``None`` when scores have no prior term."""
        assert self.network_ is not None
        scale = float(self.config.prior_at_scoring)
        return scale if self.network_.cfg.pop_prior != "none" and scale else None

    @property
    def runtime(self) -> str:
        """The runtime of the encoder body when scoring: ``"torch"`` (float), ``"int8"`` or ``"onnx"``."""
        return "torch" if self._runtime is None else self._runtime.name

    def set_runtime(self, runtime: BodyRuntime | None) -> SeqRec:
        """Score through ``runtime`` (built by :mod:`lmrec.models.seqrec.inference`); ``None``: the float
        network. Everything else (item table, popularity prior, new items, masks) stays the float model's."""
        self._runtime = runtime
        return self

    def to(self, device: str | torch.device) -> SeqRec:
        """Move the network (for scoring) to ``device``."""
        assert self.network_ is not None
        self.network_.to(device)
        self._table = None
        return self

    # ------------------------------------------------------------------ incremental updates
    #: Epochs of an incremental update (:meth:`update`).
    update_passes: ClassVar[int] = 3
    #: Users with older sequences replayed in an update, per user with new events (against forgetting).
    update_replay: ClassVar[float] = 1.0

    def update(self, events: pl.DataFrame, items: pl.DataFrame | None = None, *, passes: int | None = None,
               seed: int = 0) -> UpdateReport:
        """Absorb ``events`` and continue training from the current weights for ``passes`` epochs (default
        :attr:`update_passes`).

        New items get rows (from their text for ``text``/``fused`` models, random ids for ``id``), and every
        item's training count becomes old + new, so new items join the softmax and the fused gate. The rows
        trained on are the newest window of every user with new events plus :attr:`update_replay` times as
        many other users' newest windows (rehearsal, so that the update does not forget the rest). The
        learning rate follows the model's schedule over the update's own epochs, without validation.

        Models with side inputs (``use_types``, ``gap_buckets``) or differential privacy are refused: the
        model keeps no times or types of its older events, and an update would spend privacy budget outside
        the fit's accounting.
        """
        cfg: SeqRecConfig = self.config
        if cfg.use_types or cfg.gap_buckets or cfg.user_features or cfg.context_features:
            raise ValueError("SeqRec.update needs a model without side inputs (use_types, gap_buckets, "
                             "user_features, context_features): the model keeps no times or types of its "
                             "older events, nor features of users new since the fit; refit instead")
        if cfg.dp_epsilon > 0:
            raise ValueError("SeqRec.update is refused under differential privacy (dp_epsilon > 0): the "
                             "update's steps are outside the fit's privacy accounting; refit instead")
        self._check_fitted()
        clock = UpdateClock()
        absorbed = absorb_events(self, events, items)  # grows the network's item rows (_on_items_added)
        net = self.network_
        assert net is not None and self.popularity_ is not None and isinstance(cfg.max_len, int)
        enc = net.item_encoder
        with torch.no_grad():
            enc.counts = torch.as_tensor(self.popularity_, dtype=torch.float32, device=enc.counts.device)
            if net.cfg.pop_prior != "none":
                enc.log_pop = enc._log_popularity()
        users = replay_users(absorbed, self.update_replay, seed)
        n = max(1, int(passes if passes is not None else self.update_passes))
        if len(users):
            part = absorbed.dataset.with_events(
                absorbed.dataset.events.filter(pl.col("user_idx").is_in(users.tolist())))
            rows = sequence_rows(part, cfg.max_len, windows="last")
            if len(rows["items"]):
                seed_everything(seed)
                train_cfg = replace(cfg.train_config(), epochs=n, patience=0, checkpoint_dir="",
                                    resume=False, time_budget=0.0, progress=False, seed=seed)
                loss = NextItemLoss(net, cfg.loss, cfg.n_negatives, cfg.sampling_alpha)
                Trainer(loss, train_cfg, None, metric="ndcg@10", trim_key="items").fit(rows)
        net.to("cpu").eval()
        self._table = None
        self._runtime = None  # a compressed body belongs to the weights it was made from
        self._known = None
        wall, cpu = clock.seconds()
        return UpdateReport(absorbed.n_events, absorbed.new_users, absorbed.new_items, len(users), n, wall,
                            cpu)

    # ------------------------------------------------------------------ new items (cold start)
    def add_items(self, item_ids: Sequence[str], categories: Sequence[Sequence[str]] | None = None, *,
                  vectors: np.ndarray | None = None, texts: Sequence[str] | None = None,
                  attributes: Sequence[Mapping[str, Any] | str | None] | None = None) -> np.ndarray:
        """:meth:`Recommender.add_items`, and ``attributes`` (one JSON object or dict per item, as the items
        table's column: ``{"brand": "Acme", "price": 12.5}``) for the item features: a new item's features
        come from its categories and attributes, encoded with the fitted vocabularies and buckets (values
        never seen in training are unknown, UNK; features it lacks are left out)."""
        if attributes is not None and len(attributes) != len(item_ids):
            raise ValueError(f"{len(attributes)} attribute objects for {len(item_ids)} items")
        self._pending_attributes = dict(zip([str(i) for i in item_ids], attributes or [], strict=False))
        try:
            return super().add_items(item_ids, categories, vectors=vectors, texts=texts)
        finally:
            self._pending_attributes = {}

    def _item_feature_arrays(self, indices: np.ndarray) -> FeatureArrays | None:
        """Feature ids and weights of items ``indices`` from the model's categories and the attributes given
        to :meth:`add_items`."""
        if self.features_ is None or not self.features_.item:
            return None
        assert self.item_map is not None and self.item_categories_ is not None
        raw = [str(r) for r in self.item_map.raws(indices)]
        attrs = []
        for r in raw:
            a = self._pending_attributes.get(r)
            attrs.append(json.dumps(a) if isinstance(a, Mapping) else a)
        table = pl.DataFrame({"item_id": raw,
                              "categories": [list(self.item_categories_[int(i)]) for i in indices],
                              "attributes": attrs},
                             schema={"item_id": pl.String, "categories": pl.List(pl.String),
                                     "attributes": pl.String})
        values = {}
        for f in self.features_.item:
            if f.name in CATEGORY_NAMES:
                values[f.name] = table["categories"].to_list()
            else:
                objs = [json.loads(a) if a else {} for a in table["attributes"].to_list()]
                values[f.name] = [o.get(f.name) if isinstance(o, dict) else None for o in objs]
        return self.features_.encode_values("item", values, len(indices))

    def _on_items_added(self, indices: np.ndarray) -> None:
        assert self.network_ is not None
        vecs = None
        if self.network_.cfg.uses_text:
            assert self.item_vectors_ is not None
            vecs = self.item_vectors_[indices]
        self.network_.item_encoder.add_items(vecs, len(indices), self._item_feature_arrays(indices))
        self.network_.cfg = self.network_.item_encoder.cfg
        self._table = None

    def set_item_categories(self, indices: np.ndarray, categories: Sequence[Sequence[str]]) -> None:
        """:meth:`Recommender.set_item_categories`; a ``category`` item feature follows the new categories."""
        super().set_item_categories(indices, categories)
        if self.features_ is None or self.network_ is None:
            return
        names = [f.name for f in self.features_.item if f.name in CATEGORY_NAMES]
        if not names:
            return
        indices = np.asarray(indices, dtype=np.int64)
        arrays = self._item_feature_arrays(indices)
        assert arrays is not None
        module = self.network_.item_encoder.features
        ids, w = module.ids[indices].cpu().numpy(), module.weights[indices].cpu().numpy()
        for name in names:  # only the category columns change; the attribute features stay as they were
            sl = self.features_.slices("item")[name]
            ids[:, sl], w[:, sl] = arrays[0][:, sl], arrays[1][:, sl]
        module.set_rows(indices, (ids, w))
        self._table = None

    def _forget_rows(self, rows: np.ndarray, raw_ids: list[str]) -> None:
        """Erased users keep no features (their attributes are personal data)."""
        module = None if self.network_ is None else self.network_.sequence_encoder.user_features
        if module is None or not len(rows):
            return
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[rows < module.ids.shape[0]]
        width = module.ids.shape[1]
        module.set_rows(rows, (np.zeros((len(rows), width), np.int64),
                               np.zeros((len(rows), width), np.float32)))

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        cfg: SeqRecConfig = self.config
        if self._known is None or not (cfg.use_types or cfg.gap_buckets or cfg.context_features):
            return {}
        return {"side_types": self._known.type_sequences.values, "side_times": self._known.timestamps.values}

    def _save_extra(self, path: Path) -> None:
        assert self.network_ is not None
        # Text vectors are saved once, by the base class (arrays.npz); the weights file holds the rest.
        state = {k: v.detach().cpu() for k, v in self.network_.state_dict().items()
                 if k != "item_encoder.text"}
        torch.save(state, path / WEIGHTS_FILE)
        (path / NETWORK_FILE).write_text(json.dumps(
            {"network": asdict(self.network_.cfg), "text": self.text_source()}, indent=1))
        if self.features_ is not None:
            self.features_.write(path)
        if self.train_result_ is not None:
            (path / TRAINING_FILE).write_text(json.dumps(self.train_result_.to_dict(), indent=1))

    def _load_state(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        info = json.loads((path / NETWORK_FILE).read_text())
        net_cfg = NetworkConfig(**info["network"])
        state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        text = self.item_vectors_ if net_cfg.uses_text else None
        item_arrays, user_arrays = self._load_features(path, net_cfg, state)
        net = SeqRecNetwork(net_cfg, text, state["item_encoder.counts"].numpy(), item_arrays, user_arrays)
        if text is not None:
            state["item_encoder.text"] = torch.as_tensor(np.asarray(text, dtype=np.float32))
        net.load_state_dict(state)
        self.network_ = net.eval()
        if "side_types" in arrays and self.user_histories_ is not None:
            off = self.user_histories_.offsets
            self._known = SideInfo(self.user_histories_, Ragged(off, arrays["side_types"]),
                                   Ragged(off, arrays["side_times"]))
        if (path / TRAINING_FILE).exists():
            self.train_result_ = TrainResult(**json.loads((path / TRAINING_FILE).read_text()))

    def _load_features(self, path: Path, net_cfg: NetworkConfig, state: dict[str, torch.Tensor]
                       ) -> tuple[FeatureArrays | None, FeatureArrays | None]:
        """Read and check ``features.json`` against the config and the saved weights: the features' ids per
        item and user (:class:`FeatureError` naming what is missing or inconsistent)."""
        cfg: SeqRecConfig = self.config
        self.features_ = None
        if not cfg.has_features:
            return None, None
        self.features_ = FeatureSet.read(path, cfg.item_features, cfg.user_features, cfg.context_features)
        out: list[FeatureArrays | None] = []
        for side, prefix, n_ids in (("item", "item_encoder.features", net_cfg.n_item_feature_ids),
                                    ("user", "sequence_encoder.user_features", net_cfg.n_user_feature_ids)):
            if not self.features_.features(side):
                out.append(None)
                continue
            size = self.features_.table_size(side)
            if size != n_ids:
                raise FeatureError(f"{path}: the {side} features define {size} ids but the network was "
                                   f"trained with {n_ids}: features.json does not belong to these weights")
            ids, w = state.get(f"{prefix}.ids"), state.get(f"{prefix}.weights")
            if ids is None or w is None:
                raise FeatureError(f"{path / WEIGHTS_FILE} holds no {side} feature ids ({prefix}.ids)")
            if ids.shape[1] != self.features_.width(side):
                raise FeatureError(f"{path}: {side} feature ids are {ids.shape[1]} wide, features.json says "
                                   f"{self.features_.width(side)}")
            out.append((ids.numpy(), w.numpy()))
        return out[0], out[1]


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))
