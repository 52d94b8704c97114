"""Trust under faults: acknowledged means stored, bad input loses nobody's data, live key administration,
rate limits, the audit log, backups, and the HTTP edge cases (issue 19)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lmrec.privacy import user_tag
from lmrec.serving import ServingSettings, create_app
from lmrec.store import Store
from lmrec.store.backup import fingerprints, restore, verify
from lmrec.store.keys import KeyStore, existing_event_ids
from tests.serving.serving_helpers import run_server

pytestmark = pytest.mark.slow


def stored(store: Store, event_id: str) -> bool:
    return bool(existing_event_ids(store, [event_id]))


# ---------------------------------------------------------------------- acknowledged means committed
def test_an_acknowledged_event_is_already_in_the_store(start) -> None:
    s = start()
    for i in range(20):
        r = s.client.post("/v1/events", json={"events": [{"event_id": f"ack-{i}", "user_id": "u1",
                                                          "item_id": "toy"}]})
        assert r.status_code == 200 and r.json()["accepted"] == 1
        assert stored(s.store, f"ack-{i}")  # no waiting: the answer came after the commit
    assert not s.app.state.engine.writer._pending  # type: ignore[attr-defined]


def test_poison_events_are_refused_up_front_naming_index_and_field(start) -> None:
    s = start()
    good = {"event_id": "g", "user_id": "u1", "item_id": "toy"}
    cases = [
        ({"timestamp": 10**25}, "timestamp"),
        ({"timestamp": -5}, "timestamp"),
        ({"user_id": "x" * 300}, "user_id"),
        ({"item_id": "bad\u0000id"}, "item_id"),
        ({"event_id": "e" * 10_000}, "event_id"),
        ({"value": False}, "value"),
        ({"value": "4"}, "value"),
        ({"timestamp": "123"}, "timestamp"),
        ({"event_type": "teleport"}, "event_type"),
    ]
    for patch, field in cases:
        r = s.client.post("/v1/events", json={"events": [good, {**good, "event_id": "p", **patch}]})
        assert r.status_code == 422, (patch, r.text)
        assert r.json()["detail"][0]["field"] == f"body.events[1].{field}", (patch, r.text)
    # JSON that Python's parser reads but no store can hold: NaN, and a lone surrogate.
    for raw in ('{"events": [{"user_id": "u1", "item_id": "toy"}, {"user_id": "u1", "item_id": "toy", '
                '"value": NaN}]}',
                '{"events": [{"user_id": "u1", "item_id": "toy"}, '
                '{"user_id": "\\ud800", "item_id": "toy"}]}'):
        r = s.client.post("/v1/events", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["field"].startswith("body.events[1]"), r.text
    # Nothing of the refused batches was stored or left pending: the good event is new when sent alone.
    assert not stored(s.store, "g")
    r = s.client.post("/v1/events", json={"events": [good]})
    assert r.json() == {"accepted": 1, "duplicates": 0, "users": 1} and stored(s.store, "g")


def test_a_commit_failure_loses_no_other_event_and_leaves_no_id_pending(start) -> None:
    s = start()
    engine = s.app.state.engine  # type: ignore[attr-defined]
    real = s.store.insert_prepared_events

    def failing(df, **kw):  # noqa: ANN001, ANN003, ANN202 - the store refuses one event (a fault, a bug)
        if "poison" in df["event_id"].to_list():
            raise RuntimeError("simulated fault")
        return real(df, **kw)

    s.store.insert_prepared_events = failing  # type: ignore[method-assign]
    engine.writer.flush_s = 0.3  # gather the concurrent requests into one batch
    results: dict[str, httpx.Response] = {}

    def send(name: str, events: list[dict[str, object]]) -> None:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            results[name] = c.post("/v1/events", json={"events": events})

    clients = {f"c{k}": [{"event_id": f"c{k}-{i}", "user_id": f"u{k}", "item_id": "toy"} for i in range(50)]
               for k in range(3)}
    clients["bad"] = [{"event_id": "fine", "user_id": "u9", "item_id": "heat"},
                      {"event_id": "poison", "user_id": "u9", "item_id": "heat"}]
    threads = [threading.Thread(target=send, args=kv) for kv in clients.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for k in range(3):
        assert results[f"c{k}"].status_code == 200, results[f"c{k}"].text
        assert all(stored(s.store, f"c{k}-{i}") for i in range(50))
    bad = results["bad"]
    assert bad.status_code == 503 and "[1]" in bad.json()["detail"], bad.text
    assert stored(s.store, "fine") and not stored(s.store, "poison")
    assert not engine.writer.pending_ids(["poison", "fine"])
    s.store.insert_prepared_events = real  # type: ignore[method-assign]
    r = s.client.post("/v1/events", json={"events": clients["bad"]})
    assert r.json() == {"accepted": 1, "duplicates": 1, "users": 1} and stored(s.store, "poison")


# ---------------------------------------------------------------------- keys, rate limits, audit
def _admin(s) -> str:  # noqa: ANN001
    key, _ = KeyStore(s.store).create("ops", ["admin"])
    return key


def test_keys_are_created_listed_and_revoked_while_serving(start) -> None:
    s = start(dev_mode=False)  # the default key cache (seconds) is on: revocation must still apply at once
    admin = _admin(s)
    h = {"X-API-Key": admin}
    r = s.client.post("/v1/admin/keys", json={"name": "app", "scopes": ["read"]}, headers=h)
    assert r.status_code == 201
    new, key_id = r.json()["key"], r.json()["key_id"]
    assert s.get("/v1/users/u0/recommendations", headers={"X-API-Key": new}).status_code == 200
    assert key_id in [k["key_id"] for k in s.get("/v1/admin/keys", headers=h).json()]
    # The CLI talks to the running service (the store file is the service's).
    from lmrec.cli import app as cli

    out = CliRunner().invoke(cli, ["keys", "revoke", key_id, "--url", s.url, "--key", admin])
    assert out.exit_code == 0, out.output
    assert s.get("/v1/users/u0/recommendations", headers={"X-API-Key": new}).status_code == 401
    listed = CliRunner().invoke(cli, ["keys", "list", "--url", s.url, "--key", admin])
    assert listed.exit_code == 0 and key_id in listed.output and "revoked" in listed.output
    out = CliRunner().invoke(cli, ["keys", "revoke", key_id, "--url", s.url, "--key", admin])
    assert out.exit_code == 1 and "404" in out.output
    assert s.client.delete("/v1/admin/keys/not-hex", headers=h).status_code == 422
    own = admin.split("_")[1]
    assert s.client.delete(f"/v1/admin/keys/{own}", headers=h).status_code == 409  # no self lock-out


def test_a_key_over_its_rate_gets_429_with_retry_after(start) -> None:
    s = start(dev_mode=False)
    h = {"X-API-Key": _admin(s)}
    slow = s.client.post("/v1/admin/keys", json={"name": "slow", "scopes": ["read"], "rate_limit": 0.01},
                         headers=h).json()["key"]
    assert s.get("/v1/users/u0/recommendations", headers={"X-API-Key": slow}).status_code == 200
    r = s.get("/v1/users/u0/recommendations", headers={"X-API-Key": slow})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert s.get("/v1/users/u0/recommendations", headers=h).status_code == 200  # other keys are not limited


def test_every_write_and_admin_call_is_audited_without_secrets(start, tmp_path: Path) -> None:
    s = start(dev_mode=False)
    admin = _admin(s)
    h = {"X-API-Key": admin}
    calls = [
        ("POST", "/v1/events", {"json": {"events": [{"user_id": "u1", "item_id": "toy"}] * 3}}, 200),
        ("PUT", "/v1/items", {"json": {"items": [{"item_id": "new", "title": "New"}]}}, 200),
        ("DELETE", "/v1/users/u2", {}, 200),
        ("GET", "/v1/admin/models", {}, 200),
        ("POST", "/v1/admin/models/v2/activate", {}, 200),
        ("POST", "/v1/admin/keys", {"json": {"name": "x", "scopes": ["read"]}}, 201),
        ("GET", "/v1/admin/keys", {}, 200),
        ("POST", "/v1/admin/backup", {"json": {"name": "b"}}, 200),
        ("GET", "/v1/admin/backups/b", {}, 200),
    ]
    for method, path, kw, status in calls:
        assert s.client.request(method, path, headers=h, **kw).status_code == status, path
    assert s.client.post("/v1/events", json={"events": [{"user_id": "u1"}]}, headers=h).status_code == 422
    assert s.client.post("/v1/events", json={"events": []}).status_code == 401
    log = s.get("/v1/admin/audit", params={"limit": 100}, headers=h).json()
    seen = {(e["method"], e["route"], e["status"]) for e in log}
    for method, path, _, status in calls:
        route = {"/v1/users/u2": "/v1/users/{user_id}",
                 "/v1/admin/models/v2/activate": "/v1/admin/models/{version}/activate",
                 "/v1/admin/backups/b": "/v1/admin/backups/{name}"}.get(path, path)
        assert (method, route, status) in seen, (method, route)
    assert ("POST", "/v1/events", 422) in seen and ("POST", "/v1/events", 401) in seen
    ev = next(e for e in log if e["route"] == "/v1/events" and e["status"] == 200)
    assert ev["count"] == 3 and ev["key_id"] == admin.split("_")[1]
    # an erasure is logged under a keyed tag of the user, never the raw id (the log outlives the erasure)
    assert any(e["target"] == user_tag("u2") for e in log) and any(e["target"] == "v2" for e in log)
    assert not any(e["target"] == "u2" for e in log)
    assert admin.split("_")[2] not in json.dumps(log)
    assert admin.split("_")[2] not in str(s.store.execute("SELECT * FROM audit_log"))
    assert not any(e["route"].startswith("/v1/users/{user_id}/rec") for e in log)  # reads are not audited


# ---------------------------------------------------------------------- backup and restore
def test_backup_while_serving_restores_identical_tables_and_answers(start, tmp_path: Path) -> None:
    s = start(version="v2")
    s.client.post("/v1/events", json={"events": [
        {"user_id": f"u{i % 7}", "item_id": "heat", "event_id": f"b{i}"} for i in range(40)]})
    s.client.put("/v1/items", json={"items": [{"item_id": "new", "title": "A new film"}]})
    s.client.delete("/v1/users/u3")
    KeyStore(s.store).create("reader", ["read"])
    r = s.client.post("/v1/admin/backup", json={"name": "backup"})
    assert r.status_code == 200, r.text
    manifest = r.json()
    assert manifest["path"] == str(tmp_path / "backups" / "backup")
    assert manifest["models"] == ["v1", "v2"]
    assert set(manifest["tables"]) >= {"events", "items", "users", "api_keys", "erased_users", "audit_log"}
    # Nothing was written since, but the backup call's own audit entry (written once it had finished).
    now = fingerprints(s.store)
    assert {t: v for t, v in manifest["tables"].items() if t != "audit_log"} == {
        t: v for t, v in now.items() if t != "audit_log"}

    restored = tmp_path / "restored.duckdb"
    restore(tmp_path / "backups" / "backup", restored, tmp_path / "models")
    with Store(restored) as st:
        assert fingerprints(st) == manifest["tables"]
    users = ["u0", "u1", "u5", "u6"]
    before = {u: s.get(f"/v1/users/{u}/recommendations", params={"k": 5}).json()["items"] for u in users}
    st = Store(restored)
    try:
        app = create_app(ServingSettings(model_dir=tmp_path / "models" / "v2", store=str(restored),
                                         dev_mode=True), store=st, encoder=None)
        with run_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
            for u in users:
                assert c.get(f"/v1/users/{u}/recommendations", params={"k": 5}).json()["items"] == before[u]
            assert c.get("/v1/users/u3/recommendations").status_code == 404  # the erasure came back too
    finally:
        st.close()
    with pytest.raises(FileExistsError):
        restore(tmp_path / "backups" / "backup", restored)
    assert s.client.post("/v1/admin/backup", json={"name": "backup"}).status_code == 422  # never overwritten
    assert s.client.post("/v1/admin/backup", json={"name": "../up"}).status_code == 422


def _backup_entries(s, h, name: str) -> list[dict]:  # noqa: ANN001
    log = s.get("/v1/admin/audit", params={"target": name}, headers=h).json()
    return [e for e in log if e["route"] == "/v1/admin/backup"]


def test_the_audit_entry_of_a_backup_has_its_final_status(start, monkeypatch) -> None:
    s = start(dev_mode=False)
    h = {"X-API-Key": _admin(s)}
    assert s.client.post("/v1/admin/backup", json={"name": "ok"}, headers=h).status_code == 200
    assert [e["status"] for e in _backup_entries(s, h, "ok")] == [200]
    # The entry is written after the snapshot: the backup holds the calls before it, not a premature "200".
    import duckdb

    saved = Path(s.store.path).parent / "backups" / "ok" / "audit_log.parquet"
    with duckdb.connect() as con:
        got = con.execute(f"SELECT count(*) FROM read_parquet('{saved}') WHERE target = 'ok'").fetchall()
    assert got == [(0,)]

    import lmrec.serving.routers.admin_ops as ops

    def full_disk(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ops, "backup", full_disk)
    r = s.client.post("/v1/admin/backup", json={"name": "failed"}, headers=h)
    assert r.status_code == 422 and "No space left" in r.text
    assert [e["status"] for e in _backup_entries(s, h, "failed")] == [422]

    def bug(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("simulated fault")

    monkeypatch.setattr(ops, "backup", bug)
    assert s.client.post("/v1/admin/backup", json={"name": "crashed"}, headers=h).status_code == 500
    assert [e["status"] for e in _backup_entries(s, h, "crashed")] == [500]


def test_backup_through_a_running_service_lands_where_the_cli_runs(start, tmp_path: Path) -> None:
    from lmrec.cli import app as cli

    s = start(dev_mode=False)
    admin = _admin(s)
    s.client.post("/v1/events", json={"events": [{"user_id": "u1", "item_id": "heat", "event_id": "cli-b"}]},
                  headers={"X-API-Key": admin})
    out = tmp_path / "elsewhere" / "nightly"  # not under the service's backup folder
    r = CliRunner().invoke(cli, ["backup", str(out), "--url", s.url, "--key", admin])
    assert r.exit_code == 0, r.output
    assert (out / "manifest.json").is_file() and (out / "events.parquet").is_file()
    manifest = verify(out)  # every table's rows and hash, read back from the files on this side
    served = tmp_path / "backups" / "nightly"  # the service's own copy, under its backup folder
    assert manifest == verify(served)
    assert not (tmp_path / "elsewhere" / "nightly.partial").exists()
    restored = tmp_path / "from-client.duckdb"
    restore(out, restored)
    with Store(restored) as st:
        assert stored(st, "cli-b") and fingerprints(st) == manifest["tables"]
    # A folder that is not empty is refused before the service is asked; so is a name the service cannot use.
    again = CliRunner().invoke(cli, ["backup", str(out), "--url", s.url, "--key", admin])
    assert again.exit_code == 1 and "not empty" in again.output and "Traceback" not in again.output
    bad = CliRunner().invoke(cli, ["backup", str(tmp_path / "has space"), "--url", s.url, "--key", admin])
    assert bad.exit_code == 1 and "names the backup on the service" in " ".join(bad.output.split())
    assert not (tmp_path / "backups" / "has space").exists()
    # The download route: admin only, 404 for an unknown backup, 422 for a name that is not one.
    assert s.client.get("/v1/admin/backups/nightly").status_code == 401
    assert s.client.get("/v1/admin/backups/nope", headers={"X-API-Key": admin}).status_code == 404
    assert s.client.get("/v1/admin/backups/..", headers={"X-API-Key": admin}).status_code in (404, 422)


# ---------------------------------------------------------------------- HTTP edges
def test_http_edges_are_4xx_and_documented(start) -> None:
    s = start(dev_mode=False, max_body_bytes=2_000)
    h = {"X-API-Key": _admin(s)}
    for bad in ("a" * 256, ".hidden", "a b", "%2e%2e"):
        r = s.client.post(f"/v1/admin/models/{bad}/activate", headers=h)
        assert r.status_code == 422, (bad, r.status_code)
    assert s.client.post("/v1/admin/models/nope/activate", headers=h).status_code == 404

    def chunks():  # noqa: ANN202
        for _ in range(100):
            yield b'{"events": [' + b" " * 100

    r = s.client.post("/v1/events", content=chunks(), headers={**h, "content-type": "application/json"})
    assert r.status_code == 413, r.text
    # The key is checked before the body is parsed.
    r = s.client.post("/v1/events", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 401
    r = s.client.post("/v1/recommendations", json={"items": ["heat"], "explain": 0}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "body.explain"
    responses = s.get("/openapi.json").json()["paths"]["/v1/events"]["post"]["responses"]
    for code in ("200", "400", "401", "403", "413", "422", "429", "503"):
        assert code in responses, code


def test_the_cli_says_in_one_line_when_a_service_holds_the_store(tmp_path: Path) -> None:
    import subprocess
    import sys

    from lmrec.cli import app as cli

    path = tmp_path / "held.duckdb"
    Store(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', "
         "flush=True); time.sleep(60)", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        out = CliRunner().invoke(cli, ["keys", "list", "--store", str(path)])
        assert out.exit_code == 1, out.output
        text = " ".join(out.output.split())
        assert "held by a running service" in text and "--url" in text and "Traceback" not in text
    finally:
        holder.kill()
        holder.wait(timeout=10)
