"""Compressed SeqRec for serving: the encoder body in int8 (PyTorch dynamic quantisation) or as an ONNX graph
(onnxruntime), written into the model folder and recorded in its ``serving.json``.

A runtime replaces only the encoder body (:class:`~lmrec.models.seqrec.network.EncoderBody`: the Transformer
blocks or RNN and the final layer norm). Inputs are embedded and scores computed by the float network, so
``SeqRec.score`` stays the one scoring path: new items, the popularity prior, untrained-id masking and
everything the service does downstream are the same in every runtime.

Files in a model folder (:func:`export_forms`, ``lmrec seqrec export MODEL --int8 --onnx``):

* ``model.int8.pt``: the state dict of the int8 body (``torch.load(weights_only=True)``);
* ``model.onnx``: the body as a graph ``x (batch, time, d) float32, valid (batch, time) bool →
  state (batch, d)``;
* ``serving.json``: ``{"runtime": "torch" | "int8" | "onnx", "forms": {"int8": {"file": …, "body_sha256": …},
  …}}``. ``runtime`` is what ``lmrec serve`` uses unless told otherwise; ``body_sha256`` is the digest of the
  float body the form was made from, so a form left behind by other weights is refused, not served.

Measure the accuracy change before switching: ``benchmarks/compressed_serving.py``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lmrec.models.seqrec.model import SeqRec
from lmrec.models.seqrec.network import EncoderBody, SeqRecNetwork

#: Runtimes of the encoder body: the float network, int8 dynamic quantisation, onnxruntime.
RUNTIMES = ("torch", "int8", "onnx")
SERVING_FILE = "serving.json"
INT8_FILE = "model.int8.pt"
ONNX_FILE = "model.onnx"
#: The file each compressed form is written to, in the model folder.
FORM_FILES = {"int8": INT8_FILE, "onnx": ONNX_FILE}


class ServingFormError(ValueError):
    """A runtime that cannot be used: unknown, not exported into the folder, made from other weights, or
    needing a package that is not installed."""


# ---------------------------------------------------------------------- bodies
def _network(model: SeqRec) -> SeqRecNetwork:
    if model.network_ is None:
        raise ValueError("compress a fitted or loaded SeqRec")
    return model.network_


def float_body(net: SeqRecNetwork) -> EncoderBody:
    """A CPU copy of the network's encoder body, in eval mode."""
    return copy.deepcopy(net.sequence_encoder.body()).to("cpu").eval()


