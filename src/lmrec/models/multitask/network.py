"""MultiTask's network: the SeqRec encoder and the four heads."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lmrec.data.rfm import RFM_FEATURES
from lmrec.data.schema import PAD
from lmrec.models.multitask.config import HEADS, Spec
from lmrec.models.seqrec.network import ItemEncoder, NetworkConfig, SequenceEncoder


class MultiTaskNetwork(nn.Module):
    """The SeqRec encoder and the four heads. Takes tensors already on its device."""

    def __init__(self, net_cfg: NetworkConfig, spec: Spec, text_vectors: np.ndarray | None = None,
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
        the order-aware one, so that what a user is like (not only what tends to come next) shapes every head.
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
        and, with user factors, the user indices (unknown users: index 0, no user term)."""
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
