"""The service answering through a SeqRec folder's int8 or ONNX form (a real server on a free port), and the
runtime checks that stop it from starting (or a hot swap from happening) instead of failing a request."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.models import create_model
from lmrec.models.seqrec.inference import INT8_FILE, ONNX_FILE, SERVING_FILE, ServingFormError
from lmrec.serving import ServingSettings
from lmrec.serving.engine import Engine
from lmrec.store import Store
from tests.serving.serving_helpers import ITEMS, make_events

pytest.importorskip("onnxruntime")
runner = CliRunner()

SEQREC = {"item_repr": "id", "d_model": 16, "n_layers": 1, "max_len": 8, "epochs": 30, "batch_size": 16,
          "lr": 1e-2, "dropout": 0.0, "patience": 0, "progress": False, "num_threads": 1}
USERS = [f"u{i}" for i in range(30)]
#: int8 may reorder near-ties: the share of each top 5 that must stay (same rule as tests/models/seqrec).
INT8_MIN_OVERLAP = 0.8


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Overrides conftest's registry: ``seq`` (a SeqRec with its int8 and ONNX forms, serving.json choosing
    onnx) and ``plain`` (the same model without forms)."""
    root = tmp_path_factory.mktemp("seqmodels")
    with Store(":memory:") as st:
        st.upsert_items(ITEMS)
        st.append_events(make_events())
        ds = st.to_dataset()
    create_model("seqrec", **SEQREC).fit(ds).save(root / "plain")
    shutil.copytree(root / "plain", root / "seq")
    out = runner.invoke(app, ["seqrec", "export", str(root / "seq"), "--int8", "--onnx"])
    assert out.exit_code == 0, out.output
    assert "serves with onnx" in " ".join(out.output.split())
    return root


def _recs(s, user: str) -> list[tuple[str, float]]:
    r = s.get(f"/v1/users/{user}/recommendations", params={"k": 5})
    assert r.status_code == 200, r.text
    return [(i["item_id"], i["score"]) for i in r.json()["items"]]


def test_the_folder_forms_are_written_and_recorded(models_dir: Path) -> None:
    info = json.loads((models_dir / "seq" / SERVING_FILE).read_text())
    assert info["runtime"] == "onnx" and set(info["forms"]) == {"int8", "onnx"}
    assert (models_dir / "seq" / INT8_FILE).stat().st_size > 0
    assert (models_dir / "seq" / ONNX_FILE).stat().st_size > 0
    assert not (models_dir / "plain" / SERVING_FILE).exists()


def test_export_switches_and_refuses(models_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "seq"
    shutil.copytree(models_dir / "seq", folder)
    out = runner.invoke(app, ["seqrec", "export", str(folder), "--runtime", "int8"])  # switch, no rewrite
    assert out.exit_code == 0 and json.loads((folder / SERVING_FILE).read_text())["runtime"] == "int8"
    out = runner.invoke(app, ["seqrec", "export", str(folder)])
    assert out.exit_code == 1 and "nothing to do" in out.output
    shutil.copytree(models_dir / "plain", tmp_path / "plain")
    out = runner.invoke(app, ["seqrec", "export", str(tmp_path / "plain"), "--runtime", "onnx"])
    assert out.exit_code == 1 and "has no onnx form" in " ".join(out.output.split())


def test_service_answers_through_onnx_and_int8_like_float(start) -> None:
    fp32 = start(version="seq", runtime="torch", text=False)
    onnx = start(version="seq", text=False)  # the folder's serving.json: onnx
    int8 = start(version="seq", runtime="int8", text=False)
    for s, runtime in ((fp32, "torch"), (onnx, "onnx"), (int8, "int8")):
        stats = s.get("/v1/dashboard/stats").json()
        assert stats["runtimes"] == {"seqrec": runtime}
    overlaps, answered = [], 0
    for user in USERS:
        want = _recs(fp32, user)
        answered += len(want)
        got = _recs(onnx, user)
        assert [i for i, _ in got] == [i for i, _ in want], user  # exclude-seen, order: all as in float
        assert all(abs(a - b) <= 1e-4 for (_, a), (_, b) in zip(got, want, strict=True))
        small = {i for i, _ in _recs(int8, user)}
        overlaps.append(len(small & {i for i, _ in want}) / max(1, len(want)))
    assert answered >= 2 * len(USERS)  # unseen items were left to rank for most users
    assert sum(overlaps) / len(overlaps) >= INT8_MIN_OVERLAP
    # anonymous sessions and explanations go through the same scoring path
    body = {"items": ["toy", "aladdin"], "k": 3, "explain": True}
    a = onnx.client.post("/v1/recommendations", json=body)
    b = fp32.client.post("/v1/recommendations", json=body)
    assert a.status_code == 200 and [i["item_id"] for i in a.json()["items"]] == \
        [i["item_id"] for i in b.json()["items"]]


def test_a_runtime_the_folder_cannot_give_stops_the_start(models_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    db = str(tmp_path / "s.duckdb")
    settings = ServingSettings(model_dir=models_dir / "plain", store=db, runtime="int8", dev_mode=True)
    with pytest.raises(ServingFormError, match="has no model.int8.pt"):
        Engine.open(settings, encoder=None)
    # the command says so before it binds a port
    out = runner.invoke(app, ["serve", str(models_dir / "plain"), "--store", db, "--runtime", "onnx"])
    assert out.exit_code == 1 and "has no model.onnx" in " ".join(out.output.split())
    monkeypatch.setenv("LMREC_RUNTIME", "int8")
    out = runner.invoke(app, ["serve", str(models_dir / "plain"), "--store", db])
    assert out.exit_code == 1 and "has no model.int8.pt" in " ".join(out.output.split())
    monkeypatch.setenv("LMREC_RUNTIME", "fp16")
    out = runner.invoke(app, ["serve", str(models_dir / "seq"), "--store", db])
    assert out.exit_code == 1 and "runtime" in out.output
    monkeypatch.delenv("LMREC_RUNTIME")
    # the folder asks for onnx, and onnxruntime is missing
    import lmrec.models.seqrec.inference as inference

    monkeypatch.setattr(inference, "onnx_available", lambda: False)
    out = runner.invoke(app, ["serve", str(models_dir / "seq"), "--store", db])
    assert out.exit_code == 1 and "onnxruntime is not installed" in " ".join(out.output.split())


def test_a_hot_swap_to_a_folder_without_the_form_is_refused(start) -> None:
    s = start(version="seq", runtime="int8", text=False)
    r = s.client.post("/v1/admin/models/plain/activate")
    assert r.status_code == 409 and "model.int8.pt" in r.json()["detail"]
    assert s.get("/v1/dashboard/stats").json()["model_version"] == "seq"  # still serving
    assert _recs(s, "u0")


def test_a_hot_swap_takes_the_new_folder_runtime(start) -> None:
    s = start(version="plain", text=False)
    assert s.get("/v1/dashboard/stats").json()["runtimes"] == {"seqrec": "torch"}
    before = _recs(s, "u1")
    assert s.client.post("/v1/admin/models/seq/activate").status_code == 200
    assert s.get("/v1/dashboard/stats").json()["runtimes"] == {"seqrec": "onnx"}
    assert [i for i, _ in _recs(s, "u1")] == [i for i, _ in before]  # same weights, same answer
