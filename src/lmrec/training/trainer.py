"""The training loop shared by lmrec's neural models.

A model hands the :class:`Trainer` a *loss module* (an ``nn.Module`` whose ``forward(**batch)`` returns the
summed loss of a batch and how many targets it had), the training rows as numpy arrays, and a validation
function. The trainer owns everything else: AdamW with a learning-rate schedule (warm-up, then cosine decay
over ``epochs``, or constant until validation plateaus, then reduced), gradient clipping, mixed precision on
CUDA, DistributedDataParallel under ``torchrun``, early stopping on the validation metric, Rich progress, and
resumable checkpoint folders.

Distributed runs are exact: every process draws the same epoch permutation (seeded by ``seed + epoch``, as
:class:`torch.utils.data.DistributedSampler` does) and takes a disjoint slice of each *global* batch, and the
loss is divided by the global number of targets, so the averaged gradients equal those of one process on the
whole batch. Optionally batches are bucketed by length (users of similar length together, less padding to
compute).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lmrec.config import resolve_device
from lmrec.training.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    broadcast_floats,
    init_distributed,
    process_device,
)
from lmrec.training.privacy import PrivateSteps
from lmrec.training.threads import ThreadGovernor

#: The learning-rate schedules (:class:`TrainConfig` ``schedule``).
SCHEDULES = ("cosine", "plateau")
WEIGHTS = "weights.pt"
BEST_WEIGHTS = "best.pt"
OPTIMIZER = "optimizer.pt"
TRAINER_STATE = "trainer.json"
CONFIG = "config.json"


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the model's own config holds what to train).

    Parameters
    ----------
    epochs:
        Upper bound on passes over the training rows; early stopping usually ends sooner. With
        ``schedule="cosine"`` it also sets the length of the decay; with ``"plateau"`` it is only a cap.
    batch_size:
        Global batch (rows per optimiser step, summed over processes).
    lr, weight_decay:
        AdamW settings (decay is not applied to biases, norms and embeddings' padding row is zero anyway).
    schedule:
        The learning rate's course. ``"cosine"``: linear warm-up over ``warmup_frac`` of all ``epochs``'
        steps, then cosine decay to ``lr * min_lr_ratio`` at the last epoch (so capping ``epochs`` also
        shortens warm-up and decay). ``"plateau"``: linear warm-up over ``warmup_steps`` steps (at most the
        first epoch), then constant, multiplied by ``plateau_factor`` whenever the validation metric has not
        improved for more than ``plateau_patience`` validations in a row (never below ``lr * min_lr_ratio``;
        :class:`torch.optim.lr_scheduler.ReduceLROnPlateau`); nothing depends on ``epochs``, which only caps
        the run, and early stopping (``patience``) or the time budget end it. Without a validation function,
        ``"plateau"`` keeps the rate constant after warm-up.
    warmup_frac:
        ``"cosine"``: fraction of all steps spent warming the learning rate up linearly from 0.
    warmup_steps:
        ``"plateau"``: steps of linear warm-up (fewer when the first epoch has fewer steps).
    plateau_factor, plateau_patience:
        ``"plateau"``: the factor applied to the learning rate, and how many validations in a row without
        improvement are tolerated before it is (the count restarts after each reduction).
    min_lr_ratio:
        The learning rate's floor, as a fraction of ``lr``: where cosine decay ends, and below which plateau
        reductions stop.
    grad_clip:
        Max global gradient norm (0 disables).
    eval_every:
        Validate every this many epochs.
    patience:
        Stop after this many validations without improvement of the metric (0 disables early stopping).
    seed:
        Seeds parameter initialisation, shuffling and sampling.
    device:
        ``"auto"`` (CUDA, then MPS, then CPU) or a torch device string.
    amp:
        Mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling).
    num_threads:
        CPU threads per process. 0 (default) adapts: between 1 and the cores divided by the number of
        processes, whichever trains fastest at the moment, measured on the steps themselves (see
        :mod:`lmrec.training.threads`; a busy machine gets fewer threads instead of collapsing). A fixed
        count also fixes the rounding, for runs that must repeat bit for bit.
    checkpoint_dir:
        Folder for ``last/`` and ``best`` checkpoints; empty for none.
    resume:
        Continue from ``checkpoint_dir/last`` when it exists.
    progress:
        Show a Rich progress bar (main process only).
    bucket_by_length:
        Group rows of similar length into batches (within pools of 16 batches, batch order shuffled), which
        cuts the padding computed; needs the trainer's ``trim_key``.
    time_budget:
        Seconds of training after which the fit stops (0: no budget): the epoch in progress ends at once, is
        validated, and the best weights so far are kept. The learning-rate schedule still spans ``epochs``,
        so a budgeted run is a shortened run, not a compressed one (with ``schedule="plateau"`` it is the same
        run, cut where the budget ran out); ``TrainResult.stop_reason`` says which limit ended it.
    dp_epsilon:
        Train with differential privacy (DP-SGD, :mod:`lmrec.training.privacy`) to this target ε; 0 is off.
        Needs Opacus (``pip install 'lmrec[dp]'``).
    dp_delta:
        The δ of the guarantee; 0 (default) is ``1 / (10 · n)`` for ``n`` privacy units (users).
    dp_max_grad_norm:
        Each unit's gradient is clipped to this L2 norm before noise is added.
    dp_accountant:
        ``"rdp"`` (Rényi DP, Mironov 2017) or ``"prv"`` (privacy random variables, Gopi et al. 2021): how ε is
        computed from the noise, the sampling rate and the steps.
    ema_decay:
        Polyak averaging of the weights (0: off): after every optimiser step ``avg ← d · avg + (1 − d) ·
        weights`` with ``d = min(ema_decay, (1 + t) / (10 + t))`` at step ``t`` (:class:`WeightAverage`;
        0.99 averages over about the last 100 steps once past the first thousand, fewer before, so a short
        fit's average does not lag behind its weights or carry the random start). Validation, early
        stopping, checkpoints' ``best`` and the returned model use the average, whose validation curve is far
        smoother than the raw weights' (no epoch is chosen for a lucky spike), and which is usually at least
        as good. Ignored under differential privacy (the released weights are the last step's).
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    schedule: str = "cosine"
    warmup_frac: float = 0.02
    warmup_steps: int = 100
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 1
    patience: int = 10
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_threads: int = 0
    checkpoint_dir: str = ""
    resume: bool = False
    progress: bool = True
    bucket_by_length: bool = True
    time_budget: float = 0.0
    dp_epsilon: float = 0.0
    dp_delta: float = 0.0
    dp_max_grad_norm: float = 1.0
    dp_accountant: str = "rdp"
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 < self.plateau_factor < 1 or self.plateau_patience < 0 or self.warmup_steps < 0:
            raise ValueError("plateau_factor must lie in (0, 1); plateau_patience and warmup_steps must be "
                             ">= 0")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")


@dataclass
class TrainResult:
    """What happened: per-epoch loss, validation metrics, the best epoch and why training stopped."""

    losses: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)  # one per validation, with "epoch"
    best_metric: float = -math.inf
    best_epoch: int = -1
    epochs_run: int = 0
    stopped_early: bool = False
    stop_reason: str = ""  # "patience", "time budget" or "epochs"
    seconds: float = 0.0
    world_size: int = 1
    threads: dict[str, int] = field(default_factory=dict)  # training steps run at each CPU thread count
    #: Per-group early stopping (``Trainer(groups=...)``): each group's best epoch, and the epoch it stopped
    #: improving for good (absent while it was still improving when training ended).
    best_epochs: dict[str, int] = field(default_factory=dict)
    stopped_at: dict[str, int] = field(default_factory=dict)
    #: The learning rate at the end of each epoch (before that epoch's validation), and the epochs after
    #: whose validation it was reduced (``schedule="plateau"``).
    lrs: list[float] = field(default_factory=list)
    lr_drops: list[int] = field(default_factory=list)
    #: Differentially private training (:class:`lmrec.training.privacy.PrivacyReport` as a dict): ε spent
    #: at δ, the noise, the clipping, the sampling rate, the steps and what one unit is; empty without DP.
    privacy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only: biases, norms and 1-d parameters (gate scalars) are left alone."""
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1,
                  lengths: np.ndarray | None = None, pool: int = 16) -> list[np.ndarray]:
    """This process's row indices for each step of an epoch.

    All processes draw the same permutation (``seed + epoch``), cut it into global batches of ``batch_size``
    and take the slice ``[rank::world_size]`` of each, so the union over processes of step ``s`` is exactly
    the batch a single process would use. With ``lengths``, rows are sorted by length inside pools of ``pool``
    batches and the batches are then shuffled. A global batch smaller than ``world_size`` wraps around, as
    :class:`~torch.utils.data.DistributedSampler` pads.
    """
    g = torch.Generator().manual_seed(seed + epoch)
    perm = torch.randperm(n, generator=g).numpy()
    if lengths is None:
        batches = [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    else:
        batches = []
        span = pool * batch_size
        for start in range(0, n, span):
            chunk = perm[start:start + span]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
    out = []
    for b in batches:
        if len(b) < world_size:
            b = np.concatenate([b, perm[: world_size - len(b)]])
        out.append(b[rank::world_size])
    return out


def warmup_cosine(total_steps: int, warmup_frac: float, min_ratio: float) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warm-up over ``warmup_frac`` of the steps, then cosine to
    ``min_ratio``."""
    warmup = max(1, int(round(total_steps * warmup_frac)))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


class LRSchedule:
    """The learning rate's course over a fit (:class:`TrainConfig` ``schedule``): :meth:`step` after every
    optimiser step, :meth:`validated` after every validation; its state goes into checkpoints.

    ``"cosine"`` is one :class:`~torch.optim.lr_scheduler.LambdaLR` over all ``epochs``' steps
    (:func:`warmup_cosine`). ``"plateau"`` is a linear warm-up (a ``LambdaLR`` stepped only while warming
    up, so it never overrides a reduction) followed by :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau`
    on the validation metric (any increase counts as an improvement, as for early stopping).
    """

    def __init__(self, opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.kind = cfg.schedule
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        if self.kind == "cosine":
            self.warmup = 0
            self.lambda_lr = torch.optim.lr_scheduler.LambdaLR(
                opt, warmup_cosine(steps_per_epoch * cfg.epochs, cfg.warmup_frac, cfg.min_lr_ratio))
        else:
            self.warmup = max(1, min(cfg.warmup_steps, steps_per_epoch))
            warmup = self.warmup
            self.lambda_lr = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience, threshold=0.0,
                threshold_mode="abs", min_lr=[g["initial_lr"] * cfg.min_lr_ratio for g in opt.param_groups])
        self.opt = opt

    def step(self) -> None:
        if self.plateau is None or self.lambda_lr.last_epoch < self.warmup - 1:
            self.lambda_lr.step()

    def validated(self, value: float) -> bool:
        """Feed one validation's metric; True when the learning rate was reduced."""
        if self.plateau is None:
            return False
        before = self.lr
        self.plateau.step(value)
        return self.lr < before

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lambda": self.lambda_lr.state_dict()}
        if self.plateau is not None:
            out["plateau"] = self.plateau.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lambda_lr.load_state_dict(state["lambda"])
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])


def _budget_clock(budget: float, t0: float) -> Callable[[], bool]:
    """Whether ``budget`` seconds (0: none) have passed since ``t0``."""
    return lambda: budget > 0 and time.perf_counter() - t0 >= budget


class WeightAverage:
    """An exponential moving average of a module's trainable parameters (Polyak averaging), with a context
    manager that puts the average in the module's place (for validation and snapshots) and back.

    Only parameters are averaged and copied (buffers such as an item encoder's text vectors stay shared), so
    the memory cost is one more copy of the weights; :class:`torch.optim.swa_utils.AveragedModel` would copy
    the whole module, buffers included. Every process of a distributed run holds the same parameters after
    each step, so their averages agree without communication.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.avg = [p.detach().clone() for p in self.params]

    def current_decay(self) -> float:
        """The decay of the next update: ``decay``, but less for the first steps (``(1 + t) / (10 + t)``, the
        warm-up of TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``)."""
        t = self.updates + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self) -> None:
        d = self.current_decay()
        torch._foreach_lerp_(self.avg, [p.detach() for p in self.params], 1.0 - d)
        self.updates += 1

    @torch.no_grad()
    def apply(self, values: list[torch.Tensor] | None = None) -> None:
        """Copy ``values`` (by default the average) into the module's parameters."""
        torch._foreach_copy_(self.params, self.avg if values is None else values)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """The module holds the average inside the block and its own weights again after it."""
        own = [p.detach().clone() for p in self.params]
        self.apply()
        try:
            yield
        finally:
            self.apply(own)

    def state_dict(self) -> dict[str, Any]:
        return {"avg": [a.clone() for a in self.avg], "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        with torch.no_grad():
            for a, saved in zip(self.avg, state["avg"], strict=True):
                a.copy_(saved)


class Trainer:
    """Train a loss module on row arrays with early stopping on a validation metric.

    Parameters
    ----------
    loss_module:
        ``forward(**batch) -> (loss_sum, n_targets)``; ``batch`` holds the row arrays as tensors on the
        device.
    cfg:
        The :class:`TrainConfig`.
    evaluate:
        ``evaluate(module) -> {"ndcg@10": …, …}`` on validation (called on the main process, in eval mode,
        with the unwrapped module); ``None`` trains for ``cfg.epochs`` without early stopping.
    metric:
        Which key of ``evaluate``'s result to maximise.
    meta:
        JSON-able facts written into every checkpoint's ``config.json`` (resolved config, id map, text
        source).
    ctx:
        The process group context (default: joined from the ``torchrun`` environment, or a single process).
    trim_key:
        Name of a left-padded ``(rows, T)`` array (padding 0): each batch drops its all-padding leading
        columns from every 2-d array, and length bucketing uses it.
    groups:
        Per-group early stopping, ``{group: metric key}`` (e.g. one group per head of a multi-task model, each
        on its own validation metric, higher is better). Every validation, each group that improves gets a
        snapshot of the whole module's weights (:attr:`group_states`, its best epoch in
        ``TrainResult.best_epochs``); a group that has not improved for ``patience`` validations stops for
        good, and ``on_group_stop(group)`` is called (a model can take the group's loss out of the objective
        there). Training ends when every group has stopped (or at ``epochs``, or the time budget); ``metric``
        is then only tracked, never a reason to stop. The module is left with ``metric``'s best weights, as
        without groups; callers read each group's own from :attr:`group_states`. Not resumable.
    """

    def __init__(self, loss_module: nn.Module, cfg: TrainConfig,
                 evaluate: Callable[[nn.Module], dict[str, float]] | None = None, metric: str = "ndcg@10",
                 meta: dict[str, Any] | None = None, ctx: DistContext | None = None,
                 trim_key: str | None = None, groups: dict[str, str] | None = None,
                 on_group_stop: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.evaluate = evaluate
        self.metric = metric
        self.groups = dict(groups or {})
        self.on_group_stop = on_group_stop
        #: Per-group early stopping: each group's weights at its best validation (shared between groups
        #: whose best epoch is the same).
        self.group_states: dict[str, dict[str, torch.Tensor]] = {}
        self.meta = meta or {}
        device_name = resolve_device(cfg.device)
        self.ctx = ctx if ctx is not None else init_distributed(device_name)
        self.device = process_device(device_name, self.ctx)
        # adaptive on CPU only: a GPU step's time does not depend on the CPU pool
        self.threads = ThreadGovernor.for_training(cfg.num_threads, self.ctx.world_size,
                                                   adaptive=self.device.type == "cpu")
        torch.set_num_threads(self.threads.current)
        self.module = loss_module.to(self.device)
        self.amp_dtype: torch.dtype | None = None
        if cfg.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ckpt = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        self.trim_key = trim_key

    # ------------------------------------------------------------------ the loop
    def fit(self, rows: dict[str, np.ndarray], units: np.ndarray | None = None) -> TrainResult:
        """Train on ``rows`` (arrays sharing their first dimension; one row = one training example).

        ``units`` (one id per row) says whose each row is, for differential privacy (``cfg.dp_epsilon``): the
        guarantee covers each unit's rows together (a user's windows); by default each row is its own unit.
        """
        cfg, ctx = self.cfg, self.ctx
        if cfg.dp_epsilon > 0:
            return self._fit_private(rows, units)
        n = len(next(iter(rows.values())))
        if n == 0:
            raise ValueError("no training rows: every user has fewer than two training events")
        if cfg.batch_size % ctx.world_size:
            raise ValueError(f"batch_size {cfg.batch_size} must divide by the {ctx.world_size} processes")
        lengths = None if self.trim_key is None else (rows[self.trim_key] != 0).sum(1)
        steps_per_epoch = math.ceil(n / cfg.batch_size)

        model: nn.Module = self.module
        if ctx.enabled:
            model = DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        opt = torch.optim.AdamW(_param_groups(self.module, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98),
                                fused=self.device.type == "cuda")
        sched = LRSchedule(opt, cfg, steps_per_epoch)
        ema = WeightAverage(self.module, cfg.ema_decay) if cfg.ema_decay > 0 else None

        result = TrainResult(world_size=ctx.world_size)
        start_epoch, bad_evals = 0, 0
        best_state: dict[str, torch.Tensor] | None = None
        group_best = dict.fromkeys(self.groups, -math.inf)
        group_bad = dict.fromkeys(self.groups, 0)
        self.group_states = {}
        if self.groups and cfg.resume:
            raise ValueError("per-group early stopping cannot resume from a checkpoint")
        if cfg.resume and self.ckpt is not None and (self.ckpt / "last" / TRAINER_STATE).exists():
            start_epoch, bad_evals, result = self._load(self.ckpt / "last", opt, sched, ema)
            if (self.ckpt / BEST_WEIGHTS).exists():
                best_state = torch.load(self.ckpt / BEST_WEIGHTS, map_location=self.device, weights_only=True)
        # Different processes must drop different units and draw different negatives; parameters were
        # initialised before this point with the shared seed, and DDP broadcasts rank 0's anyway.
        torch.manual_seed(cfg.seed * 1000 + ctx.rank + start_epoch)

        t0 = time.perf_counter()
        over_budget = _budget_clock(cfg.time_budget, t0)
        bar = _Bar(cfg.progress and ctx.is_main, cfg.epochs, steps_per_epoch, start_epoch)
        try:
            for epoch in range(start_epoch, cfg.epochs):
                batches = epoch_batches(n, cfg.batch_size, epoch, cfg.seed, ctx.rank, ctx.world_size,
                                        lengths if cfg.bucket_by_length else None)
                model.train()
                loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
                count_sum = torch.zeros((), device=self.device, dtype=torch.float64)
                for idx in batches:
                    batch = {k: torch.from_numpy(v).to(self.device, non_blocking=True)
                             for k, v in self._take(rows, idx).items()}
                    self.threads.before_step()
                    t_step = time.perf_counter()
                    loss, cnt = self._step(model, batch, opt)
                    work = batch[self.trim_key].numel() if self.trim_key is not None else len(idx)
                    self.threads.after_step(time.perf_counter() - t_step, float(work))
                    sched.step()
                    if ema is not None:
                        ema.update()
                    loss_sum += loss
                    count_sum += cnt
                    bar.step(loss.item() / max(1.0, cnt.item()))
                    if not ctx.enabled and over_budget():  # processes of a DDP run decide together below
                        break
                mean_loss = float(all_reduce_sum(loss_sum, ctx) / all_reduce_sum(count_sum, ctx).clamp_min(1))
                result.losses.append(mean_loss)
                lr_in_epoch = sched.lr
                result.lrs.append(lr_in_epoch)
                result.epochs_run = epoch + 1

                # rank 0's clock decides for every process
                out_of_time = broadcast_floats([float(over_budget())], ctx, self.device)[0] > 0
                due = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs or out_of_time
                if self.evaluate is not None and due:
                    torch.set_num_threads(self.threads.best)
                    # validation, the best snapshot and stopping see the average
                    with nullcontext() if ema is None else ema.swapped():
                        metrics = self._validate()
                        metrics["epoch"] = float(epoch + 1)
                        result.metrics.append(metrics)
                        value = metrics[self.metric]
                        if value > result.best_metric:
                            result.best_metric, result.best_epoch, bad_evals = value, epoch + 1, 0
                            best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
                            if self.ckpt is not None and ctx.is_main:
                                self.ckpt.mkdir(parents=True, exist_ok=True)
                                _atomic_save(best_state, self.ckpt / BEST_WEIGHTS)
                        else:
                            bad_evals += 1
                        if sched.validated(value):
                            result.lr_drops.append(epoch + 1)
                        bar.epoch_done(mean_loss, metrics, self.metric, result.best_metric, self.threads.best,
                                       lr_in_epoch)
                        if self.groups:
                            self._group_validation(metrics, epoch + 1, group_best, group_bad, result)
                            if len(result.stopped_at) == len(self.groups):
                                result.stopped_early, result.stop_reason = True, "patience"
                                break
                        elif cfg.patience and bad_evals >= cfg.patience:
                            result.stopped_early, result.stop_reason = True, "patience"
                            break
                else:
                    bar.epoch_done(mean_loss, None, self.metric, result.best_metric, self.threads.best,
                                   lr_in_epoch)
                if self.ckpt is not None:
                    self._save(self.ckpt / "last", epoch + 1, bad_evals, result, opt, sched, ema)
                if out_of_time:
                    result.stopped_early, result.stop_reason = True, "time budget"
                    break
            else:
                result.stop_reason = "epochs"
        finally:
            bar.close()
        if best_state is not None and self.evaluate is not None:
            # Early stopping: the returned model is the best one on validation, never the last.
            self.module.load_state_dict(best_state)
        elif ema is not None:  # no validation: the average after the last step
            ema.apply()
        self._finish(result, t0)
        barrier(ctx)
        return result

    def _fit_private(self, rows: dict[str, np.ndarray], units: np.ndarray | None) -> TrainResult:
        """DP-SGD: Poisson-sampled units, per-unit clipped gradients plus Gaussian noise, an accountant.

        No early stopping and no choice of the best epoch on validation (that choice would read private data
        outside the accounting): the model is the one after the last step, and validations run only to be
        shown. The learning-rate schedule and AdamW are as without DP (post-processing of noisy gradients).
        """
        cfg, ctx = self.cfg, self.ctx
        if ctx.enabled:
            raise ValueError("differentially private training runs in one process (no torchrun)")
        if cfg.resume:
            raise ValueError("differentially private training cannot resume (the accountant starts anew)")
        n = len(next(iter(rows.values())))
        if n == 0:
            raise ValueError("no training rows: every user has fewer than two training events")
        private = PrivateSteps(self.module, cfg, n, units)
        opt = torch.optim.AdamW(_param_groups(self.module, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98))
        total = private.steps_per_epoch * cfg.epochs
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, cfg.warmup_frac,
                                                                     cfg.min_lr_ratio))
        dp_opt = private.optimizer(opt)
        result = TrainResult(world_size=1)
        torch.manual_seed(cfg.seed * 1000)
        t0 = time.perf_counter()
        over_budget = _budget_clock(cfg.time_budget, t0)
        bar = _Bar(cfg.progress, cfg.epochs, private.steps_per_epoch, 0)
        try:
            for epoch in range(cfg.epochs):
                self.module.train()
                loss_sum, count_sum = 0.0, 0.0
                for idx, unit_of_row in private.batches(epoch):
                    batch = {k: torch.from_numpy(v).to(self.device) for k, v in self._take(rows, idx).items()}
                    self.threads.before_step()
                    t_step = time.perf_counter()
                    loss, cnt = private.step(batch, unit_of_row, dp_opt)
                    self.threads.after_step(time.perf_counter() - t_step, float(max(1, len(idx))))
                    sched.step()
                    loss_sum += loss
                    count_sum += cnt
                    bar.step(loss / max(1.0, cnt))
                    if over_budget():
                        break
                mean_loss = loss_sum / max(1.0, count_sum)
                result.losses.append(mean_loss)
                result.epochs_run = epoch + 1
                out_of_time = over_budget()
                due = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs or out_of_time
                metrics = None
                if self.evaluate is not None and due:
                    torch.set_num_threads(self.threads.best)
                    metrics = self._validate()
                    metrics["epoch"] = float(epoch + 1)
                    result.metrics.append(metrics)
                    if metrics[self.metric] > result.best_metric:
                        result.best_metric, result.best_epoch = metrics[self.metric], epoch + 1
                bar.epoch_done(mean_loss, metrics, self.metric, result.best_metric, self.threads.best)
                if out_of_time:
                    result.stopped_early, result.stop_reason = True, "time budget"
                    break
            else:
                result.stop_reason = "epochs"
        finally:
            bar.close()
        # the released weights are the last ones: report their epoch, not the best validation's
        result.best_epoch = result.epochs_run
        if result.metrics:
            result.best_metric = result.metrics[-1][self.metric]
        result.privacy = private.report().to_dict()
        self._finish(result, t0)
        return result

    def _finish(self, result: TrainResult, t0: float) -> None:
        """Record the run's wall time and the thread counts it tried, and leave torch on the best count."""
        result.seconds = time.perf_counter() - t0
        result.threads = {str(k): v for k, v in self.threads.steps.items() if v}
        torch.set_num_threads(self.threads.best)

    def _group_validation(self, metrics: dict[str, float], epoch: int, best: dict[str, float],
                          bad: dict[str, int], result: TrainResult) -> None:
        """One validation of per-group early stopping: snapshot the groups that improved, stop the ones out of
        patience."""
        snapshot: dict[str, torch.Tensor] | None = None
        for group, key in self.groups.items():
            if group in result.stopped_at:
                continue
            value = metrics.get(key, -math.inf)
            if value > best[group]:
                if snapshot is None:  # one copy for every group that improved at this epoch
                    snapshot = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
                best[group], bad[group] = value, 0
                self.group_states[group] = snapshot
                result.best_epochs[group] = epoch
            else:
                bad[group] += 1
                if self.cfg.patience and bad[group] >= self.cfg.patience:
                    result.stopped_at[group] = epoch
                    if self.on_group_stop is not None:
                        self.on_group_stop(group)

    def _take(self, rows: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
        """The batch's rows; with ``trim_key``, leading columns that are padding in every row are cut off
        (left-padded sequences: the network's output at the real positions does not change)."""
        out = {k: v[idx] for k, v in rows.items()}
        if self.trim_key is not None:
            keep = (out[self.trim_key] != 0).any(0)
            first = int(np.argmax(keep)) if keep.any() else keep.shape[0] - 1
            out = {k: (v[:, first:] if v.ndim == 2 else v) for k, v in out.items()}
        return out

    def _step(self, model: nn.Module, batch: dict[str, torch.Tensor],
              opt: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            loss_sum, count = model(**batch)
        count = count.detach().to(torch.float64)
        # Divide by the targets of the whole global batch (times the processes, since DDP averages gradients):
        # the update is then the same whether one process or several computed it.
        global_count = all_reduce_sum(count, self.ctx).clamp_min(1)
        loss = loss_sum * (self.ctx.world_size / global_count).to(loss_sum.dtype)
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip)
        self.scaler.step(opt)
        self.scaler.update()
        return loss_sum.detach().to(torch.float64), count

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        assert self.evaluate is not None
        metrics: dict[str, float] = {}
        if self.ctx.is_main:
            self.module.eval()
            metrics = {k: float(v) for k, v in self.evaluate(self.module).items()}
            if self.metric not in metrics:
                raise KeyError(f"validation gave {sorted(metrics)}, not the tracked {self.metric!r}")
        # Every process needs the tracked values to take the same early-stopping decisions.
        keys = [self.metric, *(k for k in self.groups.values() if k != self.metric)]
        values = broadcast_floats([metrics.get(k, 0.0 if k == self.metric else -math.inf) for k in keys],
                                  self.ctx, self.device)
        for k, v in zip(keys, values, strict=True):
            if k == self.metric or math.isfinite(v):
                metrics[k] = v
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def _save(self, path: Path, epoch: int, bad_evals: int, result: TrainResult, opt: torch.optim.Optimizer,
              sched: LRSchedule, ema: WeightAverage | None = None) -> None:
        if not self.ctx.is_main:
            return
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(self.module.state_dict(), tmp / WEIGHTS)
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state(),
                    "ema": None if ema is None else ema.state_dict()}, tmp / OPTIMIZER)
        (tmp / TRAINER_STATE).write_text(json.dumps(
            {"epoch": epoch, "bad_evals": bad_evals, "result": result.to_dict(),
             "train_config": asdict(self.cfg)}, indent=1))
        (tmp / CONFIG).write_text(json.dumps(self.meta, indent=1))
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)

    def _load(self, path: Path, opt: torch.optim.Optimizer, sched: LRSchedule,
              ema: WeightAverage | None = None) -> tuple[int, int, TrainResult]:
        saved_meta = json.loads((path / CONFIG).read_text())
        if saved_meta.get("config") != self.meta.get("config"):
            raise ValueError(f"cannot resume from {path}: it was trained with another configuration")
        self.module.load_state_dict(torch.load(path / WEIGHTS, map_location=self.device, weights_only=True))
        state = torch.load(path / OPTIMIZER, map_location=self.device, weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if ema is not None:
            if state.get("ema") is None:
                raise ValueError(f"cannot resume from {path}: it was trained without weight averaging")
            ema.load_state_dict(state["ema"])
        info = json.loads((path / TRAINER_STATE).read_text())
        result = TrainResult(**info["result"])
        return int(info["epoch"]), int(info["bad_evals"]), result


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class _Bar:
    """Training progress on the main process, in one of two forms.

    On a terminal with no other live display: one Rich bar over all steps, showing the running loss and the
    last validation. Otherwise (output to a log or a pipe, or the caller already shows a spinner around the
    fit): one line per epoch on stderr, ``epoch 3/200 loss 7.1234 lr 0.001 val ndcg@10 0.0512 (best 0.0512)
    3.1 s threads 1`` (the learning rate at the epoch's end), so a log shows where a long fit stands.
    """

    def __init__(self, enabled: bool, epochs: int, steps_per_epoch: int, start_epoch: int) -> None:
        self.enabled = enabled
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.ema: float | None = None
        self.epoch = start_epoch
        self.last_eval = ""
        self.lines = False
        self.t_epoch = time.perf_counter()
        if not enabled:
            return
        from rich.console import Console
        from rich.errors import LiveError
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        if not self.console.is_terminal:
            self.lines = True
            return
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False,
                                 console=self.console)
        try:
            self.progress.start()
        except LiveError:  # the caller already shows a live display (e.g. a spinner around fit)
            self.lines = True
            return
        self.task = self.progress.add_task("train", total=epochs * steps_per_epoch,
                                           completed=start_epoch * steps_per_epoch, info="")

    def step(self, loss: float) -> None:
        if not self.enabled or self.lines:
            return
        self.ema = loss if self.ema is None else 0.9 * self.ema + 0.1 * loss
        self.progress.update(self.task, advance=1,
                             info=f"epoch {self.epoch + 1} loss {self.ema:.4f}{self.last_eval}")

    def epoch_done(self, loss: float, metrics: dict[str, float] | None, metric: str, best: float,
                   threads: int = 0, lr: float = 0.0) -> None:
        if not self.enabled:
            return
        self.epoch += 1
        if metrics is not None:
            self.last_eval = f" | val {metric} {metrics[metric]:.4f} (best {best:.4f})"
        if self.lines:  # a validation shows on the line of the epoch it ran after, not again
            now = time.perf_counter()
            seconds, self.t_epoch = now - self.t_epoch, now
            where = f" threads {threads}" if threads else ""
            val = self.last_eval if metrics is not None else ""
            rate = f" lr {lr:.2g}" if lr else ""
            self.console.print(f"epoch {self.epoch}/{self.epochs} loss {loss:.4f}{rate}{val} "
                               f"{seconds:.1f} s{where}", markup=False, highlight=False, soft_wrap=True)
            return
        self.progress.update(self.task, info=f"epoch {self.epoch} loss {loss:.4f}{self.last_eval}")

    def close(self) -> None:
        if self.enabled and not self.lines:
            self.progress.stop()
