"""Amazon reviews as JSON lines (optionally gzip-compressed): reviews become rating events, metadata becomes
items.

Both published editions are read, recognised per record by their field names:

* **2014/2018** (McAuley et al.; Ni, Li & McAuley, EMNLP 2019) — reviews ``reviewerID, asin, overall,
  unixReviewTime, reviewTime``; metadata ``asin, title, category[], brand, description[], price ("$12.99"),
  feature[], main_cat``. The 2014 metadata dumps are Python literals rather than JSON; they are read too.
* **2023** (Hou et al., "Bridging Language and Items for Retrieval and Recommendation", 2024) — reviews
  ``user_id, parent_asin, asin, rating, timestamp`` (milliseconds), ``title, text``; metadata ``parent_asin,
  title, main_category, categories[], features[], description[], details{}, store, price``.

Files are read line by line, ``chunk_rows`` lines at a time, never whole. Reviews carry no event id; cleaning
derives one from (user, item, time, rating), so the duplicate reviews present in the dumps are counted and
dropped once. The review text is not an event field and is not kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lmrec.data.cleaning import DataError
from lmrec.data.loaders._io import (
    PARSE_ROWS,
    BadLines,
    base_suffix,
    first_line,
    iter_json_chunks,
    number_rows,
    parse_json_line,
    regroup,
)
from lmrec.data.loaders.base import Source
from lmrec.data.loaders.generic import _stem
from lmrec.data.loaders.registry import register_detector, register_format

_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
#: Metadata fields kept as item attributes (both editions), in the order they are written.
META_ATTRIBUTES = ("brand", "store", "price", "main_category", "main_cat", "features", "feature", "details",
                   "average_rating", "rating_number")
_EVENT_SCHEMA = {"user_id": pl.String, "item_id": pl.String, "timestamp": pl.String, "value": pl.String}


def _text(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _review_time(rec: dict[str, Any]) -> str | None:
    """The review's time as text for cleaning: epoch seconds (2018), epoch ms (2023) or ISO from
    ``reviewTime``."""
    for key in ("unixReviewTime", "timestamp", "sort_timestamp"):
        v = rec.get(key)
        if v is not None and v != "":
            return str(v)
    raw = rec.get("reviewTime")  # "09 1, 2016" (month day, year)
    if isinstance(raw, str):
        try:
            return datetime.strptime(raw.strip(), "%m %d, %Y").replace(tzinfo=UTC).isoformat()
        except ValueError:
            return raw
    return None


def _item_key(rec: dict[str, Any], item_key: str) -> str | None:
    if item_key == "parent_asin":
        return _text(rec.get("parent_asin")) or _text(rec.get("asin"))
    return _text(rec.get("asin")) or _text(rec.get("parent_asin"))


def reviews_frame(records: list[dict[str, Any]], item_key: str = "parent_asin") -> pl.DataFrame:
    """Review records of either edition as raw events (text columns, cleaned later)."""
    cols: dict[str, list[str | None]] = {k: [] for k in _EVENT_SCHEMA}
    for rec in records:
        cols["user_id"].append(_text(rec.get("reviewerID", rec.get("user_id"))))
        cols["item_id"].append(_item_key(rec, item_key))
        cols["timestamp"].append(_review_time(rec))
        rating = rec.get("overall", rec.get("rating"))
        cols["value"].append(None if rating is None else str(rating))
    return pl.DataFrame(cols, schema=_EVENT_SCHEMA)


_PRICE = re.compile(r"^\$?\s*([0-9][0-9,]*(?:\.[0-9]+)?)$")


def _price(v: Any) -> float | str | None:
    """A number from ``12.99`` or ``"$1,299.00"``; other text (``"$5 - $9"``) kept as written; ``None``
    dropped."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    s = str(v).strip()
    if not s or s.lower() in ("none", "null", "nan"):
        return None
    m = _PRICE.match(s)
    return float(m.group(1).replace(",", "")) if m else s


def _join_text(v: Any) -> str | None:
    """A description given as text or as a list of paragraphs."""
    if isinstance(v, list):
        parts = [str(p).strip() for p in v if p is not None and str(p).strip()]
        return "\n".join(parts) or None
    return _text(v)


def _categories(rec: dict[str, Any]) -> list[str]:
    cats = rec.get("categories", rec.get("category"))
    if isinstance(cats, list):
        flat: list[str] = []
        for c in cats:  # 2014 dumps nest them: [["Books", "Fiction"]]
            flat.extend(str(x).strip() for x in (c if isinstance(c, list) else [c]) if str(x).strip())
        return list(dict.fromkeys(flat))
    if isinstance(cats, str) and cats.strip():
        return [cats.strip()]
    return []


def meta_frame(records: list[dict[str, Any]], item_key: str = "parent_asin") -> pl.DataFrame:
    """Metadata records of either edition as lmrec items (``attributes`` holds brand, store, price...)."""
    ids, titles, descriptions, categories, extra = [], [], [], [], []
    for rec in records:
        item = _item_key(rec, item_key)
        if item is None:
            continue
        ids.append(item)
        titles.append(_text(rec.get("title")))
        descriptions.append(_join_text(rec.get("description")))
        categories.append(_categories(rec))
        attrs: dict[str, Any] = {}
        for key in META_ATTRIBUTES:
            v = rec.get(key)
            if key == "price":
                v = _price(v)
            if v is None or v == "" or v == [] or v == {}:
                continue
            attrs["features" if key == "feature" else "main_category" if key == "main_cat" else key] = v
        extra.append(attrs)
    frame = pl.DataFrame({"item_id": ids, "title": titles, "description": descriptions},
                         schema={"item_id": pl.String, "title": pl.String, "description": pl.String})
    frame = frame.with_columns(pl.Series("categories", categories, dtype=pl.List(pl.String)))
    return frame.with_columns(
        pl.Series(
            "attributes",
            [json.dumps(a, ensure_ascii=False, default=str) if a else None for a in extra],
            dtype=pl.String,
        )
    )


