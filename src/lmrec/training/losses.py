"""Next-item losses over the catalogue, for every position of a batch at once.

All three take the hidden states of the positions that have a target, ``(N, d)``, the target item indices
``(N,)`` and the :class:`~lmrec.models.seqrec.network.ItemEncoder`, optionally a popularity prior (``prior``:
a pair of per-row weights ``β (N,)`` and per-item log-popularity ``(n_items + 1,)``, added to the logits as
``β · log_pop``, logit adjustment), and return the **sum** of per-position losses: the caller divides by the
number of target positions of the *global* batch, which makes a DistributedDataParallel run (gradients
averaged over processes) match a single process exactly.

* ``"ce"`` — full softmax cross-entropy over the catalogue (Klenitskiy & Vasilev, RecSys 2023: the loss that
  turns SASRec into a state-of-the-art model). Cost ``O(N · n_items)``.
* ``"sampled"`` — sampled softmax: the target against ``n_negatives`` items drawn once per batch from a
  proposal ``Q`` (popularity-smoothed), with the log-Q correction (logits minus ``log Q``) that makes the
  estimate unbiased for the full softmax, and accidental hits removed. For catalogues too large for ``"ce"``.
* ``"bce"`` — the original SASRec loss: binary cross-entropy of the target against one uniform negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "sampled", "bce")

#: ``(β (N,), log_pop (n_items + 1,))``: the popularity prior added to logits, or ``None``.
Prior = tuple[torch.Tensor, torch.Tensor] | None


def _prior_of(prior: Prior, items: torch.Tensor, shared: bool = False) -> torch.Tensor | float:
    """Prior term for one item per row ``(N,)`` → ``(N,)``, or for items shared by all rows ``(K,)`` →
    ``(N, K)``."""
    if prior is None:
        return 0.0
    beta, log_pop = prior
    return beta.unsqueeze(-1) * log_pop[items] if shared else beta * log_pop[items]


def full_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, item_table: torch.Tensor,
                    allowed: torch.Tensor | None = None, prior: Prior = None) -> torch.Tensor:
    """Summed cross-entropy of ``targets`` under a softmax over every item.

    Parameters
    ----------
    hidden:
        ``(N, d)`` hidden states.
    targets:
        ``(N,)`` item indices.
    item_table:
        ``(n_items + 1, d)`` item vectors.
    allowed:
        ``(n_items + 1,)`` bool, the items the softmax runs over (padding and items never seen in training are
        left out: they were not alternatives the user passed over). Every target must be allowed.
    prior:
        The popularity prior (see the module docstring), or ``None``.
    """
    if allowed is not None:
        # Score the allowed items only, rather than every item then -inf on the others: the same softmax,
        # without a pass over the (N, n_items + 1) logits to mask them (a quarter of this loss's time on CPU).
        keep = torch.nonzero(allowed).squeeze(1)  # (m,)
        position = torch.full_like(allowed, -1, dtype=torch.long)
        position[keep] = torch.arange(len(keep), device=keep.device)
        item_table, targets = item_table[keep], position[targets]
        if prior is not None:
            prior = (prior[0], prior[1][keep])
    logits = hidden @ item_table.T  # (N, items scored)
    if prior is not None:
        logits = logits + prior[0].unsqueeze(-1) * prior[1]
    return F.cross_entropy(logits.float(), targets, reduction="sum")


def sampled_softmax_logq(hidden: torch.Tensor, targets: torch.Tensor, item_vectors, proposal: torch.Tensor,
                         n_negatives: int, generator: torch.Generator | None = None,
                         prior: Prior = None) -> torch.Tensor:
    """Summed sampled-softmax loss with log-Q correction and accidental hits masked.

    Parameters
    ----------
    hidden, targets:
        ``(N, d)`` hidden states and ``(N,)`` target items.
    item_vectors:
        Callable mapping an index tensor ``(m,)`` to item vectors ``(m, d)`` (an ``ItemEncoder``), so that
        only the sampled rows are computed.
    proposal:
        ``(n_items + 1,)`` sampling probabilities ``Q`` (0 for padding and for items to exclude), summing to
        1.
    n_negatives:
        Negatives shared by the whole batch (drawn with replacement).
    """
    negs = torch.multinomial(proposal, n_negatives, replacement=True, generator=generator)  # (K,)
    log_q = torch.log(proposal.clamp_min(1e-12))
    pos_vec = item_vectors(targets)  # (N, d)
    neg_vec = item_vectors(negs)  # (K, d)
    pos_logit = ((hidden * pos_vec).sum(-1) + _prior_of(prior, targets) - log_q[targets]).unsqueeze(1)  # N, 1
    neg_logit = hidden @ neg_vec.T + _prior_of(prior, negs, shared=True) - log_q[negs]  # (N, K)
    # A sampled "negative" that is the target itself would push the target down against itself.
    neg_logit = neg_logit.masked_fill(negs.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1).float()  # (N, 1 + K), the target in column 0
    return F.cross_entropy(logits, torch.zeros_like(targets), reduction="sum")


def bce_one_negative(hidden: torch.Tensor, targets: torch.Tensor, item_vectors, candidates: torch.Tensor,
                     generator: torch.Generator | None = None, prior: Prior = None) -> torch.Tensor:
    """Summed SASRec loss: ``-log σ(s_target) - log(1 - σ(s_negative))`` with one uniform negative per
    position.

    ``candidates`` ``(m,)`` are the item indices negatives are drawn from (a negative equal to the target is
    redrawn once, as in SASRec's sampler, and masked if it collides again).
    """
    pick = torch.randint(len(candidates), targets.shape, device=targets.device, generator=generator)
    negs = candidates[pick]
    clash = negs == targets
    if clash.any():
        redraw = torch.randint(len(candidates), targets.shape, device=targets.device, generator=generator)
        negs = torch.where(clash, candidates[redraw], negs)
    pos = ((hidden * item_vectors(targets)).sum(-1) + _prior_of(prior, targets)).float()  # (N,)
    neg = ((hidden * item_vectors(negs)).sum(-1) + _prior_of(prior, negs)).float()  # (N,)
    neg_loss = F.softplus(neg).masked_fill(negs == targets, 0.0)  # -log(1 - σ(x)) = softplus(x)
    return F.softplus(-pos).sum() + neg_loss.sum()


def popularity_proposal(counts: torch.Tensor, alpha: float = 0.75) -> torch.Tensor:
    """Sampling distribution ``∝ count^alpha`` over items with a count > 0 (word2vec's smoothing)."""
    q = counts.float().clamp_min(0) ** alpha
    q[0] = 0.0
    q = torch.where(counts > 0, q, torch.zeros_like(q))
    total = q.sum()
    if total <= 0:
        raise ValueError("no item has a training event: nothing to sample negatives from")
    return q / total
