"""Predictions beyond ranking — rating, next action type, user value — from models that have those heads.

A model has them when it implements :class:`lmrec.models.capabilities.PredictionHeads` (as
:class:`lmrec.models.multitask.MultiTask` does): a ``heads`` tuple naming the trained heads (``rating``,
``next_type``, ``value``), an ``event_types`` tuple, and the methods

* ``predict_ratings(users, items, context=None) -> (n,)`` — rating of ``items[i]`` by ``users[i]``;
* ``predict_next_type(users, context=None) -> (n, n_types)`` — probabilities over ``event_types``;
* ``predict_value(users, context=None) -> (n,)`` — value over the model's horizon;

where ``context`` is a :class:`~lmrec.data.dataset.Dataset` whose events are the users' histories (``None``:
the training events). The service passes the user's events from the store, so ingested events count.
A head the model lacks is reported by name, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.models.base import NotFittedError, Recommender
from lmrec.models.capabilities import PredictionHeads

#: API name → the model's head name.
HEADS = {"rating": "rating", "next_action": "next_type", "value": "value"}


def available_heads(model: Recommender) -> list[str]:
    """The predictions this model offers, by their API names (``rating``, ``next_action``, ``value``)."""
    if not isinstance(model, PredictionHeads):
        return []
    try:
        trained = set(model.heads)
    except NotFittedError:
        return []
    return [api for api, head in HEADS.items() if head in trained]


@dataclass
class Predictions:
    ratings: dict[str, float] | None
    next_action: dict[str, float] | None
    value: float | None


def context_for(model: Recommender, events: pl.DataFrame) -> Dataset:
    """A dataset of one user's stored events in the model's vocabularies (items it does not know are left
    out, since it has no representation for them)."""
    assert model.item_map is not None and model.user_map is not None
    known = events.filter(pl.col("item_id").is_in(model.item_map.raw_ids))
    types = tuple(model.event_types) if isinstance(model, PredictionHeads) else ()
    return Dataset.build(known, item_map=model.item_map, user_map=model.user_map, event_types=types or None)


def predict(model: PredictionHeads, user: int, context: Dataset | None, items: np.ndarray,
            item_ids: list[str], want: list[str]) -> Predictions:
    """Run the requested heads (a subset of :func:`available_heads`) for one user index."""
    users = np.array([user], dtype=np.int64)
    ratings = next_action = value = None
    if "rating" in want:
        r = model.predict_ratings(np.repeat(users, len(items)), items, context=context)
        ratings = {i: float(x) for i, x in zip(item_ids, np.asarray(r).tolist(), strict=True)}
    if "next_action" in want:
        p = np.asarray(model.predict_next_type(users, context=context))[0]
        types = list(model.event_types or [f"type_{i}" for i in range(len(p))])
        next_action = {str(t): float(x) for t, x in zip(types, p.tolist(), strict=True)}
    if "value" in want:
        value = float(np.asarray(model.predict_value(users, context=context))[0])
    return Predictions(ratings, next_action, value)
