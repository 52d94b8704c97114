"""With a real `lmrec serve` process holding the store: read-only commands still work (they read a snapshot),
a command that must write says what to do in one line, and an unknown user meets one policy in HTTP, CLI and
Python (an error by default; the popular items, marked as a fallback, when asked)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from tests.cli.test_data_path import HashEncoder  # the same seeded hash vectors as the CLI tests
from tests.serving.serving_helpers import free_port, wait_ready

pytestmark = pytest.mark.slow

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
CLICKS = "who,what,at\n" + "".join(
    f"w{u},t{(u * k) % 9},2024-05-{1 + k:02d}T{u:02d}:00:00Z\n" for u in range(1, 11) for k in range(6))
ITEMS = "item_id,title\n" + "".join(f"t{i},Thing number {i}\n" for i in range(9))
MAP = ["-m", "user_id=who", "-m", "item_id=what", "-m", "timestamp=at"]




def cli(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[dict[str, object]]:
    """A store with a dataset, a model fitted on it, and `lmrec serve` holding the store on a free port."""
    tmp = tmp_path_factory.mktemp("served")
    (tmp / "clicks.csv").write_text(CLICKS)
    (tmp / "things.csv").write_text(ITEMS)
    store, model = tmp / "shop.duckdb", tmp / "model"
    code, out = cli("data", "import", str(tmp / "clicks.csv"), *MAP, "--items", str(tmp / "things.csv"),
                    "--store", str(store))
    assert code == 0, out
    code, out = cli("train", "most-popular", "--store", str(store), "--protocol", "none", "--out", str(model))
    assert code == 0, out
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "HF_HUB_OFFLINE": "1",
           "LMREC_CACHE_DIR": str(tmp / "cache")}
    log = open(tmp / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from lmrec.entry import main; main()", "serve", str(model),
         "--store", str(store), "--port", str(port), "--dev", "--text-encoder", "none",
         "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, tmp / "serve.log", timeout_s=180, poll_s=0.3)
        yield {"url": url, "store": store, "model": model, "tmp": tmp}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def test_read_only_commands_work_while_the_service_holds_the_store(served, monkeypatch) -> None:
    store = str(served["store"])
    # the service holds the file: a plain second connection is refused by DuckDB
    import duckdb

    with pytest.raises(duckdb.IOException, match="lock"):
        duckdb.connect(store, read_only=True)
    # an event ingested through the service is in the snapshot the next command reads
    r = httpx.post(f"{served['url']}/v1/events", json={"events": [
        {"user_id": "w-new", "item_id": "t1", "timestamp": "2024-06-01T10:00:00Z"}]}, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    code, out = cli("data", "stats", "--store", store, "--json")
    assert code == 0, out
    import json

    assert json.loads(out)["n_events"] == 61
    code, out = cli("data", "stats", "--store", store)
    assert code == 0 and "read from a snapshot" in " ".join(out.split())

    import lmrec.cli.text as cli_text

    monkeypatch.setattr(cli_text, "_encoder", lambda *a: HashEncoder())
    monkeypatch.setenv("LMREC_CACHE_DIR", str(served["tmp"] / "cache"))
    code, out = cli("similar", "t3", "--store", store, "--k", "2")
    assert code == 0 and "Thing number 3" in out and "held by a running service" in " ".join(out.split()), out
    code, out = cli("train", "most-popular", "--store", store, "--protocol", "none",
                    "--out", str(served["tmp"] / "m2"))
    assert code == 0, out
    code, out = cli("evaluate", "most-popular", "--store", store)
    assert code == 0 and "NDCG@10" in out, out


def test_commands_that_must_write_say_what_to_do_in_one_line(served, monkeypatch) -> None:
    store = str(served["store"])
    code, out = cli("data", "import", str(served["tmp"] / "clicks.csv"), *MAP, "--store", store)
    text = " ".join(out.split())
    assert code == 1 and "Traceback" not in out and len(out.strip().splitlines()) <= 3, out
    assert "held by another process" in text and "lmrec serve" in text and "POST /v1/events" in text
    # when not even a snapshot can be read: one line that says what to do
    import shutil

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfile", broken)
    code, out = cli("data", "stats", "--store", store)
    text = " ".join(out.split())
    assert code == 1 and "Traceback" not in out and len(out.strip().splitlines()) <= 3, out
    assert "held by another process" in text and "--url" in text


def test_one_unknown_user_policy_in_http_cli_and_python(served) -> None:
    from lmrec.models import load_model
    from lmrec.models.base import UnknownUserError

    url, model_dir, tmp = served["url"], served["model"], served["tmp"]
    # HTTP: 404 that names the opt-in; with it, the popular items marked as a fallback
    r = httpx.get(f"{url}/v1/users/nobody/recommendations", params={"k": 3}, timeout=30)
    assert r.status_code == 404 and "unknown=popular" in r.json()["detail"]
    r = httpx.get(f"{url}/v1/users/nobody/recommendations", params={"k": 3, "unknown": "popular"}, timeout=30)
    assert r.status_code == 200 and r.json()["fallback"] == "unknown-user"
    assert r.json()["strategy"] == "popularity"
    http_items = [i["item_id"] for i in r.json()["items"]]
    known = httpx.get(f"{url}/v1/users/w1/recommendations", params={"k": 3, "unknown": "popular"}, timeout=30)
    assert known.status_code == 200 and known.json()["fallback"] is None

    # Python: an error naming the user; with unknown="popular", the same items
    model = load_model(model_dir)
    with pytest.raises(UnknownUserError, match="nobody"):
        model.recommend("nobody", k=3)
    ids, _ = model.recommend("nobody", k=3, unknown="popular")
    assert list(ids) == http_items and model.unknown_users(["w1", "nobody"]) == ["nobody"]

    # CLI: an error naming the user; with --unknown popular, the same items and a printed marker
    users = tmp / "users.txt"
    users.write_text("w1\nnobody\n")
    out_file = tmp / "recs.csv"
    code, out = cli("recommend", str(model_dir), "--users", str(users), "--k", "3", "--out", str(out_file))
    assert code == 1 and "unknown to the model: 'nobody'" in " ".join(out.split()) and "Traceback" not in out
    code, out = cli("recommend", str(model_dir), "--users", str(users), "--k", "3", "--out", str(out_file),
                    "--unknown", "popular")
    assert code == 0 and "fallback: 1 users unknown to the model" in " ".join(out.split()), out
    recs = pl.read_csv(out_file).filter(pl.col("user_id") == "nobody").sort("rank")
    assert recs["item_id"].to_list() == http_items
