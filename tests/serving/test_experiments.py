"""Online experiments through the service: admin endpoints with keys, users served by their arm's version,
answers recorded and joined to the events that follow them, stop, erasure, and the dashboard's JSON."""

from __future__ import annotations

import json
import time

import pytest

from lmrec.evaluation.abtest import Arm, ExperimentSpec
from lmrec.serving.engine import Engine
from lmrec.store.experiments import ExperimentTable
from lmrec.store.keys import KeyStore

USERS = [f"u{i}" for i in range(30)]
ARMS = [{"name": "popular", "version": "v1", "share": 0.5}, {"name": "knn", "version": "v2", "share": 0.5}]


def _spec(name: str = "pop-vs-knn", arms: list[dict] | None = None, salt: str = "s1") -> ExperimentSpec:
    return ExperimentSpec(name, tuple(Arm(**a) for a in arms or ARMS), salt=salt)


def test_create_read_stop_need_an_admin_key_and_valid_definitions(start) -> None:
    s = start(dev_mode=False, key_cache_seconds=0)
    keys = KeyStore(s.store)
    read, _ = keys.create("dash", ["read"])
    admin, _ = keys.create("ops", ["admin"])
    body = {"name": "pop-vs-knn", "salt": "s1", "arms": ARMS}
    assert s.client.post("/v1/admin/experiments", json=body).status_code == 401
    r = s.client.post("/v1/admin/experiments", json=body, headers={"X-API-Key": read})
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    r = s.client.post("/v1/admin/experiments", json=body, headers={"X-API-Key": admin})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "running" and created["salt"] == "s1" and created["window_s"] == 86_400
    assert [a["version"] for a in created["arms"]] == ["v1", "v2"]

    h = {"X-API-Key": admin}
    bad = [
        ({**body, "name": "big", "arms": [{**ARMS[0], "share": 0.7}, {**ARMS[1], "share": 0.4}]}, "add up"),
        ({**body, "name": "nover", "arms": [ARMS[0], {**ARMS[1], "version": "v9"}]}, "v9"),
        ({**body, "name": "same", "arms": [ARMS[0], {**ARMS[1], "name": "popular"}]}, "differ"),
        ({**body, "name": "ctl", "description": "a\x00b"}, "printable"),
        ({**body, "name": "salty", "salt": "a b"}, "pattern"),
        (body, "exists"),
    ]
    for b, words in bad:
        r = s.client.post("/v1/admin/experiments", json=b, headers=h)
        assert r.status_code == 422 and words in str(r.json()["detail"]), (b, r.text)
    r = s.client.post("/v1/admin/experiments", json={**body, "name": "one", "arms": [ARMS[0]]}, headers=h)
    assert r.status_code == 422

    listed = s.client.get("/v1/admin/experiments", headers=h).json()
    assert [x["name"] for x in listed] == ["pop-vs-knn"]
    assert s.client.get("/v1/admin/experiments", headers={"X-API-Key": read}).status_code == 403
    report = s.client.get("/v1/admin/experiments/pop-vs-knn", headers=h).json()
    assert [a["arm"] for a in report["arms"]] == ["popular", "knn"]
    assert all(a["users"] == 0 for a in report["arms"])
    assert s.client.get("/v1/admin/experiments/nope", headers=h).status_code == 404

    stopped = s.client.post("/v1/admin/experiments/pop-vs-knn/stop", headers=h).json()
    assert stopped["status"] == "stopped" and stopped["stopped_at"] is not None
    assert s.client.post("/v1/admin/experiments/pop-vs-knn/stop", headers=h).status_code == 404
    # every call is in the audit log, with the experiment as its target
    audit = s.client.get("/v1/admin/audit", params={"target": "pop-vs-knn"}, headers=h).json()
    assert {(a["method"], a["route"]) for a in audit} >= {("POST", "/v1/admin/experiments"),
                                                          ("POST", "/v1/admin/experiments/{name}/stop")}


