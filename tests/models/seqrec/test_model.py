"""SeqRec end to end on a tiny dataset whose rule is obvious: after item k comes item k + 1."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.data.splits import leave_one_out
from lmrec.models import create_model, load_model
from lmrec.models.seqrec import SeqRec
from lmrec.models.seqrec.network import log_popularity
from tests.training.synthetic import cyclic_dataset, cyclic_vectors, next_item

FAST = {
    "d_model": 32,
    "n_layers": 1,
    "max_len": 8,
    "epochs": 25,
    "batch_size": 16,
    "lr": 1e-2,
    "dropout": 0.0,
    "progress": False,
    "num_threads": 1,
    "eval_every": 5,
    "patience": 0,
}


@pytest.fixture(scope="module")
def data():
    ds = cyclic_dataset()
    return ds, leave_one_out(ds), cyclic_vectors(ds)


@pytest.fixture(scope="module")
def fused(data) -> SeqRec:
    ds, split, vec = data
    m = create_model("seqrec", item_repr="fused", use_types=True, gap_buckets=24, **FAST)
    return m.fit(split.train, split.valid, item_vectors=vec)  # type: ignore[return-value]


def _hit_rate(model: SeqRec, ds, n: int = 40) -> float:
    """How often the top item after a random 4-item walk is the next item of the cycle (anonymous
    histories)."""
    rng = np.random.default_rng(1)
    hist, want = [], []
    for _ in range(n):
        start = int(rng.integers(1, ds.item_map.size))
        walk = [start]
        for _ in range(3):
            walk.append(next_item(ds, walk[-1]))
        hist.append(walk)
        want.append(next_item(ds, walk[-1]))
    idx, _ = model.recommend_indices(Ragged.from_lists(hist), k=1)
    return float(np.mean(idx[:, 0] == np.array(want)))


def test_learns_the_sequence_rule(fused: SeqRec, data) -> None:
    ds, _, _ = data
    assert _hit_rate(fused, ds) >= 0.9
    r = fused.train_result_
    assert r is not None and r.best_epoch > 0 and r.best_metric > 0.5  # validation drove the choice


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        {"item_repr": "id"},
        {"encoder": "gru"},
        {"loss": "sampled", "n_negatives": 12},
        {"loss": "bce", "epochs": 40},
    ],
)
def test_variants_learn(data, overrides: dict) -> None:
    ds, split, vec = data
    m = create_model("seqrec", **{**FAST, **overrides})
    m.fit(split.train, split.valid, item_vectors=vec if m.needs_item_vectors else None)
    assert _hit_rate(m, ds) >= 0.7, overrides


def test_score_contract(fused: SeqRec, data) -> None:
    ds, split, _ = data
    hist = split.test.history.take(np.arange(5))
    s = fused.score(hist, split.test.users[:5])
    assert s.shape == (5, ds.item_map.size) and s.dtype == np.float32
    assert np.all(s[:, PAD] == -np.inf) and np.isfinite(s[:, 1:]).all()
    # scoring needs no user id: an anonymous history gets scores too (side inputs then absent)
    anon = fused.score(hist)
    assert anon.shape == s.shape
    # batch equals single
    one = fused.score(hist.take([3]), split.test.users[3:4])
    np.testing.assert_allclose(one[0], s[3], rtol=1e-4, atol=1e-4)


def test_save_load_roundtrip(fused: SeqRec, data, tmp_path: Path) -> None:
    _, split, _ = data
    path = fused.save(tmp_path / "m")
    names = {p.name for p in path.iterdir()}
    assert {"model.json", "arrays.npz", "seqrec.pt", "network.json", "train_result.json"} <= names
    loaded = load_model(path)
    assert isinstance(loaded, SeqRec)
    hist = split.test.history.take(np.arange(6))
    np.testing.assert_allclose(
        loaded.score(hist, split.test.users[:6]),
        fused.score(hist, split.test.users[:6]),
        rtol=1e-5,
        atol=1e-5,
    )
    assert loaded.text_source()["vectors_sha256"] == fused.text_source()["vectors_sha256"]


@pytest.mark.parametrize("gate", ["learned", "none"])
def test_fuse_gates_learn_and_round_trip(data, gate: str, tmp_path: Path) -> None:
    """Fused SeqRec with a learned per-item id gate (or none) learns the rule and saves/loads exactly."""
    ds, split, vec = data
    m = create_model("seqrec", item_repr="fused", fuse_gate=gate, **FAST).fit(split.train, split.valid,
                                                                                item_vectors=vec)
    assert _hit_rate(m, ds) >= 0.7
    hist, users = split.test.history.take(np.arange(6)), split.test.users[:6]
    loaded = load_model(m.save(tmp_path / "m"))
    assert loaded.network_.cfg.fuse_gate == gate
    np.testing.assert_allclose(loaded.score(hist, users), m.score(hist, users), rtol=1e-5, atol=1e-5)
    if gate == "learned":
        w = m.network_.item_encoder.gate_text.weight
        assert float(w.abs().sum()) > 0  # trained end to end (it starts at zero)
        torch.testing.assert_close(loaded.network_.item_encoder.gate_text.weight, w)


def test_output_gate_lift_trains_targets_on_whole_ids_and_round_trips(data, tmp_path: Path) -> None:
    """With output_gate_lift=1 the fused model learns the rule, scores against the lifted output table (every
    trained item's whole id part) while inputs keep the gated vectors, and saves/loads exactly."""
    ds, split, vec = data
    m = create_model("seqrec", item_repr="fused", output_gate_lift=1.0, **FAST).fit(
        split.train, split.valid, item_vectors=vec)
    assert _hit_rate(m, ds) >= 0.7
    net = m.network_
    assert net is not None and net.cfg.output_gate_lift == 1.0
    enc = net.item_encoder
    with torch.no_grad():
        trained = enc.counts > 0
        text = enc.adapter(enc.text)
        want = torch.where(trained.unsqueeze(-1), text + enc.id_emb.weight, text)
        want[PAD] = 0.0
        torch.testing.assert_close(net.item_table(), want)  # output side: gate 1 for trained items
        torch.testing.assert_close(enc(), enc(gate_lift=0.0))  # input side: the gate as trained
        assert not torch.allclose(net.item_table()[trained], enc()[trained])
    hist, users = split.test.history.take(np.arange(6)), split.test.users[:6]
    loaded = load_model(m.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.score(hist, users), m.score(hist, users), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="output_gate_lift"):
        create_model("seqrec", item_repr="fused", output_gate_lift=2.0)


def test_cold_item_added_with_text_is_recommended(data) -> None:
    """An item added after training, whose text says it follows item k, is ranked after k by text alone."""
    ds, split, vec = data
    m = create_model("seqrec", item_repr="text", **FAST).fit(split.train, split.valid, item_vectors=vec)
    k = 5
    succ = next_item(ds, ds.item_map.index(f"i{k}"))
    new_idx = m.add_items(["new"], vectors=vec[succ][None, :] + 0.01)
    assert new_idx[0] == ds.item_map.size
    walk = [ds.item_map.index(f"i{(k - j) % 24}") for j in range(3, -1, -1)]
    s = m.score(Ragged.from_lists([walk]))
    assert s.shape == (1, ds.item_map.size + 1)
    top2 = set(np.argsort(-s[0])[:2].tolist())
    assert {succ, int(new_idx[0])} == top2


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="loss"):
        create_model("seqrec", loss="hinge")
    with pytest.raises(ValueError, match="windows"):
        create_model("seqrec", windows="every")
    with pytest.raises(TypeError):
        create_model("seqrec", no_such_setting=1)
    with pytest.raises(ValueError, match="schedule"):
        create_model("seqrec", schedule="linear")
    with pytest.raises(ValueError, match="plateau_factor"):
        create_model("seqrec", plateau_factor=2.0)


