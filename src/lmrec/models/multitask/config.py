"""MultiTask's settings (:class:`MultiTaskConfig`) and what a fitted network was built for (:class:`Spec`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lmrec.models.seqrec.network import NetworkConfig
from lmrec.training.trainer import TrainConfig

HEADS = ("next_item", "rating", "next_type", "value")
WEIGHTINGS = ("fixed", "uncertainty")
STOPPINGS = ("joint", "per_head")
#: Warm-up share of the learning-rate schedule (not a setting; the Trainer's default is 0.02).
WARMUP_FRAC = 0.05


@dataclass(frozen=True)
class MultiTaskConfig:
    """Hyper-parameters of :class:`~lmrec.models.multitask.MultiTask`.

    Encoder and training settings take their defaults from SeqRec's
    :class:`~lmrec.models.seqrec.network.NetworkConfig` and the Trainer's
    :class:`~lmrec.training.trainer.TrainConfig` (one source of truth), except where MultiTask has its own
    default, commented at the field.

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
        a function of the history alone.
    item_repr:
        ``"id"``, ``"text"`` or ``"fused"``: item vectors from ids, from the items' language-model text
        vectors (``fit(..., item_vectors=...)`` or :func:`lmrec.text.item_vectors`), or both
        (:class:`~lmrec.models.seqrec.network.ItemEncoder`).
    d_model, max_len, encoder, n_layers, n_heads, dropout, n_gap_buckets:
        The SeqRec encoder (:class:`~lmrec.models.seqrec.network.NetworkConfig`).
    epochs, batch_size, lr, weight_decay, patience, device, seed, progress:
        Training (:class:`~lmrec.training.trainer.TrainConfig`).
    valid_users:
        Share of users (seeded) whose last training event is held out for early stopping (with the latest
        value cut); 0 trains for ``epochs`` without validation.
    stopping:
        ``"per_head"`` (default): each head is validated on its own loss every epoch and keeps a snapshot of
        the whole model (trunk and heads) at its best epoch; it stops after ``patience`` validations without
        improving, and its loss then leaves the objective so that the trunk serves the heads still learning;
        training ends when every head has stopped. Each head then predicts with its own snapshot (next-item
        scores and item embeddings with the next-item head's). ``"joint"``: one early stop on the sum of the
        heads' validation losses (each relative to its first value); one set of weights.
    head_finetune:
        After per-head stopping (``stopping="per_head"``), fine-tune each head from its own snapshot on its
        loss alone (the whole network, a fresh optimiser and schedule, early stopping on that head's
        validation loss); the head keeps the fine-tuned weights only if they validate better than its
        snapshot, so no head ends worse on validation than its joint-training best. A model with one head
        has no fine-tune phase.
    finetune_lr:
        Learning rate of the fine-tune phase, as a multiple of ``lr``.
    head_alone:
        After the joint phases, train each head alone from scratch as well (its own trunk: exactly the
        single-task model ``heads=(head,)`` with every other setting the same), and let each head predict with
        whichever of the two validates better on its own loss, so that no head ends worse on validation than
        the head trained alone. Costs one single-task fit per head; needs validation (``valid_users > 0``); a
        model with one head has no such phase.
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
    # --- the encoder: SeqRec's network settings
    item_repr: str = NetworkConfig.item_repr
    d_model: int = NetworkConfig.d_model
    # Differs (NetworkConfig: 200, SeqRec's long-history default): MultiTask reads shorter windows, which it
    # builds for every sequence row and for every user at every value cut.
    max_len: int = 50
    encoder: str = NetworkConfig.encoder
    n_layers: int = NetworkConfig.n_layers
    n_heads: int = NetworkConfig.n_heads
    dropout: float = NetworkConfig.dropout
    # Differs (NetworkConfig: 0, no gap input): MultiTask feeds time-gap buckets by default; the timing of
    # events is part of what its next-type and value heads predict.
    n_gap_buckets: int = 28
    # --- training: the Trainer's settings
    # Differs (TrainConfig: 200, sized for SeqRec): a shorter budget; the joint heads stop early well before
    # it (the value head overfits after ~5 epochs, docs/prediction.md).
    epochs: int = 40
    valid_users: float = 0.1
    # Per-head stopping, then each head fine-tuned alone from its snapshot (issue 18): chosen on the heads'
    # validation losses over joint stopping and per-head stopping without the fine-tune (docs/benchmarks.md,
    # section multitask-per-head); finetune_lr 1.0 validated better than 0.3.
    stopping: str = "per_head"
    head_finetune: bool = True
    finetune_lr: float = 1.0
    # Each head's own single-task fit as a candidate (issue 18): it can only lower each head's validation loss
    # (it did for value, rating and next type; docs/benchmarks.md, section multitask-per-head, also for the
    # fit-time cost: one single-task fit per head, +50-64 %).
    head_alone: bool = True
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    # Differs (TrainConfig: 0.1, SeqRec's): MultiTask's benchmarks were run with this lighter decay; kept.
    weight_decay: float = 0.01
    # Differs (TrainConfig: 10): stop sooner, as the value head overfits early (see ``epochs``).
    patience: int = 4
    device: str = TrainConfig.device
    # Differs (TrainConfig: 0, all cores): see ``num_threads`` in the docstring.
    num_threads: int = 1
    seed: int = TrainConfig.seed
    # Differs (TrainConfig: True): MultiTask fits without a progress bar unless asked.
    progress: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(self.heads))  # a JSON round trip gives a list
        unknown = set(self.heads) - set(HEADS)
        if unknown or not self.heads:
            raise ValueError(f"heads must be a non-empty subset of {HEADS}, got {self.heads}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.stopping not in STOPPINGS:
            raise ValueError(f"stopping must be one of {STOPPINGS}, got {self.stopping!r}")
        if self.value_target not in ("amount", "count"):
            raise ValueError(f"value_target must be 'amount' or 'count', got {self.value_target!r}")

    def weight(self, head: str) -> float:
        return float(getattr(self, f"w_{head}"))

    def train_config(self, lr_scale: float = 1.0) -> TrainConfig:
        """The Trainer's settings (learning rate times ``lr_scale``); those MultiTask does not expose keep the
        Trainer's defaults."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr * lr_scale,
                           weight_decay=self.weight_decay, patience=self.patience, seed=self.seed,
                           device=self.device, progress=self.progress, warmup_frac=WARMUP_FRAC,
                           num_threads=self.num_threads)

    def network_config(self, spec: Spec) -> NetworkConfig:
        """The encoder for a fitted ``spec``: its input tokens are (event type, value bucket) pairs."""
        n_tokens = max(1, spec.n_types) * (self.value_buckets + 1)
        return NetworkConfig(n_items=spec.n_items, d_model=self.d_model, max_len=self.max_len,
                             encoder=self.encoder, n_layers=self.n_layers, n_heads=self.n_heads,
                             dropout=self.dropout, n_types=n_tokens, n_gap_buckets=self.n_gap_buckets,
                             item_repr=spec.item_repr, text_dim=spec.text_dim)


@dataclass
class Spec:
    """What the network was built for (saved next to the weights, in ``multitask.json``)."""

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
