"""The multi-task model: heads that fit the data, predictions of every kind, save/load, the config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.synthetic_ecommerce import DAY, generate_ecommerce
from lmrec.models import load_model
from lmrec.models.multitask import MultiTask, MultiTaskConfig
from lmrec.prediction import tasks

pytestmark = pytest.mark.slow

TINY = {"d_model": 16, "n_layers": 1, "max_len": 12, "epochs": 2, "batch_size": 64, "value_cuts": 2,
        "progress": False}


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return generate_ecommerce(n_users=120, n_items=60, days=120, seed=7).dataset()


@pytest.fixture(scope="module")
def fitted(shop: Dataset) -> MultiTask:
    return MultiTask(**TINY).fit(shop)


def _ratings() -> Dataset:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        for k, i in enumerate(rng.choice(30, 12, replace=False)):
            rows.append((f"e{u}-{k}", f"u{u}", f"i{i}", 1000 * u + k, "rating", float(1 + (i + u) % 5)))
    ev = pl.DataFrame(rows, schema=["event_id", "user_id", "item_id", "timestamp", "event_type", "value"],
                      orient="row")
    return Dataset.build(ev)


def test_heads_follow_the_data(fitted: MultiTask) -> None:
    # the shop has types and money but no ratings: the rating head is dropped, the others kept
    assert fitted.heads == ("next_item", "next_type", "value")
    assert fitted.event_types == ("view", "cart", "purchase")
    with pytest.raises(ValueError, match="no rating head"):
        fitted.predict_ratings(np.array([1]), np.array([1]))
    ratings = MultiTask(**{**TINY, "heads": ("next_item", "rating", "next_type")}).fit(_ratings())
    assert ratings.heads == ("next_item", "rating")  # one event type: no type head; short log: no value


def test_predictions_are_well_formed(fitted: MultiTask, shop: Dataset) -> None:
    users = np.arange(1, 21)
    p = fitted.predict_next_type(users)
    assert p.shape == (20, 3) and np.allclose(p.sum(1), 1.0) and (p >= 0).all()
    v = fitted.predict_value(users)
    assert v.shape == (20,) and (v >= 0).all() and np.isfinite(v).all()
    out = fitted.predict(["u1", "u5"], k=4)
    assert [o["user"] for o in out] == ["u1", "u5"]
    assert len(out[0]["next_items"]) == 4 and set(out[0]["next_type"]) == {"view", "cart", "purchase"}
    assert out[0]["value"]["kind"] == "amount" and out[0]["value"]["horizon_days"] == 30.0
    seen = set(shop.user_sequence("u1"))
    assert not seen.intersection(i["item"] for i in out[0]["next_items"])


def test_value_at_a_cut_reads_only_the_past(fitted: MultiTask, shop: Dataset) -> None:
    cut = int(shop.events["timestamp"].min()) + 60 * DAY  # type: ignore[arg-type]
    hist, _ = tasks.time_cut(shop, cut)
    users = np.flatnonzero(hist.sequences.lengths > 0)[:10]
    a = fitted.predict_value(users, context=hist, at=cut)
    b = fitted.predict_value(users, context=shop, at=cut)  # later events exist but must not matter
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_type_prediction_along_a_sequence_is_causal(fitted: MultiTask, shop: Dataset) -> None:
    ex = tasks.type_examples(shop, 0, min_position=3)
    rows = np.arange(min(30, len(ex)))
    full = fitted.predict_next_type(ex.users[rows], context=shop, ends=ex.positions[rows])
    cut = shop.with_events(shop.events.with_columns(pl.int_range(pl.len()).over("user_idx").alias("_p"))
                           .filter(pl.col("_p") < 3).drop("_p"))
    short = fitted.predict_next_type(ex.users[rows], context=cut, ends=np.full(len(rows), 3))
    first3 = ex.positions[rows] == 3
    np.testing.assert_allclose(full[first3], short[first3], rtol=1e-5, atol=1e-6)


def test_ratings_and_save_load(tmp_path: Path) -> None:
    ds = _ratings()
    m = MultiTask(**{**TINY, "heads": ("next_item", "rating"), "weighting": "uncertainty"}).fit(ds)
    r = m.predict_ratings(np.array([1, 2, 3]), np.array([4, 5, 6]))
    assert r.shape == (3,) and (r >= 1).all() and (r <= 5).all()
    out = m.predict("u3", items=["i4", "i7"], k=3)
    assert set(out[0]["ratings"]) == {"i4", "i7"}
    loaded = load_model(m.save(tmp_path / "mt"))
    assert isinstance(loaded, MultiTask) and loaded.config == m.config
    np.testing.assert_allclose(loaded.predict_ratings(np.array([1, 2, 3]), np.array([4, 5, 6])), r, rtol=1e-5)
    assert loaded.predict("u3", items=["i4", "i7"], k=3) == out


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="heads"):
        MultiTaskConfig(heads=("next_item", "mood"))
    with pytest.raises(ValueError, match="weighting"):
        MultiTaskConfig(weighting="magic")
    assert MultiTaskConfig(heads=["rating"]).heads == ("rating",)  # a JSON list comes back as a tuple


def test_per_head_stopping_keeps_each_heads_best_epoch_and_saves_it(
    shop: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scripted validation losses: next item improves to the end, next type is best at epoch 2, value at
    epoch 1. Each head predicts with the weights of its own best epoch, a stopped head leaves the objective,
    and the folder round-trips (a folder without the per-head file, as saved before, still loads)."""
    import copy

    import torch

    import lmrec.models.multitask.model as mt_model

    curves = {"next_item": [5.0, 4.0, 3.0, 2.0, 1.0, 0.5], "next_type": [1.0, 0.5, 0.6, 0.7, 0.8, 0.9],
              "value": [2.0, 2.5, 3.0, 3.5, 4.0, 4.5]}
    seen: list[dict[str, torch.Tensor]] = []
    active: list[set[str]] = []

    def scripted(m, rows, device, batch):  # type: ignore[no-untyped-def]
        e = len(seen)
        seen.append(copy.deepcopy(m.network.state_dict()))
        active.append(set(m.active))
        return {h: c[e] for h, c in curves.items()}

    monkeypatch.setattr(mt_model, "batched_losses", scripted)
    model = MultiTask(**{**TINY, "epochs": 6, "patience": 2, "stopping": "per_head", "head_finetune": False,
                         "head_alone": False, "valid_users": 0.2, "lr": 1e-2}).fit(shop)
    tr = model.train_result_
    assert tr is not None and tr["best_epochs"] == {"next_item": 6, "next_type": 2, "value": 1}
    assert tr["stopped_at"] == {"value": 3, "next_type": 4} and tr["epochs_run"] == 6
    # value stopped after epoch 3, next type after 4: they leave the objective from the next epoch on
    assert active[3] == {"next_item", "next_type"} and active[5] == {"next_item"}
    for head, epoch in tr["best_epochs"].items():
        state = model.head_networks_[head].state_dict()
        for k, v in state.items():
            torch.testing.assert_close(v, seen[epoch - 1][k])
    assert model.network_ is model.head_networks_["next_item"]

    users = np.arange(1, 21)
    path = model.save(tmp_path / "per-head")
    assert (path / mt_model.HEAD_WEIGHTS_FILE).exists()
    loaded = load_model(path)
    assert isinstance(loaded, MultiTask)
    np.testing.assert_allclose(loaded.predict_next_type(users), model.predict_next_type(users))
    np.testing.assert_allclose(loaded.predict_value(users), model.predict_value(users))
    h = shop.sequences.take(users)
    np.testing.assert_array_equal(loaded.score(h, users), model.score(h, users))
    # the heads really differ: the type head's epoch-2 weights are not the next-item head's epoch-6 ones
    assert not np.allclose(loaded.predict_next_type(users),
                           MultiTask.predict_next_type.__get__(_one_network(loaded))(users))
    # a folder saved before per-head stopping (no head_weights.pt) loads with one network for every head
    (path / mt_model.HEAD_WEIGHTS_FILE).unlink()
    old = load_model(path)
    assert isinstance(old, MultiTask) and old.head_networks_ == {}
    np.testing.assert_allclose(old.predict_next_type(users), _one_network(model).predict_next_type(users))


