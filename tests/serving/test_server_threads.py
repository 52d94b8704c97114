"""`lmrec serve` runs one request's model inference on LMREC_MODEL_THREADS torch threads (1 by default)."""

from __future__ import annotations

import pytest
import torch

from lmrec.serving import ServingSettings
from lmrec.serving.server import limit_model_threads


def test_model_threads_default_to_one_and_are_applied(monkeypatch) -> None:
    assert ServingSettings().model_threads == 1
    monkeypatch.setenv("LMREC_MODEL_THREADS", "2")
    assert ServingSettings().model_threads == 2
    monkeypatch.setenv("LMREC_MODEL_THREADS", "0")
    with pytest.raises(ValueError, match="model_threads"):
        ServingSettings()
    before = torch.get_num_threads()
    try:
        limit_model_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
