"""MultiTask's training objective: each active head's loss, weighted (fixed or by learned uncertainty)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmrec.data.schema import PAD
from lmrec.models.multitask.config import HEADS, MultiTaskConfig
from lmrec.models.multitask.network import MultiTaskNetwork
from lmrec.training.losses import full_softmax_ce


class LossModule(nn.Module):
    """``forward(**batch) -> (loss, 1)`` for :class:`~lmrec.training.trainer.Trainer`: the weighted head
    losses, each already a mean over its own targets."""

    def __init__(self, network: MultiTaskNetwork, cfg: MultiTaskConfig, allowed: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.cfg = cfg
        self.register_buffer("allowed", allowed)
        #: Heads whose loss is in the objective (per-head stopping takes a head out once it has stopped).
        self.active: set[str] = set(network.heads)

    def head_losses(self, **b: torch.Tensor) -> dict[str, torch.Tensor]:
        net = self.network
        out: dict[str, torch.Tensor] = {}
        # in training, a head out of the objective (per-head stopping) is not computed; validation reads all
        heads = tuple(h for h in net.heads if h in self.active) if self.training else net.heads
        if any(h in heads for h in ("next_item", "rating", "next_type")):
            h = net.hidden(b["items"], b["tokens"], b["gaps"])  # (B, T, d)
            tgt = b["tgt_items"]  # (B, T), PAD where no target
            has = tgt != PAD
            if "next_item" in heads:
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
            if name not in self.active:
                continue
            w = self.cfg.weight(name)
            if self.cfg.weighting == "uncertainty":
                s = self.network.log_vars[HEADS.index(name)]
                total = total + w * (torch.exp(-s) * loss + s)
            else:
                total = total + w * loss
        return total, torch.ones((), device=total.device)


def target_counts(b: dict[str, torch.Tensor]) -> dict[str, int]:
    """Each head's number of targets in batch ``b`` (what its mean loss there averages over)."""
    return {"next_item": int((b["tgt_items"] != PAD).sum()), "next_type": int((b["tgt_types"] >= 0).sum()),
            "rating": int((~torch.isnan(b["tgt_ratings"])).sum()), "value": int(b["val_ok"].sum())}


def batched_losses(m: LossModule, rows: dict[str, np.ndarray], device: torch.device,
                   batch: int) -> dict[str, float]:
    """Per-head validation losses: each head's mean over all its targets (batch means weighted by the
    batch's targets of that head, so the loss does not depend on how the rows were batched or padded); 0 for
    a head with no target."""
    n = len(next(iter(rows.values())))
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for s in range(0, n, batch):
        b = {k: torch.from_numpy(v[s:s + batch]).to(device) for k, v in rows.items()}
        c = target_counts(b)
        for k, v in m.head_losses(**b).items():
            if c[k]:
                sums[k] = sums.get(k, 0.0) + float(v) * c[k]
            counts[k] = counts.get(k, 0) + c[k]
    return {k: sums.get(k, 0.0) / c if c else 0.0 for k, c in counts.items()
            if math.isfinite(sums.get(k, 0.0))}