def test_users_are_served_by_their_arms_version_and_each_answer_is_recorded(start) -> None:
    s = start(version="v1")
    assert s.client.post("/v1/admin/experiments",
                         json={"name": "pop-vs-knn", "salt": "s1", "arms": ARMS}).status_code == 201
    spec = _spec()
    arms = {u: spec.assign(u) for u in USERS}
    assert {a.name for a in arms.values() if a} == {"popular", "knn"}  # both arms have users here
    answers = {}
    for u in USERS:
        r = s.get(f"/v1/users/{u}/recommendations", params={"k": 3})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["experiment"] == "pop-vs-knn" and out["arm"] == arms[u].name
        assert out["model_version"] == arms[u].version
        answers[u] = out
    # the two versions really answer differently: most-popular gives every user its top items
    pop = {tuple(i["item_id"] for i in a["items"]) for u, a in answers.items() if arms[u].name == "popular"}
    knn = {tuple(i["item_id"] for i in a["items"]) for u, a in answers.items() if arms[u].name == "knn"}
    assert len(knn) > 1 and pop != knn
    # anonymous sessions are not in experiments
    assert s.client.post("/v1/recommendations", json={"items": ["toy"]}).json()["experiment"] is None

    table = ExperimentTable(s.store)
    s.app.state.engine.experiments.flush()  # type: ignore[attr-defined]
    rows = table.exposures("pop-vs-knn")
    assert rows.height == len(USERS)
    by_list = {r["list_id"]: r for r in rows.to_dicts()}
    for u, a in answers.items():
        r = by_list[a["list_id"]]
        assert (r["user_id"], r["arm"], r["model_version"]) == (u, arms[u].name, arms[u].version)
        assert r["items"] == [i["item_id"] for i in a["items"]]

    # a new item reaches every loaded version, not only the active one
    new = {"items": [{"item_id": "matrix", "title": "The Matrix (1999)", "categories": ["Sci-Fi"]}]}
    assert s.client.put("/v1/items", json=new).status_code == 200
    engine = s.app.state.engine  # type: ignore[attr-defined]
    [arm_bundle] = engine.experiments.bundles()
    assert arm_bundle.version == "v2" and "matrix" in arm_bundle.model.item_map
    # a service started later on the same store routes the same users to the same arms
    again = Engine.open(engine.settings, s.store, None)
    try:
        assert [a.name for a in again.experiments.running()] == ["pop-vs-knn"]
        for u in USERS[:10]:
            assert again.experiments.route(u).bundle.version == arms[u].version
    finally:
        again.close()

    # stopped: everyone gets the active model again, and nothing more is recorded
    s.client.post("/v1/admin/experiments/pop-vs-knn/stop")
    for u in USERS[:6]:
        out = s.get(f"/v1/users/{u}/recommendations").json()
        assert out["experiment"] is None and out["model_version"] == "v1"
    s.app.state.engine.experiments.flush()  # type: ignore[attr-defined]
    assert table.exposures("pop-vs-knn").height == len(USERS)


