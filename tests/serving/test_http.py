"""End-to-end: a real uvicorn server on loopback, a real HTTP client, models trained on a tiny dataset."""

from __future__ import annotations

import threading
import time

import httpx
import polars as pl
import pytest

from lmrec.store.keys import KeyStore, existing_event_ids, user_row_counts
from tests.serving.serving_helpers import eventually

pytestmark = pytest.mark.slow


def rec_ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [i["item_id"] for i in resp.json()["items"]]


def test_an_ingested_event_changes_the_next_recommendation(start) -> None:
    s = start()
    before = rec_ids(s.get("/v1/users/u0/recommendations", params={"k": 3}))
    top = before[0]

    # Negative feedback removes the item at once.
    dislike = {"event_id": "e-1", "user_id": "u0", "item_id": top, "event_type": "dislike"}
    r = s.client.post("/v1/events", json={"events": [dislike]})
    assert r.json() == {"accepted": 1, "duplicates": 0, "users": 1}
    after = rec_ids(s.get("/v1/users/u0/recommendations", params={"k": 3}))
    assert top not in after

    # The same event id again is a no-op, in the response and in the store.
    eventually(lambda: existing_event_ids(s.store, ["e-1"]))
    n_events = s.store.counts()["events"]
    r = s.client.post("/v1/events", json={"events": [dislike]})
    assert r.json()["accepted"] == 0 and r.json()["duplicates"] == 1
    assert s.store.counts()["events"] == n_events

    # A positive event makes the item "seen": excluded by default, kept with exclude_seen=false.
    viewed = after[0]
    s.client.post("/v1/events", json={"events": [{"user_id": "u0", "item_id": viewed, "event_type": "view"}]})
    assert viewed not in rec_ids(s.get("/v1/users/u0/recommendations", params={"k": 3}))
    assert viewed in rec_ids(s.get("/v1/users/u0/recommendations",
                                   params={"k": 10, "exclude_seen": "false"}))
    # ...and it reaches the store.
    eventually(lambda: s.store.user_sequence("u0")["item_id"].to_list()[-1] == viewed)


def test_a_new_user_is_served_from_their_first_events_with_a_behaviour_model(start) -> None:
    s = start(version="v2")  # ItemKNN: the history drives the ranking
    assert s.get("/v1/users/fresh/recommendations").status_code == 404
    r = s.client.post("/v1/events", json={"events": [
        {"user_id": "fresh", "item_id": "heat", "event_type": "view", "timestamp": 2_000_000}]})
    assert r.status_code == 200
    got = s.get("/v1/users/fresh/recommendations", params={"k": 2, "explain": "true"})
    assert set(rec_ids(got)) == {"ronin", "fargo"}  # the other crime films, by co-occurrence
    why = got.json()["items"][0]["explanation"]
    assert why["text"].startswith("Because you viewed Heat (1995)")
    assert why["because"][0]["item_id"] == "heat"


def test_an_added_item_is_similar_and_recommendable_at_once(start) -> None:
    s = start()
    new = {"item_id": "toy2", "title": "Toy Story 2 (1999)",
           "description": "animated toys cartoon friendship",
           "categories": ["Animation", "Children's", "Sequel"]}
    r = s.client.put("/v1/items", json={"items": [new]})
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 1 and r.json()["encoded"] == 1 and r.json()["catalogue_size"] == 11

    similar = s.get("/v1/items/toy/similar", params={"by": "text", "k": 3}).json()
    assert similar["items"][0]["item_id"] == "toy2"
    assert similar["items"][0]["title"] == "Toy Story 2 (1999)"
    assert s.get("/v1/items/toy2/similar", params={"by": "text",
                                                   "k": 1}).json()["items"][0]["item_id"] == "toy"

    assert rec_ids(s.get("/v1/users/u0/recommendations", params={"category": "Sequel"})) == ["toy2"]
    by_profile = s.client.post("/v1/recommendations", json={"profile": "animated toys friendship", "k": 2})
    assert "toy2" in rec_ids(by_profile) and by_profile.json()["strategy"] == "profile-text"

    # A changed item: its new text moves it in the text neighbourhood.
    def near_heat() -> list[str]:
        return [i["item_id"] for i in s.get("/v1/items/heat/similar", params={"by": "text",
                                                                              "k": 2}).json()["items"]]

    assert "toy2" not in near_heat()
    changed = {**new, "description": "crime heist thriller detectives", "categories": ["Crime", "Thriller"]}
    assert s.client.put("/v1/items", json={"items": [changed]}).json()["updated"] == 1
    assert "toy2" in near_heat()