def body_digest(net: SeqRecNetwork) -> str:
    """SHA-256 of the float encoder body's weights: what a compressed form was made from."""
    h = hashlib.sha256()
    for name, t in sorted(net.sequence_encoder.body().state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def int8_body(net: SeqRecNetwork) -> nn.Module:
    """The encoder body with int8 weights and dynamically quantised activations: its ``nn.Linear`` layers
    (Transformer) or its GRU/LSTM (CPU)."""
    from torch.ao.quantization import quantize_dynamic

    body = float_body(net)
    types: set[type[nn.Module]] = {nn.Linear} if body.rnn is None else {nn.GRU, nn.LSTM}
    with warnings.catch_warnings():  # torch.ao.quantization warns of its future move to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(body, types, dtype=torch.qint8)


class Int8Runtime:
    """The encoder body in int8 (see :func:`int8_body`)."""

    name = "int8"

    def __init__(self, body: nn.Module) -> None:
        self.body = body.eval()

    def last_state(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.body(x.to("cpu", torch.float32), valid.to("cpu"))[:, -1]


class _LastState(nn.Module):
    """``(x, valid) → state after the newest event``: the graph exported to ONNX."""

    def __init__(self, body: EncoderBody) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.body(x, valid)[:, -1]


def onnx_available() -> bool:
    """Whether onnxruntime is installed (the ``onnx`` extra: ``pip install 'lmrec[onnx]'``)."""
    return importlib.util.find_spec("onnxruntime") is not None


class OnnxRuntime:
    """The encoder body as an ONNX graph run by onnxruntime on CPU.

    ``threads`` is onnxruntime's intra-op thread count (default: torch's, so both runtimes use the same
    cores); its worker threads do not spin while idle, which matters on a shared or busy machine.
    """

    name = "onnx"

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        if not onnx_available():
            raise ServingFormError("the onnx runtime needs onnxruntime: pip install 'lmrec[onnx]'")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        if "x" not in self.inputs:
            raise ServingFormError(f"{path} is not a SeqRec encoder body graph (no input 'x'); export it "
                                   "again with `lmrec seqrec export MODEL --onnx`")

    def last_state(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        feed: dict[str, np.ndarray] = {"x": x.detach().to("cpu", torch.float32).numpy()}
        if "valid" in self.inputs:  # an RNN body has no use for the mask, and its graph drops it
            feed["valid"] = valid.detach().to("cpu").numpy()
        (state,) = self.session.run(["state"], feed)
        return torch.from_numpy(np.asarray(state, dtype=np.float32))


# ---------------------------------------------------------------------- writing the forms
def export_int8(model: SeqRec, path: str | Path) -> Path:
    """Write the int8 encoder body's state dict to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(int8_body(_network(model)).state_dict(), path)
    return path


def export_onnx(model: SeqRec, path: str | Path, opset: int = 17) -> Path:
    """Write the encoder body as an ONNX graph: inputs ``x`` (float32 ``(batch, time, d)``, the embedded
    left-padded history, ``time`` ≤ ``max_len``) and ``valid`` (bool ``(batch, time)``, ``False`` on
    padding); output ``state`` (float32 ``(batch, d)``, the state after the newest event)."""
    net = _network(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = _LastState(float_body(net)).eval()
    d, t = net.cfg.d_model, min(8, net.cfg.max_len)
    example = (torch.randn(2, t, d), torch.ones(2, t, dtype=torch.bool))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing fixed shapes
        torch.onnx.export(graph, example, str(path), input_names=["x", "valid"], output_names=["state"],
                          dynamic_axes={"x": {0: "batch", 1: "time"}, "valid": {0: "batch", 1: "time"},
                                        "state": {0: "batch"}},
                          opset_version=opset, dynamo=False)
    return path


def read_serving(folder: str | Path) -> dict[str, Any]:
    """The folder's ``serving.json`` (``{}`` when it has none)."""
    file = Path(folder) / SERVING_FILE
    if not file.is_file():
        return {}
    info = json.loads(file.read_text())
    if not isinstance(info, dict):
        raise ServingFormError(f"{file} must hold a JSON object")
    return info


def _write_serving(folder: Path, info: dict[str, Any]) -> None:
    tmp = folder / f".{SERVING_FILE}.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, folder / SERVING_FILE)


def export_forms(model: SeqRec, folder: str | Path, forms: list[str], runtime: str | None = None) -> dict:
    """Write the compressed ``forms`` (``"int8"``, ``"onnx"``) of ``model`` into its saved ``folder`` and
    record them in ``serving.json``; ``runtime`` (default: the last form written) becomes the folder's
    serving runtime. Returns the new ``serving.json``."""
    folder = Path(folder)
    for form in forms:
        if form not in FORM_FILES:
            raise ServingFormError(f"unknown form {form!r}: choose among {', '.join(FORM_FILES)}")
    if runtime is not None and runtime not in RUNTIMES:
        raise ServingFormError(f"unknown runtime {runtime!r}: choose among {', '.join(RUNTIMES)}")
    info = read_serving(folder)
    recorded: dict[str, Any] = dict(info.get("forms", {}))
    digest = body_digest(_network(model))
    for form in forms:
        if form == "onnx" and not (onnx_available() and importlib.util.find_spec("onnx") is not None):
            # the graph can be written without onnxruntime, but it could not be checked or served here
            raise ServingFormError("exporting to ONNX needs onnx and onnxruntime: pip install 'lmrec[onnx]'")
        write = export_int8 if form == "int8" else export_onnx
        tmp = folder / f".{FORM_FILES[form]}.tmp"
        write(model, tmp)
        os.replace(tmp, folder / FORM_FILES[form])  # a service loading the folder meanwhile sees old or new
        recorded[form] = {"file": FORM_FILES[form], "body_sha256": digest}
    chosen = runtime or (forms[-1] if forms else info.get("runtime", "torch"))
    if chosen != "torch" and chosen not in recorded:
        raise ServingFormError(f"{folder} has no {chosen} form: export it with --{chosen}")
    info = {"runtime": chosen, "forms": recorded}
    _write_serving(folder, info)
    return info


# ---------------------------------------------------------------------- choosing and loading a runtime
def resolve_runtime(folder: str | Path, runtime: str | None = None) -> str:
    """The runtime to serve ``folder`` with: ``runtime`` when given, else its ``serving.json``'s, else
    ``"torch"``; checked without loading the model (unknown runtime, form not exported or its file missing,
    onnxruntime not installed: :class:`ServingFormError`)."""
    folder = Path(folder)
    info = read_serving(folder)
    chosen = runtime or info.get("runtime") or "torch"
    where = "asked for" if runtime else f"{folder / SERVING_FILE} asks for"
    if chosen not in RUNTIMES:
        raise ServingFormError(f"unknown runtime {chosen!r} ({where}): choose among {', '.join(RUNTIMES)}")
    if chosen == "torch":
        return chosen
    form = info.get("forms", {}).get(chosen)
    file = folder / FORM_FILES[chosen]
    if form is None or not file.is_file():
        raise ServingFormError(f"runtime {chosen} {where}, but {folder} has no {FORM_FILES[chosen]}: write "
                               f"it with `lmrec seqrec export {folder} --{chosen}`")
    if chosen == "onnx" and not onnx_available():
        raise ServingFormError(f"runtime onnx {where}, but onnxruntime is not installed: "
                               "pip install 'lmrec[onnx]'")
    return chosen


def load_runtime(model: SeqRec, folder: str | Path, runtime: str) -> Int8Runtime | OnnxRuntime | None:
    """The runtime ``runtime`` of ``model`` saved in ``folder`` (``None`` for ``"torch"``), after checking
    that its form was made from this model's weights."""
    folder = Path(folder)
    runtime = resolve_runtime(folder, runtime)
    if runtime == "torch":
        return None
    net = _network(model)
    form = read_serving(folder)["forms"][runtime]
    if form.get("body_sha256") != body_digest(net):
        raise ServingFormError(f"{folder / FORM_FILES[runtime]} was made from other weights than the model's "
                               f"(retrained since?): write it again with `lmrec seqrec export {folder} "
                               f"--{runtime}`")
    if runtime == "onnx":
        return OnnxRuntime(folder / FORM_FILES["onnx"])
    body = int8_body(net)
    # Quantised GRU/LSTM weights are packed in torchbind objects (torch.ScriptObject), which weights-only
    # loading rebuilds through torch's own registered classes only; nothing else is unpickled.
    with torch.serialization.safe_globals([torch.ScriptObject]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's own note on TypedStorage inside packed params
        state = torch.load(folder / FORM_FILES["int8"], map_location="cpu", weights_only=True)
    body.load_state_dict(state)
    return Int8Runtime(body)


def use_runtime(model: SeqRec, folder: str | Path, runtime: str | None = None) -> SeqRec:
    """Make ``model`` (loaded from ``folder``) score through ``runtime`` (default: the folder's
    ``serving.json``, else float); returns ``model``."""
    return model.set_runtime(load_runtime(model, folder, resolve_runtime(folder, runtime)))


def quantized(model: SeqRec) -> SeqRec:
    """A copy of ``model`` that scores with its encoder body in int8, in memory (no file written)."""
    q = copy.copy(model)
    q.network_ = copy.deepcopy(_network(model))
    q._table = None
    return q.set_runtime(Int8Runtime(int8_body(q.network_)))