def _one_network(model: MultiTask) -> MultiTask:
    """The same model with every head on the next-item network (what one set of weights would predict)."""
    import copy

    m = copy.copy(model)
    m.head_networks_ = {}
    return m


def _scripted_fit(shop: Dataset, monkeypatch: pytest.MonkeyPatch, curves: list[dict[str, float]],
                  **settings: object) -> tuple[MultiTask, list[dict], list[set[str]]]:
    """Fit with per-head stopping + fine-tune (no alone candidates unless ``settings`` ask) where the i-th
    validation returns ``curves[i]``; returns the model and, per validation, the network's weights and the
    heads in the objective."""
    import copy

    import lmrec.models.multitask.model as mt_model

    seen: list[dict] = []
    active: list[set[str]] = []

    def scripted(m, rows, device, batch):  # type: ignore[no-untyped-def]
        seen.append(copy.deepcopy(m.network.state_dict()))
        active.append(set(m.active))
        return curves[len(seen) - 1]

    monkeypatch.setattr(mt_model, "batched_losses", scripted)
    model = MultiTask(**{**TINY, "epochs": 3, "patience": 5, "stopping": "per_head", "head_finetune": True,
                         "head_alone": False, "valid_users": 0.2, "lr": 1e-2, **settings}).fit(shop)
    return model, seen, active


