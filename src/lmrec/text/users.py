"""User text and user vectors: a profile sentence, the titles of recent items, and pooled history vectors.

These are plain functions on arrays and strings, used by models (a zero-shot text recommender, a sequence
model's user tower) and by the service (a user who just clicked something gets a new vector at once).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD

Pooling = Literal["mean", "recency"]

#: Profile fields spelled out for people (and language models): MovieLens codes become words.
_VALUE_WORDS: dict[str, dict[str, str]] = {"gender": {"M": "male", "F": "female"}}
DEFAULT_PROFILE_FIELDS = ("age", "gender", "occupation")


def profile_text(attributes: Mapping[str, Any] | str | None = None, profile: str | None = None, *,
                 fields: Sequence[str] | None = DEFAULT_PROFILE_FIELDS, sep: str = ", ") -> str:
    """A sentence describing a user, from their attributes and free-text profile.

    Parameters
    ----------
    attributes:
        A dict or JSON object string, e.g. MovieLens
        ``{"age": 24, "gender": "M", "occupation": "technician"}``.
    profile:
        Free text about the user, appended as is.
    fields:
        Which attribute keys to include, in order; ``None`` includes every key in the attributes' order.

    Returns
    -------
    str
        e.g. ``"age: 24, gender: male, occupation: technician"``; ``""`` when nothing is known.
    """
    if isinstance(attributes, str):
        try:
            attributes = json.loads(attributes) if attributes.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"user attributes are not valid JSON ({exc}): {attributes[:80]!r}") from None
    attrs = dict(attributes or {})
    keys = list(attrs) if fields is None else [k for k in fields if k in attrs]
    parts = []
    for key in keys:
        value = attrs[key]
        if value is None or str(value).strip() == "":
            continue
        word = _VALUE_WORDS.get(key, {}).get(str(value), str(value))
        parts.append(f"{key.replace('_', ' ')}: {word}")
    text = sep.join(parts)
    if profile and profile.strip():
        text = f"{text}. {profile.strip()}" if text else profile.strip()
    return text


def history_text(history: Sequence[int] | np.ndarray, titles: Sequence[str], *, last_n: int = 10,
                 sep: str = "; ", prefix: str = "") -> str:
    """The titles of a user's last ``last_n`` items, newest first.

    Parameters
    ----------
    history:
        Item indices, oldest first (a row of :attr:`~lmrec.data.dataset.Dataset.sequences`); ``PAD`` is
        skipped.
    titles:
        Item titles by index (``dataset.item_titles()``; entry 0 is padding).
    last_n:
        How many of the newest items to name.
    prefix:
        Put before the titles, e.g. ``"Recently watched: "``.
    """
    h = np.asarray(history, dtype=np.int64)
    h = h[h != PAD][::-1][:last_n]
    names = [titles[i] for i in h if titles[i]]
    return prefix + sep.join(names) if names else ""


def history_texts(histories: Ragged, titles: Sequence[str], *, last_n: int = 10, sep: str = "; ",
                  prefix: str = "") -> list[str]:
    """:func:`history_text` for every row of ``histories``."""
    return [history_text(h, titles, last_n=last_n, sep=sep, prefix=prefix) for h in histories]


def recency_weights(lengths: np.ndarray, half_life: float) -> np.ndarray:
    """Weights ``0.5 ** (age / half_life)`` for every position of rows of the given lengths, concatenated.

    ``age`` is 0 for a row's newest (last) item, 1 for the one before it, and so on.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    pos = np.arange(int(ends[-1]) if len(ends) else 0)
    age = np.repeat(ends, lengths) - 1 - pos
    return np.power(0.5, age / float(half_life))


def user_history_vectors(item_vecs: np.ndarray, histories: Ragged, how: Pooling = "mean", *,
                         half_life: float = 10.0, last_n: int | None = None,
                         normalize: bool = True) -> np.ndarray:
    """Pool each history's item vectors into one user vector.

    Parameters
    ----------
    item_vecs:
        ``(n_items + 1, d)`` item vectors by index (row 0, padding, is ignored).
    histories:
        Item indices per user, oldest first.
    how:
        ``"mean"``: the plain average. ``"recency"``: exponential decay, the newest item weighs 1, the item
        ``half_life`` positions back weighs 1/2.
    half_life:
        In items, for ``"recency"``.
    last_n:
        Use only each history's newest ``last_n`` items.
    normalize:
        Scale each user vector to unit length (cosine scores against normalised item vectors).

    Returns
    -------
    np.ndarray
        ``(len(histories), d)`` float32; rows of empty histories are zero.
    """
    import scipy.sparse as sp

    if how not in ("mean", "recency"):
        raise ValueError(f"unknown pooling {how!r}; use 'mean' or 'recency'")
    if how == "recency" and not half_life > 0:
        raise ValueError(f"half_life must be positive, got {half_life}")
    item_vecs = np.asarray(item_vecs, dtype=np.float32)
    if last_n is not None:
        lengths = np.minimum(histories.lengths, last_n)
        starts = histories.offsets[1:] - lengths
        keep = np.repeat(starts, lengths) + (np.arange(int(lengths.sum())) -
                                             np.repeat(np.cumsum(lengths) - lengths, lengths))
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        histories = Ragged(offsets, histories.values[keep])
    values = np.asarray(histories.values, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() >= len(item_vecs)):
        raise ValueError(f"histories name item indices outside 0..{len(item_vecs) - 1}")
    lengths = histories.lengths
    weights = recency_weights(lengths, half_life) if how == "recency" else np.ones(len(values))
    weights = weights.astype(np.float32)
    weights[values == PAD] = 0.0
    # A sparse (users x items) weight matrix times the item vectors: no (nnz, d) intermediate.
    w = sp.csr_matrix((weights, values, histories.offsets), shape=(len(histories), len(item_vecs)))
    totals = np.asarray(w.sum(axis=1)).ravel()
    out = np.asarray(w @ item_vecs, dtype=np.float32)
    nonzero = totals > 0
    out[nonzero] /= totals[nonzero, None]
    if normalize:
        norms = np.linalg.norm(out, axis=1)
        out[norms > 0] /= norms[norms > 0, None]
    return out


def user_vector(item_vecs: np.ndarray, history: Sequence[int] | np.ndarray, how: Pooling = "mean", *,
                half_life: float = 10.0, last_n: int | None = None, normalize: bool = True) -> np.ndarray:
    """One user's pooled vector from their item indices (oldest first): :func:`user_history_vectors` for a
    single history, e.g. in the service right after a new event. Returns ``(d,)`` float32."""
    rows = Ragged.from_lists([np.asarray(history, dtype=np.int64)])
    out = user_history_vectors(item_vecs, rows, how, half_life=half_life, last_n=last_n, normalize=normalize)
    return out[0]
