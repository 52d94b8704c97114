"""The text space of a model: which encoder, revision and item template made its item vectors.

A model that reads item text vectors records its :class:`TextSpace` (saved in ``model.json``); new items can
only join it as vectors made the same way. :class:`~lmrec.store.embeddings.EmbeddingSpace` is the embedding
cache's key (it adds the encoder's settings and the storage dtype, and has no dimension); a text space is
what a model needs to know about its vectors, with fields left empty where they are unknown (vectors passed
in by hand, folders saved before the record existed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


class TextSpaceError(ValueError):
    """Vectors or an encoder that do not belong to a model's text space."""


@dataclass(frozen=True)
class TextSpace:
    """Encoder name and revision, the item template's canonical string, and the vector size.

    Unknown fields are ``""`` (or ``0`` for the size)."""

    encoder: str = ""
    revision: str = ""
    template: str = ""
    dim: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, dim: int = 0) -> TextSpace:
        """From :meth:`to_dict`, or from the older free ``vectors`` dict (unknown keys ignored); ``dim``
        fills a missing dimension."""
        d = d or {}
        return cls(encoder=str(d.get("encoder") or ""), revision=str(d.get("revision") or ""),
                   template=str(d.get("template") or ""), dim=int(d.get("dim") or dim))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """The space in words, for error messages."""
        if not self.encoder:
            return f"unnamed encoder ({self.dim or '?'}-d vectors given at fit time)"
        rev = f" revision {self.revision}" if self.revision else ""
        return f"encoder {self.encoder!r}{rev} ({self.dim or '?'}-d)"

    def mismatch(self, encoder: Any) -> str | None:
        """Why ``encoder`` (anything with ``name``, optionally ``revision`` and ``dim``) does not make vectors
        of this space, or ``None`` when it does. Unknown fields on either side are not held against it."""
        name = str(getattr(encoder, "name", "") or "")
        if not self.encoder:
            return (f"the model's vectors come from an {self.describe()}, so encoder {name!r} cannot be "
                    "checked against them")
        if name != self.encoder:
            return f"the model's vectors come from {self.describe()}, not from encoder {name!r}"
        revision = str(getattr(encoder, "revision", "") or "")
        if self.revision and revision and revision != self.revision:
            return (f"the model's vectors come from {self.describe()}, but encoder {name!r} is at revision "
                    f"{revision}")
        dim = int(getattr(encoder, "dim", 0) or 0)
        if self.dim and dim and dim != self.dim:
            return (f"the model's vectors come from {self.describe()}, but encoder {name!r} makes "
                    f"{dim}-d vectors")
        return None

    def check(self, encoder: Any) -> None:
        """Raise :class:`TextSpaceError` when ``encoder`` does not make vectors of this space."""
        why = self.mismatch(encoder)
        if why is not None:
            raise TextSpaceError(why)
