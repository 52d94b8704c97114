"""The training loop: batches, schedule, early stopping on validation, checkpoints and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lmrec.models.seqrec import NextItemLoss, SeqRecConfig, SeqRecNetwork
from lmrec.models.seqrec.rows import sequence_rows
from lmrec.training.trainer import (
    LRSchedule,
    TrainConfig,
    Trainer,
    WeightAverage,
    epoch_batches,
    warmup_cosine,
)
from tests.training.synthetic import cyclic_dataset


def test_epoch_batches_split_global_batches_across_processes() -> None:
    lengths = np.arange(37) % 9
    for lens in (None, lengths):
        single = epoch_batches(37, 8, epoch=3, seed=1, lengths=lens)
        assert sorted(np.concatenate(single).tolist()) == list(range(37))  # each row once per epoch
        r0 = epoch_batches(37, 8, epoch=3, seed=1, rank=0, world_size=2, lengths=lens)
        r1 = epoch_batches(37, 8, epoch=3, seed=1, rank=1, world_size=2, lengths=lens)
        for s, a, b in zip(single, r0, r1, strict=True):
            assert sorted(np.concatenate([a, b]).tolist()) == sorted(s.tolist())
    other = epoch_batches(37, 8, epoch=4, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(single, other, strict=False))  # reshuffled


def test_length_buckets_reduce_padding() -> None:
    lengths = np.random.default_rng(0).integers(1, 200, size=512)
    plain = sum(lengths[b].max() * len(b) for b in epoch_batches(512, 32, 0, 0))
    bucketed = sum(lengths[b].max() * len(b) for b in epoch_batches(512, 32, 0, 0, lengths=lengths))
    assert bucketed < 0.75 * plain


def test_warmup_cosine() -> None:
    f = warmup_cosine(100, warmup_frac=0.1, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.55, abs=1e-6)  # half-way down the cosine: (1 + 0.1) / 2
    assert f(100) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))


def _setup(tmp: Path | None = None, **train: object) -> tuple[Trainer, dict[str, np.ndarray]]:
    torch.manual_seed(0)
    ds = cyclic_dataset()
    cfg = SeqRecConfig(d_model=16, n_layers=1, max_len=8, dropout=0.0)
    net = SeqRecNetwork(cfg.network_config(ds.n_items, 0, 2), None, ds.item_popularity)
    tc = TrainConfig(**{"epochs": 4, "batch_size": 16, "lr": 3e-3, "progress": False, "num_threads": 1,
                        "checkpoint_dir": str(tmp) if tmp else "", **train})  # type: ignore[arg-type]
    return Trainer(NextItemLoss(net, "ce"), tc, meta={"config": {"x": 1}}, trim_key="items"), \
        sequence_rows(ds, 8)


def test_loss_goes_down() -> None:
    trainer, rows = _setup(epochs=6, lr=1e-2)
    result = trainer.fit(rows)
    assert result.epochs_run == 6
    assert result.losses[-1] < 0.8 * result.losses[0]


def test_early_stopping_keeps_the_best_model() -> None:
    trainer, rows = _setup(epochs=20, patience=2)
    # a validation metric that peaks at the third evaluation, then falls
    script = iter([0.1, 0.2, 0.5, 0.3, 0.2, 0.1, 0.0] + [0.0] * 20)
    weights: list[dict[str, torch.Tensor]] = []

    def evaluate(module: torch.nn.Module) -> dict[str, float]:
        weights.append({k: v.clone() for k, v in module.state_dict().items()})
        return {"ndcg@10": next(script)}

    trainer.evaluate = evaluate
    result = trainer.fit(rows)
    assert result.stopped_early and result.best_epoch == 3 and result.epochs_run == 5
    for k, v in trainer.module.state_dict().items():
        torch.testing.assert_close(v, weights[2][k])  # the returned model is the best one, not the last


def test_checkpoint_folder_and_resume(tmp_path: Path) -> None:
    full, rows = _setup(epochs=4)
    full_result = full.fit(rows)

    first, _ = _setup(tmp_path, epochs=4)
    first.cfg = TrainConfig(**{**first.cfg.__dict__, "epochs": 4})
    # train 2 of 4 epochs, as if interrupted: a trainer with the same config and schedule, stopped early
    script = iter([0.0, 0.0])
    first.evaluate = lambda m: {"ndcg@10": next(script)}
    first.cfg = TrainConfig(**{**first.cfg.__dict__, "patience": 0, "eval_every": 1})
    with pytest.raises(StopIteration):
        first.fit(rows)  # the third validation raises: the run dies after saving epoch 2
    last = tmp_path / "last"
    assert {p.name for p in last.iterdir()} == {"weights.pt", "optimizer.pt", "trainer.json", "config.json"}
    assert json.loads((last / "trainer.json").read_text())["epoch"] == 2
    torch.load(last / "optimizer.pt", weights_only=True)  # no pickled objects

    resumed, _ = _setup(tmp_path, epochs=4, resume=True)
    result = resumed.fit(rows)
    assert result.epochs_run == 4 and len(result.losses) == 4
    np.testing.assert_allclose(result.losses, full_result.losses, rtol=1e-4)
    for k, v in resumed.module.state_dict().items():
        torch.testing.assert_close(v, full.module.state_dict()[k], rtol=1e-4, atol=1e-5)


def test_weight_average_follows_the_weights_and_swaps_back() -> None:
    layer = torch.nn.Linear(3, 2)
    ema = WeightAverage(layer, decay=0.75)
    assert ema.current_decay() == pytest.approx(2 / 11)  # the first steps average over fewer steps
    ema.updates = 100  # past the warm-up: the decay as set
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(4.0)
    ema.update()  # avg = 0.75 start + 0.25 (start + 4) = start + 1
    torch.testing.assert_close(ema.avg[0], start + 1.0)
    assert ema.updates == 101 and WeightAverage(layer, decay=0.99).current_decay() < 0.99
    with ema.swapped():
        torch.testing.assert_close(layer.weight.detach(), start + 1.0)
    torch.testing.assert_close(layer.weight.detach(), start + 4.0)  # its own weights are back
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_averaged_weights_are_validated_kept_and_resumed(tmp_path: Path) -> None:
    """With ``ema_decay`` validation reads the average, the returned model is the best average, and a resumed
    run continues the same average."""
    full, rows = _setup(epochs=4, ema_decay=0.9)
    validated: list[dict[str, torch.Tensor]] = []

    def evaluate(module: torch.nn.Module) -> dict[str, float]:
        validated.append({k: v.clone() for k, v in module.state_dict().items()})
        return {"ndcg@10": [0.1, 0.3, 0.2, 0.2][len(validated) - 1]}

    full.evaluate = evaluate
    result = full.fit(rows)
    assert result.best_epoch == 2
    for k, v in full.module.state_dict().items():
        torch.testing.assert_close(v, validated[1][k])  # the best epoch's average, not the last weights
    raw = dict(full.module.named_parameters())
    assert any(not torch.equal(validated[3][k], raw[k]) for k in raw)  # what was validated is not the raw

    first, _ = _setup(tmp_path, epochs=4, ema_decay=0.9, patience=0)
    script = iter([0.1, 0.3])
    first.evaluate = lambda m: {"ndcg@10": next(script)}
    with pytest.raises(StopIteration):
        first.fit(rows)  # dies at the third validation, after saving epoch 2
    resumed, _ = _setup(tmp_path, epochs=4, ema_decay=0.9, patience=0, resume=True)
    scores = iter([0.2, 0.2])
    resumed.evaluate = lambda m: {"ndcg@10": next(scores)}
    resumed.fit(rows)
    for k, v in resumed.module.state_dict().items():
        torch.testing.assert_close(v, validated[1][k], rtol=1e-4, atol=1e-5)  # best.pt of epoch 2, resumed
    plain, _ = _setup(tmp_path / "plain", epochs=1)
    plain.fit(rows)
    averaging, _ = _setup(tmp_path / "plain", epochs=2, ema_decay=0.9, resume=True)
    with pytest.raises(ValueError, match="without weight averaging"):
        averaging.fit(rows)  # an average cannot continue from a run that kept none


def test_resume_refuses_another_config(tmp_path: Path) -> None:
    trainer, rows = _setup(tmp_path, epochs=1)
    trainer.fit(rows)
    other, _ = _setup(tmp_path, epochs=1, resume=True)
    other.meta = {"config": {"x": 2}}
    with pytest.raises(ValueError, match="another configuration"):
        other.fit(rows)


def test_time_budget_ends_the_fit_after_validating_and_says_so() -> None:
    trainer, rows = _setup(epochs=20, time_budget=1e-9)  # spent by the first step
    seen: list[int] = []

    def evaluate(module: torch.nn.Module) -> dict[str, float]:
        seen.append(1)
        return {"ndcg@10": 0.5}

    trainer.evaluate = evaluate
    result = trainer.fit(rows)
    assert result.epochs_run == 1 and result.stopped_early and result.stop_reason == "time budget"
    assert seen == [1] and result.best_epoch == 1  # the cut epoch was validated and kept


def test_stop_reasons() -> None:
    trainer, rows = _setup(epochs=2)
    assert trainer.fit(rows).stop_reason == "epochs"
    trainer, rows = _setup(epochs=20, patience=1)
    trainer.evaluate = lambda module: {"ndcg@10": 0.1}
    assert trainer.fit(rows).stop_reason == "patience"


def test_progress_reaches_a_log_one_line_per_epoch(capfd: pytest.CaptureFixture[str]) -> None:
    """Output that is not a terminal gets a line per epoch (loss, validation, seconds, threads)."""
    trainer, rows = _setup(epochs=3, progress=True)
    trainer.evaluate = lambda module: {"ndcg@10": 0.25}
    trainer.fit(rows)
    lines = [x for x in capfd.readouterr().err.splitlines() if x.startswith("epoch ")]
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/3 loss ") and "val ndcg@10 0.2500 (best 0.2500)" in lines[0]
    assert lines[-1].endswith("threads 1") and " s " in lines[-1]


def test_per_group_early_stopping_keeps_each_groups_best_epoch() -> None:
    """Scripted validation curves for three groups (one per head): each keeps the weights of its own best
    epoch, stops after ``patience`` validations without improving, and training ends when all have stopped."""
    trainer, rows = _setup(epochs=20, patience=2)
    curves = {
        "a": [0.1, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0, 0.0],  # best at epoch 2, stops at 4
        "b": [0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.3],  # best at epoch 5, stops at 7
        "c": [0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0],  # best at epoch 1, stops at 3
    }
    calls: list[int] = []
    weights: list[dict[str, torch.Tensor]] = []
    stopped: list[str] = []

    def evaluate(module: torch.nn.Module) -> dict[str, float]:
        e = len(calls)
        calls.append(e)
        weights.append({k: v.clone() for k, v in module.state_dict().items()})
        out = {f"m_{g}": c[e] for g, c in curves.items()}
        out["ndcg@10"] = sum(out.values())
        return out

    trainer.evaluate = evaluate
    trainer.groups = {g: f"m_{g}" for g in curves}
    trainer.on_group_stop = stopped.append
    result = trainer.fit(rows)
    assert result.best_epochs == {"a": 2, "b": 5, "c": 1}
    assert result.stopped_at == {"c": 3, "a": 4, "b": 7} and stopped == ["c", "a", "b"]
    assert result.epochs_run == 7 and result.stopped_early and result.stop_reason == "patience"
    for g, epoch in result.best_epochs.items():
        for k, v in trainer.group_states[g].items():
            torch.testing.assert_close(v, weights[epoch - 1][k])  # the group's own best weights
    a, b = trainer.group_states["a"], trainer.group_states["b"]
    assert any(not torch.equal(a[k], b[k]) for k in a)  # different epochs, different weights
    assert trainer.group_states["a"] is not trainer.group_states["c"]


def test_a_log_line_shows_a_validation_only_after_the_epoch_it_ran(capfd: pytest.CaptureFixture[str]) -> None:
    trainer, rows = _setup(epochs=4, progress=True, eval_every=2)
    trainer.evaluate = lambda module: {"ndcg@10": 0.25}
    trainer.fit(rows)
    lines = [x for x in capfd.readouterr().err.splitlines() if x.startswith("epoch ")]
    assert ["val" in x for x in lines] == [False, True, False, True]


# ---------------------------------------------------------------------------------------- plateau schedule
def _plateau_opt(lr: float = 1e-2, **cfg: object) -> tuple[torch.optim.Optimizer, TrainConfig]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)
    return opt, TrainConfig(**{"lr": lr, "schedule": "plateau", **cfg})  # type: ignore[arg-type]


def test_plateau_warms_up_over_warmup_steps_but_never_past_the_first_epoch() -> None:
    opt, cfg = _plateau_opt(warmup_steps=4)
    sched = LRSchedule(opt, cfg, steps_per_epoch=10)
    seen = [sched.lr]
    for _ in range(8):
        opt.step()
        sched.step()
        seen.append(sched.lr)
    assert seen == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01])
    opt, cfg = _plateau_opt(warmup_steps=100)
    sched = LRSchedule(opt, cfg, steps_per_epoch=2)  # a 2-step epoch: warm-up ends with it
    seen = [sched.lr]
    for _ in range(2):
        opt.step()
        sched.step()
        seen.append(sched.lr)
    assert seen == pytest.approx([0.005, 0.01, 0.01])


def test_plateau_reduces_after_plateau_patience_validations_down_to_the_floor() -> None:
    opt, cfg = _plateau_opt(warmup_steps=1, plateau_factor=0.5, plateau_patience=2, min_lr_ratio=0.2)
    sched = LRSchedule(opt, cfg, steps_per_epoch=5)
    # improves, improves, then flat: the third validation in a row without a gain reduces the rate; an
    # improvement restarts the count; the rate never goes below lr * min_lr_ratio
    metrics = [0.1, 0.2, 0.2, 0.1, 0.15, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    drops, lrs = [], []
    for i, m in enumerate(metrics, start=1):
        if sched.validated(m):
            drops.append(i)
        lrs.append(sched.lr)
    assert drops == [5, 9, 12]  # the third drop hits the floor (0.0025 -> 0.002); then none
    assert lrs[4] == pytest.approx(0.005) and lrs[8] == pytest.approx(0.0025)
    assert lrs[-1] == pytest.approx(0.002)


def test_the_lr_sequence_of_a_plateau_run() -> None:
    """A fit with a scripted validation metric: warm-up, constant rate, halved after each plateau of three
    validations, early stopping after ``patience``; ``lrs`` and ``lr_drops`` record it."""
    trainer, rows = _setup(epochs=50, patience=6, schedule="plateau", warmup_steps=2, plateau_factor=0.5,
                           plateau_patience=2, min_lr_ratio=0.1, lr=1e-3)
    script = iter([0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.35, 0.35, 0.35, 0.35, 0.35, 0.35, 0.35] + [0.0] * 40)
    trainer.evaluate = lambda module: {"ndcg@10": next(script)}
    result = trainer.fit(rows)
    assert result.lr_drops == [6, 10, 13]  # the last with the sixth validation without a gain, which stops
    expected = [1e-3] * 6 + [5e-4] * 4 + [2.5e-4] * 3
    assert result.lrs == pytest.approx(expected)
    assert result.stop_reason == "patience" and result.epochs_run == 13 and result.best_epoch == 7


def test_epochs_only_caps_a_plateau_run_but_reshapes_a_cosine_one() -> None:
    def lrs(schedule: str, epochs: int) -> list[float]:
        trainer, rows = _setup(epochs=epochs, patience=0, schedule=schedule, warmup_steps=2)
        script = iter([0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])
        trainer.evaluate = lambda module: {"ndcg@10": next(script)}
        result = trainer.fit(rows)
        assert result.stop_reason == "epochs" and result.epochs_run == epochs
        return result.lrs

    short, long = lrs("plateau", 4), lrs("plateau", 12)
    assert short == long[:4]  # the same run, only cut
    assert long[5] < long[4]  # and it was reduced by the plateau, not by the epoch count
    short, long = lrs("cosine", 4), lrs("cosine", 12)
    assert short[:3] != pytest.approx(long[:3])  # the cosine decay stretches with epochs


def test_plateau_state_is_checkpointed_and_resumed(tmp_path: Path) -> None:
    curve = [0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.3, 0.3]
    full, rows = _setup(epochs=8, patience=0, schedule="plateau", warmup_steps=2, plateau_patience=1)
    script = iter(curve)
    full.evaluate = lambda m: {"ndcg@10": next(script)}
    full_result = full.fit(rows)
    assert full_result.lr_drops == [4, 6]

    first, _ = _setup(tmp_path, epochs=8, patience=0, schedule="plateau", warmup_steps=2, plateau_patience=1)
    script = iter(curve[:5])  # dies at the sixth validation, after saving epoch 5 (1 reduction, 1 bad eval)
    first.evaluate = lambda m: {"ndcg@10": next(script)}
    with pytest.raises(StopIteration):
        first.fit(rows)
    state = torch.load(tmp_path / "last" / "optimizer.pt", weights_only=True)["scheduler"]
    assert state["plateau"]["num_bad_epochs"] == 1 and state["plateau"]["best"] == pytest.approx(0.2)

    resumed, _ = _setup(tmp_path, epochs=8, patience=0, schedule="plateau", warmup_steps=2,
                        plateau_patience=1, resume=True)
    script = iter(curve[5:])
    resumed.evaluate = lambda m: {"ndcg@10": next(script)}
    result = resumed.fit(rows)
    assert result.lr_drops == full_result.lr_drops  # the second reduction came at the same epoch
    assert result.lrs == pytest.approx(full_result.lrs)
    np.testing.assert_allclose(result.losses, full_result.losses, rtol=1e-4)
    for k, v in resumed.module.state_dict().items():
        torch.testing.assert_close(v, full.module.state_dict()[k], rtol=1e-4, atol=1e-5)


def test_schedule_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="plateau_factor"):
        TrainConfig(plateau_factor=1.0)
