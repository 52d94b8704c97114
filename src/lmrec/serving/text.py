"""The service's view of item and profile text: an encoder from :mod:`lmrec.text`, or none.

Anything with ``encode(list[str]) -> float32 (n, d)`` and a ``name`` is an encoder. :mod:`lmrec.text` builds
the default one and caches item vectors in the store; with ``LMREC_TEXT_ENCODER=none`` (and no encoder given
to :func:`~lmrec.serving.create_app`) text features are off and the endpoints that need them answer 409.

Two text spaces meet here. The service's encoder makes the vectors of similar-by-text and profile search.
A model that reads item text vectors has its own :class:`~lmrec.text.space.TextSpace` (encoder, revision,
template); new items join the model only as vectors of that space (:func:`encode_for_model`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import polars as pl

from lmrec import text as lmtext
from lmrec.models.base import Recommender
from lmrec.serving.retrieval import normalise
from lmrec.text.space import TextSpaceError

log = logging.getLogger("lmrec.serving")


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


def load_encoder(name: str | None) -> Encoder | None:
    """The encoder named in the settings (``"default"`` for lmrec's), or ``None`` when text features are
    off."""
    if not name or name.lower() in ("none", "off"):
        return None
    return lmtext.get_encoder(None if name == "default" else name)  # type: ignore[no-any-return]


def item_text(title: str | None, description: str | None, categories: Sequence[str] | None) -> str:
    """The text an item is known by: title, categories, then description."""
    parts = [title or "", ", ".join(categories or []), description or ""]
    return ". ".join(p.strip() for p in parts if p and p.strip())


def encode_items(encoder: Encoder, items: pl.DataFrame, store: Any = None) -> np.ndarray:
    """Unit-length text vectors ``(len(items), d)`` for rows with ``item_id, title, description, categories``.

    lmrec's encoders go through :func:`lmrec.text.encode_items` (cached by encoder, revision and text hash in
    the store); any other object with ``encode`` encodes the rows' plain text.
    """
    if items.height == 0:
        return np.zeros((0, int(encode_query(encoder, "x").shape[0])), dtype=np.float32)
    if hasattr(encoder, "revision"):
        vecs = lmtext.encode_items(items, encoder=encoder, store=store)  # cached
    else:
        texts = [item_text(r.get("title"), r.get("description"), r.get("categories"))
                 for r in items.select(["title", "description", "categories"]).to_dicts()]
        vecs = encoder.encode(texts)
    return normalise(np.asarray(vecs, dtype=np.float32))


def encode_query(encoder: Encoder, text: str) -> np.ndarray:
    """One unit-length vector ``(d,)`` for a free text (a user's profile, a search phrase)."""
    try:
        vec = encoder.encode([text], side="query")  # type: ignore[call-arg]
    except TypeError:  # an encoder without query/document prompts
        vec = encoder.encode([text])
    return normalise(np.asarray(vec, dtype=np.float32))[0]


def encode_for_model(model: Recommender, items: pl.DataFrame, encoder: Encoder | None,
                     store: Any = None) -> np.ndarray | None:
    """Vectors ``(len(items), d)`` of store rows in the model's own text space, for ``model.add_items``;
    ``None`` for a model without text vectors.

    The rows are rendered with the model's item template (lmrec's default when the model does not record
    one) and encoded with the service's encoder when it is the model's encoder (same name, and same revision
    and size where known), else with the model's encoder loaded by name. Anything else is refused with a
    :class:`~lmrec.text.space.TextSpaceError` naming both encoders: vectors of another encoder would be mixed
    into the model's space silently whenever the widths match.
    """
    space = model.text_space_
    if model.item_vectors_ is None or space is None or items.height == 0:
        return None
    service = getattr(encoder, "name", None)
    if encoder is None or space.mismatch(encoder) is not None:
        if not space.encoder:
            raise TextSpaceError(f"cannot add items to the model: its item vectors come from "
                                 f"{space.describe()} and the service encodes with {service!r}")
        try:
            encoder = lmtext.get_encoder(space.encoder)
        except Exception as exc:  # not available offline, or any loading failure: say which encoders
            raise TextSpaceError(f"cannot add items to the model: its item vectors come from "
                                 f"{space.describe()}, which cannot be loaded here ({exc}); the service "
                                 f"encodes with {service!r}") from exc
        why = space.mismatch(encoder)
        if why is not None:
            raise TextSpaceError(f"cannot add items to the model: {why} (the service encodes with "
                                 f"{service!r})")
    assert encoder is not None
    template = space.template or None
    if hasattr(encoder, "revision"):
        vecs = lmtext.encode_items(items, encoder=encoder, template=template, store=store)
    else:
        vecs = encoder.encode(lmtext.ItemTemplate.parse(template).render(items))
    return np.asarray(vecs, dtype=np.float32)