def test_metrics_join_answers_to_the_events_that_follow_them(start) -> None:
    s = start(version="v2")
    s.client.post("/v1/admin/experiments", json={"name": "ab", "salt": "s1", "arms": ARMS,
                                                 "window_s": 3600})
    spec = _spec("ab")
    answers = {u: s.get(f"/v1/users/{u}/recommendations", params={"k": 3}).json() for u in USERS}
    now = int(time.time()) + 1
    events, expect = [], {"popular": [0, 0, 0, 0.0], "knn": [0, 0, 0, 0.0]}
    for n, u in enumerate(USERS):
        arm = spec.assign(u).name
        items = [i["item_id"] for i in answers[u]["items"]]
        top = items[0]
        if n % 2 == 0:  # clicks the first recommended item
            events.append({"user_id": u, "item_id": top, "event_type": "click", "timestamp": now})
            expect[arm][0] += 1
        if n % 3 == 0:  # carts and buys it for 10 + n
            events += [{"user_id": u, "item_id": top, "event_type": "cart", "timestamp": now + 1},
                       {"user_id": u, "item_id": top, "event_type": "purchase", "timestamp": now + 2,
                        "value": 10.0 + n}]
            expect[arm][1] += 1
            expect[arm][2] += 1
            expect[arm][3] += 10.0 + n
        # none of these counts: an item that was not recommended, an event before the answer, one after the
        # window
        other = next(i for i in ("toy", "aladdin", "lion", "heat", "ronin", "alien") if i not in items)
        events += [{"user_id": u, "item_id": other, "event_type": "purchase", "timestamp": now,
                    "value": 99.0},
                   {"user_id": u, "item_id": top, "event_type": "purchase", "timestamp": now - 600,
                    "value": 99.0},
                   {"user_id": u, "item_id": top, "event_type": "purchase", "timestamp": now + 7200,
                    "value": 99.0}]
    assert s.client.post("/v1/events", json={"events": events}).status_code == 200
    report = s.client.get("/v1/admin/experiments/ab").json()
    for a in report["arms"]:
        n_users = sum(spec.assign(u).name == a["arm"] for u in USERS)
        clicks, carts, buys, revenue = expect[a["arm"]]
        m = a["metrics"]
        assert a["users"] == a["answers"] == n_users
        assert m["click_through"]["count"] == clicks and m["click_through"]["value"] == pytest.approx(
            clicks / n_users)
        assert m["add_to_cart"]["count"] == carts and m["conversion"]["count"] == buys
        assert m["revenue_per_user"]["total"] == pytest.approx(revenue)
        assert m["revenue_per_user"]["value"] == pytest.approx(revenue / n_users)
        for metric in m.values():
            assert metric["low"] <= metric["value"] <= metric["high"]
    tests = {t["metric"]: t for t in report["tests"]}
    assert set(tests) == {"click_through", "add_to_cart", "conversion", "revenue_per_user"}
    assert all(t["arm"] == "knn" and t["control"] == "popular" and 0 <= t["p_value"] <= 1
               for t in tests.values())
    # a second answer to a user: an event counts once, for the latest answer that listed its item
    u = USERS[0]
    again = s.get(f"/v1/users/{u}/recommendations", params={"k": 3}).json()
    report2 = s.client.get("/v1/admin/experiments/ab").json()
    arm = next(a for a in report2["arms"] if a["arm"] == spec.assign(u).name)
    assert arm["answers"] == arm["users"] + 1 and again["list_id"] != answers[u]["list_id"]
    assert arm["metrics"]["revenue_per_user"]["total"] == pytest.approx(expect[arm["arm"]][3])


def test_erasure_removes_a_users_answers_and_the_dashboard_shows_the_loop(start) -> None:
    s = start(version="v1")
    s.client.post("/v1/admin/experiments", json={"name": "ab", "salt": "s1", "arms": ARMS})
    for u in USERS[:8]:
        s.get(f"/v1/users/{u}/recommendations")
    bought = {"user_id": "u1", "item_id": "heat", "event_type": "purchase", "value": 12.5}
    s.client.post("/v1/events", json={"events": [bought]})
    exps = s.get("/v1/dashboard/experiments").json()
    assert exps[0]["name"] == "ab" and sum(a["answers"] for a in exps[0]["arms"]) == 8
    versions = s.get("/v1/dashboard/versions").json()
    assert versions["active"] == "v1" and [v["version"] for v in versions["versions"]] == ["v1", "v2"]
    v2 = next(v for v in versions["versions"] if v["version"] == "v2")
    assert v2["model"] == "itemknn" and v2["online"][0]["experiment"] == "ab"
    assert v2["online"][0]["arm"] == "knn"
    tl = s.get("/v1/dashboard/users/u1/timeline").json()
    assert tl["events"][0]["item_id"] == "heat" and tl["events"][0]["title"] == "Heat (1995)"
    assert tl["events"][0]["event_type"] == "purchase" and tl["events"][0]["value"] == 12.5
    assert tl["recommendations"]["arm"] == _spec().assign("u1").name
    assert all(i["explanation"] for i in tl["recommendations"]["items"])
    assert s.get("/v1/dashboard/users/nobody/timeline").json()["recommendations"] is None
    s.app.state.engine.experiments.flush()  # type: ignore[attr-defined]
    assert ExperimentTable(s.store).exposures("ab").height == 8  # the timeline's look was not recorded
    act = s.get("/v1/dashboard/activity").json()
    assert any(r["event_type"] == "purchase" for r in act["events"]["rows"])
    assert any(c["route"] == "/v1/events" and c["records"] >= 1 for c in act["calls"])
    assert sum(a["answers"] for a in act["answers"]) == 8

    assert s.client.delete("/v1/users/u1").status_code == 200
    left = ExperimentTable(s.store).exposures("ab")
    assert "u1" not in left["user_id"].to_list() and left.height == 7


