"""SeqRec's side features: item features (category, brand, price bucket…), user features (age, gender…) and
the context of each event (hour of day, day of week), named in the config and fitted on the training data.

A feature name refers to a column of the items or users table or, failing that, to a key of its
``attributes`` JSON object; ``category`` (or ``categories``) is the items table's ``categories`` list. A value
may be a list (several categories): its embeddings are averaged. What a feature's values become:

* **categorical**: a vocabulary of the values found on at least ``min_count`` training items (users), in
  order of frequency; id ``2 + position``. Rarer or unseen values get :data:`UNK` (1), whose embedding is
  trained by the rare values, so a new item with an unseen brand still gets a trained vector;
* **numeric** (every value a number and more distinct values than buckets, or ``name:N`` asked for):
  quantile buckets fitted on the training items (users), id ``2 + bucket``.

Id 0 (:data:`~lmrec.data.schema.PAD`) means "no value" and contributes nothing. Everything that defines the
ids — names, kinds, vocabularies, bucket edges — is a :class:`FeatureSet`, saved as ``features.json`` in the
model folder and checked when it is read (:meth:`FeatureSet.read`), so a saved model encodes new items and
users exactly as it encoded the training ones.

The ids of all features of one side share one embedding table: feature ``f``'s local id ``i > 0`` is global
id ``base_f + i - 1`` (global 0 stays padding). :meth:`FeatureSet.encode` returns, per item (user), the
global ids of its values ``(rows, width)`` and pooling weights (``1 / number of values`` of each feature).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.schema import PAD

#: Id of a value not in a categorical feature's vocabulary (rare in training, or never seen).
UNK = 1
#: Names that mean the items table's ``categories`` list.
CATEGORY_NAMES = ("category", "categories")
#: Context features of an event and their number of values (ids ``1..n``; 0 = padding).
CONTEXT_FEATURES: dict[str, int] = {"hour": 24, "weekday": 7}
FEATURES_FILE = "features.json"
FORMAT_VERSION = 1
KINDS = ("categorical", "numeric")


class FeatureError(ValueError):
    """A side feature that cannot be used: absent from the data, or its saved definition missing/corrupt."""


def parse_names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"category,brand"`` or ``["category", "brand"]`` → ``("category", "brand")`` (stripped, distinct)."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in str(v).split(",")]
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


def split_spec(spec: str) -> tuple[str, int | None]:
    """``"price:8"`` → ``("price", 8)`` (8 quantile buckets asked for); ``"brand"`` → ``("brand", None)``."""
    name, _, n = spec.partition(":")
    if not n:
        return name.strip(), None
    try:
        buckets = int(n)
    except ValueError:
        raise FeatureError(f"feature {spec!r}: after ':' comes a number of buckets, e.g. price:8") from None
    if buckets < 2:
        raise FeatureError(f"feature {spec!r}: a numeric feature needs at least 2 buckets")
    return name.strip(), buckets


@dataclass(frozen=True)
class Feature:
    """One fitted feature of items or users.

    ``vocabulary``: a categorical feature's values (id ``2 + position``); ``edges``: a numeric feature's
    bucket edges (a value ``v`` gets id ``2 + searchsorted(edges, v, "right")``); ``width``: the most values
    one row holds (lists are truncated to it).
    """

    name: str
    kind: str
    vocabulary: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()
    width: int = 1

    @property
    def size(self) -> int:
        """Local ids, padding and :data:`UNK` included."""
        return 2 + (len(self.vocabulary) if self.kind == "categorical" else len(self.edges) + 1)

    def local_ids(self, value: Any) -> list[int]:
        """The ids of one row's value (a scalar, a list, or ``None``): ``[]`` when it has none."""
        values = value if isinstance(value, list | tuple) else ([] if value is None else [value])
        out: list[int] = []
        for v in values[: self.width]:
            if v is None or (isinstance(v, str) and not v.strip()):
                continue
            if self.kind == "numeric":
                x = _number(v)
                out.append(UNK if x is None else 2 + int(np.searchsorted(self.edges, x, side="right")))
            else:
                out.append(self._index.get(_text(v), UNK))
        return out

    @property
    def _index(self) -> dict[str, int]:
        cached = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {v: 2 + i for i, v in enumerate(self.vocabulary)}
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "width": self.width}
        if self.kind == "categorical":
            out["vocabulary"] = list(self.vocabulary)
        else:
            out["edges"] = list(self.edges)
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Feature:
        """Rebuild a saved feature, refusing anything malformed with a :class:`FeatureError` naming it."""
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise FeatureError(f"{where}: a feature entry is not an object with a name: {str(d)[:80]!r}")
        name = d["name"]
        kind = d.get("kind")
        if kind not in KINDS:
            raise FeatureError(f"{where}: feature {name!r} has kind {kind!r}, not one of {KINDS}")
        width = d.get("width")
        if not isinstance(width, int) or width < 1:
            raise FeatureError(f"{where}: feature {name!r} has no valid width")
        if kind == "categorical":
            vocab = d.get("vocabulary")
            if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab):
                raise FeatureError(f"{where}: the vocabulary of feature {name!r} is missing or not a list of "
                                   "strings")
            if len(set(vocab)) != len(vocab):
                raise FeatureError(f"{where}: the vocabulary of feature {name!r} repeats values")
            return cls(name, kind, vocabulary=tuple(vocab), width=width)
        edges = d.get("edges")
        if (not isinstance(edges, list) or not all(isinstance(e, int | float) for e in edges)
                or any(not math.isfinite(e) for e in edges) or list(edges) != sorted(edges)):
            raise FeatureError(f"{where}: the bucket edges of feature {name!r} are missing or not sorted "
                               "finite numbers")
        return cls(name, kind, edges=tuple(float(e) for e in edges), width=width)


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            x = float(v.strip().lstrip("$").replace(",", ""))
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def _text(v: Any) -> str:
    return str(v).strip()


