"""Compressed SeqRec: int8 and ONNX runtimes give (nearly) the float model's rankings through ``score``, their
forms round-trip through the model folder, and a runtime the folder cannot give is refused when loading."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lmrec.data.splits import leave_one_out
from lmrec.models import create_model, load_model
from lmrec.models.seqrec import SeqRec
from lmrec.models.seqrec.inference import (
    INT8_FILE,
    ONNX_FILE,
    SERVING_FILE,
    ServingFormError,
    export_forms,
    quantized,
    read_serving,
    use_runtime,
)
from lmrec.models.seqrec.network import log_popularity
from lmrec.models.serving_forms import export_folder, load_for_serving, resolve_runtimes, runtimes_of
from tests.training.synthetic import cyclic_dataset

FAST = {"d_model": 32, "n_layers": 2, "max_len": 8, "epochs": 8, "batch_size": 16, "lr": 1e-2, "dropout": 0.0,
        "progress": False, "num_threads": 1, "patience": 0}
#: ONNX runs the same float body as torch: only the order of float operations differs.
ONNX_ATOL = 1e-4
#: int8 rounds the body's weights and activations: most of each top 10 must stay, and scores stay close
#: relative to their spread (measured on this model: overlap ≥ 0.9, error ≤ 3 % of the score range).
INT8_MIN_OVERLAP = 0.8
INT8_MAX_REL_ERROR = 0.1

needs_onnx = pytest.mark.skipif(not __import__("importlib").util.find_spec("onnxruntime"),
                                reason="onnxruntime not installed (the onnx extra)")


@pytest.fixture(scope="module", params=["transformer", "gru"])
def model_and_data(request):
    split = leave_one_out(cyclic_dataset())
    m = create_model("seqrec", **FAST, encoder=request.param).fit(split.train, split.valid)
    return m, split


@pytest.fixture
def folder(model_and_data, tmp_path: Path) -> Path:
    m, _ = model_and_data
    return m.save(tmp_path / "m")


def _top10(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores[:, 1:], axis=1, kind="stable")[:, :10] + 1


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    ta, tb = _top10(a), _top10(b)
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ta, tb, strict=True)]))


def _assert_int8_close(small: np.ndarray, full: np.ndarray) -> None:
    assert small.shape == full.shape and np.all(small[:, 0] == -np.inf)
    assert _overlap(small, full) >= INT8_MIN_OVERLAP
    spread = np.ptp(full[:, 1:], axis=1, keepdims=True)
    assert np.max(np.abs(small[:, 1:] - full[:, 1:]) / spread) <= INT8_MAX_REL_ERROR


def test_int8_in_memory_keeps_rankings(model_and_data) -> None:
    m, split = model_and_data
    q = quantized(m)
    h = split.test.history
    _assert_int8_close(q.score(h, split.test.users), m.score(h, split.test.users))
    assert q.runtime == "int8" and m.runtime == "torch"  # the original is untouched
    assert q.network_ is not m.network_


@needs_onnx
def test_every_runtime_round_trips_through_the_folder(model_and_data, folder: Path) -> None:
    m, split = model_and_data
    h, users = split.test.history, split.test.users
    full = m.score(h, users)
    info = export_forms(m, folder, ["int8", "onnx"])
    assert info["runtime"] == "onnx" and set(info["forms"]) == {"int8", "onnx"}
    assert (folder / INT8_FILE).is_file() and (folder / ONNX_FILE).is_file()
    assert read_serving(folder) == info
    # the folder's choice is what loading for serving uses; an override wins
    served = load_for_serving(folder)
    assert isinstance(served, SeqRec) and served.runtime == "onnx"
    np.testing.assert_allclose(served.score(h, users)[:, 1:], full[:, 1:], atol=ONNX_ATOL)
    assert (_top10(served.score(h, users)) == _top10(full)).all()
    int8 = load_for_serving(folder, "int8")
    assert runtimes_of(int8) == {"seqrec": "int8"}
    _assert_int8_close(int8.score(h, users), full)
    # the int8 file holds the exported weights: the same scores as quantising in memory
    np.testing.assert_allclose(int8.score(h, users)[:, 1:], quantized(m).score(h, users)[:, 1:], atol=1e-5)
    torch_again = load_for_serving(folder, "torch")
    np.testing.assert_array_equal(torch_again.score(h, users), full)
    # the user vectors (ANN candidates) come from the same runtime as the scores
    np.testing.assert_allclose(served.user_embeddings(h, users), m.user_embeddings(h, users), atol=ONNX_ATOL)
    # plain load_model is unchanged: float
    assert load_model(folder).runtime == "torch"  # type: ignore[attr-defined]


@needs_onnx
def test_runtimes_score_new_items_and_keep_the_prior(tmp_path: Path) -> None:
    """Items added after export (cold start) and the popularity prior go through the float item side in every
    runtime."""
    split = leave_one_out(cyclic_dataset())
    m = create_model("seqrec", **FAST, item_repr="id", pop_prior="fixed", pop_prior_weight=0.8,
                     prior_at_scoring=0.5).fit(split.train, split.valid)
    h = split.test.history
    plain = copy.deepcopy(m)
    plain.config = replace(m.config, prior_at_scoring=0.0)
    log_pop = log_popularity(torch.as_tensor(split.train.item_popularity)).numpy()
    diff = m.score(h)[:, 1:] - plain.score(h)[:, 1:]
    np.testing.assert_allclose(diff, np.broadcast_to(0.4 * log_pop[1:], diff.shape), rtol=1e-4, atol=1e-4)
    folder = m.save(tmp_path / "prior")
    export_forms(m, folder, ["int8", "onnx"])
    for runtime in ("onnx", "int8"):
        served = load_for_serving(folder, runtime)
        assert isinstance(served, SeqRec)
        if runtime == "onnx":
            np.testing.assert_allclose(served.score(h)[:, 1:], m.score(h)[:, 1:], atol=ONNX_ATOL)
        else:
            _assert_int8_close(served.score(h), m.score(h))
        served.add_items(["brand-new"], [["x"]])
        s = served.score(h)
        assert s.shape[1] == m.n_items + 2
        assert np.all(s[:, -1] < np.min(s[:, 1:-1], axis=1) + 1e-6)  # an untrained id ranks last, as in float


def test_startup_errors_are_clear(model_and_data, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m, _ = model_and_data
    with pytest.raises(ServingFormError, match="has no model.int8.pt.*lmrec seqrec export"):
        resolve_runtimes(folder, "int8")
    with pytest.raises(ServingFormError, match="unknown runtime 'fp16'"):
        resolve_runtimes(folder, "fp16")
    export_forms(m, folder, ["int8"])
    assert resolve_runtimes(folder) == {"seqrec": "int8"}
    (folder / INT8_FILE).unlink()  # recorded but gone
    with pytest.raises(ServingFormError, match="has no model.int8.pt"):
        load_for_serving(folder)
    assert load_for_serving(folder, "torch").runtime == "torch"  # type: ignore[attr-defined]
    # a form made from other weights is refused
    export_forms(m, folder, ["int8"])
    other = copy.deepcopy(m)
    assert other.network_ is not None
    with torch.no_grad():
        next(other.network_.sequence_encoder.body().parameters()).add_(1.0)
    other.save(folder)
    with pytest.raises(ServingFormError, match="other weights"):
        load_for_serving(folder)
    # onnx without onnxruntime installed
    import lmrec.models.seqrec.inference as inference

    monkeypatch.setattr(inference, "onnx_available", lambda: False)
    info = json.loads((folder / SERVING_FILE).read_text())
    info["forms"]["onnx"] = {"file": ONNX_FILE, "body_sha256": "x"}
    (folder / SERVING_FILE).write_text(json.dumps(info))
    (folder / ONNX_FILE).write_bytes(b"")
    with pytest.raises(ServingFormError, match="onnxruntime is not installed"):
        resolve_runtimes(folder, "onnx")
    with pytest.raises(ServingFormError, match="needs onnx and onnxruntime"):
        export_forms(m, folder, ["onnx"])


def test_models_without_seqrec_refuse_compressed_runtimes(tmp_path: Path) -> None:
    split = leave_one_out(cyclic_dataset())
    folder = create_model("most-popular").fit(split.train).save(tmp_path / "pop")
    assert resolve_runtimes(folder) == {} and resolve_runtimes(folder, "torch") == {}
    with pytest.raises(ServingFormError, match="applies to SeqRec"):
        resolve_runtimes(folder, "int8")
    with pytest.raises(ServingFormError, match="only SeqRec"):
        export_folder(folder, ["int8"])


def test_auto_serves_its_seqrec_component_compressed(tmp_path: Path) -> None:
    """An ``auto`` folder's SeqRec component (``components/seqrec``) gets the forms; the blend scores through
    them."""
    split = leave_one_out(cyclic_dataset())
    auto = create_model("auto", components="seqrec", text="off", seqrec=dict(FAST))
    auto.fit(split.train, split.valid)
    folder = auto.save(tmp_path / "auto")
    export_folder(folder, ["int8"])
    assert (folder / "components" / "seqrec" / INT8_FILE).is_file()
    served = load_for_serving(folder)
    assert runtimes_of(served) == {"seqrec": "int8"}
    h = split.test.history
    full = auto.score(h)
    assert _overlap(served.score(h), full) >= INT8_MIN_OVERLAP
    shutil.rmtree(folder / "components" / "seqrec")
    with pytest.raises(FileNotFoundError):
        load_for_serving(folder)


def test_use_runtime_defaults_to_the_folder(model_and_data, folder: Path) -> None:
    m, split = model_and_data
    fresh = load_model(folder)
    assert isinstance(fresh, SeqRec)
    assert use_runtime(fresh, folder).runtime == "torch"  # no serving.json: float
    export_forms(m, folder, ["int8"], runtime="torch")  # written, not chosen
    assert read_serving(folder)["runtime"] == "torch"
    assert use_runtime(fresh, folder).runtime == "torch"
    assert use_runtime(fresh, folder, "int8").runtime == "int8"


@needs_onnx
def test_side_inputs_go_through_every_runtime(tmp_path: Path) -> None:
    """Time-gap (and event-type) inputs are embedded by the float network, so compressed forms cover them."""
    split = leave_one_out(cyclic_dataset())
    m = create_model("seqrec", **FAST, gap_buckets=8, use_types=True).fit(split.train, split.valid)
    h, users = split.test.history, split.test.users
    full = m.score(h, users)
    folder = m.save(tmp_path / "side")
    export_forms(m, folder, ["int8", "onnx"])
    onnx = load_for_serving(folder, "onnx")
    np.testing.assert_allclose(onnx.score(h, users)[:, 1:], full[:, 1:], atol=ONNX_ATOL)
    _assert_int8_close(load_for_serving(folder, "int8").score(h, users), full)
