"""A seeded synthetic e-commerce log: view → cart → purchase funnels with prices, tastes, churn and seasons.

Real logs with action types and money (RetailRocket, Taobao) are large and must be fetched by hand; this
generator gives tests and the demo a small shop whose behaviour has known causes, so that a model can be
checked against the truth that produced the data.

How the shop works
------------------
* **Categories** (``n_categories``, drawn from a built-in list of product families, each with its own nouns,
  materials and a base price). Every category has a *seasonal phase*: its demand follows a one-year sine wave.
* **Items** belong to one category and have a readable title the language model can use
  ("Blue cotton running shorts by Acme"), a brand, a price (log-normal around the category's base price) and a
  latent *appeal* (log-normal; drives how often the item is looked at and bought).
* **Users** have a *taste* over categories (Dirichlet, concentrated on a few), an *activity* rate (sessions
  per week, log-normal), a *buying propensity*, a *price sensitivity*, a start day and a *churn* day
  (exponential lifetime): after churning a user never returns. Shopping is busier at weekends and follows a
  yearly wave.
* **Sessions**: a user's sessions arrive as a Poisson process at their activity rate times the season. A
  session picks a category (mostly from taste, sometimes the previous session's category or its *complement*,
  the next category in the list, so that sequences carry order), views 1–7 items of it (by appeal), puts some
  in the cart (more likely for liked categories, appealing items and, for price-sensitive users, cheap items)
  and buys some of the cart. Cart and purchase events carry the item's price as ``value``; views carry none.
* **Shown lists** (``impressions``, on by default): a second before each view the shop showed the user a list
  of ``list_size`` items: items of the viewed item's category first, by appeal (with noise), then others, and
  the viewed item itself at a position that favours the top (probability ∝ 1 / (position + 1)). The list is
  ``list_id`` ``l<k>`` and the view carries that list id and its position: the items shown and not viewed are
  the negatives a ranker learns from. The lists come from a random generator of their own, so the views,
  carts and purchases are the same, bit for bit, with impressions on or off.

The generator returns the events, items and users tables (lmrec's column names) and, separately, the
:class:`GroundTruth` (tastes, activity, churn, appeal...). The truth is for checking the generator in tests;
it must never be a model input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.source import Source, with_row_numbers

DAY = 86_400
#: 2024-01-01 00:00 UTC, a Monday: day 0 of the synthetic calendar.
EPOCH_START = 1_704_067_200

#: (category, nouns, materials, base price) — the product families the catalogue is drawn from.
PRODUCT_FAMILIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], float], ...] = (
    ("Running", ("running shorts", "running shoes", "trail socks", "running jacket"),
     ("mesh", "nylon", "cotton", "merino"), 45.0),
    ("Yoga", ("yoga mat", "yoga pants", "yoga block", "sports bra"),
     ("cork", "rubber", "bamboo", "spandex"), 35.0),
    ("Coffee", ("coffee beans", "espresso cups", "pour-over kettle", "coffee grinder"),
     ("ceramic", "steel", "glass", "organic"), 25.0),
    ("Kitchen", ("chef knife", "frying pan", "cutting board", "mixing bowl"),
     ("steel", "cast-iron", "walnut", "enamel"), 40.0),
    ("Garden", ("garden hose", "pruning shears", "flower pot", "watering can"),
     ("rubber", "steel", "terracotta", "copper"), 30.0),
    ("Books", ("mystery novel", "cookbook", "travel guide", "poetry collection"),
     ("hardcover", "paperback", "illustrated", "signed"), 18.0),
    ("Toys", ("building blocks", "plush bear", "puzzle", "toy train"),
     ("wooden", "plush", "plastic", "felt"), 22.0),
    ("Audio", ("wireless earbuds", "bluetooth speaker", "headphones", "turntable"),
     ("aluminium", "walnut", "matte", "noise-cancelling"), 90.0),
    ("Camping", ("tent", "sleeping bag", "camping stove", "headlamp"),
     ("ripstop", "down", "titanium", "waterproof"), 70.0),
    ("Beauty", ("face cream", "lip balm", "shampoo", "perfume"),
     ("vegan", "herbal", "scented", "organic"), 20.0),
    ("Office", ("desk lamp", "notebook", "fountain pen", "desk organiser"),
     ("brass", "leather", "recycled", "oak"), 28.0),
    ("Pets", ("dog collar", "cat bed", "chew toy", "pet bowl"),
     ("leather", "fleece", "rubber", "ceramic"), 24.0),
    ("Cycling", ("bike helmet", "bike light", "cycling gloves", "water bottle"),
     ("carbon", "aluminium", "padded", "insulated"), 50.0),
    ("Tea", ("green tea", "tea pot", "chai blend", "tea infuser"),
     ("loose-leaf", "cast-iron", "glass", "organic"), 16.0),
    ("Knitwear", ("wool sweater", "knitted scarf", "beanie", "cardigan"),
     ("wool", "cashmere", "alpaca", "cotton"), 55.0),
    ("Swimwear", ("swim trunks", "swimsuit", "swim goggles", "beach towel"),
     ("quick-dry", "chlorine-proof", "striped", "terry"), 32.0),
)
COLOURS = ("Blue", "Red", "Black", "White", "Green", "Grey", "Navy", "Olive", "Orange", "Pink", "Yellow",
           "Teal")
BRANDS = ("Acme", "Northwind", "Lumen", "Vela", "Kestrel", "Orbit", "Harbor", "Tamarack", "Pico", "Solace",
          "Fjord", "Marlow")


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and behaviour of the synthetic shop. The defaults make 2,000 users and about 80k events (57k
    views, 17k carts, 10k purchases for seed 0) in a few seconds.

    Parameters
    ----------
    n_users, n_items, n_categories:
        Population sizes (``n_categories`` at most :data:`PRODUCT_FAMILIES`' length, 16).
    days:
        Length of the log; day 0 is 2024-01-01 (UTC).
    taste_concentration:
        Dirichlet concentration of user tastes over categories; small values mean few favourite categories.
    sessions_per_week:
        Median activity; individual rates are log-normal around it.
    mean_lifetime_days:
        Mean of the exponential time from a user's first day to churn.
    seasonality:
        Amplitude (0–1) of the yearly wave of each category's demand and of overall traffic.
    cart_rate, purchase_rate:
        Base probabilities (before user and item effects) that a viewed item is carted and a carted item
        bought.
    seed:
        Everything is a function of the config and this seed.
    impressions, list_size:
        Whether every view comes after a shown list of ``list_size`` items (impression events). The views,
        carts and purchases do not depend on it.
    """

    n_users: int = 2000
    n_items: int = 800
    n_categories: int = 12
    days: int = 180
    taste_concentration: float = 0.3
    sessions_per_week: float = 0.5
    mean_lifetime_days: float = 120.0
    seasonality: float = 0.5
    cart_rate: float = 0.15
    purchase_rate: float = 0.5
    seed: int = 0
    impressions: bool = True
    list_size: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.n_categories <= len(PRODUCT_FAMILIES):
            raise ValueError(f"n_categories must be in 1..{len(PRODUCT_FAMILIES)}, got {self.n_categories}")
        if self.n_users < 1 or self.n_items < self.n_categories or self.days < 1:
            raise ValueError("need n_users >= 1, n_items >= n_categories and days >= 1")
        if not 0 <= self.seasonality < 1:
            raise ValueError("seasonality must be in [0, 1)")
        if self.list_size < 1:
            raise ValueError(f"list_size must be at least 1, got {self.list_size}")


