"""The service's background updater: an update runs beside requests (never blocking them), and an accepted
version is swapped in through the activation path. Every wait is bounded; no timing thresholds."""

from __future__ import annotations

import threading
import time

from lmrec.experiment.updates import update_version


def _wait_for(predicate, timeout: float = 120.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def test_background_update_does_not_block_requests(start) -> None:
    s = start(version="v2", update_holdout=0.0, update_min_events=1)  # v2: ItemKNN
    updater = s.app.state.updater  # type: ignore[attr-defined]
    assert s.get("/v1/admin/updates").json()["enabled"] is False  # no timer by default
    entered, release = threading.Event(), threading.Event()

    def gated(*args, **kwargs):
        entered.set()
        assert release.wait(120), "the test never released the update"
        return update_version(*args, **kwargs)

    updater._update_fn = gated
    now = int(time.time()) + 5  # after the service started: new for the updater
    events = [{"user_id": f"new{n}", "item_id": item, "timestamp": now + n}
              for n, item in enumerate(["heat", "ronin", "fargo", "heat", "fargo"])]
    assert s.client.post("/v1/events", json={"events": events}).status_code == 200

    r = s.client.post("/v1/admin/updates/run")
    assert r.status_code == 202 and r.json()["started"] is True
    try:
        assert entered.wait(60), "the update did not start"
        # the update is in progress: requests are answered meanwhile, and a second run is refused
        assert s.client.post("/v1/admin/updates/run").status_code == 409
        for _ in range(5):
            r = s.get("/v1/users/u0/recommendations", params={"k": 3})
            assert r.status_code == 200 and len(r.json()["items"]) == 3
        assert s.get("/v1/admin/updates").json()["running"] is True
        assert s.get("/v1/admin/models").json()["active"] == "v2"
    finally:
        release.set()
    assert _wait_for(lambda: not updater.busy and updater.last is not None), "the update did not finish"
    last = s.get("/v1/admin/updates").json()["last"]
    assert last["activated"] is True, last
    assert last["update"]["new_users"] == 5 and last["parent"] == "v2"
    models = s.get("/v1/admin/models").json()
    assert models["active"] == last["version"] and last["version"] in models["versions"]
    r = s.get("/v1/users/new0/recommendations", params={"k": 3})
    assert r.status_code == 200 and "heat" not in [i["item_id"] for i in r.json()["items"]]


def test_background_update_waits_for_enough_events(start) -> None:
    s = start(version="v2", update_min_events=1000)
    updater = s.app.state.updater  # type: ignore[attr-defined]
    assert s.client.post("/v1/admin/updates/run").status_code == 202
    assert _wait_for(lambda: not updater.busy and updater.last is not None)
    assert "skipped" in s.get("/v1/admin/updates").json()["last"]
    assert s.get("/v1/admin/models").json()["active"] == "v2"
