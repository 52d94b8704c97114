"""The ranker's features for (history, candidate) pairs, in three groups (the ablation of the benchmark):

* ``behaviour`` — each retriever's raw score, its z-score within the row and its rank of the candidate
  (``N + 1`` outside its list), how many retrievers listed the candidate, the item's popularity and the
  history's length. (ContentLM's columns belong to ``lm``.)
* ``lm`` — the cosine between the user's language-model vector (the recency-weighted mean of the history's
  item text vectors, the profile ContentLM ranks with) and the item's text vector; ContentLM's columns.
* ``side`` — item: trending count, age and days since its last event (at the end of the fitting data), price
  (``price`` of the items' attributes JSON) and the gap between its log price and the history's mean; match:
  the recency-weighted share of the history in the item's categories and the events since the user last
  touched the item's (first) category; user: the event-type mix and event count of a known user in the
  fitting data (missing for anonymous histories); the outputs of a retriever's multi-task heads for a known
  user (the probability of each next action type, the predicted value), from the fitting data.

Everything is computed from the fitting data and the history given: never from events after the fit.
Missing values are NaN (LightGBM routes them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD
from lmrec.models.pipeline.retrievers import CategoryIndex, recency_weights

FEATURE_GROUPS: tuple[str, ...] = ("behaviour", "lm", "side")
DAY = 86_400.0
#: Retrievers whose columns are language-model features.
LM_RETRIEVERS = ("content-lm",)


def parse_groups(spec: str) -> tuple[str, ...]:
    groups = tuple(g.strip() for g in spec.split(",") if g.strip())
    bad = sorted(set(groups) - set(FEATURE_GROUPS))
    if bad or not groups or "behaviour" not in groups:
        raise ValueError(f"features: a comma-separated subset of {', '.join(FEATURE_GROUPS)} that includes "
                         f"behaviour, got {spec!r}")
    return groups


def _price(attributes: str | None) -> float:
    if not attributes:
        return np.nan
    try:
        value = json.loads(attributes).get("price")
    except (ValueError, AttributeError):
        return np.nan
    if isinstance(value, str):
        value = value.replace("$", "").replace(",", "").strip()
    try:
        p = float(value)
    except (TypeError, ValueError):
        return np.nan
    return p if np.isfinite(p) and p >= 0 else np.nan


@dataclass
class SideData:
    """What the features read besides the retrievers, all from the fitting data (saved with the model)."""

    item_first: np.ndarray  # (n_items + 1,) first event time (NaN: none)
    item_last: np.ndarray  # (n_items + 1,) last event time
    trending: np.ndarray  # (n_items + 1,) events in the most recent tenth
    price: np.ndarray  # (n_items + 1,) NaN when unknown
    user_mix: np.ndarray  # (n_users + 1, n_types) share of each event type
    user_events: np.ndarray  # (n_users + 1,)
    popularity: np.ndarray  # (n_items + 1,) events per item
    ref_time: float
    event_types: tuple[str, ...] = field(default_factory=tuple)
    #: (n_users + 1, heads) a multi-task retriever's outputs per known user (NaN: unknown), and their names
    heads: np.ndarray | None = None
    head_names: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dataset(cls, ds: Dataset, trending: np.ndarray) -> SideData:
        n = ds.item_map.size
        ev = ds.events
        items = ev["item_idx"].to_numpy().astype(np.int64)
        ts = ev["timestamp"].to_numpy().astype(np.float64)
        first = np.full(n, np.inf)
        last = np.full(n, -np.inf)
        np.minimum.at(first, items, ts)
        np.maximum.at(last, items, ts)
        first[~np.isfinite(first)] = np.nan
        last[~np.isfinite(last)] = np.nan
        price = np.array([np.nan] + [_price(a) for a in ds.items["attributes"].to_list()], dtype=np.float64)
        users = ev["user_idx"].to_numpy().astype(np.int64)
        n_types = max(1, len(ds.event_types))
        mix = np.zeros((ds.user_map.size, n_types), dtype=np.float32)
        np.add.at(mix, (users, ev["type_idx"].to_numpy().astype(np.int64)), 1.0)
        count = mix.sum(axis=1)
        mix = mix / np.maximum(count, 1.0)[:, None]
        mix[count == 0] = np.nan
        return cls(first, last, trending.astype(np.float32), price, mix, count.astype(np.float32),
                   ds.item_popularity.astype(np.float32), float(ts.max()) if len(ts) else 0.0,
                   tuple(ds.event_types) or ("event",))

    def grow(self, n_items: int) -> None:
        """Items added after fitting: no events, unknown price."""
        extra = n_items - len(self.item_first)
        if extra > 0:
            nan = np.full(extra, np.nan)
            self.item_first = np.concatenate([self.item_first, nan])
            self.item_last = np.concatenate([self.item_last, nan])
            self.price = np.concatenate([self.price, nan])
            zeros = np.zeros(extra, dtype=np.float32)
            self.trending = np.concatenate([self.trending, zeros])
            self.popularity = np.concatenate([self.popularity, zeros])

    def state(self) -> dict[str, np.ndarray]:
        extra = {} if self.heads is None else {"side.heads": self.heads}
        return {**extra, "side.item_first": self.item_first, "side.item_last": self.item_last,
                "side.trending": self.trending, "side.price": self.price, "side.user_mix": self.user_mix,
                "side.user_events": self.user_events, "side.popularity": self.popularity,
                "side.ref_time": np.array([self.ref_time])}

    @classmethod
    def from_state(cls, a: dict[str, np.ndarray], event_types: tuple[str, ...],
                   head_names: tuple[str, ...] = ()) -> SideData:
        return cls(a["side.item_first"], a["side.item_last"], a["side.trending"], a["side.price"],
                   a["side.user_mix"], a["side.user_events"], a["side.popularity"],
                   float(a["side.ref_time"][0]), event_types, a.get("side.heads"), tuple(head_names))

    def add_heads(self, model: object, n_users: int) -> None:
        """The next-action-type probabilities and value a multi-task model predicts for every known user
        (after their events in the model's fitting data)."""
        from_heads: list[np.ndarray] = []
        names: list[str] = []
        heads = getattr(model, "heads", ())
        users = np.arange(1, n_users, dtype=np.int64)
        if "next_type" in heads:
            p = np.asarray(model.predict_next_type(users), dtype=np.float32)  # type: ignore[attr-defined]
            from_heads.append(p)
            names += [f"head:next_{t}" for t in model.event_types]  # type: ignore[attr-defined]
        if "value" in heads:
            v = np.asarray(model.predict_value(users), dtype=np.float32)  # type: ignore[attr-defined]
            from_heads.append(np.log1p(np.maximum(v, 0.0))[:, None])
            names.append("head:value")
        if names:
            cols = np.concatenate(from_heads, axis=1)
            self.heads = np.vstack([np.full((1, cols.shape[1]), np.nan, dtype=np.float32), cols])
            self.head_names = tuple(names)


def feature_names(retrievers: list[str], side: SideData) -> list[tuple[str, str]]:
    """``(name, group)`` of every column, in order."""
    out: list[tuple[str, str]] = []
    for r in retrievers:
        g = "lm" if r in LM_RETRIEVERS else "behaviour"
        out += [(f"{r}:score", g), (f"{r}:z", g), (f"{r}:rank", g)]
    out += [("listed_by", "behaviour"), ("item_popularity", "behaviour"), ("history_length", "behaviour"),
            ("lm_cosine", "lm"),
            ("item_trending", "side"), ("item_age_days", "side"), ("item_idle_days", "side"),
            ("price", "side"), ("price_gap", "side"), ("category_share", "side"),
            ("category_steps_since", "side"), ("user_events", "side")]
    out += [(f"user_mix:{t}", "side") for t in side.event_types]
    out += [(n, "behaviour") for n in side.head_names]
    return out


def user_text_vectors(histories: Ragged, item_vectors: np.ndarray) -> np.ndarray:
    """The user's language-model vector: the recency-weighted mean of the history's item text vectors,
    unit length (zeros for an empty history)."""
    last, w = recency_weights(histories)
    safe = np.where(last < len(item_vectors), last, PAD)
    u = np.einsum("rw,rwd->rd", w, item_vectors[safe])
    norm = np.linalg.norm(u, axis=1, keepdims=True)
    return (u / np.maximum(norm, 1e-9)).astype(np.float32)


def build(
    retrievers: list[str], raw: dict[str, np.ndarray], zs: dict[str, np.ndarray], ranks: np.ndarray,
    n_list: int, cand: np.ndarray, histories: Ragged, users: np.ndarray, popularity: np.ndarray,
    side: SideData, cats: CategoryIndex, item_vectors: np.ndarray | None, prof: np.ndarray | None = None,
) -> np.ndarray:
    """``float32 (rows, width, features)`` for the candidates ``cand`` (see :func:`feature_names`); ``prof``:
    the histories' category profile (:meth:`CategoryIndex.profile`), when computed already."""
    rows, width = cand.shape
    cols: list[np.ndarray] = []
    for r_i, r in enumerate(retrievers):
        s = np.take_along_axis(raw[r], cand, axis=1).astype(np.float32)
        s[~np.isfinite(s) | (s < -1e8)] = np.nan
        cols += [s, np.take_along_axis(zs[r], cand, axis=1), ranks[r_i]]
    cols.append((ranks <= n_list).sum(axis=0).astype(np.float32))
    pop = np.zeros(len(cats.first), dtype=np.float32)
    pop[: len(popularity)] = np.log1p(np.asarray(popularity[: len(pop)], dtype=np.float32))
    cols.append(pop[cand])
    cols.append(np.broadcast_to(np.log1p(histories.lengths.astype(np.float32))[:, None], cand.shape))
    if item_vectors is not None:
        iv = item_vectors
        norm = np.linalg.norm(iv, axis=1)
        u = user_text_vectors(histories, iv)
        cos = np.einsum("rd,rwd->rw", u, iv[cand]) / np.maximum(norm[cand], 1e-9)
        cos[(norm[cand] == 0) | (histories.lengths == 0)[:, None]] = np.nan
        cols.append(cos.astype(np.float32))
    else:
        cols.append(np.full(cand.shape, np.nan, dtype=np.float32))
    cols.append(np.log1p(side.trending[cand]))
    cols.append(((side.ref_time - side.item_first[cand]) / DAY).astype(np.float32))
    cols.append(((side.ref_time - side.item_last[cand]) / DAY).astype(np.float32))
    price = side.price[cand]
    cols.append(price.astype(np.float32))
    logp = np.log1p(side.price)
    last, w = recency_weights(histories)
    hp = logp[np.where(last < len(logp), last, PAD)]
    known = np.isfinite(hp) & (w > 0)
    mean_hp = np.where(known, hp, 0.0).sum(axis=1) / np.maximum(known.sum(axis=1), 1)
    mean_hp[known.sum(axis=1) == 0] = np.nan
    cols.append((np.log1p(price) - mean_hp[:, None]).astype(np.float32))
    prof = cats.profile(histories) if prof is None else prof
    cols.append(cats.share(cand, prof))
    steps = cats.steps_since(histories)
    fc = cats.first[cand]
    got = np.where(fc >= 0, steps[np.arange(rows)[:, None], np.maximum(fc, 0)], np.inf)
    cols.append(np.where(np.isfinite(got), got, np.nan).astype(np.float32))
    users = np.asarray(users, dtype=np.int64)
    known_u = (users > 0) & (users < len(side.user_events))
    safe_u = np.where(known_u, users, 0)
    ue = np.where(known_u, side.user_events[safe_u], np.nan).astype(np.float32)
    cols.append(np.broadcast_to(ue[:, None], cand.shape))
    mix = side.user_mix[safe_u].astype(np.float32)
    mix[~known_u] = np.nan
    for t in range(mix.shape[1]):
        cols.append(np.broadcast_to(mix[:, t : t + 1], cand.shape))
    if side.heads is not None:
        known_h = (users > 0) & (users < len(side.heads))
        heads = side.heads[np.where(known_h, users, 0)]
        heads[~known_h] = np.nan
        for h in range(heads.shape[1]):
            cols.append(np.broadcast_to(heads[:, h : h + 1], cand.shape))
    return np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=2)
