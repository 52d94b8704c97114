"""Onboarding by active learning: the questions carry the most information about which training user the
new user is like, answers steer the first recommendations, and over HTTP the "yes" answers become the new
user's events at once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lmrec.models import create_model
from lmrec.models.onboarding import DEFAULT_SETTINGS, Onboarding, popular_questions
from lmrec.store import Store
from tests.serving.conftest import Served
from tests.serving.serving_helpers import ITEMS, make_events


def _model():  # noqa: ANN202
    with Store(":memory:") as st:
        st.upsert_items(ITEMS)
        st.append_events(make_events())
        return create_model("itemknn", k=20).fit(st.to_dataset())


def test_questions_carry_the_most_information_and_skip_what_was_answered() -> None:
    m = _model()
    ob = Onboarding(m)
    # 30 users, too few to validate on: the default settings.
    assert ob.calibration.users == 0 and ob.settings == DEFAULT_SETTINGS
    first = ob.next_questions({}, 3)
    assert len(first) == 3 and len(set(first)) == 3
    # Before any answer every training user is equally plausible: the first question is the item whose
    # answer has the largest mutual information with the user, H(P(yes)) - E_u H(P(yes | u)), where a user
    # like u says "yes" with probability (1 - s) x_ui + s p_i (p_i: the item's share of choosers).
    x = m.user_histories_.to_csr(m.item_map.size)  # type: ignore[union-attr]
    x.data[:] = 1
    users = np.diff(x.indptr) > 0
    share = np.asarray(x[users].sum(axis=0)).ravel() / users.sum()

    def h(p: float) -> float:
        return 0.0 if p <= 0 or p >= 1 else -(p * np.log(p) + (1 - p) * np.log(1 - p))

    s = ob.settings.smoothing

    def gain(i: str) -> float:
        p = share[m.item_map.index(i)]
        return h((1 - s) * p + s * p) - (p * h(1 - s + s * p) + (1 - p) * h(s * p))

    best = max(gain(i) for i in m.item_map.raw_ids)
    assert gain(first[0]) == pytest.approx(best)
    nxt = ob.next_questions({first[0]: True}, 5)
    assert first[0] not in nxt
    counts = make_events()["item_id"].value_counts(sort=True)
    assert popular_questions(m, 1) == [counts["item_id"][0]]  # the baseline: the most popular first


def test_answers_steer_the_first_recommendations() -> None:
    ob = Onboarding(_model())
    crime = ob.scores({"heat": True, "toy": False})
    anim = ob.scores({"heat": False, "toy": True})
    idx = ob.model.item_map.index
    assert crime[idx("ronin")] > anim[idx("ronin")] and anim[idx("aladdin")] > crime[idx("aladdin")]
    # The scores are the probability of each item being the user's next: they sum to one.
    assert crime.sum() == pytest.approx(1.0) and (crime >= 0).all()


def test_onboarding_over_http_stores_the_yes_answers(start: Callable[..., Served]) -> None:
    s = start(version="v2")  # item-kNN
    r = s.client.post("/v1/onboarding/questions", json={"n": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["questions"]) == 3 and body["recommendations"] == [] and body["events_added"] == 0
    assert all(q["title"] for q in body["questions"])
    r = s.client.post("/v1/onboarding/questions", json={
        "user_id": "newbie", "n": 2, "k": 3,
        "answers": [{"item_id": "heat", "chose": True}, {"item_id": "toy", "chose": False}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["events_added"] == 1 and len(body["recommendations"]) == 3
    assert {"heat", "toy"}.isdisjoint(q["item_id"] for q in body["questions"])
    assert {"heat", "toy"}.isdisjoint(i["item_id"] for i in body["recommendations"])
    stored = s.store.events("user_id = ?", ["newbie"])
    assert stored.height == 1 and stored["event_type"].to_list() == ["like"]
    recs = s.get("/v1/users/newbie/recommendations", params={"k": 3})
    assert recs.status_code == 200 and recs.json()["strategy"] == "model", recs.text
    # Posting the same answers again stores nothing twice (the event ids are stable).
    again = s.client.post("/v1/onboarding/questions", json={
        "user_id": "newbie", "answers": [{"item_id": "heat", "chose": True}]})
    assert again.status_code == 200 and again.json()["events_added"] == 0, again.text
    bad = s.client.post("/v1/onboarding/questions", json={"answers": [{"item_id": "heat", "chose": 1}]})
    assert bad.status_code == 422


def test_a_batch_of_only_duplicates_is_answered_at_once() -> None:
    """An ingest whose events were all stored before (and with no audit entry) has nothing to commit: its
    ticket is answered at once, not after the commit timeout."""
    from lmrec.serving.ingest import EventWriter

    with Store(":memory:") as st:
        writer = EventWriter(st, 0, False, None)
        try:
            assert writer.submit([], None).wait(10)
        finally:
            writer.close()
