"""The service explains a retrieve-and-rank pipeline's recommendations with its ranker's reasons."""

from __future__ import annotations

from pathlib import Path

from lmrec.serving.engine import Engine, RecRequest
from lmrec.serving.overlay import UserState
from lmrec.serving.settings import ServingSettings
from tests.serving.serving_helpers import HashingEncoder, text_model_store


def test_pipeline_explanations_say_what_ranked_an_item_up(tmp_path: Path) -> None:
    store, enc = text_model_store(
        tmp_path, "pipeline", {"encoder": HashingEncoder.name},
        retrievers="itemknn,content-lm,popular,categories", candidates=5,
        ranker_params={"num_boost_round": 20, "min_data_in_leaf": 2})
    settings = ServingSettings(model_dir=tmp_path / "m", store=str(store.path), dev_mode=True)
    engine = Engine.open(settings, store, enc)
    try:
        state = UserState(items=["heat", "ronin"], types=["view", "view"])
        got = engine._recommend(engine.bundle, 0, state, RecRequest(k=3, explain=True))
        assert got.items and got.items[0].item_id == "fargo"  # the one crime film left
        texts = [i.explanation.text for i in got.items if i.explanation is not None]
        assert any("; ranked up because: " in t for t in texts), texts
        reasons = [r for i in got.items if i.explanation is not None for r, _ in i.explanation.ranked_by]
        assert reasons and set(reasons) <= {"itemknn", "content-lm", "popular", "categories", "listed_by",
                                            "activity", "fresh", "trending", "price"}
    finally:
        engine.close()
        store.close()