def test_cli_creates_shows_and_stops_experiments_in_a_store_or_through_the_service(start, tmp_path) -> None:
    from typer.testing import CliRunner

    from lmrec.cli import app

    runner = CliRunner()
    db = str(tmp_path / "cli.duckdb")
    out = runner.invoke(app, ["experiments", "create", "offline", "--arm", "a=v1:0.5", "--arm", "b=v2:0.5",
                              "--window", "2", "--store", db])
    assert out.exit_code == 0, out.output
    bad = runner.invoke(app, ["experiments", "create", "x", "--arm", "a=v1:0.7", "--arm", "b=v2:0.7",
                              "--store", db])
    assert bad.exit_code != 0 and "add up" in bad.output
    assert runner.invoke(app, ["experiments", "create", "y", "--arm", "a-v1-0.5", "--arm", "b=v2:0.5",
                               "--store", db]).exit_code != 0
    listed = runner.invoke(app, ["experiments", "list", "--store", db])
    assert "offline" in listed.output and "a=v1 50%" in listed.output and "2 h" in listed.output
    shown = runner.invoke(app, ["experiments", "show", "offline", "--json", "--store", db])
    assert shown.exit_code == 0, shown.output
    rep = json.loads(shown.output)
    assert rep["window_s"] == 7200 and [a["arm"] for a in rep["arms"]] == ["a", "b"]
    assert runner.invoke(app, ["experiments", "stop", "offline", "--store", db]).exit_code == 0
    assert runner.invoke(app, ["experiments", "stop", "offline", "--store", db]).exit_code != 0

    s = start(dev_mode=False, key_cache_seconds=0)
    admin, _ = KeyStore(s.store).create("ops", ["admin"])
    via = ["--url", s.url, "--key", admin]
    out = runner.invoke(app, ["experiments", "create", "live", "--arm", "popular=v1:0.5", "--arm",
                              "knn=v2:0.5", "--salt", "s1", *via])
    assert out.exit_code == 0, out.output
    h = {"X-API-Key": admin}
    for u in USERS:
        s.get(f"/v1/users/{u}/recommendations", headers=h)
    shown = runner.invoke(app, ["experiments", "show", "live", *via])
    assert shown.exit_code == 0 and "click-through" in shown.output and "popular" in shown.output
    assert "Welch" in shown.output or "two-proportion" in shown.output
    assert "live" in runner.invoke(app, ["experiments", "list", *via]).output
    assert runner.invoke(app, ["experiments", "create", "bad", "--arm", "a=v1:0.5", "--arm", "b=v9:0.5",
                               *via]).exit_code != 0
    assert runner.invoke(app, ["experiments", "stop", "live", *via]).exit_code == 0
    assert s.get("/v1/users/u0/recommendations", headers=h).json()["experiment"] is None
