"""Differentially private training: DP-SGD with per-unit clipping, Poisson sampling and an accountant.

Used by :class:`~lmrec.training.trainer.Trainer` when ``TrainConfig.dp_epsilon > 0`` (Abadi et al., "Deep
Learning with Differential Privacy", CCS 2016). Every step:

1. **Poisson sampling** of privacy *units* (a user): each unit joins the batch independently with probability
   ``q = batch_size / units``, through Opacus'
   :class:`~opacus.utils.uniform_sampler.UniformWithReplacementSampler` (the sampler of its
   ``DPDataLoader``), so the batch size varies and the subsampling amplification the accountant assumes
   holds.
2. **Per-unit gradients.** Every training row of the sampled units gets its own gradient
   (``torch.func.vmap`` over ``torch.func.grad``: exact per-sample gradients of any module whose forward has
   no data-dependent shapes, including an item table shared by the input and the output layer, which Opacus'
   per-layer hooks cannot handle); a unit's rows are summed and divided by the unit's number of targets.
3. **Clipping and noise** by Opacus' :class:`~opacus.optimizers.DPOptimizer`: each unit's gradient is clipped
   to ``dp_max_grad_norm``, the sum gets Gaussian noise of standard deviation ``σ · dp_max_grad_norm``,
   divided by the expected batch size; AdamW then steps on it.
4. **Accounting** by Opacus' RDP (or PRV) accountant: ``σ`` is calibrated before training so that the planned
   steps spend the target ε at δ, and the ε actually spent is reported (fewer steps, e.g. under a time
   budget, spend less).

What the guarantee covers: the trained weights, with respect to adding or removing one unit's rows (all of a
user's training windows when the caller groups rows by user). It does not cover what is computed from the
data outside these steps (see ``docs/seqrec.md``, "Differential privacy").
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

ACCOUNTANTS = ("rdp", "prv")
#: Rényi orders the RDP accountant searches: Opacus' defaults extended to 512, since few noisy steps (a large
#: target ε) have their tightest bound at high orders.
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + list(range(64, 513, 8))
#: Rows whose gradients ``vmap`` computes at once (bounds the per-row gradient memory).
VMAP_CHUNK = 32


def require_opacus() -> None:
    """Raise a clear error when Opacus (the optional ``dp`` extra) is not installed."""
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise ImportError(
            "differentially private training (dp_epsilon > 0) needs Opacus: pip install 'lmrec[dp]' "
            "(or pip install 'opacus>=1.5')"
        ) from None


@dataclass(frozen=True)
class PrivacyReport:
    """What a private run guarantees: ``(epsilon, delta)``-DP per ``unit`` for the trained weights."""

    epsilon: float  # spent, at delta
    delta: float
    target_epsilon: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    units: int
    rows: int
    accountant: str
    unit: str = "row"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PrivateSteps:
    """The DP-SGD machinery of one training run (sampling, per-unit gradients, noise, accounting).

    Parameters
    ----------
    module:
        The loss module: ``forward(**batch) -> (loss_sum, n_targets)`` for a batch of rows, without
        data-dependent shapes (``vmap`` runs it on one row at a time).
    cfg:
        The :class:`~lmrec.training.trainer.TrainConfig` (``dp_*`` settings, ``batch_size``, ``epochs``).
    n_rows:
        Training rows.
    units:
        ``(n_rows,)`` unit id of each row (``None``: every row is its own unit).
    """

    def __init__(self, module: nn.Module, cfg: Any, n_rows: int, units: np.ndarray | None) -> None:
        require_opacus()
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier

        if cfg.dp_accountant not in ACCOUNTANTS:
            raise ValueError(f"dp_accountant must be one of {ACCOUNTANTS}, got {cfg.dp_accountant!r}")
        if cfg.dp_max_grad_norm <= 0:
            raise ValueError(f"dp_max_grad_norm must be positive, got {cfg.dp_max_grad_norm}")
        if cfg.dp_delta < 0 or cfg.dp_delta >= 1:
            raise ValueError(f"dp_delta must be in [0, 1), got {cfg.dp_delta}")
        self.module = module
        self.cfg = cfg
        self.n_rows = n_rows
        unit_ids = np.arange(n_rows) if units is None else np.asarray(units)
        if len(unit_ids) != n_rows:
            raise ValueError(f"{len(unit_ids)} unit ids for {n_rows} rows")
        _, inv = np.unique(unit_ids, return_inverse=True)
        self.n_units = int(inv.max()) + 1 if n_rows else 0
        self.rows_by_unit = np.argsort(inv, kind="stable")
        self.offsets = np.concatenate([[0], np.cumsum(np.bincount(inv, minlength=self.n_units))])
        self.grouped = units is not None
        self.sample_rate = min(1.0, cfg.batch_size / self.n_units)
        self.steps_per_epoch = max(1, math.ceil(self.n_units / cfg.batch_size))
        self.delta = cfg.dp_delta or 1.0 / (10 * self.n_units)
        planned = self.steps_per_epoch * cfg.epochs
        self.noise_multiplier = float(get_noise_multiplier(
            target_epsilon=cfg.dp_epsilon, target_delta=self.delta, sample_rate=self.sample_rate,
            steps=planned, accountant=cfg.dp_accountant, **self._orders()))
        self.accountant = create_accountant(cfg.dp_accountant)
        self.steps = 0
        # vmap runs a copy of the module with the live parameters passed in (functional_call), so the
        # module being trained is never re-parametrised.
        self.shadow = copy.deepcopy(module)
        self.names = [n for n, p in module.named_parameters() if p.requires_grad]

    def optimizer(self, opt: torch.optim.Optimizer) -> Any:
        """Opacus' DPOptimizer around ``opt``: per-unit clipping, Gaussian noise, mean over the expected
        batch."""
        from opacus.optimizers import DPOptimizer

        return DPOptimizer(opt, noise_multiplier=self.noise_multiplier,
                           max_grad_norm=self.cfg.dp_max_grad_norm,
                           expected_batch_size=max(1, round(self.sample_rate * self.n_units)),
                           loss_reduction="mean")

    def batches(self, epoch: int):  # -> Iterator[tuple[np.ndarray, np.ndarray]]
        """``(row indices, unit position of each row)`` per step: units drawn by Poisson sampling."""
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        sampler = UniformWithReplacementSampler(num_samples=self.n_units, sample_rate=self.sample_rate,
                                                generator=g, steps=self.steps_per_epoch)
        for picked in sampler:
            us = np.asarray(picked, dtype=np.int64)
            lengths = self.offsets[us + 1] - self.offsets[us]
            rows = (np.concatenate([self.rows_by_unit[self.offsets[u]:self.offsets[u + 1]] for u in us])
                    if len(us) else np.zeros(0, dtype=np.int64))
            yield rows, np.repeat(np.arange(len(us)), lengths)

    def step(self, batch: dict[str, torch.Tensor], unit_of_row: np.ndarray,
             dp_opt: Any) -> tuple[float, float]:
        """One DP-SGD step on the rows of the sampled units; returns the batch's summed loss and targets."""
        from torch.func import functional_call, grad, vmap

        params = {n: p.detach() for n, p in self.module.named_parameters() if p.requires_grad}
        buffers = dict(self.module.named_buffers())
        keys = list(batch)
        n_units = int(unit_of_row.max()) + 1 if len(unit_of_row) else 0
        loss_total, count_total = 0.0, 0.0
        if len(unit_of_row) == 0:  # nobody sampled: the step still adds noise (the accounting counts it)
            for p in self.module.parameters():
                if p.requires_grad:
                    p.grad_sample = torch.zeros((1, *p.shape), dtype=p.dtype, device=p.device)
        else:
            shadow = self.shadow

            def row_loss(ps: dict[str, torch.Tensor], *cols: torch.Tensor):
                b = {k: c.unsqueeze(0) for k, c in zip(keys, cols, strict=True)}
                loss, cnt = functional_call(shadow, (ps, buffers), args=(), kwargs=b)
                return loss, (loss.detach(), cnt)

            per_row, (losses, counts) = vmap(grad(row_loss, has_aux=True), in_dims=(None, *[0] * len(keys)),
                                             randomness="different", chunk_size=VMAP_CHUNK)(
                params, *[batch[k] for k in keys])
            dev = next(iter(params.values())).device
            unit = torch.as_tensor(unit_of_row, device=dev)
            unit_targets = torch.zeros(n_units, device=dev).index_add_(0, unit, counts.to(torch.float32))
            scale = 1.0 / unit_targets.clamp_min(1.0)
            for n, p in self.module.named_parameters():
                if not p.requires_grad:
                    continue
                g = per_row[n]
                acc = torch.zeros((n_units, *p.shape), dtype=g.dtype, device=dev).index_add_(0, unit, g)
                p.grad_sample = acc * scale.view(-1, *([1] * p.dim())).to(acc.dtype)
            loss_total, count_total = float(losses.sum()), float(counts.sum())
        dp_opt.step()
        dp_opt.zero_grad(set_to_none=True)
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.steps += 1
        return loss_total, count_total

    def _orders(self) -> dict[str, Any]:
        return {"alphas": RDP_ORDERS} if self.cfg.dp_accountant == "rdp" else {}

    def epsilon(self) -> float:
        """ε spent so far at :attr:`delta`."""
        return float(self.accountant.get_epsilon(self.delta, **self._orders())) if self.steps else 0.0

    def report(self) -> PrivacyReport:
        return PrivacyReport(
            epsilon=self.epsilon(), delta=self.delta, target_epsilon=float(self.cfg.dp_epsilon),
            noise_multiplier=self.noise_multiplier, max_grad_norm=float(self.cfg.dp_max_grad_norm),
            sample_rate=self.sample_rate, steps=self.steps, units=self.n_units, rows=self.n_rows,
            accountant=self.cfg.dp_accountant, unit="unit of grouped rows" if self.grouped else "row")


__all__ = ["ACCOUNTANTS", "PrivacyReport", "PrivateSteps", "require_opacus"]
