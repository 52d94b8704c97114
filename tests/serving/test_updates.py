"""The service's background updater: an update runs beside requests (never blocking them), and an accepted
version is swapped in through the activation path. Every wait is bounded; no timing thresholds."""

from __future__ import annotations

import contextlib
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


def test_an_update_another_replica_is_running_is_not_run_twice(start, monkeypatch) -> None:
    s = start(version="v2", update_min_events=1)
    updater = s.app.state.updater  # type: ignore[attr-defined]
    held = contextlib.contextmanager(lambda name: iter([False]))  # the store says: another process has it
    monkeypatch.setattr(s.store, "exclusive", held)
    called = []
    updater._update_fn = lambda *a, **k: called.append(1)
    assert updater.run_once() is None and called == []
    assert "another process" in s.get("/v1/admin/updates").json()["last"]["skipped"]
    assert s.get("/v1/admin/models").json()["active"] == "v2"


def test_engine_as_a_replay_arm_with_daily_guarded_updates(tmp_path) -> None:
    import polars as pl

    from lmrec.data.synthetic_ecommerce import generate_ecommerce
    from lmrec.evaluation.replay import ModelArm, ReplayConfig, past_events, replay
    from lmrec.experiment.updates import UpdatePolicy
    from lmrec.models import create_model
    from lmrec.serving import ServingSettings
    from lmrec.serving.engine import Engine
    from lmrec.serving.updater import BackgroundUpdater, EngineArm
    from lmrec.store import Store

    shop = generate_ecommerce(n_users=150, n_items=50, n_categories=5, days=30, seed=6)
    cfg = ReplayConfig(days=3, seed=0)
    past, start = past_events(shop.events, cfg)
    store = Store(tmp_path / "s.duckdb")
    store.upsert_items(shop.items)
    store.append_events(past)
    model = create_model("itemknn").fit(store.to_dataset())
    model.save(tmp_path / "models" / "v1")
    settings = ServingSettings(model_dir=tmp_path / "models" / "v1", store=str(store.path), dev_mode=True)
    engine = Engine.open(settings, store, None)
    try:
        updater = BackgroundUpdater(engine, UpdatePolicy(holdout=0.0), since=start)
        arms = [EngineArm("engine", engine, updater=updater, update_every=1), ModelArm("model", model)]
        result = replay(shop.events, arms, cfg, items=shop.items)
        days = result.days.filter(pl.col("arm") == "engine").sort("day")
        assert days["users"].sum() > 0 and days["update_accepted"].to_list() == [True, True, True]
        assert engine.bundle.version == days["update_version"][-1] != "v1"
        # interactions only: the engine also logs its answers as impressions
        stored = store.events().filter(pl.col("event_type") != "impression").height
        assert stored == shop.events.filter(pl.col("timestamp") < start + 3 * 86_400).height
        # the engine's first-day lists come from the same model as the model arm's: the same users scored
        first = result.days.filter(pl.col("day") == 0)
        assert first["scored"].n_unique() == 1
    finally:
        engine.close()
        store.close()


def test_a_worse_update_is_not_activated_and_the_service_keeps_serving(start, monkeypatch) -> None:
    from lmrec.models.itemknn import ItemKNN

    real_update = ItemKNN.update

    def reversed_update(self, *args, **kwargs):  # an artificially corrupted candidate
        report = real_update(self, *args, **kwargs)
        self.similarity_ = -self.similarity_  # the most similar items now rank last
        return report

    monkeypatch.setattr(ItemKNN, "update", reversed_update)
    s = start(version="v2", update_holdout=1 / 3, update_tolerance=0.0, update_min_events=1)
    updater = s.app.state.updater  # type: ignore[attr-defined]
    now = int(time.time()) + 5
    # twenty new users watch two animated films, then (the held-back third of the events) a third one
    learn = [{"user_id": f"n{u}", "item_id": item, "timestamp": now + 2 * u + j}
             for u in range(20) for j, item in enumerate(["toy", "aladdin"])]
    held = [{"user_id": f"n{u}", "item_id": "lion", "timestamp": now + 100 + u} for u in range(20)]
    assert s.client.post("/v1/events", json={"events": learn + held}).status_code == 200
    assert s.client.post("/v1/admin/updates/run").status_code == 202
    assert _wait_for(lambda: not updater.busy and updater.last is not None), "the update did not finish"
    last = s.get("/v1/admin/updates").json()["last"]
    assert last["activated"] is False and "beyond the tolerance" in last["reason"], last
    assert last["candidate_ndcg@10"] < last["serving_ndcg@10"]
    models = s.get("/v1/admin/models").json()
    assert models["active"] == "v2" and last["version"] in models["versions"]  # saved, not swapped in
    r = s.get("/v1/users/n0/recommendations", params={"k": 3})
    assert r.status_code == 200 and r.json()["model_version"] == "v2"
