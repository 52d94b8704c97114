"""The service uses a model's own spaces: its learned item table for similarity by behaviour, and its text
space (never the service's) for the vectors of new items."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.models import model_class
from lmrec.serving import ServingSettings
from lmrec.serving.bundle import render_texts
from lmrec.serving.engine import Engine
from lmrec.serving.errors import CapabilityError
from lmrec.serving.retrieval import normalise
from lmrec.serving.text import encode_for_model
from lmrec.text.space import TextSpace, TextSpaceError
from tests.serving.serving_helpers import ITEMS, HashingEncoder, text_model_store


def _engine(tmp_path: Path, name: str, space: TextSpace, **config: object) -> Iterator[Engine]:
    store, enc = text_model_store(tmp_path, name, space, **config)
    engine = Engine.open(ServingSettings(model_dir=tmp_path / "m", store=str(store.path), dev_mode=True),
                         store, enc)
    yield engine
    engine.close()
    store.close()


@pytest.fixture
def fused_engine(tmp_path: Path) -> Iterator[Engine]:
    yield from _engine(tmp_path, "seqrec", TextSpace(HashingEncoder.name),
                       **model_class("seqrec").fast_config)


def test_fused_seqrec_similar_by_behaviour_uses_its_learned_item_table(fused_engine: Engine) -> None:
    b = fused_engine.bundle
    model = b.model
    assert model.config.item_repr == "fused"
    table = model.item_embeddings()  # type: ignore[attr-defined]
    assert b.behaviour_index is not None and b.factor_index is not None
    np.testing.assert_allclose(b.behaviour_index.vectors, normalise(table), rtol=1e-6, atol=1e-6)
    got = fused_engine.similar_items("heat", 4, "behaviour")
    heat = model.item_map.index("heat")
    sims = normalise(table) @ normalise(table)[heat]
    sims[[0, heat]] = -np.inf
    expected = np.argsort(-sims, kind="stable")[:4]
    assert [i.item_id for i in got.items] == model.item_map.raws(expected).tolist()
    np.testing.assert_allclose([i.score for i in got.items], sims[expected], rtol=1e-5)
    # not the text vectors' cosine, which is what the service used before
    text = normalise(model.item_vectors_)
    text_sims = text[model.item_map.indices([i.item_id for i in got.items])] @ text[heat]
    assert not np.allclose([i.score for i in got.items], text_sims, atol=1e-3)


def test_new_items_join_the_model_in_its_own_text_space(fused_engine: Engine) -> None:
    out = fused_engine.upsert_items([{"item_id": "heat2", "title": "Heat 2 (2026)", "description": "crime",
                                      "categories": ["Crime"], "attributes": None}])
    assert out.created == 1
    model = fused_engine.bundle.model
    # the model's template (lmrec's default, as its vectors were made), not the service's item text
    row = model.item_vectors_[model.item_map.index("heat2")]
    stored = fused_engine.store.items().filter(pl.col("item_id") == "heat2")
    expected = HashingEncoder().encode(render_texts(stored))[0]
    np.testing.assert_allclose(row, expected, rtol=1e-6)
    assert fused_engine.bundle.categories(model.item_map.index("heat2")) == ["Crime"]


@pytest.fixture
def foreign_engine(tmp_path: Path) -> Iterator[Engine]:
    """ContentLM whose vectors claim another encoder of the same width as the service's."""
    yield from _engine(tmp_path, "content-lm", TextSpace("someone-elses-encoder-64"))


def test_a_service_encoder_of_another_space_is_refused(foreign_engine: Engine) -> None:
    with pytest.raises(CapabilityError, match="someone-elses-encoder-64") as err:
        foreign_engine.upsert_items([{"item_id": "new", "title": "New", "description": None,
                                      "categories": [], "attributes": None}])
    assert HashingEncoder.name in str(err.value)
    assert "new" not in foreign_engine.bundle.model.item_map
    with pytest.raises(TextSpaceError, match=HashingEncoder.name):
        encode_for_model(foreign_engine.bundle.model, ITEMS.head(1), HashingEncoder())