@dataclass(frozen=True)
class GroundTruth:
    """The latent causes of the synthetic log, index-aligned with the generated ids (user ``u{i}``, item
    ``i{j}``).

    Used only to check the generator; never a model input.
    """

    categories: tuple[str, ...]
    user_taste: np.ndarray  # (n_users, n_categories), rows sum to 1
    user_activity: np.ndarray  # (n_users,) sessions per week at mean season
    user_buy_propensity: np.ndarray  # (n_users,) logit shift of cart and purchase probabilities
    user_price_sensitivity: np.ndarray  # (n_users,) weight of -log(price) in the cart decision
    user_start_day: np.ndarray  # (n_users,)
    user_churn_day: np.ndarray  # (n_users,) first day the user no longer shops (may exceed ``days``)
    item_category: np.ndarray  # (n_items,) index into ``categories``
    item_price: np.ndarray  # (n_items,)
    item_appeal: np.ndarray  # (n_items,)
    category_phase: np.ndarray  # (n_categories,) radians of each category's yearly peak


@dataclass(frozen=True)
class SyntheticEcommerce:
    """What :func:`generate_ecommerce` returns: lmrec tables and, apart, the ground truth.

    ``events`` are the views, carts and purchases (``event_id, user_id, item_id, timestamp, event_type,
    value``), the same whether impressions are on or not. ``impressions`` are the shown lists (lmrec's event
    columns, ``event_type`` ``impression``, with ``list_id`` and ``position``; no rows when off) and
    ``view_lists`` says which list each view came from (``event_id, list_id, position``). :meth:`log` puts
    the three together, as :meth:`source` and :meth:`dataset` read them.
    """

    events: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    truth: GroundTruth
    config: SyntheticConfig
    meta: dict[str, Any] = field(default_factory=dict)
    impressions: pl.DataFrame = field(default_factory=lambda: _empty_lists(_IMPRESSION_SCHEMA))
    view_lists: pl.DataFrame = field(default_factory=lambda: _empty_lists(_VIEW_LIST_SCHEMA))

    def log(self) -> pl.DataFrame:
        """The whole log: the events (views with the ``list_id`` and ``position`` they were shown at), then
        the impressions."""
        events = self.events.join(self.view_lists, on="event_id", how="left", maintain_order="left")
        return pl.concat([events, self.impressions], how="vertical_relaxed")

    def source(self, name: str = "synthetic-ecommerce") -> Source:
        """As a loader :class:`~lmrec.data.loaders.base.Source`, to clean and build like any real log."""
        return Source(name, events=with_row_numbers(self.log()), items=self.items, users=self.users,
                      default_event_type="view",
                      origin=f"lmrec synthetic e-commerce (seed {self.config.seed})")

    def dataset(self, name: str = "synthetic-ecommerce"):  # -> Dataset
        """Build a :class:`~lmrec.data.dataset.Dataset` directly (the tables are already clean); the
        impressions land in its ``impressions``."""
        return Dataset.build(self.log(), self.items, self.users, name=name,
                             event_types=("view", "cart", "purchase"))


