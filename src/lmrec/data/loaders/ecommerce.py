"""E-commerce logs with action types: RetailRocket and Taobao UserBehavior, and the built-in synthetic shop.

* **RetailRocket** (Kaggle "Retailrocket recommender system dataset"): ``events.csv`` with the header
  ``timestamp,visitorid,event,itemid,transactionid``; timestamps in milliseconds; events ``view``,
  ``addtocart``, ``transaction`` (lmrec's ``view``, ``cart``, ``purchase``). Optional
  ``item_properties_part1.csv`` / ``item_properties_part2.csv`` (``timestamp,itemid,property,value``; the
  latest ``categoryid`` of each item is its category) and ``category_tree.csv`` (``categoryid,parentid``;
  categories list the item's leaf and then its ancestors). Other properties are hashed text in the release and
  are not read. The log has no amounts.
* **Taobao UserBehavior** (Tianchi, Alibaba): ``UserBehavior.csv`` without a header,
  ``user_id,item_id,category_id,behavior_type,timestamp``; timestamps in seconds; behaviours ``pv``, ``cart``,
  ``fav``, ``buy`` (lmrec's ``view``, ``cart``, ``fav``, ``purchase``). Its category ids become item
  categories. The file is read in chunks (it has 100 million rows); ``max_rows`` reads a prefix for a quick
  look.
* **synthetic-ecommerce**: the seeded shop of :mod:`lmrec.data.synthetic_ecommerce`, available by name.

Both real releases ship with their own terms of use; download them yourself and point lmrec at the file or
folder: ``lmrec data import path/to/retailrocket/`` or ``lmrec data import UserBehavior.csv``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl

from lmrec.data.cleaning import ROW, DataError
from lmrec.data.loaders.base import Source, with_row_numbers
from lmrec.data.loaders.registry import _DETECTORS, BUILTIN, register_format
from lmrec.data.synthetic_ecommerce import synthetic_ecommerce_source

RETAILROCKET_COLUMNS = ("timestamp", "visitorid", "event", "itemid", "transactionid")
TAOBAO_COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
TAOBAO_BEHAVIOURS = frozenset({"pv", "cart", "fav", "buy"})


def _first_line(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------------- RetailRocket
def _retailrocket_events_file(path: Path) -> Path:
    if path.is_dir():
        hits = sorted(path.rglob("events.csv"))
        if not hits:
            raise FileNotFoundError(f"{path}: no events.csv (the RetailRocket events file) in this folder")
        return hits[0]
    return path


def is_retailrocket(path: Path) -> bool:
    """A RetailRocket ``events.csv`` (or a folder holding one): recognised by its header."""
    try:
        events = _retailrocket_events_file(path)
    except FileNotFoundError:
        return False
    return events.is_file() and _first_line(events).lower().replace(" ", "") == ",".join(RETAILROCKET_COLUMNS)


def load_retailrocket(path: str | Path, item_properties: bool = True, name: str = "retailrocket") -> Source:
    """Load RetailRocket from its folder (or its ``events.csv``).

    Parameters
    ----------
    path:
        The release folder, or ``events.csv`` itself (item properties are then looked for next to it).
    item_properties:
        Read ``item_properties_part*.csv`` (and ``category_tree.csv``) for item categories when present.
    """
    events_file = _retailrocket_events_file(Path(path))
    header = _first_line(events_file).lower().replace(" ", "").split(",")
    if header != list(RETAILROCKET_COLUMNS):
        raise DataError("not a RetailRocket events file", source=str(events_file), row=0,
                        expected=f"header {','.join(RETAILROCKET_COLUMNS)}", got=",".join(header))
    raw = pl.read_csv(events_file, schema_overrides={c: pl.String for c in RETAILROCKET_COLUMNS})
    # Milliseconds → seconds here, so the unit never depends on the cleaner's guess.
    ts = raw["timestamp"].str.strip_chars().cast(pl.Int64, strict=False)
    ev = with_row_numbers(raw).select(
        ROW,
        pl.col("visitorid").alias("user_id"),
        pl.col("itemid").alias("item_id"),
        pl.when(ts.is_not_null()).then((ts // 1000).cast(pl.String)).otherwise(pl.col("timestamp"))
        .alias("timestamp"),
        pl.col("event").alias("event_type"),
    )
    notes = ["RetailRocket has no amounts: purchase events carry no value, so user value is a count of "
             "events"]
    items = None
    if item_properties:
        items = _retailrocket_items(events_file.parent)
        if items is None:
            notes.append("no item_properties_part*.csv next to events.csv: items have no categories")
        else:
            # Every item of the log stays (with no category when the properties lack it), so the cleaner's
            # unknown-item rule drops nothing the log itself vouches for.
            seen = ev.select(pl.col("item_id").str.strip_chars()).unique(maintain_order=True)
            items = seen.join(items, on="item_id", how="left").with_columns(
                pl.col("categories").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    return Source(name, events=ev, items=items, default_event_type="view", origin=str(events_file),
                  notes=notes)


def _retailrocket_items(folder: Path) -> pl.DataFrame | None:
    parts = sorted(folder.glob("item_properties_part*.csv"))
    if not parts:
        return None
    cols = {"timestamp": pl.Int64, "itemid": pl.String, "property": pl.String, "value": pl.String}
    frames = [pl.scan_csv(p, schema_overrides=cols).filter(pl.col("property") == "categoryid") for p in parts]
    cats = (pl.concat(frames).sort("timestamp").group_by("itemid").agg(pl.col("value").last().alias("leaf"))
            .collect())
    tree_file = folder / "category_tree.csv"
    parent: dict[str, str] = {}
    if tree_file.exists():
        tree = pl.read_csv(tree_file, schema_overrides={"categoryid": pl.String, "parentid": pl.String})
        parent = {c: p for c, p in tree.iter_rows() if p is not None}

    def lineage(leaf: str) -> list[str]:
        out, seen = [leaf], {leaf}
        while (p := parent.get(out[-1])) is not None and p not in seen:  # guard against cycles
            out.append(p)
            seen.add(p)
        return out

    return pl.DataFrame({
        "item_id": cats["itemid"],
        "categories": pl.Series([lineage(c) for c in cats["leaf"].to_list()], dtype=pl.List(pl.String)),
    })


# ---------------------------------------------------------------------- Taobao UserBehavior
def _taobao_file(path: Path) -> Path:
    if path.is_dir():
        hits = sorted(path.rglob("UserBehavior*.csv"))
        if not hits:
            raise FileNotFoundError(f"{path}: no UserBehavior.csv in this folder")
        return hits[0]
    return path


def is_taobao(path: Path) -> bool:
    """A headerless five-column CSV whose fourth field is a Taobao behaviour (pv, cart, fav, buy)."""
    try:
        f = _taobao_file(path)
    except FileNotFoundError:
        return False
    if not f.is_file() or f.suffix.lower() != ".csv":
        return False
    fields = _first_line(f).split(",")
    return len(fields) == 5 and fields[3].strip().lower() in TAOBAO_BEHAVIOURS


def _taobao_frame(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(
        ROW,
        pl.col("user_id"),
        pl.col("item_id"),
        pl.col("timestamp"),
        pl.col("behavior_type").alias("event_type"),
    )


def load_taobao(path: str | Path, max_rows: int | None = None, name: str = "taobao") -> Source:
    """Load Taobao UserBehavior (the file, or a folder holding ``UserBehavior.csv``), streamed in chunks.

    Parameters
    ----------
    path:
        ``UserBehavior.csv`` (no header: user, item, category, behaviour, timestamp in seconds).
    max_rows:
        Read only the first ``max_rows`` rows.
    """
    file = _taobao_file(Path(path))
    fields = _first_line(file).split(",")
    if len(fields) != 5 or fields[3].strip().lower() not in TAOBAO_BEHAVIOURS:
        raise DataError("not a Taobao UserBehavior file", source=str(file), row=1,
                        expected="5 fields user_id,item_id,category_id,behavior_type (pv/cart/fav/buy),"
                                 "timestamp",
                        got=",".join(fields))
    scan = pl.scan_csv(file, has_header=False, new_columns=list(TAOBAO_COLUMNS),
                       schema_overrides={c: pl.String for c in TAOBAO_COLUMNS}, n_rows=max_rows)
    items = (scan.select(pl.col("item_id"), pl.col("category_id")).unique(subset="item_id", keep="last")
             .collect().sort("item_id")
             .select("item_id", pl.concat_list(pl.col("category_id")).alias("categories")))

    def chunks(chunk_rows: int) -> Iterator[pl.DataFrame]:
        offset = 0
        for batch in scan.collect_batches(chunk_size=chunk_rows):
            if batch.height == 0:
                continue
            yield _taobao_frame(with_row_numbers(batch, offset=offset + 1))
            offset += batch.height

    return Source(name, event_chunks=chunks, items=items, default_event_type="view", origin=str(file),
                  notes=["Taobao UserBehavior has no amounts: user value is a count of events"])


register_format("retailrocket", load_retailrocket)
register_format("taobao", load_taobao)
BUILTIN.setdefault("synthetic-ecommerce", synthetic_ecommerce_source)
for _fmt, _probe in (("retailrocket", is_retailrocket), ("taobao", is_taobao)):
    if all(f != _fmt for f, _ in _DETECTORS):
        _DETECTORS.append((_fmt, _probe))

__all__ = ["is_retailrocket", "is_taobao", "load_retailrocket", "load_taobao"]
