"""Item text templates: which fields go into an item's text, in what order, with which labels, and how long.

A field is a column of the items table (``title``, ``description``, ``categories``) or a key of its
``attributes`` JSON (``brand``, ``tags``, ``release_date``...). Missing or empty fields are skipped. The text
is cut to ``max_tokens`` tokens of the encoder's tokenizer (not characters), at a token boundary.

The template's canonical string (:meth:`ItemTemplate.canonical`) is part of the embedding cache key, so
changing a field, a label, the order or the length gives new vectors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

#: Columns of the items table a template may name directly; any other name is looked up in ``attributes``.
ITEM_COLUMNS = ("title", "description", "categories")


@dataclass(frozen=True)
class ItemTemplate:
    """Fields, in order, each with a label (``""`` for none).

    Parameters
    ----------
    fields:
        ``(field, label)`` pairs. Labelled fields read ``"Label: value"``.
    sep:
        Between fields.
    list_sep:
        Between the elements of a list field (categories, tags).
    max_tokens:
        Cut the text to this many tokenizer tokens; ``None`` leaves the cut to the encoder's own limit.

    Examples
    --------
    >>> ItemTemplate.parse("title, categories:Genres, brand:Brand").render_one(
    ...     {"title": "Heat (1995)", "categories": ["Action", "Crime"], "attributes": '{"brand": null}'})
    'Heat (1995). Genres: Action, Crime'
    """

    fields: tuple[tuple[str, str], ...] = (("title", ""), ("categories", "Genres"), ("brand", "Brand"),
                                           ("tags", "Tags"), ("description", "Description"))
    sep: str = ". "
    list_sep: str = ", "
    max_tokens: int | None = 128

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("an item template needs at least one field")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")

    # ------------------------------------------------------------------ text form
    @classmethod
    def parse(cls, spec: str | ItemTemplate | None, max_tokens: int | None = 128) -> ItemTemplate:
        """A template from ``"field[:Label], field[:Label], ..."`` (``None`` gives the default template).

        A canonical string (as written by :meth:`canonical`) parses back to the same template.
        """
        if isinstance(spec, ItemTemplate):
            return spec
        if spec is None:
            return cls(max_tokens=max_tokens)
        spec = spec.strip()
        if spec.startswith("{"):
            d = json.loads(spec)
            return cls(tuple((str(f), str(lab)) for f, lab in d["fields"]), d["sep"], d["list_sep"],
                       d["max_tokens"])
        fields = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, _, label = part.partition(":")
            if not name.strip():
                raise ValueError(f"template {spec!r}: empty field name in {part!r}")
            fields.append((name.strip(), label.strip()))
        return cls(tuple(fields), max_tokens=max_tokens)

    def canonical(self) -> str:
        """A stable string naming this template exactly (JSON with sorted keys)."""
        return json.dumps({"fields": [list(f) for f in self.fields], "sep": self.sep,
                           "list_sep": self.list_sep, "max_tokens": self.max_tokens},
                          sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def __str__(self) -> str:
        return ", ".join(f"{f}:{lab}" if lab else f for f, lab in self.fields)

    # ------------------------------------------------------------------ rendering
    def _value(self, row: dict[str, Any], attrs: dict[str, Any], field: str) -> str:
        value = row.get(field) if field in ITEM_COLUMNS or field in row else attrs.get(field)
        if value is None:
            return ""
        if isinstance(value, list | tuple):
            return self.list_sep.join(str(v).strip() for v in value if v is not None and str(v).strip())
        if isinstance(value, dict):
            return self.list_sep.join(f"{k} {v}" for k, v in value.items() if v is not None)
        return " ".join(str(value).split())  # one line, single spaces

    def render_one(self, row: dict[str, Any]) -> str:
        """The text of one item row (a dict with items-table columns), before token truncation."""
        raw = row.get("attributes")
        attrs: dict[str, Any] = {}
        if isinstance(raw, str) and raw.strip():
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError as exc:
                item = row.get("item_id")
                raise ValueError(f"item {item!r}: attributes is not valid JSON ({exc})") from None
            if isinstance(parsed, dict):
                attrs = parsed
        elif isinstance(raw, dict):
            attrs = raw
        parts = []
        for field, label in self.fields:
            value = self._value(row, attrs, field)
            if value:
                parts.append(f"{label}: {value}" if label else value)
        return self.sep.join(parts)

    def render(self, items: pl.DataFrame, tokenizer: Any = None) -> list[str]:
        """The texts of an items table's rows, in row order, cut to :attr:`max_tokens` with ``tokenizer``."""
        cols = [c for c in items.columns if c in {*ITEM_COLUMNS, "attributes", "item_id"} or
                c in {f for f, _ in self.fields}]
        texts = [self.render_one(row) for row in items.select(cols).iter_rows(named=True)]
        if tokenizer is not None and self.max_tokens is not None:
            texts = truncate_tokens(texts, tokenizer, self.max_tokens)
        return texts


def truncate_tokens(texts: Sequence[str], tokenizer: Any, max_tokens: int) -> list[str]:
    """Cut each text after its first ``max_tokens`` tokens (special tokens not counted), at a token boundary.

    Only texts that could be that long are tokenized: WordPiece, BPE and SentencePiece tokenizers make at most
    one token per UTF-8 byte (plus a word-start marker), so a text of fewer than ``max_tokens // 2`` bytes is
    kept as is without calling the tokenizer. This keeps a cached re-run cheap.
    """
    out = list(texts)
    long_rows = [i for i, t in enumerate(out) if len(t.encode("utf-8")) >= max_tokens // 2]
    if not long_rows:
        return out
    batch = [out[i] for i in long_rows]
    enc = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                    verbose=False)
    for i, offsets in zip(long_rows, enc["offset_mapping"], strict=True):
        if len(offsets) > max_tokens:
            out[i] = out[i][: offsets[max_tokens - 1][1]].rstrip()
    return out
