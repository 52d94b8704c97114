"""Predictions beyond ranking — rating, next action type, user value — from models that have those heads.

A model offers a head by having the method (all take index-space inputs, like ``score``):

* ``predict_rating(histories, users, items) -> (rows, len(items))`` predicted ratings;
* ``predict_next_action(histories, users) -> (rows, n_types)`` probabilities over ``model.event_types``;
* ``predict_value(histories, users) -> (rows,)`` a user value (e.g. expected spend).

Or one ``predict(histories, users, items=None) -> dict`` with any of the keys ``rating``, ``next_action``,
``value`` holding those arrays. A missing head is reported by name, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lmrec.data.ragged import Ragged
from lmrec.models.base import Recommender

HEADS = ("rating", "next_action", "value")


def available_heads(model: Recommender) -> list[str]:
    """The prediction heads this model offers."""
    found = [h for h in HEADS if callable(getattr(model, f"predict_{h}", None))]
    if not found and callable(getattr(model, "predict", None)):
        found = [h for h in HEADS if h in (getattr(model, "prediction_heads", None) or HEADS)]
    return found


@dataclass
class Predictions:
    ratings: dict[str, float] | None
    next_action: dict[str, float] | None
    value: float | None


def predict(model: Recommender, history: np.ndarray, user: int, items: np.ndarray, item_ids: list[str],
            want: list[str]) -> Predictions:
    """Run the requested heads for one user; ``want`` must be a subset of :func:`available_heads`."""
    hist = Ragged.from_lists([np.asarray(history, dtype=np.int64)])
    users = np.array([user], dtype=np.int64)
    combined: dict[str, Any] = {}
    if callable(getattr(model, "predict", None)) and not any(
            callable(getattr(model, f"predict_{h}", None)) for h in HEADS):
        combined = model.predict(hist, users, items=items if "rating" in want else None)  # type: ignore[attr-defined]

    def head(name: str, *args: Any) -> np.ndarray:
        fn = getattr(model, f"predict_{name}", None)
        return np.asarray(fn(hist, users, *args) if callable(fn) else combined[name])

    ratings = next_action = value = None
    if "rating" in want:
        r = head("rating", items).reshape(1, -1)[0]
        ratings = {i: float(x) for i, x in zip(item_ids, r.tolist(), strict=True)}
    if "next_action" in want:
        p = head("next_action").reshape(1, -1)[0]
        types = list(getattr(model, "event_types", None) or [f"type_{i}" for i in range(len(p))])
        next_action = {str(t): float(x) for t, x in zip(types, p.tolist(), strict=False)}
    if "value" in want:
        value = float(head("value").reshape(-1)[0])
    return Predictions(ratings, next_action, value)
