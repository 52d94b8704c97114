"""Two real ``lmrec serve`` processes on one PostgreSQL store behave as one service: an event acknowledged by
one changes the other's very next answer; a key revoked on one is refused by the other; a key's rate limit,
an erasure, an experiment and a model activation hold on both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lmrec.models import create_model
from lmrec.store import Store
from lmrec.store.keys import KeyStore
from tests.serving.serving_helpers import ITEMS, free_port, make_events, wait_ready

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"


def _start(model_dir: Path, url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1",
           # a verified key is trusted for an hour: a revocation reaches the other replica by its notice only
           "LMREC_KEY_CACHE_SECONDS": "3600", "LMREC_MODEL_THREADS": "1"}
    cmd = [sys.executable, "-c", "from lmrec.entry import main; main()", "serve", str(model_dir),
           "--store", url, "--port", str(port), "--text-encoder", "none", "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def replicas(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from tests._postgres import create_database

    url = create_database(pg_server, "replicas")
    root = tmp_path_factory.mktemp("replicas")
    with Store(url) as st:
        st.upsert_items(ITEMS)
        st.append_events(make_events())
        ds = st.to_dataset()
        keys = KeyStore(st)
        admin, _ = keys.create("admin", ["admin"])
        reader, reader_rec = keys.create("reader", ["read"])
        limited, _ = keys.create("limited", ["read"], rate_limit=1 / 3600)  # one request an hour
    create_model("most-popular").fit(ds).save(root / "v1")
    create_model("itemknn", k=20).fit(ds).save(root / "v2")
    procs = [_start(root / "v1", url, root / f"serve{n}.log") for n in range(2)]
    try:
        for (proc, base), n in zip(procs, range(2), strict=True):
            wait_ready(proc, base, root / f"serve{n}.log")
        yield {"a": procs[0][1], "b": procs[1][1], "url": url, "admin": admin, "reader": reader,
               "reader_id": reader_rec.key_id, "limited": limited}
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _recs(base: str, user: str, key: str, k: int = 10) -> httpx.Response:
    return httpx.get(f"{base}/v1/users/{user}/recommendations", params={"k": k},
                     headers={"X-API-Key": key}, timeout=30)


def test_an_event_acknowledged_by_one_replica_changes_the_other_replicas_next_answer(replicas):
    a, b, key = replicas["a"], replicas["b"], replicas["admin"]
    first = _recs(b, "u1", key)
    assert first.status_code == 200, first.text
    top = first.json()["items"][0]["item_id"]
    sent = httpx.post(f"{a}/v1/events", headers={"X-API-Key": key}, timeout=30, json={"events": [
        {"event_id": "ryw-1", "user_id": "u1", "item_id": top, "timestamp": 2_000_000_000,
         "event_type": "view"}]})
    assert sent.status_code == 200 and sent.json()["accepted"] == 1, sent.text
    # no wait: the acknowledgement means stored, and replica B reads the user's history through the store
    after = _recs(b, "u1", key)
    assert top not in [i["item_id"] for i in after.json()["items"]]  # seen items are excluded
    # a brand-new user, known only through replica A's event, is known to replica B at once
    httpx.post(f"{a}/v1/events", headers={"X-API-Key": key}, timeout=30, json={"events": [
        {"event_id": "ryw-2", "user_id": "newcomer", "item_id": "heat", "timestamp": 2_000_000_001}]})
    got = _recs(b, "newcomer", key)
    assert got.status_code == 200 and "heat" not in [i["item_id"] for i in got.json()["items"]]
    # the same event sent to replica B too is a duplicate there (one unique index for both)
    again = httpx.post(f"{b}/v1/events", headers={"X-API-Key": key}, timeout=30, json={"events": [
        {"event_id": "ryw-1", "user_id": "u1", "item_id": top, "timestamp": 2_000_000_000}]})
    assert again.json()["duplicates"] == 1


def test_a_key_revoked_on_one_replica_is_refused_by_the_other(replicas):
    a, b, reader = replicas["a"], replicas["b"], replicas["reader"]
    assert _recs(b, "u2", reader).status_code == 200  # verified and cached (for an hour) on replica B
    gone = httpx.delete(f"{a}/v1/admin/keys/{replicas['reader_id']}",
                        headers={"X-API-Key": replicas["admin"]}, timeout=30)
    assert gone.status_code == 200, gone.text
    deadline = time.monotonic() + 30  # the notice arrives in milliseconds; the bound only ends a broken run
    while (status := _recs(b, "u2", reader).status_code) == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 401
    assert _recs(a, "u2", reader).status_code == 401


def test_rate_limit_and_erasure_hold_across_replicas(replicas):
    a, b, admin = replicas["a"], replicas["b"], replicas["admin"]
    assert _recs(a, "u3", replicas["limited"]).status_code == 200  # the bucket's one token, spent on A
    assert _recs(b, "u3", replicas["limited"]).status_code == 429  # ... is gone for B as well
    assert _recs(b, "u5", admin).status_code == 200
    erased = httpx.delete(f"{a}/v1/users/u5", headers={"X-API-Key": admin}, timeout=60)
    assert erased.status_code == 200, erased.text
    assert _recs(b, "u5", admin).status_code == 404  # at once: B reads the tombstone through the store


def test_an_experiment_started_on_one_replica_routes_and_records_on_the_other(replicas):
    a, b, admin = replicas["a"], replicas["b"], replicas["admin"]
    headers = {"X-API-Key": admin}
    made = httpx.post(f"{a}/v1/admin/experiments", headers=headers, timeout=120, json={
        "name": "split", "arms": [{"name": "control", "version": "v1", "share": 0.5},
                                  {"name": "knn", "version": "v2", "share": 0.5}]})
    assert made.status_code == 201, made.text
    deadline = time.monotonic() + 120  # B re-reads the experiments on the notice; bounded for a broken run
    while (got := _recs(b, "u7", admin).json()).get("experiment") != "split" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert got["experiment"] == "split"
    on_a = _recs(a, "u7", admin).json()
    assert on_a["experiment"] == "split" and on_a["arm"] == got["arm"]  # one bucketing for both replicas
    assert got["model_version"] == {"control": "v1", "knn": "v2"}[got["arm"]]
    # the answers B served are in the report read on A, once B's writer has flushed them (within a second)
    deadline = time.monotonic() + 60
    while True:
        report = httpx.get(f"{a}/v1/admin/experiments/split", headers=headers, timeout=30).json()
        if sum(arm["answers"] for arm in report["arms"]) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sum(arm["answers"] for arm in report["arms"]) >= 2, report
    stopped = httpx.post(f"{b}/v1/admin/experiments/split/stop", headers=headers, timeout=30)
    assert stopped.status_code == 200, stopped.text
    deadline = time.monotonic() + 120
    while _recs(a, "u7", admin).json().get("experiment") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _recs(a, "u7", admin).json().get("experiment") is None


def test_a_model_activation_reaches_every_replica(replicas):
    a, b, admin = replicas["a"], replicas["b"], replicas["admin"]
    done = httpx.post(f"{a}/v1/admin/models/v2/activate", headers={"X-API-Key": admin}, timeout=120)
    assert done.status_code == 200, done.text
    deadline = time.monotonic() + 120  # replica B loads the model after the notice; bounded for a broken run
    while (version := _recs(b, "u6", admin).json()["model_version"]) != "v2" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert version == "v2"
    with Store(replicas["url"]) as st:
        assert st.get_meta("serving.active_model")["version"] == "v2"


def test_workers_share_one_port_and_one_store(pg_server, tmp_path):
    """``lmrec serve --workers 2``: every request opens a new connection (the kernel hands it to either
    worker), and every answer reflects the events acknowledged before it."""
    from tests._postgres import create_database

    url = create_database(pg_server, "workers")
    with Store(url) as st:
        st.upsert_items(ITEMS)
        st.append_events(make_events())
        ds = st.to_dataset()
    create_model("most-popular").fit(ds).save(tmp_path / "v1")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "LMREC_MODEL_THREADS": "1"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from lmrec.entry import main; main()", "serve", str(tmp_path / "v1"),
             "--store", url, "--port", str(port), "--text-encoder", "none", "--dev", "--workers", "2",
             "--log-level", "warning"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base, log)
        for n in range(8):
            r = httpx.get(f"{base}/v1/users/u{n}/recommendations", params={"k": 1}, timeout=30)
            top = r.json()["items"][0]["item_id"]
            sent = httpx.post(f"{base}/v1/events", timeout=30, json={"events": [
                {"event_id": f"w-{n}", "user_id": f"u{n}", "item_id": top, "timestamp": 2_000_000_000}]})
            assert sent.status_code == 200, sent.text
            after = httpx.get(f"{base}/v1/users/u{n}/recommendations", params={"k": 10}, timeout=30)
            assert top not in [i["item_id"] for i in after.json()["items"]]
        with Store(url) as st:
            # interactions only: each answer is also logged as impressions, committed in the background
            stored = st.execute("SELECT count(*) FROM events WHERE event_type <> 'impression'")[0][0]
            assert stored == make_events().height + 8
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_more_workers_need_a_shared_store(tmp_path, monkeypatch):
    from lmrec.serving import ServingSettings
    from lmrec.serving.server import serve, settings_environment

    settings = ServingSettings(model_dir=tmp_path / "m", store=str(tmp_path / "s.duckdb"), dev_mode=True)
    with pytest.raises(ValueError, match="PostgreSQL store"):
        serve(settings, workers=2)
    env = settings_environment(settings)
    assert env["LMREC_STORE"] == str(tmp_path / "s.duckdb") and env["LMREC_DEV_MODE"] == "true"
    for name, value in env.items():  # what a worker process is started with
        monkeypatch.setenv(name, value)
    assert ServingSettings() == settings