def test_an_erased_user_gets_404_and_leaves_no_row(start) -> None:
    s = start()
    s.client.put("/v1/items", json={"items": [{"item_id": "x", "title": "X"}]})
    s.client.post("/v1/events", json={"events": [{"user_id": "u1", "item_id": "x", "event_type": "like"}]})
    assert s.get("/v1/users/u1/recommendations").status_code == 200
    assert user_row_counts(s.store, "u1")["events"] > 0

    r = s.client.delete("/v1/users/u1")
    assert r.status_code == 200 and r.json()["events_deleted"] > 0 and r.json()["cache_cleared"]
    assert s.get("/v1/users/u1/recommendations").status_code == 404
    assert s.get("/v1/users/u1/predictions").status_code == 404
    assert user_row_counts(s.store, "u1") == {"events": 0, "users": 0}
    assert s.client.delete("/v1/users/u1").status_code == 404
    # The trained model still knows u1's training history, but never serves it again.
    assert s.client.post("/v1/events", json={"events": [
        {"user_id": "u1", "item_id": "toy", "event_type": "view"}]}).status_code == 200
    eventually(lambda: s.store.user_sequence("u1")["item_id"].to_list() == ["toy"])


def test_a_hot_swap_under_concurrent_requests_fails_none(start) -> None:
    s = start()
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer(user: str) -> None:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            while not stop.is_set():
                r = c.get(f"/v1/users/{user}/recommendations", params={"k": 5, "explain": "true"})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["model_version"])
                r = c.get("/v1/items/toy/similar")
                statuses.append(r.status_code)

    threads = [threading.Thread(target=hammer, args=(f"u{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for version in ("v2", "v1", "v2"):
            time.sleep(0.3)
            r = s.client.post(f"/v1/admin/models/{version}/activate")
            assert r.status_code == 200 and r.json()["version"] == version
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(statuses) > 20
    assert set(statuses) == {200}, f"{sum(c != 200 for c in statuses)} failed requests"
    assert versions == {"v1", "v2"}
    assert 'lmrec_model_info{model="itemknn",version="v2"} 1.0' in s.get("/metrics").text
    assert s.client.post("/v1/admin/models/nope/activate").status_code == 404
    assert s.client.get("/v1/admin/models").json() == {"active": "v2", "versions": ["v1", "v2"]}


def test_api_keys_scopes_and_revocation(start) -> None:
    s = start(dev_mode=False, key_cache_seconds=0)
    keys = KeyStore(s.store)
    read, read_rec = keys.create("dashboard", ["read"])
    write, _ = keys.create("ingest", ["write"])
    admin, _ = keys.create("ops", ["admin"])
    assert read.split("_")[2] not in str(s.store.execute("SELECT * FROM api_keys"))  # only a hash is stored

    assert s.get("/v1/users/u0/recommendations").status_code == 401
    assert s.get("/v1/users/u0/recommendations", headers={"X-API-Key": "lmrec_bad_key"}).status_code == 401
    assert s.get("/v1/users/u0/recommendations", headers={"X-API-Key": read}).status_code == 200
    assert s.get("/v1/users/u0/recommendations",
                 headers={"Authorization": f"Bearer {read}"}).status_code == 200
    event = {"events": [{"user_id": "u0", "item_id": "toy"}]}
    r = s.client.post("/v1/events", json=event, headers={"X-API-Key": read})
    assert r.status_code == 403 and "write" in r.json()["detail"]
    assert s.client.post("/v1/events", json=event, headers={"X-API-Key": write}).status_code == 200
    assert s.get("/v1/users/u0/recommendations", headers={"X-API-Key": write}).status_code == 200
    assert s.client.delete("/v1/users/u2", headers={"X-API-Key": write}).status_code == 403
    assert s.client.delete("/v1/users/u2", headers={"X-API-Key": admin}).status_code == 200

    assert keys.revoke(read_rec.key_id)
    assert s.get("/v1/users/u0/recommendations", headers={"X-API-Key": read}).status_code == 401
    # Probes and the scraper need no key.
    assert s.get("/health/ready").status_code == 200 and s.get("/metrics").status_code == 200


def test_limits_validation_and_errors_without_traces(start) -> None:
    s = start(max_body_bytes=2_000)
    big = {"events": [{"user_id": "u0", "item_id": "toy", "event_type": "view"}] * 100}
    r = s.client.post("/v1/events", json=big)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

    r = s.client.post("/v1/events", json={"events": [{"item_id": "toy"}]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "body.events[0].user_id"
    r = s.get("/v1/users/u0/recommendations", params={"k": "many"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "query.k"
    r = s.client.post("/v1/events", json={"events": [{"user_id": "u0", "item_id": "toy",
                                                      "event_type": "teleport"}]})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "body.events[0].event_type"
    r = s.get("/v1/items/nope/similar")
    assert r.status_code == 404 and "nope" in r.json()["detail"]

    engine = s.app.state.engine  # type: ignore[attr-defined]

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    engine.similar_items = broken
    r = s.get("/v1/items/toy/similar", headers={"X-Request-ID": "req-42"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal_error",
                        "detail": "internal server error; quote the request id when reporting it",
                        "request_id": "req-42"}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"] == "req-42"


def test_health_metrics_openapi_dashboard_and_capabilities(start) -> None:
    s = start()
    assert s.get("/health/live").json() == {"status": "ok", "model_version": None}
    assert s.get("/health/ready").json() == {"status": "ok", "model_version": "v1"}
    s.get("/v1/users/u0/recommendations")
    metrics = s.get("/metrics").text
    route = "/v1/users/{user_id}/recommendations"
    assert f'lmrec_requests_total{{method="GET",route="{route}",status="200"}}' in metrics
    assert "lmrec_request_seconds_bucket" in metrics and "lmrec_catalogue_items 10.0" in metrics

    paths = s.get("/openapi.json").json()["paths"]
    for p in ("/v1/users/{user_id}/recommendations", "/v1/recommendations", "/v1/items/{item_id}/similar",
              "/v1/users/{user_id}/predictions", "/v1/events", "/v1/items", "/v1/users/{user_id}",
              "/health/live", "/health/ready", "/metrics", "/v1/admin/models/{version}/activate",
              "/dashboard"):
        assert p in paths, p

    page = s.get("/dashboard")
    assert page.status_code == 200 and "<title>lmrec dashboard</title>" in page.text
    stats = s.get("/v1/dashboard/stats").json()
    assert stats["model_version"] == "v1" and stats["catalogue_size"] == 10
    assert stats["requests"]["routes"]["GET /v1/users/{user_id}/recommendations"]["count"] >= 1

    r = s.get("/v1/users/u0/predictions", params={"items": ["toy"]})
    assert r.status_code == 404 and "no prediction heads" in r.json()["detail"]

    # Session recommendations: unknown items are reported, known ones drive the explanation.
    r = s.client.post("/v1/recommendations", json={"items": ["heat", "nope"], "k": 3, "explain": True})
    body = r.json()
    assert r.status_code == 200 and body["ignored_items"] == ["nope"] and "heat" not in rec_ids(r)
    assert all(i["explanation"]["text"] for i in body["items"])

    # Category rules and diversity.
    got = s.get("/v1/users/u3/recommendations", params={"k": 5,
                                                        "exclude_category": "Animation"}).json()["items"]
    assert got and all("Animation" not in i["categories"] for i in got)
    assert len(rec_ids(s.get("/v1/users/u3/recommendations", params={"k": 4, "diversity": 0.7}))) == 4


def test_text_features_degrade_clearly_without_an_encoder(start) -> None:
    s = start(text=False)
    r = s.get("/v1/items/toy/similar", params={"by": "text"})
    assert r.status_code == 409 and "by=behaviour" in r.json()["detail"]
    assert s.get("/v1/items/toy/similar", params={"by": "behaviour"}).status_code == 200
    r = s.client.post("/v1/recommendations", json={"profile": "animated toys"})
    assert r.status_code == 200 and r.json()["strategy"] == "popularity"
    r = s.client.put("/v1/items", json={"items": [{"item_id": "new", "title": "New"}]})
    assert r.json()["encoded"] == 0 and r.json()["created"] == 1
    assert "new" in rec_ids(s.get("/v1/users/u0/recommendations", params={"k": 20}))


def test_docs_pages_work_offline(start) -> None:
    """/docs and /redoc load their scripts from the service itself (packaged assets), never from a CDN, and
    need no key (outside dev mode too)."""
    s = start(dev_mode=False)
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        r = s.client.get(page)
        assert r.status_code == 200, page
        assert "cdn." not in r.text and "http://" not in r.text and "https://" not in r.text.split("<body")[0]
        path = next(x for x in r.text.split('"') if x.endswith(asset))
        js = s.client.get(path)
        assert js.status_code == 200 and len(js.content) > 10_000, path


def test_iso_timestamps_are_read_as_an_import_reads_them(start) -> None:
    """The same text a CSV import accepts: ``Z``, offsets, naive (UTC); anything else is a 422 naming the
    field."""
    s = start()
    stamps = ["2026-11-29T10:15:00Z", "2026-11-29T11:15:00+01:00", "2026-11-29 10:15:00"]
    events = [{"event_id": f"iso-{i}", "user_id": "u0", "item_id": f"i{i}", "timestamp": t}
              for i, t in enumerate(stamps, 1)]
    r = s.client.post("/v1/events", json={"events": events})
    assert r.status_code == 200 and r.json()["accepted"] == 3
    stored = s.store.user_sequence("u0").filter(pl.col("event_id").str.starts_with("iso-"))
    assert stored["timestamp"].to_list() == [1_795_947_300] * 3
    soon = {**events[0], "event_id": "iso-4", "timestamp": "soon"}
    bad = s.client.post("/v1/events", json={"events": [soon]})
    assert bad.status_code == 422 and "timestamp" in bad.text


def test_exposure_reranking_is_the_batch_function(start, models_dir) -> None:
    """The service re-ranks with the function batch recommendations use: its list equals `rerank` applied to
    the plain list, a category cap holds, and bad values are refused."""
    import numpy as np

    from lmrec.data.exposure import ExposurePolicy, rerank
    from lmrec.models import load_model

    s = start(version="v2")
    model = load_model(models_dir / "v2")
    assert model.item_map is not None
    plain = rec_ids(s.get("/v1/users/u3/recommendations", params={"k": 10}))
    capped = s.get("/v1/users/u3/recommendations", params={"k": 4, "max_group_share": 0.25})
    assert capped.status_code == 200
    groups, tail = model.exposure_groups()
    expected = np.asarray(plain)[rerank(model.item_map.indices(plain), 4, ExposurePolicy(0.25), groups, tail)]
    assert rec_ids(capped) == expected.tolist()
    # the batch path gives the same list for the same history
    ids, _ = model.recommend(["u3"], k=4, exposure=ExposurePolicy(0.25))
    assert [i for i in ids[0] if i] == rec_ids(capped)
    r = s.client.post("/v1/recommendations", json={"items": ["heat"], "k": 3, "min_tail_share": 0.5})
    assert r.status_code == 200 and len(rec_ids(r)) == 3
    assert s.get("/v1/users/u3/recommendations", params={"max_group_share": 0}).status_code == 422
