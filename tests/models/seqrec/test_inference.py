"""int8 quantisation and ONNX export give (nearly) the float model's rankings."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from lmrec.data.splits import leave_one_out
from lmrec.models import create_model
from lmrec.models.seqrec import SeqRec
from lmrec.models.seqrec.inference import OnnxScorer, export_onnx, quantized
from lmrec.models.seqrec.network import log_popularity
from tests.training.synthetic import cyclic_dataset

FAST = {"d_model": 32, "n_layers": 2, "max_len": 8, "epochs": 8, "batch_size": 16, "lr": 1e-2, "dropout": 0.0,
        "progress": False, "num_threads": 1, "patience": 0}


@pytest.fixture(scope="module")
def model_and_data():
    ds = cyclic_dataset()
    split = leave_one_out(ds)
    m = create_model("seqrec", **FAST).fit(split.train, split.valid)
    return m, split


def _top1(scores: np.ndarray) -> np.ndarray:
    return np.argmax(scores, axis=1)


def test_int8_keeps_rankings(model_and_data) -> None:
    m, split = model_and_data
    assert isinstance(m, SeqRec)
    q = quantized(m)
    h = split.test.history
    full, small = m.score(h, split.test.users), q.score(h, split.test.users)
    assert small.shape == full.shape and np.all(small[:, 0] == -np.inf)
    assert np.mean(_top1(full) == _top1(small)) >= 0.9
    assert q.network_ is not m.network_  # the original is untouched


def test_onnx_matches_torch(model_and_data, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    m, split = model_and_data
    path = export_onnx(m, tmp_path / "seqrec.onnx")
    scorer = OnnxScorer(path, max_len=m.config.max_len, threads=1)
    h = split.test.history
    np.testing.assert_allclose(scorer.score(h)[:, 1:], m.score(h)[:, 1:], rtol=1e-4, atol=1e-4)


def test_onnx_and_int8_keep_the_popularity_prior(model_and_data, tmp_path: Path) -> None:
    """Exported and quantised scorers add the popularity prior, at the model's ``prior_at_scoring`` scale."""
    pytest.importorskip("onnxruntime")
    from dataclasses import replace

    _, split = model_and_data
    m = create_model("seqrec", **FAST, pop_prior="fixed", pop_prior_weight=0.8, prior_at_scoring=0.5)
    m.fit(split.train, split.valid)
    h = split.test.history
    plain = copy.deepcopy(m)
    plain.config = replace(m.config, prior_at_scoring=0.0)
    log_pop = log_popularity(torch.as_tensor(split.train.item_popularity)).numpy()
    diff = m.score(h)[:, 1:] - plain.score(h)[:, 1:]
    np.testing.assert_allclose(diff, np.broadcast_to(0.4 * log_pop[1:], diff.shape), rtol=1e-4, atol=1e-4)
    scorer = OnnxScorer(export_onnx(m, tmp_path / "prior.onnx"), max_len=m.config.max_len, threads=1)
    np.testing.assert_allclose(scorer.score(h)[:, 1:], m.score(h)[:, 1:], rtol=1e-4, atol=1e-4)
    q = quantized(m)
    assert np.mean(_top1(q.score(h)) == _top1(m.score(h))) >= 0.9

