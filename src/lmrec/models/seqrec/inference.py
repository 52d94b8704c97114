"""Faster SeqRec scoring for serving: int8 dynamic quantisation (PyTorch) and ONNX export (onnxruntime).

Both keep the :class:`~lmrec.models.seqrec.model.SeqRec` interface: :func:`quantized` returns a SeqRec whose
encoder's linear layers run in int8, and :class:`OnnxScorer` scores histories with an exported graph. Measure
the accuracy change before switching (``benchmarks/seqrec_speed.py`` does).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.models.seqrec.model import SeqRec
from lmrec.models.seqrec.network import SeqRecNetwork


def quantized(model: SeqRec) -> SeqRec:
    """A copy of ``model`` whose sequence encoder's ``nn.Linear`` layers use int8 weights and dynamically
    quantised activations (CPU). Item vectors are computed once in float and kept as they are."""
    if model.network_ is None:
        raise ValueError("quantize a fitted or loaded SeqRec")
    from torch.ao.quantization import quantize_dynamic

    q = copy.copy(model)
    net = copy.deepcopy(model.network_).to("cpu").eval()
    with torch.no_grad():  # not inference_mode: the table must stay usable in traced/exported graphs
        table = net.item_table().clone()
    enc = net.sequence_encoder
    if enc.rnn is None:
        enc.blocks = quantize_dynamic(enc.blocks, {nn.Linear}, dtype=torch.qint8)
    else:
        enc.rnn = quantize_dynamic(enc.rnn, {nn.GRU, nn.LSTM}, dtype=torch.qint8)
    q.network_ = net
    q._table = table
    return q


class _Scorer(nn.Module):
    """History (left-padded ``(B, T)`` item indices) → scores ``(B, n_items + 1)`` with a frozen item
    table."""

    def __init__(self, net: SeqRecNetwork, prior_scale: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.prior_scale = prior_scale
        with torch.no_grad():  # not inference_mode: the table must stay usable in traced/exported graphs
            table = net.item_table().clone()
        self.register_buffer("table", table)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        h = self.net.sequence_encoder(items)[:, -1]  # (B, d)
        return self.net.scores(h, self.table, self.prior_scale)  # (B, n_items + 1)


def export_onnx(model: SeqRec, path: str | Path, opset: int = 17) -> Path:
    """Write ``model`` as an ONNX graph with input ``items`` (int64 ``(batch, time)``, left-padded, ``time`` ≤
    ``max_len``) and output ``scores`` (float32 ``(batch, n_items + 1)``; column 0 is not masked)."""
    if model.network_ is None:
        raise ValueError("export a fitted or loaded SeqRec")
    if model.config.use_types or model.config.gap_buckets:
        raise ValueError("ONNX export covers item-only models (use_types=False, gap_buckets=0)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scorer = _Scorer(copy.deepcopy(model.network_).to("cpu").eval(), model.config.prior_at_scoring).eval()
    example = torch.ones(2, min(8, model.config.max_len), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(scorer, (example,), str(path), input_names=["items"], output_names=["scores"],
                          dynamic_axes={"items": {0: "batch", 1: "time"}, "scores": {0: "batch"}},
                          opset_version=opset, dynamo=False)
    return path


class OnnxScorer:
    """Score raw histories with an exported SeqRec through onnxruntime (same output as ``SeqRec.score``)."""

    def __init__(self, path: str | Path, max_len: int, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.max_len = max_len

    def score(self, histories: Ragged) -> np.ndarray:
        """``(rows, n_items + 1)`` float32 scores, column 0 ``-inf``."""
        width = int(min(self.max_len, max(1, int(histories.lengths.max(initial=1)))))
        items = histories.last(width, pad=PAD).astype(np.int64)
        (scores,) = self.session.run(["scores"], {"items": items})
        scores = np.asarray(scores, dtype=np.float32)
        scores[:, PAD] = -np.inf
        return scores
