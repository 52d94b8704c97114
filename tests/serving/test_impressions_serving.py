"""The service and impressions: what it answers is stored as impressions (off by a setting), clients may send
impressions and the clicks on them, and none of it changes what the user is recommended next."""

from __future__ import annotations

import httpx
import polars as pl

from lmrec.data.schema import IMPRESSION
from lmrec.serving.engine import Recommendations, RecommendedItem
from lmrec.serving.ingest import prepare
from tests.serving.serving_helpers import eventually


def _recs(s, user: str = "u1", **params: object) -> httpx.Response:
    r = s.get(f"/v1/users/{user}/recommendations", params={"k": 4, **params})
    assert r.status_code == 200, r.text
    return r


def _shown(s) -> pl.DataFrame:
    return s.store.events("event_type = ?", [IMPRESSION])


def test_an_answer_is_logged_as_impressions_that_clicks_join(start) -> None:
    s = start(version="v2")  # ItemKNN: the history drives the ranking, so history changes would show
    first = _recs(s).json()
    list_id = first["list_id"]
    assert len(list_id) >= 16
    # what was returned reaches the store as impressions, in rank order, under the answer's list id
    eventually(lambda: _shown(s).height == len(first["items"]))
    shown = _shown(s)
    assert shown["list_id"].unique().to_list() == [list_id] and set(shown["user_id"]) == {"u1"}
    assert shown.sort("position").select("item_id", "position").rows() == [
        (item["item_id"], pos) for pos, item in enumerate(first["items"])]
    # impressions are not history: the next answer is the same list (nothing shown became "seen")
    second = _recs(s).json()
    assert [i["item_id"] for i in second["items"]] == [i["item_id"] for i in first["items"]]
    assert second["list_id"] != list_id
    # a click sent with the list id and position is stored with them and joins its impression
    clicked = first["items"][1]["item_id"]
    click_event = {"user_id": "u1", "item_id": clicked, "event_type": "click", "list_id": list_id,
                   "position": 1}
    r = s.client.post("/v1/events", json={"events": [click_event]})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    click = s.store.events("event_type = 'click'")
    assert click.select("item_id", "list_id", "position").rows() == [(clicked, list_id, 1)]
    assert click.join(_shown(s), on=["user_id", "item_id", "list_id", "position"]).height == 1
    # ...and that click is history: the item leaves the next answer
    assert clicked not in [i["item_id"] for i in _recs(s).json()["items"]]
    # every impression lands in the store's dataset apart from the events
    s.app.state.engine.writer.flush()  # type: ignore[attr-defined]
    ds = s.store.to_dataset()
    assert ds.n_impressions == _shown(s).height and IMPRESSION not in ds.event_types


def test_posted_impressions_are_stored_and_change_nothing(start) -> None:
    s = start(version="v2", log_impressions=False)
    before = _recs(s).json()
    ids = [i["item_id"] for i in before["items"]]
    shown = [{"user_id": "u1", "item_id": item, "event_type": "impression", "list_id": "page-7",
              "position": pos, "timestamp": 1_700_000_000} for pos, item in enumerate(ids)]
    r = s.client.post("/v1/events", json={"events": shown})
    assert r.json() == {"accepted": len(ids), "duplicates": 0, "users": 1}
    assert s.client.post("/v1/events", json={"events": shown}).json()["duplicates"] == len(ids)
    stored = _shown(s)
    assert stored.sort("position")["item_id"].to_list() == ids and set(stored["list_id"]) == {"page-7"}
    assert [i["item_id"] for i in _recs(s).json()["items"]] == ids  # not history, not "seen"
    assert _shown(s).height == len(ids)  # log_impressions off: the answers added none
    # a bad position is refused with the event and field named, before anything is stored
    bad = s.client.post("/v1/events", json={"events": [{**shown[0], "position": -1}]})
    assert bad.status_code == 422 and "position" in bad.text


def test_unknown_users_answers_log_no_impressions(start) -> None:
    s = start()
    r = s.get("/v1/users/stranger/recommendations", params={"k": 3, "unknown": "popular"})
    assert r.status_code == 200 and r.json()["fallback"] == "unknown-user" and r.json()["list_id"]
    session = s.client.post("/v1/recommendations", json={"items": ["toy"], "k": 3})
    assert session.status_code == 200 and session.json()["list_id"]
    s.app.state.engine.writer.flush()  # type: ignore[attr-defined]
    assert _shown(s).height == 0  # no user to log them for (an unknown user may be an erased one)
    # being shown something makes nobody known: only behaviour does
    r = s.client.post("/v1/events", json={"events": [{"user_id": "stranger", "item_id": "toy",
                                                      "event_type": "impression", "list_id": "x",
                                                      "position": 0}]})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert s.get("/v1/users/stranger/recommendations").status_code == 404


def test_an_erased_user_gets_no_late_impressions(start) -> None:
    s = start()
    engine = s.app.state.engine  # type: ignore[attr-defined]
    _recs(s, "u2")
    engine.erase_user("u2")
    # an answer computed before the erasure, logged after it, stores nothing
    late = Recommendations([RecommendedItem("toy", 1.0, "Toy", [])], "v1", "model")
    engine._log_impressions("u2", late, asked=0.0)  # noqa: SLF001
    engine.writer.flush()
    assert s.store.events("user_id = 'u2'").height == 0


def test_prepared_events_derive_ids_with_their_list() -> None:
    shown = {"user_id": "u", "item_id": "i", "timestamp": 5, "event_type": "impression", "position": 0}
    a, b, plain = prepare([{**shown, "list_id": "A"}, {**shown, "list_id": "B"},
                           {"user_id": "u", "item_id": "i", "timestamp": 5}])
    # the importer's ids (tests/data/test_impressions.py): two lists are two impressions; no list, the old id
    assert (a.event_id, b.event_id, plain.event_id) == ("u|i|5|impression||A|0", "u|i|5|impression||B|0",
                                                         "u|i|5|view|")
    assert (a.list_id, a.position, plain.list_id, plain.position) == ("A", 0, None, None)
