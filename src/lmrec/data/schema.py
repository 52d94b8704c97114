"""The tables lmrec works on, as Arrow schemas, and the small vocabularies around them.

Raw ids are strings everywhere at the boundary (a URL path, a CSV cell and a Parquet int all become the
same string), and become dense integer indices inside a :class:`~lmrec.data.dataset.Dataset`.
"""

from __future__ import annotations

import pyarrow as pa

#: Index 0 of every id vocabulary is padding: sequence models pad with it and it is never recommended.
PAD = 0

#: The event types lmrec knows by name. The vocabulary is open: a dataset may bring others
#: (``fav``, ``share``...), which are accepted when declared or when ``allow_new_event_types`` is set.
KNOWN_EVENT_TYPES: tuple[str, ...] = (
    "view",
    "click",
    "cart",
    "remove_from_cart",
    "purchase",
    "rating",
    "like",
    "dislike",
    "skip",
    "fav",
    "share",
    "impression",
)

#: An item was shown to the user (in a list ``list_id``, at ``position``), which says nothing about whether
#: they wanted it. Impressions are kept apart from interactions everywhere: a
#: :class:`~lmrec.data.dataset.Dataset` holds them in ``impressions``, never in ``events``, so no model
#: trains on them as positives and no split makes them targets; a ranker reads them as the negatives (shown,
#: not clicked).
IMPRESSION = "impression"

#: Common spellings in public logs, mapped to lmrec's names (RetailRocket, Taobao, GA-style exports).
EVENT_TYPE_ALIASES: dict[str, str] = {
    "pv": "view",
    "page_view": "view",
    "addtocart": "cart",
    "add_to_cart": "cart",
    "transaction": "purchase",
    "buy": "purchase",
    "order": "purchase",
    "rate": "rating",
    "review": "rating",
    "favorite": "fav",
    "favourite": "fav",
    "impressions": IMPRESSION,
    "exposure": IMPRESSION,
    "shown": IMPRESSION,
}

#: Feedback that says "not this": serving removes or lowers such items (see issue on serving).
NEGATIVE_EVENT_TYPES: frozenset[str] = frozenset({"dislike", "skip", "remove_from_cart"})

#: A given split travels as an optional ``split`` column of the events (``train`` / ``valid`` / ``test``);
#: other spellings are read as these.
SPLIT_COLUMN = "split"
SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "test")
SPLIT_ALIASES: dict[str, str] = {"training": "train", "validation": "valid", "val": "valid", "dev": "valid",
                                 "testing": "test"}

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),  # seconds since the Unix epoch, UTC
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=True),  # a rating, an amount, a watch time...
        # The list an item was shown in (a recommendation answer, a search page) and its place there, 0 for
        # the first item: set on impressions, and on clicks that came from a list, to join the two.
        pa.field("list_id", pa.string(), nullable=True),
        pa.field("position", pa.int32(), nullable=True),
    ]
)

ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=True),
        pa.field("description", pa.string(), nullable=True),
        pa.field("categories", pa.list_(pa.string()), nullable=True),
        pa.field(
            "attributes", pa.string(), nullable=True
        ),  # a JSON object of free fields (brand, price, tags...)
    ]
)

USERS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("profile", pa.string(), nullable=True),  # free text about the user
        pa.field("attributes", pa.string(), nullable=True),  # a JSON object (age, gender, occupation...)
    ]
)

EVENT_COLUMNS = tuple(EVENTS_SCHEMA.names)
ITEM_COLUMNS = tuple(ITEMS_SCHEMA.names)
USER_COLUMNS = tuple(USERS_SCHEMA.names)


def normalise_event_type(name: str) -> str:
    """Lower-case, trim and map a known alias (``addtocart`` → ``cart``)."""
    key = name.strip().lower()
    return EVENT_TYPE_ALIASES.get(key, key)
