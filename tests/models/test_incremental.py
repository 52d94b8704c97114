"""Incremental updates (:class:`lmrec.models.capabilities.IncrementalUpdates`): new users and items join, the
updated model scores them, and it keeps working after a save/load round trip."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.models import available_models, create_model, load_model, model_class
from lmrec.models.capabilities import IncrementalUpdates
from lmrec.models.incremental import PAST_EVENT_TYPE, absorb_events
from lmrec.models.seqrec.model import UNTRAINED_SCORE

#: Every registered model that declares the capability passes the same tests.
UPDATABLE = tuple(n for n in available_models() if issubclass(model_class(n), IncrementalUpdates))


def test_updatable_models() -> None:
    assert {"itemknn", "als", "seqrec"} <= set(UPDATABLE)


def _events(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame({"event_id": [f"e{n}" for n in range(len(rows))], "user_id": [r[0] for r in rows],
                         "item_id": [r[1] for r in rows], "timestamp": [r[2] for r in rows],
                         "event_type": ["view"] * len(rows)})


def _old_and_new() -> tuple[Dataset, pl.DataFrame]:
    """Two taste groups of ten items; later, a new item "fresh" that every group-A user takes right after
    "a0", and new users who do the same."""
    rng = np.random.default_rng(0)
    rows, t = [], 0
    for u in range(40):
        group = "a" if u % 2 == 0 else "b"
        for j in rng.permutation(10)[:6]:
            t += 1
            rows.append((f"u{u}", f"{group}{j}", t))
    old = Dataset.build(_events(rows), name="old")
    new, t = [], 10_000
    for u in [*range(0, 40, 2), *range(100, 110)]:  # group A users, then ten new users
        for item in ("a0", "fresh"):
            t += 1
            new.append((f"u{u}", item, t))
    return old, _events(new)


def _fit(name: str, ds: Dataset):
    cfg = dict(create_model(name).fast_config)
    if name == "seqrec":
        cfg.update(item_repr="id", epochs=5)
    if name == "auto":
        cfg.update(text="off")  # the tiny data has no item text
    return create_model(name, **cfg).fit(ds)


@pytest.mark.parametrize("name", UPDATABLE)
def test_update_adds_new_users_and_items_and_scores_them(name: str, tmp_path) -> None:
    old, new = _old_and_new()
    model = _fit(name, old)
    assert isinstance(model, IncrementalUpdates)
    n_items, n_users = model.n_items, len(model.user_map)
    assert "fresh" not in model.item_map
    report = model.update(new, passes=3, seed=0)
    assert (report.events, report.new_users, report.new_items) == (new.height, 10, 1)
    assert model.n_items == n_items + 1 and len(model.user_map) == n_users + 10
    assert "u105" in model.user_map and "fresh" in model.item_map
    # the new user is known now (no UnknownUserError) and their history is their new events
    assert len(model.recommend("u105", k=3)[0]) == 3
    fresh = model.item_map.index("fresh")
    hist = model.histories_for(np.array([model.user_map.index("u105")]))
    assert model.item_map.raws(hist[0]).tolist() == ["a0", "fresh"]
    scores = model.score(_history(model, ["a1", "a2", "a0"]))
    assert np.isfinite(scores[0, fresh]) and scores[0, fresh] > UNTRAINED_SCORE
    if name in ("itemknn", "als"):
        # the new item follows "a0" for every A user: it is among the top items for an A history
        ids, _ = model.recommend(histories=[["a1", "a2", "a0"]], k=5)
        assert "fresh" in ids[0].tolist()
    assert model.popularity_[fresh] == 30
    # the update survives a save/load round trip
    back = load_model(model.save(tmp_path / name))
    assert back.n_items == model.n_items and back.user_map == model.user_map
    np.testing.assert_allclose(back.score(_history(back, ["a0"])), model.score(_history(model, ["a0"])),
                               rtol=1e-5, atol=1e-5)


def _history(model, items: list[str]):
    from lmrec.data.ragged import Ragged

    return Ragged.from_lists([model.item_map.indices(items)])


def test_absorb_events_merges_histories_in_time_order() -> None:
    old, _ = _old_and_new()
    model = _fit("itemknn", old)
    before = model.item_map.raws(model.histories_for(np.array([model.user_map.index("u0")]))[0]).tolist()
    # out of order on purpose: absorption sorts by time
    new = _events([("u0", "b1", 20_002), ("u0", "b0", 20_001), ("zz", "b1", 20_003)])
    absorbed = absorb_events(model, new)
    after = model.item_map.raws(model.histories_for(np.array([model.user_map.index("u0")]))[0]).tolist()
    assert after == [*before, "b0", "b1"]
    assert absorbed.new_users == 1 and absorbed.new_items == 0 and absorbed.n_events == 3
    seq = absorbed.dataset.user_sequence("u0")
    assert seq == after
    types = absorbed.dataset.events.filter(pl.col("user_id") == "u0")["event_type"].to_list()
    assert types == [PAST_EVENT_TYPE] * len(before) + ["view", "view"]
    assert sorted(model.user_map.raws(absorbed.touched).tolist()) == ["u0", "zz"]


def test_seqrec_update_refuses_side_inputs() -> None:
    old, new = _old_and_new()
    cfg = {**create_model("seqrec").fast_config, "item_repr": "id", "epochs": 1, "use_types": True}
    model = create_model("seqrec", **cfg).fit(old)
    with pytest.raises(ValueError, match="side inputs"):
        model.update(new)


def test_seqrec_fused_update_gives_new_items_text_rows() -> None:
    old, new = _old_and_new()
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(old.item_map.size, 8)).astype(np.float32)
    vectors[0] = 0.0
    cfg = {**create_model("seqrec").fast_config, "epochs": 2}
    model = create_model("seqrec", **cfg).fit(old, item_vectors=vectors)
    model.update(new, passes=1)
    fresh = model.item_map.index("fresh")
    # no encoder named for these vectors: the new row is a zero text vector, its id part now trained
    assert model.item_vectors_.shape[0] == model.n_items + 1 and not model.item_vectors_[fresh].any()
    assert float(model.network_.item_encoder.counts[fresh]) == 30.0
    assert np.isfinite(model.score(_history(model, ["a0"]))[0, fresh])