def read_meta(path: Path, item_key: str = "parent_asin", chunk_rows: int = 100_000) -> pl.DataFrame:
    """A metadata file as items, read ``chunk_rows`` lines at a time; the last record of a repeated id
    wins."""
    frames = [meta_frame(records, item_key) for _, records in iter_json_chunks(path, chunk_rows)]
    if not frames:
        raise DataError("empty file", source=str(path), expected="Amazon metadata, one JSON object per line")
    items = pl.concat(frames)
    return items.unique("item_id", keep="last", maintain_order=True)


def _first_record(path: Path) -> dict[str, Any] | None:
    return parse_json_line(first_line(path))


def is_review(rec: dict[str, Any] | None) -> bool:
    """True for a review record of either edition."""
    if not rec:
        return False
    if "reviewerID" in rec and "asin" in rec:
        return True
    return "user_id" in rec and ("parent_asin" in rec or "asin" in rec) and "rating" in rec


def is_meta(rec: dict[str, Any] | None) -> bool:
    return bool(rec) and not is_review(rec) and ("asin" in rec or "parent_asin" in rec)  # type: ignore[operator]


def _json_file(path: Path) -> bool:
    return path.is_file() and base_suffix(path) in _JSON_SUFFIXES


def _find_files(folder: Path) -> tuple[Path, Path | None]:
    """The reviews file and the metadata file in a folder (by content, not name)."""
    reviews = meta = None
    for f in sorted(p for p in folder.iterdir() if _json_file(p)):
        rec = _first_record(f)
        if reviews is None and is_review(rec):
            reviews = f
        elif meta is None and is_meta(rec):
            meta = f
    if reviews is None:
        raise FileNotFoundError(f"{folder}: no Amazon reviews file (JSON lines with reviewerID/asin or "
                                "user_id/parent_asin/rating) in the folder")
    return reviews, meta


def _sibling_meta(reviews: Path) -> Path | None:
    """``meta_<name>`` next to ``<name>`` (both editions publish them that way), also for
    ``reviews_<name>``."""
    stem = reviews.name
    candidates = [reviews.with_name("meta_" + stem)]
    if stem.startswith("reviews_"):
        candidates.append(reviews.with_name("meta_" + stem.removeprefix("reviews_")))
        # 2014 5-core review files (reviews_Books_5.json.gz) pair with meta_Books.json.gz
        candidates.append(reviews.with_name("meta_" + re.sub(r"_5(?=\.)", "", stem.removeprefix("reviews_"))))
    return next((c for c in candidates if c.is_file()), None)


def load_amazon(path: str | Path, meta: str | Path | None = None, *, item_key: str = "parent_asin",
                name: str | None = None, items: str | Path | None = None) -> Source:
    """Amazon reviews (and item metadata) as a streaming :class:`Source` of ``rating`` events.

    Parameters
    ----------
    path:
        A reviews file (``.json``, ``.jsonl``, optionally ``.gz``) or a folder holding a reviews file and,
        optionally, a metadata file.
    meta:
        The metadata file; by default ``meta_<reviews file name>`` next to the reviews when it exists.
    item_key:
        ``"parent_asin"`` (default: one item per product, as the 2023 benchmarks use) or ``"asin"`` (one per
        variant). The 2018 edition has only ``asin``, which is used whatever this says.
    name:
        The dataset's name (the file's stem by default, e.g. ``All_Beauty``).
    items:
        Another name for ``meta`` (``lmrec data import --items``).
    """
    meta = meta if meta is not None else items
    if item_key not in ("parent_asin", "asin"):
        raise ValueError(f"item_key must be 'parent_asin' or 'asin', got {item_key!r}")
    path = Path(path).expanduser()
    if path.is_dir():
        path, found = _find_files(path)
        meta = meta if meta is not None else found
    elif not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    meta_path = Path(meta).expanduser() if meta is not None else _sibling_meta(path)
    if meta_path is not None and not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: no such metadata file")
    bad = BadLines(path)

    def chunks(chunk_rows: int) -> Iterator[pl.DataFrame]:
        pieces = ((start, reviews_frame(records, item_key))
                  for start, records in iter_json_chunks(path, min(chunk_rows, PARSE_ROWS), bad))
        for start, frame in regroup(pieces, chunk_rows):
            yield number_rows(frame, start)
        if (note := bad.note()) is not None and note not in source.notes:
            source.notes.append(note)

    items = read_meta(meta_path, item_key) if meta_path is not None else None
    source = Source(name or _stem(path).removeprefix("reviews_"), event_chunks=chunks, items=items,
                    default_event_type="rating", origin=str(path))
    if meta_path is not None:
        source.notes.append(f"items from {meta_path}")
    return source


def _detect(path: Path) -> bool:
    if path.is_dir():
        try:
            _find_files(path)
        except FileNotFoundError:
            return False
        return True
    return _json_file(path) and is_review(_first_record(path))


register_format("amazon", load_amazon)
register_detector("amazon", _detect)

__all__ = ["load_amazon", "meta_frame", "read_meta", "reviews_frame"]
