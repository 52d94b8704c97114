"""MostPopular: the baseline every other model must beat."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.models.base import NEG_INF, Recommender, register, scores_for_items
from lmrec.models.capabilities import ColdStartItems


@register("most-popular")
class MostPopular(Recommender, ColdStartItems):
    """Items ranked by how many training events they have, optionally decayed by age.

    ``half_life_days`` > 0 weighs an event by ``0.5 ** (age / half_life)``, age measured from the last
    training event, so that what is popular *now* ranks first (on ML-100K leave-one-out validation a 7-day
    half-life lifts NDCG@10 from 0.034 to 0.038; the default stays the plain count, the classic baseline).
    """

    @dataclass(frozen=True)
    class Config:
        half_life_days: float = 0.0

    def _fit(self, dataset: Dataset, valid: object = None) -> None:
        items = dataset.events["item_idx"].to_numpy()
        if self.config.half_life_days > 0 and dataset.n_events:
            ts = dataset.events["timestamp"].to_numpy().astype(np.float64)
            age_days = (ts.max() - ts) / 86400.0
            w = np.power(0.5, age_days / self.config.half_life_days)
        else:
            w = np.ones(len(items))
        s = np.bincount(items, weights=w, minlength=dataset.item_map.size).astype(np.float32)
        self.scores_ = s

    def score(
        self, histories: Ragged, users: np.ndarray | None = None, items: np.ndarray | None = None
    ) -> np.ndarray:
        s = self.scores_.copy()
        s[PAD] = NEG_INF
        return scores_for_items(np.broadcast_to(s, (len(histories), len(s))).copy(), items)

    def popularity_scores(self, rows: int) -> np.ndarray:
        """The fallback for rows with nothing to go on is this model's own (possibly decayed) ranking."""
        return self.score(Ragged.from_lists([[]] * rows))

    def _on_items_added(self, indices: np.ndarray) -> None:
        # A new item has no events yet: it ranks after every item that has some.
        self.scores_ = np.concatenate([self.scores_, np.zeros(len(indices), dtype=np.float32)])

    def _state(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores_}

    def _load_state(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        self.scores_ = arrays["scores"]