def test_each_schedule_reaches_the_trainer_and_auto_keeps_the_cosine_it_was_measured_with() -> None:
    from lmrec.models.auto import SEQREC_DEFAULTS

    for schedule in ("cosine", "plateau"):
        cfg = create_model("seqrec", schedule=schedule, warmup_steps=7).config
        assert cfg.train_config().schedule == schedule and cfg.train_config().warmup_steps == 7
    assert SEQREC_DEFAULTS["schedule"] == "cosine"


def test_a_plateau_fit_learns_and_records_its_rates(data) -> None:
    ds, split, vec = data
    m = create_model("seqrec", **{**FAST, "item_repr": "id", "schedule": "plateau", "eval_every": 1,
                                  "plateau_patience": 1, "patience": 6, "epochs": 40})
    m.fit(split.train, split.valid)
    r = m.train_result_
    assert _hit_rate(m, ds) >= 0.7
    assert len(r.lrs) == r.epochs_run and r.lrs[0] == pytest.approx(FAST["lr"])
    assert all(r.lrs[e] < r.lrs[e - 1] for e in r.lr_drops if e < len(r.lrs))  # each drop lowers the next


def test_id_model_ranks_untrained_items_last(data) -> None:
    """An id vector never trained must not outrank known items (it would, at a neutral score of 0)."""
    from lmrec.models.seqrec.model import UNTRAINED_SCORE

    ds, split, _ = data
    m = create_model("seqrec", **{**FAST, "epochs": 1}).fit(split.train)
    (new,) = m.add_items(["brand-new"])
    s = m.score(split.test.history.take([0, 1]))
    assert np.all(s[:, new] == UNTRAINED_SCORE)
    assert np.all(s[:, 1:new] > UNTRAINED_SCORE)


