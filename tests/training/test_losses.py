"""Next-item losses against values worked out by hand or by brute force."""

from __future__ import annotations

import math

import pytest
import torch

from lmrec.training.losses import (
    bce_one_negative,
    full_softmax_ce,
    popularity_proposal,
    sampled_softmax_logq,
)


def test_full_softmax_by_hand() -> None:
    # one position, three items (0 = padding excluded): logits 1·[0, 1, 2] = [0, 1, 2]; target item 2
    h = torch.tensor([[1.0]])
    table = torch.tensor([[0.0], [1.0], [2.0]])
    allowed = torch.tensor([False, True, True])
    got = full_softmax_ce(h, torch.tensor([2]), table, allowed)
    want = -(2 - math.log(math.exp(1) + math.exp(2)))  # padding is not an alternative
    assert got.item() == pytest.approx(want, abs=1e-6)
    # summed, not averaged: two identical positions give twice the loss
    got2 = full_softmax_ce(h.repeat(2, 1), torch.tensor([2, 2]), table, allowed)
    assert got2.item() == pytest.approx(2 * want, abs=1e-6)


def test_full_softmax_over_allowed_items_equals_masking_the_others() -> None:
    """Scoring only the allowed items is the softmax with every other item at -inf: same loss, same gradients
    (the prior included)."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 4, generator=g, requires_grad=True)
    table = torch.randn(9, 4, generator=g, requires_grad=True)
    allowed = torch.tensor([False, True, True, False, True, True, True, False, True])
    y = torch.tensor([1, 2, 4, 5, 6, 8, 1])
    prior = (torch.rand(7, generator=g), torch.randn(9, generator=g))
    got = full_softmax_ce(h, y, table, allowed, prior=prior)
    got.backward()
    grads = (h.grad.clone(), table.grad.clone())
    h.grad, table.grad = None, None
    logits = (h @ table.T + prior[0].unsqueeze(-1) * prior[1]).masked_fill(~allowed, float("-inf"))
    want = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
    want.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(grads[0], h.grad)
    torch.testing.assert_close(grads[1], table.grad)


def test_bce_by_hand() -> None:
    # items 1 and 2 only; target 1, so the one negative must be item 2
    h = torch.tensor([[2.0]])
    table = torch.tensor([[0.0], [1.0], [-1.0]])
    got = bce_one_negative(h, torch.tensor([1]), lambda i: table[i], torch.tensor([1, 2]),
                           generator=torch.Generator().manual_seed(0))
    # -log σ(2) - log(1 - σ(-2)) = 2 softplus(-2)
    want = 2 * math.log1p(math.exp(-2.0))
    # the negative is drawn twice at most; with candidates {1, 2} and target 1 it may collide twice (masked)
    assert got.item() == pytest.approx(want, abs=1e-5) or got.item() == pytest.approx(want / 2, abs=1e-5)


def test_sampled_softmax_is_unbiased_for_many_negatives() -> None:
    """With many negatives from Q and the log-Q correction, the loss approaches the full softmax."""
    torch.manual_seed(0)
    n_items, d = 50, 8
    table = torch.randn(n_items + 1, d)
    h = torch.randn(4, d)
    y = torch.tensor([3, 7, 7, 20])
    counts = torch.arange(n_items + 1).float()
    counts[0] = 0
    q = popularity_proposal(counts, alpha=0.5)
    allowed = counts > 0
    full = full_softmax_ce(h, y, table, allowed).item()
    est = sum(sampled_softmax_logq(h, y, lambda i: table[i], q, 4000,
                                   generator=torch.Generator().manual_seed(s)).item() for s in range(5)) / 5
    # Σ_j exp(s_j - log q_j) over K draws estimates K · Σ_i exp(s_i), so per row the sampled loss is the full
    # one plus log K + log q_target, constants that do not move the gradient: remove them and compare.
    offset = float((math.log(4000) + torch.log(q[y])).sum())
    assert est - offset == pytest.approx(full, rel=0.03)


def test_sampled_softmax_masks_accidental_hits() -> None:
    h = torch.tensor([[1.0]])
    table = torch.tensor([[0.0], [1.0], [5.0]])
    q = torch.tensor([0.0, 0.0, 1.0])  # only item 2 can be drawn, and it is the target
    loss = sampled_softmax_logq(h, torch.tensor([2]), lambda i: table[i], q, 3)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # nothing to compete with


def test_popularity_proposal() -> None:
    q = popularity_proposal(torch.tensor([0.0, 1.0, 0.0, 16.0]), alpha=0.5)
    assert q.tolist() == pytest.approx([0.0, 0.2, 0.0, 0.8])
    with pytest.raises(ValueError):
        popularity_proposal(torch.zeros(3))


def test_losses_backpropagate() -> None:
    table = torch.randn(6, 4, requires_grad=True)
    h = torch.randn(3, 4, requires_grad=True)
    y = torch.tensor([1, 2, 5])
    full_softmax_ce(h, y, table).backward()
    assert h.grad is not None and table.grad is not None and torch.isfinite(table.grad).all()


def test_popularity_prior_is_added_to_every_loss() -> None:
    """Logit adjustment: each loss with a prior equals the same loss on logits + β·log_pop, by brute force."""
    torch.manual_seed(0)
    table = torch.randn(6, 3)
    h = torch.randn(2, 3)
    y = torch.tensor([1, 4])
    beta, log_pop = torch.tensor([0.5, 2.0]), torch.log1p(torch.tensor([0.0, 9.0, 1.0, 0.0, 3.0, 20.0]))
    allowed = torch.tensor([False, True, True, True, True, True])
    got = full_softmax_ce(h, y, table, allowed, prior=(beta, log_pop))
    logits = (h @ table.T + beta[:, None] * log_pop).masked_fill(~allowed, float("-inf"))
    assert got.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y, reduction="sum").item(),
                                       rel=1e-6)
    # a zero prior is no prior
    assert full_softmax_ce(h, y, table, allowed, prior=(torch.zeros(2), log_pop)).item() == pytest.approx(
        full_softmax_ce(h, y, table, allowed).item(), rel=1e-6)
    # sampled softmax: the same draw with and without the prior differs by exactly the prior in the logits
    q = popularity_proposal(torch.tensor([0.0, 9.0, 1.0, 0.0, 3.0, 20.0]))
    with_prior = sampled_softmax_logq(h, y, lambda i: table[i], q, 50, torch.Generator().manual_seed(1),
                                      prior=(beta, log_pop))
    # a prior that is the same for every item of a row does not change a softmax
    flat = sampled_softmax_logq(h, y, lambda i: table[i], q, 50, torch.Generator().manual_seed(1),
                                prior=(beta, torch.ones(6)))
    plain = sampled_softmax_logq(h, y, lambda i: table[i], q, 50, torch.Generator().manual_seed(1))
    assert flat.item() == pytest.approx(plain.item(), rel=1e-5)
    assert with_prior.item() != pytest.approx(plain.item(), rel=1e-3)
    # BCE: the prior moves both the positive and the negative logit
    cand = torch.tensor([1, 2, 4, 5])
    bce = bce_one_negative(h, y, lambda i: table[i], cand, torch.Generator().manual_seed(3),
                           prior=(beta, log_pop))
    negs = cand[torch.randint(4, y.shape, generator=torch.Generator().manual_seed(3))]
    pos = (h * table[y]).sum(-1) + beta * log_pop[y]
    neg = (h * table[negs]).sum(-1) + beta * log_pop[negs]
    assert not (negs == y).any()  # this seed draws no collision, so no redraw happens
    want = torch.nn.functional.softplus(-pos).sum() + torch.nn.functional.softplus(neg).sum()
    assert bce.item() == pytest.approx(want.item(), rel=1e-5)
