"""Which runtime a saved model folder is served with, for every SeqRec in it: the folder itself when it holds
a SeqRec, each SeqRec component (``components/NAME``) when it holds an ``auto`` blend.

The forms and ``serving.json`` are written by :func:`lmrec.models.seqrec.inference.export_forms`
(``lmrec seqrec export``); here they are found, checked and loaded. Models without a SeqRec have no runtime
to choose: asking one for ``int8`` or ``onnx`` is an error, ``torch`` is what they always use.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmrec.models.auto import COMPONENTS_DIR, Auto
from lmrec.models.base import MODEL_FILE, Recommender, load_model
from lmrec.models.seqrec.inference import (
    RUNTIMES,
    ServingFormError,
    export_forms,
    resolve_runtime,
    use_runtime,
)
from lmrec.models.seqrec.model import SeqRec

#: What a model folder's SeqRec parts are called in reports: the model itself, or its component's name.
SELF = "seqrec"


def _kind(folder: Path) -> str:
    file = folder / MODEL_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{folder} is not a saved lmrec model (no {MODEL_FILE})")
    return str(json.loads(file.read_text())["model"])


def seqrec_folders(path: str | Path) -> dict[str, Path]:
    """The SeqRec folders of a saved model: ``{"seqrec": path}`` for a SeqRec, ``{name: components/name}`` for
    each SeqRec component of an ``auto`` model, ``{}`` otherwise."""
    path = Path(path)
    kind = _kind(path)
    if kind == SeqRec.name:
        return {SELF: path}
    if kind == Auto.name and (path / COMPONENTS_DIR).is_dir():
        return {c.name: c for c in sorted((path / COMPONENTS_DIR).iterdir())
                if (c / MODEL_FILE).is_file() and _kind(c) == SeqRec.name}
    return {}


def resolve_runtimes(path: str | Path, runtime: str | None = None) -> dict[str, str]:
    """The runtime of each SeqRec of the folder (``{part: runtime}``), checked without loading the model:
    ``runtime`` overrides every folder's ``serving.json``. Raises :class:`ServingFormError` for an unknown
    runtime, a form a folder does not have, onnxruntime missing, or ``int8``/``onnx`` asked of a model
    without a SeqRec."""
    if runtime is not None and runtime not in RUNTIMES:
        raise ServingFormError(f"unknown runtime {runtime!r}: choose among {', '.join(RUNTIMES)}")
    parts = seqrec_folders(path)
    if not parts and runtime not in (None, "torch"):
        raise ServingFormError(f"runtime {runtime} applies to SeqRec models (and auto blends with a SeqRec "
                               f"component); {path} holds a {_kind(Path(path))!r} model")
    return {name: resolve_runtime(folder, runtime) for name, folder in parts.items()}


def load_for_serving(path: str | Path, runtime: str | None = None) -> Recommender:
    """:func:`~lmrec.models.base.load_model`, then every SeqRec in it set to score through its runtime
    (``runtime``, else its folder's ``serving.json``, else float)."""
    resolve_runtimes(path, runtime)  # every check before the (longer) load
    model = load_model(path)
    for name, folder in seqrec_folders(path).items():
        part = model.components_.get(name) if isinstance(model, Auto) else model
        if isinstance(part, SeqRec):  # an auto component with weight 0 is saved but not loaded
            use_runtime(part, folder, runtime)
    return model


def runtimes_of(model: Recommender) -> dict[str, str]:
    """The runtime each SeqRec of a loaded model scores with (``{}`` for a model without SeqRec)."""
    if isinstance(model, SeqRec):
        return {SELF: model.runtime}
    if isinstance(model, Auto):
        return {n: m.runtime for n, m in model.components_.items() if isinstance(m, SeqRec)}
    return {}


def export_folder(path: str | Path, forms: list[str], runtime: str | None = None) -> dict[str, dict]:
    """Write ``forms`` into every SeqRec folder of a saved model (itself, or an ``auto`` model's SeqRec
    components) and record them; returns each part's new ``serving.json``."""
    parts = seqrec_folders(path)
    if not parts:
        raise ServingFormError(f"{path} holds a {_kind(Path(path))!r} model: only SeqRec (or an auto blend "
                               "with a SeqRec component) has compressed forms")
    out = {}
    for name, folder in parts.items():
        model = load_model(folder)
        assert isinstance(model, SeqRec)
        out[name] = export_forms(model, folder, forms, runtime)
    return out