def test_id_gate_at_scoring_rescores_from_the_lifted_table(fused: SeqRec, data) -> None:
    """The scoring-time gate lift changes scores (the cached item table follows the setting), scores with
    the lifted table, and 0 gives back the scores as trained."""
    ds, split, _ = data
    hist, users = split.test.history.take(np.arange(6)), split.test.users[:6]
    trained = fused.config
    as_trained = fused.score(hist, users)
    try:
        fused.config = replace(trained, id_gate_at_scoring=1.0)
        lifted = fused.score(hist, users)
        net = fused.network_
        assert net is not None
        with torch.no_grad():
            table = net.item_table(1.0)
            h = torch.as_tensor(fused.user_embeddings(hist, users))
            want = (h @ table.T).numpy()
        np.testing.assert_allclose(lifted[:, 1:], want[:, 1:], rtol=1e-4, atol=1e-4)
        assert not np.allclose(lifted[:, 1:], as_trained[:, 1:], atol=1e-4)
    finally:
        fused.config = trained
    np.testing.assert_allclose(fused.score(hist, users), as_trained, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="id_gate_at_scoring"):
        create_model("seqrec", id_gate_at_scoring=1.5)


@pytest.mark.parametrize("kind", ["fixed", "user"])
def test_popularity_prior_trains_scores_and_saves(data, kind: str, tmp_path: Path) -> None:
    """A model trained with a popularity prior still learns the rule, scores with the prior it was trained
    with, can switch it off at scoring time, and round-trips through save/load."""
    ds, split, vec = data
    m = create_model("seqrec", item_repr="fused", pop_prior=kind, **FAST).fit(split.train, split.valid,
                                                                                item_vectors=vec)
    assert _hit_rate(m, ds) >= 0.7
    hist, users = split.test.history.take(np.arange(6)), split.test.users[:6]
    with_prior = m.score(hist, users)
    loaded = load_model(m.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.score(hist, users), with_prior, rtol=1e-5, atol=1e-5)
    m.config = replace(m.config, prior_at_scoring=0.0)
    log_pop = log_popularity(torch.as_tensor(split.train.item_popularity)).numpy()
    diff = with_prior[:, 1:] - m.score(hist, users)[:, 1:]
    if kind == "fixed":  # exactly β·log(1 + count), the same for every user
        np.testing.assert_allclose(diff, np.broadcast_to(log_pop[1:], diff.shape), rtol=1e-4, atol=1e-4)
    else:  # proportional to log(1 + count), with a per-user β
        beta = diff[:, 1:][:, log_pop[2:] > 0] / log_pop[2:][log_pop[2:] > 0]
        assert np.allclose(beta, beta[:, :1], atol=1e-3)