# ---------------------------------------------------------------------- reading values from the tables
def _attributes(table: pl.DataFrame) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    col = table["attributes"].to_list() if "attributes" in table.columns else [None] * table.height
    for text in col:
        try:
            obj = json.loads(text) if text else {}
        except json.JSONDecodeError:
            obj = {}
        out.append(obj if isinstance(obj, dict) else {})
    return out


def table_values(table: pl.DataFrame, name: str, side: str) -> list[Any]:
    """The value of feature ``name`` on every row of an items (``side="item"``) or users table: the
    ``categories`` list for a category name (items), a column of that name, else the ``attributes`` key.
    :class:`FeatureError` when no row has the feature at all."""
    key = "item_id" if side == "item" else "user_id"
    if side == "item" and name in CATEGORY_NAMES:
        values = table["categories"].to_list() if "categories" in table.columns else [None] * table.height
    elif name in table.columns and name not in (key, "attributes", f"{side}_idx"):
        values = table[name].to_list()
    else:
        values = [a.get(name) for a in _attributes(table)]
    if table.height and all(v is None or v == [] or v == "" for v in values):
        hint = "; category means the categories list" if side == "item" else ""
        raise FeatureError(
            f"{side} feature {name!r}: no {side} in the data has it (not a column of the {side}s table, nor "
            f"a key of any {side}'s attributes{hint}); {side}s have {_known_names(table, side)}")
    return values


def _known_names(table: pl.DataFrame, side: str) -> str:
    names: dict[str, None] = {}
    if side == "item" and "categories" in table.columns and table["categories"].drop_nulls().len():
        names["category"] = None
    for a in _attributes(table.head(2000)):
        names.update(dict.fromkeys(a))
    return ", ".join(names) if names else "no features"