#: Scripted validation losses: three joint epochs (best: next item 3, next type 2, value 1), then three epochs
#: of each head's fine-tune (in head order): next item improves on its snapshot at fine-tune epoch 2, next
#: type never does, value does at epoch 1.
FT_CURVES = [{"next_item": a, "next_type": b, "value": c} for a, b, c in
             [(5.0, 1.0, 2.0), (4.0, 0.5, 2.5), (3.0, 0.6, 3.0)]] + [
    {"next_item": v, "next_type": 9.0, "value": 9.0} for v in (2.9, 2.5, 2.7)] + [
    {"next_item": 9.0, "next_type": v, "value": 9.0} for v in (0.7, 0.55, 0.6)] + [
    {"next_item": 9.0, "next_type": 9.0, "value": v} for v in (1.9, 2.1, 2.2)]


def test_finetune_phase_keeps_each_heads_best_and_never_degrades_a_head(
    shop: Dataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch

    model, seen, active = _scripted_fit(shop, monkeypatch, FT_CURVES)
    tr = model.train_result_
    assert tr is not None and tr["best_epochs"] == {"next_item": 3, "next_type": 2, "value": 1}
    assert len(seen) == 3 + 3 * 3
    assert active[:3] == [{"next_item", "next_type", "value"}] * 3  # the joint phase
    for k, head in enumerate(("next_item", "next_type", "value")):  # each fine-tune trains its head alone
        assert active[3 + 3 * k: 6 + 3 * k] == [{head}] * 3
    ft = tr["finetune"]
    assert {h: f["kept"] for h, f in ft.items()} == {"next_item": True, "next_type": False, "value": True}
    assert ft["next_item"]["val_before"] == 3.0 and ft["next_item"]["val_after"] == 2.5
    assert ft["next_type"]["val_before"] == 0.5 and ft["next_type"]["best_epoch"] == 2
    # improved heads: the weights of their best fine-tune epoch; the type head, which never beat its snapshot,
    # predicts with that snapshot (joint epoch 2) bit for bit: a head that stops improving does not degrade
    expected = {"next_item": seen[3 + 1], "next_type": seen[1], "value": seen[9]}
    for head, state in expected.items():
        for k, v in model.head_networks_[head].state_dict().items():
            torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert model.network_ is model.head_networks_["next_item"]
    # the fine-tuned networks moved away from their joint snapshots
    assert any(not torch.equal(v, seen[2][k]) for k, v in model.network_.state_dict().items())
    # each head's own network survives a save/load round trip
    loaded = load_model(model.save(tmp_path / "finetuned"))
    assert isinstance(loaded, MultiTask)
    users = np.arange(1, 21)
    np.testing.assert_allclose(loaded.predict_next_type(users), model.predict_next_type(users))
    np.testing.assert_allclose(loaded.predict_value(users), model.predict_value(users))
    np.testing.assert_array_equal(loaded.score(shop.sequences.take(users), users),
                                  model.score(shop.sequences.take(users), users))


def test_finetune_phase_starts_from_each_heads_own_snapshot(shop: Dataset, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """With a zero fine-tune learning rate the weights cannot move, so every validation of a head's fine-tune
    sees exactly the snapshot of that head's best joint epoch."""
    import torch

    _, seen, _ = _scripted_fit(shop, monkeypatch, FT_CURVES, finetune_lr=0.0)
    for k, best in enumerate((3, 2, 1)):  # next item, next type, value
        for state in seen[3 + 3 * k: 6 + 3 * k]:
            for key, v in state.items():
                torch.testing.assert_close(v, seen[best - 1][key], rtol=0, atol=0)


def test_one_head_has_no_finetune_phase(shop: Dataset) -> None:
    model = MultiTask(**{**TINY, "epochs": 1, "heads": ("next_type",), "stopping": "per_head",
                         "head_finetune": True, "head_alone": True, "valid_users": 0.2}).fit(shop)
    assert model.train_result_ is not None and "finetune" not in model.train_result_
    assert "alone" not in model.train_result_ and model.train_result_["head_from"] == {"next_type": "joint"}


#: Scripted validation losses: three joint epochs (best: next item 3.0, next type 0.5, value 2.0), then each
#: head's alone fit, three epochs each in head order: next item alone validates worse than its joint weights
#: (3.1), next type better (0.45 at epoch 2), value better (1.8 at epoch 1).
ALONE_CURVES = [{"next_item": a, "next_type": b, "value": c} for a, b, c in
                [(5.0, 1.0, 2.0), (4.0, 0.5, 2.5), (3.0, 0.6, 3.0)]] + [
    {"next_item": v, "next_type": 9.0, "value": 9.0} for v in (3.5, 3.2, 3.1)] + [
    {"next_item": 9.0, "next_type": v, "value": 9.0} for v in (0.6, 0.45, 0.55)] + [
    {"next_item": 9.0, "next_type": 9.0, "value": v} for v in (1.8, 1.9, 2.2)]


def test_a_head_whose_alone_fit_validates_better_is_served_from_it(
    shop: Dataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch

    import lmrec.models.multitask.model as mt_model

    model, seen, active = _scripted_fit(shop, monkeypatch, ALONE_CURVES, head_finetune=False, head_alone=True)
    tr = model.train_result_
    assert tr is not None and len(seen) == 3 + 3 * 3
    for k, head in enumerate(("next_item", "next_type", "value")):  # each alone fit trains its head only
        assert active[3 + 3 * k: 6 + 3 * k] == [{head}] * 3
    assert tr["head_from"] == {"next_item": "joint", "next_type": "alone", "value": "alone"}
    assert tr["val_loss"] == {"next_item": 3.0, "next_type": 0.45, "value": 1.8}
    alone = tr["alone"]
    assert {h: a["kept"] for h, a in alone.items()} == {"next_item": False, "next_type": True, "value": True}
    assert alone["next_item"]["val_joint"] == 3.0 and alone["next_item"]["val_alone"] == 3.1
    assert alone["next_type"]["best_epoch"] == 2 and alone["value"]["best_epoch"] == 1
    assert set(tr["phase_s"]) == {"joint", "alone"}
    # each head predicts with its chosen network: next item its joint epoch 3, next type its alone fit's
    # epoch 2, value its alone fit's epoch 1, bit for bit
    expected = {"next_item": seen[2], "next_type": seen[3 + 3 + 1], "value": seen[3 + 6]}
    for head, state in expected.items():
        for k, v in model.head_networks_[head].state_dict().items():
            torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert model.network_ is model.head_networks_["next_item"]
    # the alone candidate is the single-task model: the same fit with heads=(value,) gives the same weights
    single, _, _ = _scripted_fit(shop, monkeypatch, ALONE_CURVES[-3:], head_finetune=False, heads=("value",))
    assert single.network_ is not None
    for k, v in single.network_.state_dict().items():
        torch.testing.assert_close(model.head_networks_["value"].state_dict()[k], v, rtol=0, atol=0)
    users = np.arange(1, 21)
    np.testing.assert_array_equal(model.predict_value(users), single.predict_value(users))
    # the chosen networks survive a save/load round trip
    path = model.save(tmp_path / "alone")
    assert (path / mt_model.HEAD_WEIGHTS_FILE).exists()
    loaded = load_model(path)
    assert isinstance(loaded, MultiTask)
    np.testing.assert_allclose(loaded.predict_next_type(users), model.predict_next_type(users))
    np.testing.assert_allclose(loaded.predict_value(users), model.predict_value(users))
    np.testing.assert_array_equal(loaded.score(shop.sequences.take(users), users),
                                  model.score(shop.sequences.take(users), users))
    assert not np.allclose(loaded.predict_next_type(users),
                           MultiTask.predict_next_type.__get__(_one_network(loaded))(users))


def test_next_item_served_alone_moves_the_item_scores_but_no_other_head(
    shop: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One early stop (``stopping="joint"``, one network) and next item better alone: next-item scores and
    item vectors come from the alone network, the other heads keep the joint one."""
    import torch

    curves = [{"next_item": 3.0, "next_type": 0.5, "value": 2.0}] * 3 + [
        {"next_item": v, "next_type": 9.0, "value": 9.0} for v in (2.5, 2.4, 2.6)] + [
        {"next_item": 9.0, "next_type": 0.9, "value": 9.0}] * 3 + [
        {"next_item": 9.0, "next_type": 9.0, "value": 2.5}] * 3
    model, seen, _ = _scripted_fit(shop, monkeypatch, curves, stopping="joint", head_finetune=False,
                                   head_alone=True)
    tr = model.train_result_
    assert tr is not None
    assert tr["head_from"] == {"next_item": "alone", "next_type": "joint", "value": "joint"}
    joint = model.head_networks_["next_type"]
    assert model.head_networks_["value"] is joint and model.network_ is model.head_networks_["next_item"]
    assert model.network_ is not joint
    for k, v in model.network_.state_dict().items():  # the alone fit's epoch 2
        torch.testing.assert_close(v, seen[3 + 1][k], rtol=0, atol=0)
    emb = model.item_embeddings()
    with torch.no_grad():
        np.testing.assert_allclose(emb[: len(model.network_.item_table())],
                                   model.network_.item_table().numpy())


def test_a_heads_validation_loss_does_not_depend_on_the_other_heads(fitted: MultiTask, shop: Dataset) -> None:
    """Validation rows pair the held-out events with the value examples without repeating either, so the
    next-item and next-type losses on the joint rows equal those on the sequence rows alone (each held-out
    event counts once), as a single-task model computes them."""
    import copy

    import torch

    from lmrec.models.multitask.features import train_rows
    from lmrec.models.multitask.loss import LossModule, batched_losses

    assert fitted.spec_ is not None and fitted.events_ is not None and fitted.network_ is not None
    cfg = fitted.config
    _, joint_rows = train_rows(shop, fitted.events_, copy.deepcopy(fitted.spec_), cfg)
    seq_spec = copy.deepcopy(fitted.spec_)
    seq_spec.heads = ["next_item", "next_type"]
    _, seq_rows = train_rows(shop, fitted.events_, seq_spec, cfg)
    n_joint, n_seq = len(joint_rows["items"]), len(seq_rows["items"])
    assert n_joint > n_seq  # the value examples outnumber the held-out events: the rows were filled
    assert (joint_rows["tgt_items"][n_seq:] == 0).all() and joint_rows["val_ok"].all()
    module = LossModule(fitted.network_, cfg, torch.ones(fitted.spec_.n_items + 1, dtype=torch.bool)).eval()
    with torch.no_grad():
        a = batched_losses(module, joint_rows, torch.device("cpu"), 16)
        b = batched_losses(module, seq_rows, torch.device("cpu"), 16)
    for head in ("next_item", "next_type"):
        assert a[head] == pytest.approx(b[head], rel=1e-5)
