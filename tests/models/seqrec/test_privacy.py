"""Differentially private SeqRec (dp_epsilon > 0): it trains and learns something, spends at most the target
ε, groups every training window of a user into one privacy unit, saves and loads, and says clearly when Opacus
is missing or a setting would read the data outside the private steps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lmrec.data.splits import leave_one_out
from lmrec.models import create_model, load_model
from lmrec.models.seqrec import SeqRec
from lmrec.models.seqrec.model import SeqRecConfig
from lmrec.training.trainer import TrainConfig
from tests.training.synthetic import cyclic_dataset

PRIVATE = {"item_repr": "id", "d_model": 16, "n_layers": 1, "max_len": 4, "epochs": 4, "batch_size": 16,
           "lr": 1e-2, "dropout": 0.0, "progress": False, "num_threads": 1, "eval_every": 2,
           "windows": "all", "dp_epsilon": 4.0}


@pytest.fixture(scope="module")
def private_model():
    pytest.importorskip("opacus")
    ds = cyclic_dataset()
    split = leave_one_out(ds)
    m = create_model("seqrec", **PRIVATE)
    return m.fit(split.train, split.valid), split


def test_private_training_reports_epsilon_within_target(private_model) -> None:
    m, split = private_model
    dp = m.train_result_.privacy
    assert dp["unit"] == "user" and dp["accountant"] == "rdp"
    assert 0 < dp["epsilon"] <= PRIVATE["dp_epsilon"] + 1e-9
    users_with_rows = int((split.train.sequences.lengths >= 2).sum())
    assert dp["units"] == users_with_rows and dp["rows"] > dp["units"]  # windows="all": several rows per user
    assert dp["delta"] == pytest.approx(1 / (10 * users_with_rows))
    assert dp["noise_multiplier"] > 0 and dp["steps"] == m.train_result_.epochs_run * int(
        np.ceil(users_with_rows / PRIVATE["batch_size"]))
    # the released weights are the last epoch's (no choice of the best epoch on validation)
    assert m.train_result_.best_epoch == m.train_result_.epochs_run == PRIVATE["epochs"]
    s = m.score(split.test.history.take(np.arange(4)))
    assert np.isfinite(s[:, 1:]).all()


def test_private_model_saves_and_loads(private_model, tmp_path: Path) -> None:
    m, split = private_model
    path = m.save(tmp_path / "dp")
    loaded = load_model(path)
    assert isinstance(loaded, SeqRec) and loaded.config.dp_epsilon == PRIVATE["dp_epsilon"]
    assert loaded.train_result_.privacy["epsilon"] == m.train_result_.privacy["epsilon"]
    assert json.loads((path / "train_result.json").read_text())["privacy"]["unit"] == "user"
    hist = split.test.history.take(np.arange(5))
    np.testing.assert_allclose(loaded.score(hist), m.score(hist), rtol=1e-5, atol=1e-5)


def test_per_user_gradients_are_summed_then_clipped() -> None:
    """PrivateSteps hands Opacus one gradient per unit: the sum of its rows' gradients over its targets."""
    pytest.importorskip("opacus")
    from lmrec.training.privacy import PrivateSteps

    class Squares(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor([1.0, -2.0]))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return ((x @ self.w) ** 2).sum(), torch.tensor(x.shape[0])

    module = Squares()
    cfg = TrainConfig(dp_epsilon=1.0, batch_size=2, epochs=1)
    units = np.array([7, 7, 3])
    steps = PrivateSteps(module, cfg, 3, units)
    assert steps.n_units == 2 and steps.sample_rate == 1.0
    seen: list[torch.Tensor] = []

    class Recorder:
        def step(self) -> None:
            seen.append(module.w.grad_sample.clone())

        def zero_grad(self, set_to_none: bool = True) -> None:
            module.w.grad_sample = None

    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    unit_of_row = np.array([0, 0, 1])
    loss, count = steps.step({"x": x}, unit_of_row, Recorder())
    w = module.w.detach()
    row_grads = [2 * (xi @ w) * xi for xi in x]
    want = torch.stack([(row_grads[0] + row_grads[1]) / 2, row_grads[2]])
    torch.testing.assert_close(seen[0], want)
    assert count == 3 and loss == pytest.approx(float(((x @ w) ** 2).sum()))
    assert steps.report().steps == 1 and steps.epsilon() > 0
    # Poisson sampling: every unit's rows travel together
    for rows, pos in PrivateSteps(module, TrainConfig(dp_epsilon=1.0, batch_size=1, epochs=1), 3,
                                  units).batches(0):
        for p in set(pos.tolist()):
            owners = set(units[rows[pos == p]].tolist())
            assert len(owners) == 1 and (units == owners.pop()).sum() == (pos == p).sum()


def test_settings_that_read_the_data_outside_dp_are_refused() -> None:
    for bad in ({"item_repr": "fused"}, {"pop_prior": "fixed"}, {"loss": "sampled"}, {"encoder": "gru"}):
        with pytest.raises(ValueError, match="dp_epsilon > 0 needs"):
            SeqRecConfig(dp_epsilon=1.0, **bad)
    with pytest.raises(ValueError, match="dp_epsilon must be >= 0"):
        SeqRecConfig(dp_epsilon=-1.0)


def test_a_clear_error_without_opacus(monkeypatch) -> None:
    ds = cyclic_dataset()
    monkeypatch.setitem(sys.modules, "opacus", None)  # import opacus now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'lmrec\[dp\]'"):
        create_model("seqrec", **PRIVATE).fit(ds)