_IMPRESSION_SCHEMA = {"event_id": pl.String, "user_id": pl.String, "item_id": pl.String,
                      "timestamp": pl.Int64, "event_type": pl.String, "value": pl.Float64,
                      "list_id": pl.String, "position": pl.Int32}
_VIEW_LIST_SCHEMA = {"event_id": pl.String, "list_id": pl.String, "position": pl.Int32}


def _empty_lists(schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _shown_lists(cfg: SyntheticConfig, views: pl.DataFrame, item_category: np.ndarray, appeal: np.ndarray
                 ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The list shown before each view (see the module docstring), drawn from a generator of its own
    (seeded by ``(seed, 1)``) so that the behaviour stream does not change. ``views``: ``event_id``, ``u``,
    ``i`` (indices), ``timestamp``. Returns the impressions and each view's list and position."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    n, n_items = views.height, len(appeal)
    size = min(cfg.list_size, n_items)
    viewed = views["i"].to_numpy()
    # Where the viewed item sits: the top is likelier (position bias), P(p) ∝ 1 / (p + 1).
    bias = 1.0 / np.arange(1, size + 1)
    at = rng.choice(size, size=n, p=bias / bias.sum())
    lists = np.empty((n, size), dtype=np.int64)
    log_appeal = np.log(appeal)
    chunk = max(1, 2_000_000 // max(n_items, 1))  # bounded memory: (chunk, n_items) scores at a time
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        j = viewed[lo:hi]
        # The shop's ranking: same category first (a large bonus), then appeal plus Gumbel noise (a sample by
        # appeal without replacement); never the viewed item itself.
        scores = log_appeal[None, :] + rng.gumbel(size=(hi - lo, n_items))
        scores += 1e3 * (item_category[None, :] == item_category[j][:, None])
        scores[np.arange(hi - lo), j] = -np.inf
        if size == 1:
            lists[lo:hi, 0] = j
            continue
        top = np.argpartition(-scores, size - 2, axis=1)[:, : size - 1]
        others = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
        # The viewed item goes in at its position; the shop's ranking fills the rest in order.
        p = np.arange(size)[None, :]
        here = at[lo:hi, None]
        lists[lo:hi] = np.take_along_axis(others, np.clip(np.where(p < here, p, p - 1), 0, size - 2), axis=1)
        lists[lo:hi][p == here] = j
    k = np.arange(n)
    list_ids = np.array([f"l{x}" for x in k], dtype=object)
    users = views["u"].to_numpy()
    flat_list = np.repeat(list_ids, size)
    pos = np.tile(np.arange(size, dtype=np.int32), n)
    impressions = pl.DataFrame({
        "event_id": [f"{lid}:{q}" for lid, q in zip(flat_list.tolist(), pos.tolist(), strict=True)],
        "user_id": [f"u{u}" for u in np.repeat(users, size).tolist()],
        "item_id": [f"i{j}" for j in lists.ravel().tolist()],
        "timestamp": np.repeat(views["timestamp"].to_numpy() - 1, size),  # shown a second before the view
        "event_type": ["impression"] * (n * size),
        "value": [None] * (n * size),
        "list_id": flat_list.tolist(),
        "position": pos,
    }, schema=_IMPRESSION_SCHEMA)
    view_lists = pl.DataFrame({"event_id": views["event_id"], "list_id": list_ids.tolist(),
                               "position": at.astype(np.int32)}, schema=_VIEW_LIST_SCHEMA)
    return impressions, view_lists


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _catalogue(cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    fams = PRODUCT_FAMILIES[: cfg.n_categories]
    # Every category gets at least one item; the rest are spread at random (some categories are bigger).
    cat = np.concatenate([np.arange(cfg.n_categories),
                          rng.integers(0, cfg.n_categories, cfg.n_items - cfg.n_categories)])
    cat = np.sort(rng.permutation(cat), kind="stable")
    noun_i = rng.integers(0, 4, cfg.n_items)
    mat_i = rng.integers(0, 4, cfg.n_items)
    colour = rng.integers(0, len(COLOURS), cfg.n_items)
    brand = rng.integers(0, len(BRANDS), cfg.n_items)
    base = np.array([f[3] for f in fams])[cat]
    price = np.round(base * rng.lognormal(0.0, 0.45, cfg.n_items), 2) + 0.99
    appeal = rng.lognormal(0.0, 0.8, cfg.n_items)
    titles, descriptions, attrs = [], [], []
    for j in range(cfg.n_items):
        name, nouns, mats, _ = fams[cat[j]]
        noun, mat = nouns[noun_i[j]], mats[mat_i[j]]
        titles.append(f"{COLOURS[colour[j]]} {mat} {noun} by {BRANDS[brand[j]]}")
        descriptions.append(f"A {mat} {noun} in {COLOURS[colour[j]].lower()} from {BRANDS[brand[j]]}'s "
                            f"{name.lower()} range.")
        attrs.append(json.dumps({"brand": BRANDS[brand[j]], "price": float(price[j]),
                                 "colour": COLOURS[colour[j]].lower()}))
    items = pl.DataFrame({
        "item_id": [f"i{j}" for j in range(cfg.n_items)],
        "title": titles,
        "description": descriptions,
        "categories": [[fams[c][0]] for c in cat],
        "attributes": attrs,
    })
    return items, {"category": cat.astype(np.int64), "price": price, "appeal": appeal}


def generate_ecommerce(config: SyntheticConfig | None = None, **overrides: Any) -> SyntheticEcommerce:
    """Generate a synthetic shop log (see the module docstring for the model).

    Parameters
    ----------
    config:
        The generator's settings; keyword ``overrides`` replace single fields
        (``generate_ecommerce(seed=3)``).

    Returns
    -------
    SyntheticEcommerce
        ``events`` (``event_id, user_id, item_id, timestamp, event_type, value``), ``items`` (title,
        description, categories, attributes with brand and price), ``users`` (no attributes: nothing latent
        leaks), ``impressions`` and ``view_lists`` (the shown lists, when ``impressions`` is on) and
        ``truth``, for tests only.

    Examples
    --------
    >>> shop = generate_ecommerce(n_users=100, n_items=60, seed=1)
    >>> ds = shop.dataset()
    >>> sorted(ds.event_types)
    ['cart', 'purchase', 'view']
    """
    from dataclasses import replace

    cfg = replace(config or SyntheticConfig(), **overrides) if overrides else (config or SyntheticConfig())
    rng = np.random.default_rng(cfg.seed)
    items, it = _catalogue(cfg, rng)
    n_cat = cfg.n_categories
    members = [np.flatnonzero(it["category"] == c) for c in range(n_cat)]
    appeal_in_cat = [it["appeal"][m] / it["appeal"][m].sum() for m in members]
    log_price_z = (np.log(it["price"]) - np.log(it["price"]).mean()) / np.log(it["price"]).std()
    phase = rng.uniform(0, 2 * np.pi, n_cat)

    taste = rng.dirichlet(np.full(n_cat, cfg.taste_concentration), cfg.n_users)
    activity = cfg.sessions_per_week * rng.lognormal(0.0, 0.7, cfg.n_users)
    buy = rng.normal(0.0, 0.8, cfg.n_users)
    price_sens = np.abs(rng.normal(0.0, 0.8, cfg.n_users))
    start = rng.uniform(0, cfg.days * 0.6, cfg.n_users)
    churn = start + rng.exponential(cfg.mean_lifetime_days, cfg.n_users)

    def season(day: float) -> float:  # overall traffic: a yearly wave and busier weekends
        weekend = 1.3 if int(day) % 7 in (5, 6) else 1.0
        return weekend * (1.0 + cfg.seasonality * np.sin(2 * np.pi * day / 365.0))

    users_col: list[int] = []
    items_col: list[int] = []
    ts_col: list[int] = []
    type_col: list[int] = []
    for u in range(cfg.n_users):
        day, last_cat, t = start[u], -1, 0
        end = min(churn[u], cfg.days)
        peak_rate = activity[u] / 7.0 * (1.0 + cfg.seasonality) * 1.3  # thinning bound of the Poisson process
        while True:
            day += rng.exponential(1.0 / peak_rate)
            if day >= end:
                break
            if rng.random() > activity[u] / 7.0 * season(day) / peak_rate:
                continue  # thinned: the season made this moment quieter
            # The session's category: taste × the category's season, or continuing / complementing the last
            # one.
            r = rng.random()
            if last_cat >= 0 and r < 0.25:
                c = last_cat
            elif last_cat >= 0 and r < 0.40:
                c = (last_cat + 1) % n_cat
            else:
                w = taste[u] * (1.0 + cfg.seasonality * np.sin(2 * np.pi * day / 365.0 + phase))
                c = int(rng.choice(n_cat, p=w / w.sum()))
            last_cat = c
            n_views = min(1 + rng.poisson(1.8), 7, len(members[c]))
            viewed = rng.choice(members[c], size=n_views, replace=False, p=appeal_in_cat[c])
            t = max(EPOCH_START + int(day * DAY), t + 600)  # a session never overlaps the previous one
            for j in viewed:
                t += int(rng.integers(20, 300))
                users_col.append(u)
                items_col.append(j)
                ts_col.append(t)
                type_col.append(0)
                logit_cart = (np.log(cfg.cart_rate / (1 - cfg.cart_rate)) + buy[u]
                              + 2.0 * (taste[u, c] - 1 / n_cat)
                              + 0.4 * np.log(it["appeal"][j]) - price_sens[u] * log_price_z[j])
                if rng.random() < _sigmoid(logit_cart):
                    t += int(rng.integers(5, 120))
                    users_col.append(u)
                    items_col.append(j)
                    ts_col.append(t)
                    type_col.append(1)
                    logit_buy = np.log(cfg.purchase_rate / (1 - cfg.purchase_rate)) + buy[u]
                    if rng.random() < _sigmoid(logit_buy):
                        t += int(rng.integers(30, 600))
                        users_col.append(u)
                        items_col.append(j)
                        ts_col.append(t)
                        type_col.append(2)

    u_arr = np.asarray(users_col, dtype=np.int64)
    i_arr = np.asarray(items_col, dtype=np.int64)
    ty = np.asarray(type_col, dtype=np.int64)
    value = np.where(ty > 0, it["price"][i_arr] if len(i_arr) else np.zeros(0), np.nan)
    names = np.array(["view", "cart", "purchase"])
    events = pl.DataFrame({
        "event_id": [f"e{k}" for k in range(len(u_arr))],
        "user_id": [f"u{u}" for u in u_arr],
        "item_id": [f"i{j}" for j in i_arr],
        "timestamp": np.asarray(ts_col, dtype=np.int64),
        "event_type": names[ty].tolist() if len(ty) else [],
        "value": value,
    }, schema={"event_id": pl.String, "user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64,
               "event_type": pl.String, "value": pl.Float64}).with_columns(pl.col("value").fill_nan(None))
    users = pl.DataFrame({"user_id": [f"u{u}" for u in range(cfg.n_users)]})
    truth = GroundTruth(
        categories=tuple(f[0] for f in PRODUCT_FAMILIES[:n_cat]),
        user_taste=taste, user_activity=activity, user_buy_propensity=buy, user_price_sensitivity=price_sens,
        user_start_day=start, user_churn_day=churn, item_category=it["category"], item_price=it["price"],
        item_appeal=it["appeal"], category_phase=phase,
    )
    meta = {"start_timestamp": EPOCH_START, "end_timestamp": EPOCH_START + cfg.days * DAY}
    shop = SyntheticEcommerce(events, items, users, truth, cfg, meta)
    if not cfg.impressions or events.height == 0:
        return shop
    is_view = ty == 0
    views = pl.DataFrame({"event_id": events["event_id"].filter(pl.Series(is_view)), "u": u_arr[is_view],
                          "i": i_arr[is_view], "timestamp": events["timestamp"].to_numpy()[is_view]})
    impressions, view_lists = _shown_lists(cfg, views, it["category"], it["appeal"])
    return replace(shop, impressions=impressions, view_lists=view_lists)


def synthetic_ecommerce_source(**overrides: Any) -> Source:
    """The built-in ``synthetic-ecommerce`` dataset (``lmrec data import synthetic-ecommerce``); options are
    :class:`SyntheticConfig` fields, as values or as command-line text (``-o n_users=500 -o
    impressions=false``)."""
    defaults = SyntheticConfig()
    typed = {k: _option(v, type(getattr(defaults, k))) if isinstance(v, str) and hasattr(defaults, k) else v
             for k, v in overrides.items()}
    return generate_ecommerce(**typed).source()


def _option(text: str, kind: type) -> Any:
    """A ``-o`` option's text as the config field's type."""
    if kind is bool:
        low = text.strip().lower()
        if low not in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            raise ValueError(f"expected true or false, got {text!r}")
        return low in ("true", "1", "yes", "on")
    return kind(text)
