"""The SeqRec networks: shapes, causality, padding, side inputs and item representations."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from lmrec.models.seqrec.network import (
    Dropout,
    ItemEncoder,
    NetworkConfig,
    SeqRecNetwork,
    SequenceEncoder,
    gap_buckets,
)

N_ITEMS, TEXT_DIM = 40, 12


def _text(seed: int = 0) -> np.ndarray:
    tv = np.random.default_rng(seed).normal(size=(N_ITEMS + 1, TEXT_DIM)).astype(np.float32)
    tv[0] = 0
    return tv


def _counts() -> np.ndarray:
    c = np.arange(N_ITEMS + 1) % 7
    c[0] = 0
    return c


@pytest.mark.parametrize("encoder", ["transformer", "gru", "lstm"])
@pytest.mark.parametrize("item_repr", ["id", "text", "fused"])
def test_shapes_and_finite(encoder: str, item_repr: str) -> None:
    cfg = NetworkConfig(n_items=N_ITEMS, d_model=16, max_len=8, encoder=encoder, item_repr=item_repr,
                        text_dim=0 if item_repr == "id" else TEXT_DIM, text_reduced_dim=6, n_types=3,
                        n_gap_buckets=10)
    net = SeqRecNetwork(cfg, None if item_repr == "id" else _text(), _counts()).eval()
    items = torch.randint(1, N_ITEMS + 1, (5, 8))
    items[0, :6] = 0  # a short, left-padded row
    types = torch.where(items > 0, torch.randint(1, 4, items.shape), 0)
    gaps = torch.where(items > 0, torch.randint(1, 10, items.shape), 0)
    h = net(items, types, gaps)
    assert h.shape == (5, 8, 16)
    assert torch.isfinite(h).all()
    assert net.item_table().shape == (N_ITEMS + 1, 16)
    assert torch.equal(net.item_table()[0], torch.zeros(16))
    s = net.last_scores(items)
    assert s.shape == (5, N_ITEMS + 1) and torch.isinf(s[:, 0]).all()


@pytest.mark.parametrize("encoder", ["transformer", "gru", "lstm"])
def test_causal(encoder: str) -> None:
    """Position t must not see events after t: changing the future leaves earlier states unchanged."""
    torch.manual_seed(0)
    enc = SequenceEncoder(NetworkConfig(n_items=N_ITEMS, d_model=16, max_len=6, encoder=encoder)).eval()
    a = torch.tensor([[3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, 4:] = torch.tensor([20, 21])
    ha, hb = enc(a), enc(b)
    torch.testing.assert_close(ha[:, :4], hb[:, :4])
    assert not torch.allclose(ha[:, 4:], hb[:, 4:])


def test_transformer_ignores_padding() -> None:
    """More left padding (or a longer window) leaves the newest state of a Transformer unchanged."""
    torch.manual_seed(0)
    enc = SequenceEncoder(NetworkConfig(n_items=N_ITEMS, d_model=16, max_len=8)).eval()
    short = torch.tensor([[0, 0, 5, 9, 2]])
    long = torch.tensor([[0, 0, 0, 0, 0, 5, 9, 2]])
    torch.testing.assert_close(enc(short)[:, -1], enc(long)[:, -1])


def test_too_long_rejected() -> None:
    enc = SequenceEncoder(NetworkConfig(n_items=N_ITEMS, d_model=16, max_len=4))
    with pytest.raises(ValueError, match="max_len"):
        enc(torch.ones(1, 5, dtype=torch.long))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="text vectors"):
        NetworkConfig(n_items=3, item_repr="text")
    with pytest.raises(ValueError, match="encoder"):
        NetworkConfig(n_items=3, encoder="mamba")
    with pytest.raises(ValueError, match="divisible"):
        NetworkConfig(n_items=3, d_model=10, n_heads=3)


def test_gap_buckets() -> None:
    ts = np.array([[0, 0, 100, 101, 100 + 2**20], [1, 2, 4, 8, 16]])
    b = gap_buckets(ts, n_buckets=20)
    # padding 0, first event 1, a 1 s gap → 2 + floor(log2 2) = 3, 2^20 s → capped at 19
    assert b[0].tolist() == [0, 0, 1, 3, 19]
    # gaps 1, 2, 4, 8 s → 2 + floor(log2(2, 3, 5, 9)) = 3, 3, 4, 5
    assert b[1].tolist() == [1, 3, 3, 4, 5]
    with pytest.raises(ValueError):
        gap_buckets(ts, 2)


def test_whitening_gives_identity_covariance() -> None:
    rng = np.random.default_rng(1)
    # anisotropic vectors: one dominant direction, as raw sentence embeddings have
    tv = rng.normal(size=(N_ITEMS + 1, TEXT_DIM)).astype(np.float32) * np.linspace(5, 0.5, TEXT_DIM)
    tv += 3.0
    tv[0] = 0
    cfg = NetworkConfig(n_items=N_ITEMS, d_model=8, item_repr="text", text_dim=TEXT_DIM, text_reduced_dim=6)
    enc = ItemEncoder(cfg, tv, np.ones(N_ITEMS + 1))
    z = (enc.text[1:] - enc.adapter.mean) @ enc.adapter.proj
    torch.testing.assert_close(z.mean(0), torch.zeros(6), atol=1e-4, rtol=0)
    cov = z.T @ z / (N_ITEMS - 1)
    torch.testing.assert_close(cov, torch.eye(6), atol=1e-3, rtol=0)


def test_fused_gate_and_cold_items() -> None:
    cfg = NetworkConfig(n_items=N_ITEMS, d_model=8, item_repr="fused", text_dim=TEXT_DIM, text_reduced_dim=6,
                        fuse_pivot=5.0)
    counts = _counts()
    enc = ItemEncoder(cfg, _text(), counts).eval()
    g = enc.id_gate(torch.tensor([0.0, 1.0, 5.0, 500.0])).detach()
    assert g[0] == 0  # never-trained ids are never used
    assert 0 < g[1] < g[2] < g[3] <= 1
    assert abs(float(g[2]) - 0.5) < 1e-6
    # an item with no training events is represented by text alone
    cold = int(np.flatnonzero(counts[1:] == 0)[0]) + 1
    text_only = enc.adapter(enc.text[cold])
    torch.testing.assert_close(enc(torch.tensor([cold]))[0], text_only)


def test_fuse_gate_none_uses_the_whole_id_part_of_trained_items() -> None:
    cfg = NetworkConfig(n_items=N_ITEMS, d_model=8, item_repr="fused", text_dim=TEXT_DIM, text_reduced_dim=6,
                        fuse_gate="none")
    counts = _counts()
    enc = ItemEncoder(cfg, _text(), counts).eval()
    g = enc.id_gate(torch.tensor([0.0, 1.0, 5.0, 500.0]))
    assert g.tolist() == [0.0, 1.0, 1.0, 1.0]  # rare items keep their id part; never-trained ids stay out
    rare = int(np.flatnonzero(counts[1:] == 1)[0]) + 1
    want = enc.adapter(enc.text[rare]) + enc.id_emb.weight[rare]
    torch.testing.assert_close(enc(torch.tensor([rare]))[0], want)


def test_gate_lift_at_scoring_moves_trained_items_toward_their_whole_id_part() -> None:
    cfg = NetworkConfig(n_items=N_ITEMS, d_model=8, item_repr="fused", text_dim=TEXT_DIM, text_reduced_dim=6)
    counts = _counts()
    enc = ItemEncoder(cfg, _text(), counts).eval()
    idx = torch.arange(N_ITEMS + 1)
    with torch.no_grad():
        text = enc.adapter(enc.text)
        g = enc.id_gate(enc.counts, idx)
        ids = enc.id_emb.weight
        torch.testing.assert_close(enc(gate_lift=0.0), enc())  # 0: as trained
        for lift in (0.5, 1.0):
            want_g = torch.where(enc.counts > 0, g + lift * (1 - g), torch.zeros_like(g))
            want = (text + want_g.unsqueeze(-1) * ids).masked_fill((idx == 0).unsqueeze(-1), 0.0)
            torch.testing.assert_close(enc(gate_lift=lift), want)
        # items without training events keep text alone whatever the lift
        cold = torch.as_tensor(np.flatnonzero(counts == 0)[1:])
        torch.testing.assert_close(enc(gate_lift=1.0)[cold], text[cold])


def test_output_gate_lift_composes_with_the_scoring_lift() -> None:
    base = NetworkConfig(n_items=N_ITEMS, d_model=8, max_len=6, item_repr="fused", text_dim=TEXT_DIM,
                         text_reduced_dim=6)
    net = SeqRecNetwork(replace(base, output_gate_lift=0.5), _text(), _counts()).eval()
    enc = net.item_encoder
    with torch.no_grad():
        torch.testing.assert_close(net.item_table(), enc(gate_lift=0.5))
        # a lift of 0.5 on top of 0.5 leaves a quarter of the gap to 1: a lift of 0.75 in all
        torch.testing.assert_close(net.item_table(0.5), enc(gate_lift=0.75))
        items = torch.tensor([[1, 2, 3]])
        torch.testing.assert_close(net.output_items(items), enc(gate_lift=0.5)[items])
        torch.testing.assert_close(net.sequence_encoder.items(items), enc()[items])  # inputs: as trained


def test_learned_gate_starts_at_the_count_gate_and_learns_per_item() -> None:
    torch.manual_seed(0)
    base = NetworkConfig(n_items=N_ITEMS, d_model=8, item_repr="fused", text_dim=TEXT_DIM, text_reduced_dim=6)
    counts = _counts()
    by_count = ItemEncoder(base, _text(), counts).eval()
    learned = ItemEncoder(replace(base, fuse_gate="learned"), _text(), counts).eval()
    items = torch.arange(N_ITEMS + 1)
    c = learned.counts[items]
    # at the start: exactly the count gate, for every item
    torch.testing.assert_close(learned.id_gate(c, items), by_count.id_gate(c))
    # trained end to end: a loss that wants the id part of rare items moves the text term, and items with the
    # same count then get different gates (the text says which ones the id helps)
    opt = torch.optim.SGD(learned.parameters(), lr=0.5)
    rare = (c > 0) & (c <= 2)
    for _ in range(20):
        opt.zero_grad()
        (-learned.id_gate(c, items)[rare].sum()).backward()
        opt.step()
    g = learned.id_gate(c, items).detach()
    assert torch.all((g >= 0) & (g <= 1))
    assert torch.all(g[c == 0] == 0)  # never-trained ids stay out whatever the text says
    assert float(g[rare].mean()) > float(by_count.id_gate(c)[rare].mean().detach()) + 0.1
    same = (c == 3).nonzero().flatten()
    assert len(same) > 1 and float(g[same].std()) > 1e-4
    with pytest.raises(ValueError, match="fuse_gate"):
        replace(base, fuse_gate="sometimes")


def test_add_items_and_init_from_text() -> None:
    cfg = NetworkConfig(n_items=N_ITEMS, d_model=8, item_repr="fused", text_dim=TEXT_DIM, text_reduced_dim=6)
    enc = ItemEncoder(cfg, _text(), _counts()).eval()
    enc.init_ids_from_text()
    assert torch.isfinite(enc.id_emb.weight).all()
    new = np.random.default_rng(2).normal(size=(3, TEXT_DIM)).astype(np.float32)
    enc.add_items(new, 3)
    assert enc().shape == (N_ITEMS + 4, 8)
    torch.testing.assert_close(enc(torch.tensor([N_ITEMS + 2]))[0],
                               enc.adapter(torch.as_tensor(new[1])))
    with pytest.raises(ValueError, match="text vectors"):
        enc.add_items(None, 1)


def test_id_dropout_floor_drops_head_items_too() -> None:
    cfg = NetworkConfig(n_items=N_ITEMS, d_model=8, item_repr="fused", text_dim=TEXT_DIM, text_reduced_dim=6,
                        dropout=0.0, id_dropout_min=1.0)
    counts = np.full(N_ITEMS + 1, 1000)
    enc = ItemEncoder(cfg, _text(), counts).train()
    items = torch.arange(1, N_ITEMS + 1)
    # with a floor of 1 every id part is dropped in training: only text remains
    torch.testing.assert_close(enc(items), enc.adapter(enc.text[items]))
    enc.eval()
    assert not torch.allclose(enc(items), enc.adapter(enc.text[items]))  # and never at inference


def test_popularity_prior() -> None:
    """``fixed`` adds β·log(1 + count) to every score; ``user`` starts at that β and learns it from h."""
    counts = _counts()
    log_pop = torch.log1p(torch.as_tensor(counts, dtype=torch.float32))
    unseen = counts == 0
    unseen[0] = False
    log_pop[unseen] = log_pop[counts > 0].mean()  # nothing known about their popularity: the mean
    with pytest.raises(ValueError, match="pop_prior"):
        NetworkConfig(n_items=N_ITEMS, pop_prior="zipf")
    # id items (with text, unseen items get a predicted prior: next test)
    for kind in ("none", "fixed", "user"):
        cfg = NetworkConfig(n_items=N_ITEMS, d_model=16, max_len=8, item_repr="id", text_dim=TEXT_DIM,
                            pop_prior=kind, pop_prior_weight=0.7)
        net = SeqRecNetwork(cfg, _text(), counts).eval()
        h = torch.randn(5, 16)
        table = net.item_table()
        plain = h @ table.T
        want = plain if kind == "none" else plain + 0.7 * log_pop
        torch.testing.assert_close(net.scores(h, table), want)
        torch.testing.assert_close(net.scores(h, table, prior_scale=0.0), plain)  # the prior switched off
        if kind != "none":
            torch.testing.assert_close(net.scores(h, table, prior_scale=0.5), plain + 0.35 * log_pop)
        if kind == "fixed":  # an item added later has no count either: the mean too
            net.item_encoder.add_items(None, 1)
            s_new = net.scores(h, net.item_table())
            torch.testing.assert_close(s_new[:, -1] - (h @ net.item_table().T)[:, -1],
                                       0.7 * log_pop[counts > 0].mean().expand(5))
        if kind == "user":  # β(h) is a learned function of the hidden state
            net.scores(h.requires_grad_(), table).sum().backward()
            assert net.prior_weight.weight.grad is not None and net.prior_weight.weight.grad.abs().sum() > 0


def test_unseen_items_get_the_popularity_their_text_predicts() -> None:
    """With text, an item without training events (held out, or added later) gets the prior that a ridge
    regression on text predicts: a copy of a popular item's text gets a high prior, of a rare one a low
    one."""
    rng = np.random.default_rng(0)
    text = _text()
    counts = rng.integers(1, 4, size=N_ITEMS + 1)
    counts[0] = 0
    counts[1:11] = 500  # ten blockbusters that share a direction of text
    text[1:11] += 6.0 * np.eye(TEXT_DIM)[0]
    counts[40] = 0  # held out: its text is blockbuster-like
    text[40] = text[1]
    cfg = NetworkConfig(n_items=N_ITEMS, d_model=16, max_len=8, item_repr="fused", text_dim=TEXT_DIM,
                        pop_prior="fixed")
    enc = SeqRecNetwork(cfg, text, counts).item_encoder
    log_pop = enc.log_pop
    assert log_pop[0] == 0
    assert torch.allclose(log_pop[1:40], torch.log1p(torch.as_tensor(counts[1:40]).float()))
    assert log_pop[40] > log_pop[1:40].mean() + 1.0  # predicted from text, well above the mean
    enc.add_items(np.stack([text[2], text[20]]), 2)  # a blockbuster-like and a rare-like newcomer
    assert enc.log_pop.shape == (N_ITEMS + 3,) and enc.log_pop[-2] > enc.log_pop[-1] + 1.0


@pytest.mark.parametrize("item_repr", ["text", "fused"])
def test_repeated_items_are_encoded_once_and_read_alike(item_repr: str) -> None:
    """A batch's positions read their item's row (the text adapter runs once per distinct item): the same
    vectors as the whole table at inference, and in training one dropout draw per item, shared by every
    position of that item, with gradients reaching the encoder through each of them."""
    cfg = NetworkConfig(n_items=N_ITEMS, d_model=8, item_repr=item_repr, text_dim=TEXT_DIM,
                        text_reduced_dim=6, dropout=0.5, id_dropout=0.5)
    enc = ItemEncoder(cfg, _text(), _counts())
    items = torch.tensor([[0, 0, 3, 5, 3], [5, 5, 0, 7, 3]])
    enc.eval()
    torch.testing.assert_close(enc(items), enc()[items])
    enc.train()
    torch.manual_seed(0)
    out = enc(items)
    assert out.shape == (2, 5, 8)
    torch.testing.assert_close(out[0, 2], out[1, 4])  # item 3 at two positions: one draw
    torch.testing.assert_close(out[0, 3], out[1, 0])
    assert not out[0, 0].any()  # padding stays zero
    out.sum().backward()
    assert enc.adapter.skip.weight.grad is not None and enc.adapter.skip.weight.grad.abs().sum() > 0


def test_the_kept_reduced_text_follows_new_items_and_a_refitted_projection() -> None:
    cfg = NetworkConfig(n_items=N_ITEMS, d_model=8, item_repr="fused", text_dim=TEXT_DIM, text_reduced_dim=6)
    enc = ItemEncoder(cfg, _text(), _counts()).eval()
    torch.testing.assert_close(enc.reduced_text(), enc.adapter.reduce(enc.text))
    before = enc().detach().clone()
    enc.add_items(_text(1)[1:4], 3)  # three new items: the kept table grows with them
    assert enc.reduced_text().shape[0] == N_ITEMS + 4
    torch.testing.assert_close(enc()[: N_ITEMS + 1], before)
    torch.testing.assert_close(enc(torch.tensor([N_ITEMS + 2]))[0], enc.adapter(enc.text[N_ITEMS + 2]))
    enc.adapter.fit(torch.as_tensor(_text(2)[1:]))  # a new projection (in place): recomputed
    torch.testing.assert_close(enc.reduced_text(), enc.adapter.reduce(enc.text))
    with torch.inference_mode():  # a table made in inference mode is kept apart from the training one
        torch.testing.assert_close(enc(torch.tensor([[1, 2]])), enc()[torch.tensor([[1, 2]])])
    enc.train()
    enc(torch.tensor([[1, 2, 2]])).sum().backward()
    assert enc.adapter.skip.weight.grad is not None


def test_dropout_keeps_each_element_with_probability_one_minus_p_and_rescales_it() -> None:
    torch.manual_seed(0)
    x = torch.rand(400, 500) + 0.5  # no zeros of its own
    drop = Dropout(0.3).train()
    x.requires_grad_(True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01  # 200,000 draws: sd 0.001
    torch.testing.assert_close(y[kept], x[kept] / 0.7)
    y.sum().backward()  # the gradient flows through the kept elements only, scaled alike
    assert x.grad is not None
    torch.testing.assert_close(x.grad, kept.float() / 0.7)
    # evaluation, p = 0 and p = 1 as torch.nn.Dropout
    z = torch.randn(3, 4)
    assert torch.equal(drop.eval()(z), z)
    assert torch.equal(Dropout(0.0).train()(z), z)
    assert torch.equal(Dropout(1.0).train()(z), torch.zeros_like(z))