# ---------------------------------------------------------------------- fitting
def fit_feature(spec: str, values: list[Any], fit_rows: np.ndarray, n_buckets: int,
                min_count: int) -> Feature:
    """Fit one feature on the values of the rows ``fit_rows`` (items or users with training events)."""
    name, asked = split_spec(spec)
    rows = [values[i] for i in fit_rows.tolist()]
    flat = [v for r in rows for v in (r if isinstance(r, list | tuple) else [r])
            if v is not None and not (isinstance(v, str) and not v.strip())]
    width = max([len(r) for r in rows if isinstance(r, list | tuple)] + [1])
    numbers = [_number(v) for v in flat]
    numeric_ok = (bool(flat) and all(x is not None for x in numbers)
                  and not any(isinstance(v, str) for v in flat))
    buckets = asked or n_buckets
    if asked and not all(x is not None for x in numbers):
        raise FeatureError(f"feature {spec!r}: buckets asked for, but some values are not numbers")
    if asked or (numeric_ok and len(set(numbers)) > buckets):
        x = np.asarray([n for n in numbers if n is not None], dtype=np.float64)
        edges = np.unique(np.quantile(x, np.linspace(0, 1, buckets + 1)[1:-1])) if len(x) else np.zeros(0)
        return Feature(name, "numeric", edges=tuple(float(e) for e in edges), width=width)
    counts = Counter(_text(v) for v in flat)
    vocab = [v for v, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
    return Feature(name, "categorical", vocabulary=tuple(vocab), width=width)


@dataclass(frozen=True)
class FeatureSet:
    """The fitted features of a SeqRec model: item and user features and the context features' names."""

    item: tuple[Feature, ...] = ()
    user: tuple[Feature, ...] = ()
    context: tuple[str, ...] = ()
    _bases: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for c in self.context:
            if c not in CONTEXT_FEATURES:
                raise FeatureError(f"context feature {c!r} is not one of {sorted(CONTEXT_FEATURES)}")

    def features(self, side: str) -> tuple[Feature, ...]:
        return self.item if side == "item" else self.user

    def bases(self, side: str) -> tuple[int, ...]:
        """The global id of each feature's local id 1 (:data:`UNK`)."""
        if side not in self._bases:
            out, base = [], 1
            for f in self.features(side):
                out.append(base)
                base += f.size - 1
            self._bases[side] = tuple(out)
        return self._bases[side]

    def table_size(self, side: str) -> int:
        """Rows of the side's shared embedding table (0 when it has no features)."""
        fs = self.features(side)
        return 0 if not fs else 1 + sum(f.size - 1 for f in fs)

    def width(self, side: str) -> int:
        return sum(f.width for f in self.features(side))

    def slices(self, side: str) -> dict[str, slice]:
        """Each feature's columns in :meth:`encode`'s arrays."""
        out, start = {}, 0
        for f in self.features(side):
            out[f.name] = slice(start, start + f.width)
            start += f.width
        return out

    def encode_values(self, side: str, values: Mapping[str, list[Any]], n_rows: int) -> tuple[np.ndarray,
                                                                                               np.ndarray]:
        """Global ids ``(n_rows, width)`` int64 and pooling weights ``(n_rows, width)`` float32 from each
        feature's values per row (``values[name]``, ``None`` for a feature a row has no value of)."""
        fs = self.features(side)
        ids = np.zeros((n_rows, self.width(side)), dtype=np.int64)
        w = np.zeros((n_rows, self.width(side)), dtype=np.float32)
        for f, base, sl in zip(fs, self.bases(side), self.slices(side).values(), strict=True):
            col = values.get(f.name)
            if col is None:
                continue
            for r, v in enumerate(col):
                local = f.local_ids(v)
                if not local:
                    continue
                g = [base + i - 1 for i in local]
                ids[r, sl.start: sl.start + len(g)] = g
                w[r, sl.start: sl.start + len(g)] = 1.0 / len(g)
        return ids, w

    def encode(self, side: str, table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode_values` of an items or users table, one row per table row; a feature the table
        lacks entirely is a :class:`FeatureError` naming it."""
        values = {f.name: table_values(table, f.name, side) for f in self.features(side)}
        return self.encode_values(side, values, table.height)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "item": [f.to_dict() for f in self.item],
                "user": [f.to_dict() for f in self.user], "context": list(self.context)}

    def write(self, folder: Path) -> Path:
        path = Path(folder) / FEATURES_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def read(cls, folder: Path, item: Sequence[str] = (), user: Sequence[str] = (),
             context: Sequence[str] = ()) -> FeatureSet:
        """Read ``features.json`` and check it defines exactly the configured features (``item``, ``user``,
        ``context``: the names in the model's config); a missing or corrupt file is a :class:`FeatureError`
        naming what is wrong."""
        path = Path(folder) / FEATURES_FILE
        if not path.is_file():
            raise FeatureError(f"{path} is missing: the model's side features "
                               f"({', '.join([*item, *user, *context])}) cannot be encoded without it")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FeatureError(f"{path} is not valid JSON ({exc}): the side features cannot be "
                               "read") from None
        if not isinstance(d, dict):
            raise FeatureError(f"{path} must hold a JSON object")
        sides: dict[str, tuple[Feature, ...]] = {}
        for side, wanted in (("item", item), ("user", user)):
            entries = d.get(side, [])
            if not isinstance(entries, list):
                raise FeatureError(f"{path}: {side!r} must be a list of features")
            feats = tuple(Feature.from_dict(e, str(path)) for e in entries)
            names = [split_spec(s)[0] for s in wanted]
            have = [f.name for f in feats]
            for n in names:
                if n not in have:
                    raise FeatureError(f"{path}: {side} feature {n!r} of the model's config is not defined "
                                       "(vocabulary / bucket edges missing)")
            if have != names:
                raise FeatureError(f"{path}: {side} features {have} do not match the config's {names}")
            sides[side] = feats
        ctx = d.get("context", [])
        if not isinstance(ctx, list) or list(ctx) != list(context):
            raise FeatureError(f"{path}: context features {ctx} do not match the config's {list(context)}")
        return cls(sides["item"], sides["user"], tuple(ctx))


def fit_features(items: pl.DataFrame, users: pl.DataFrame, item_rows: np.ndarray, user_rows: np.ndarray, *,
                 item: Sequence[str], user: Sequence[str], context: Sequence[str], n_buckets: int,
                 min_count: int) -> FeatureSet:
    """Fit the configured features: vocabularies and bucket edges from the items ``item_rows`` and users
    ``user_rows`` (table row numbers of those with training events)."""
    it = tuple(fit_feature(s, table_values(items, split_spec(s)[0], "item"), item_rows, n_buckets, min_count)
               for s in item)
    us = tuple(fit_feature(s, table_values(users, split_spec(s)[0], "user"), user_rows, n_buckets, min_count)
               for s in user)
    return FeatureSet(it, us, tuple(context))


def context_ids(timestamps: np.ndarray, name: str, valid: np.ndarray) -> np.ndarray:
    """Ids of context feature ``name`` for ``(B, T)`` Unix-second timestamps (UTC): hour ``1 + h`` (1..24),
    weekday ``1 + d`` (Monday = 1); 0 where ``valid`` is False."""
    ts = np.asarray(timestamps, dtype=np.int64)
    if name == "hour":
        ids = 1 + (ts // 3600) % 24
    elif name == "weekday":
        ids = 1 + (ts // 86400 + 3) % 7  # 1970-01-01 was a Thursday (weekday 3 counting Monday as 0)
    else:
        raise FeatureError(f"context feature {name!r} is not one of {sorted(CONTEXT_FEATURES)}")
    return np.where(valid, ids, PAD).astype(np.int64)


__all__ = ["CATEGORY_NAMES", "CONTEXT_FEATURES", "FEATURES_FILE", "UNK", "Feature", "FeatureError",
           "FeatureSet", "context_ids", "fit_feature", "fit_features", "parse_names", "split_spec",
           "table_values"]