def test_auto_loss_keeps_the_full_softmax_while_one_batch_of_logits_fits() -> None:
    from lmrec.models.seqrec.model import auto_loss

    mib = 2**20
    assert auto_loss(1_682, 64, 50) == "ce"  # MovieLens-100K in Auto: 21 MB of logits
    assert auto_loss(9_125, 64, 50) == "ce"  # latest-small in Auto: 117 MB
    assert auto_loss(100_000, 64, 40) == "sampled"  # 1 GB: the 100k-item catalogue
    # The boundary is the budget itself: 64 × 50 × (n + 1) × 4 bytes against 512 MiB.
    n = 512 * mib // (4 * 64 * 50) - 1
    assert auto_loss(n, 64, 50) == "ce" and auto_loss(n + 1, 64, 50) == "sampled"
    assert auto_loss(100, 16, 8, budget_bytes=16 * 8 * 101 * 4) == "ce"
    assert auto_loss(101, 16, 8, budget_bytes=16 * 8 * 101 * 4) == "sampled"


def test_loss_auto_is_resolved_when_fitting_and_saved(data, tmp_path: Path) -> None:
    ds, split, _ = data
    logits = 4 * FAST["batch_size"] * FAST["max_len"] * (ds.n_items + 1)
    quick = {**FAST, "epochs": 2, "item_repr": "id", "loss": "auto", "n_negatives": 12}
    small = create_model("seqrec", **quick, full_softmax_bytes=logits).fit(split.train)
    big = create_model("seqrec", **quick, full_softmax_bytes=logits - 1).fit(split.train)
    assert small.config.loss == "ce" and big.config.loss == "sampled"
    assert load_model(big.save(tmp_path / "m")).config.loss == "sampled"
    assert create_model("seqrec").config.loss == "ce"  # SeqRec's own default is unchanged
    with pytest.raises(ValueError, match="loss"):
        create_model("seqrec", loss="softmax")


def _start(split, vectors=None, **overrides) -> torch.Tensor:
    """The id table as a fit leaves it when its steps move nothing (learning rate 1e-12)."""
    m = create_model("seqrec", **{**FAST, "epochs": 1, "lr": 1e-12, "weight_decay": 0.0, **overrides})
    m.fit(split.train, item_vectors=vectors)
    return m.network_.item_encoder.id_emb.weight.detach().clone()  # type: ignore[attr-defined]


def test_the_id_table_starts_from_spectral_factors_unless_told_otherwise(data) -> None:
    from lmrec.data.cooccurrence import spectral_item_factors

    ds, split, vec = data
    d = FAST["d_model"]
    f = spectral_item_factors(split.train, d, seed=0)
    assert f is not None
    want = torch.as_tensor(f[1:])
    want = want / want.std() * d ** -0.5  # the random start's scale
    k = f.shape[1]

    def similarities(table: torch.Tensor) -> torch.Tensor:  # the cycle's equal singular values leave the
        return table @ table.T                                 # factors' rotation to rounding, not these

    got = _start(split)  # id_init="auto": the spectral start
    torch.testing.assert_close(similarities(got[1:, :k]), similarities(want), rtol=0, atol=1e-4)
    assert not got[PAD].any()
    random = _start(split, id_init="random")
    assert not torch.allclose(similarities(random[1:, :k]), similarities(want), atol=1e-2)
    # fused with a residual gate keeps its zero start (the item vector starts as the text vector)
    m = create_model("seqrec", **{**FAST, "epochs": 1, "lr": 1e-12, "weight_decay": 0.0},
                     item_repr="fused", fuse_gate="residual")
    m.fit(split.train, item_vectors=vec)
    assert float(m.network_.item_encoder.id_emb.weight.abs().max()) < 1e-6  # type: ignore[attr-defined]
    assert m.config.id_init == "random"  # "auto" is resolved when fitting (fused: random) and saved so
    with pytest.raises(ValueError, match="id_init"):
        create_model("seqrec", id_init="pca")
    with pytest.raises(ValueError, match="id_init"):  # the spectral start would read data outside DP's steps
        create_model("seqrec", id_init="svd", dp_epsilon=4.0)
    with pytest.raises(ValueError, match="id_init"):
        create_model("seqrec", id_init="svd+text", dp_epsilon=4.0)
    create_model("seqrec", id_init="text", dp_epsilon=4.0)  # text alone reads no event (axes of every item)


def test_an_id_table_can_start_from_text_and_spectral_factors_half_each(data, tmp_path) -> None:
    from lmrec.data.cooccurrence import spectral_item_factors
    from lmrec.models.seqrec.network import text_item_factors

    ds, split, cyclic = data
    d, half = FAST["d_model"], FAST["d_model"] // 2
    vec = np.zeros((cyclic.shape[0], 40), np.float32)  # wider than the table, so every column has text
    vec[1:, :6] = cyclic[1:]
    vec[1:, 6:] = np.random.default_rng(0).normal(size=(cyclic.shape[0] - 1, 34)) * 0.3
    assert create_model("seqrec", id_init="svd+text").needs_item_vectors  # an id model that reads text
    assert create_model("seqrec", item_repr="id", id_init="text").needs_item_vectors
    assert not create_model("seqrec").needs_item_vectors

    def similarities(table: torch.Tensor) -> torch.Tensor:
        return table @ table.T

    def scaled(f) -> torch.Tensor:  # each block at one spread, the whole at the random start's
        return torch.as_tensor(f[1:] / f[1:].std())

    f = spectral_item_factors(split.train, half, seed=0)
    t = text_item_factors(vec, d - half, split.train.item_popularity > 0)
    assert f is not None and f.shape[1] == half and t.shape == (vec.shape[0], d - half)
    want = torch.cat([scaled(f), scaled(t)], 1)
    want = want / want.std() * d ** -0.5
    got = _start(split, vec, id_init="svd+text")
    torch.testing.assert_close(similarities(got[1:, :half]), similarities(want[:, :half]), rtol=0, atol=1e-4)
    torch.testing.assert_close(similarities(got[1:, half:]), similarities(want[:, half:]), rtol=0, atol=1e-4)
    assert not got[PAD].any()
    # "text" alone for id items: every column from the text's principal components
    only = _start(split, vec, id_init="text")
    t_all = torch.as_tensor(text_item_factors(vec, d, split.train.item_popularity > 0)[1:])
    t_all = t_all / t_all.std() * d ** -0.5
    torch.testing.assert_close(similarities(only[1:]), similarities(t_all), rtol=0, atol=1e-4)
    # the fit reads the vectors itself and saves them with the model (and the text space they came from)
    m = create_model("seqrec", **{**FAST, "epochs": 2}, id_init="svd+text")
    m.fit(split.train, item_vectors=vec)
    assert m.network_ is not None and not m.network_.cfg.uses_text  # still an id network
    assert m.text_source()["vectors_sha256"]
    back = load_model(m.save(tmp_path / "m"))
    assert back.config.id_init == "svd+text" and back.item_vectors_ is not None
    ids, _ = back.recommend(histories=[list(split.train.item_map.raw_ids[1:4])], k=5)
    assert len(ids[0]) == 5


def test_text_item_factors_are_principal_components_of_the_fitted_rows() -> None:
    from lmrec.models.seqrec.network import text_item_factors

    rng = np.random.default_rng(0)
    vec = np.zeros((41, 6), np.float32)
    vec[1:] = rng.normal(size=(40, 6)) * np.array([5, 3, 2, 1, 0.5, 0.1]) + 7.0
    z = text_item_factors(vec, 3)
    assert z.shape == (41, 3) and not z[PAD].any()
    np.testing.assert_allclose(z[1:].mean(0), 0, atol=1e-4)  # centred on the fitted rows
    cov = np.cov(z[1:].T)
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0, atol=1e-3)  # uncorrelated axes
    assert np.all(np.diff(np.diag(cov)) < 0)  # largest variance first
    fit = np.zeros(41, bool)
    fit[1:21] = True  # axes and mean from the first 20 items; every item projected
    z20 = text_item_factors(vec, 3, fit)
    np.testing.assert_allclose(z20[1:21].mean(0), 0, atol=1e-4)
    assert text_item_factors(vec, 99).shape == (41, 6)  # at most the text's dimensions
