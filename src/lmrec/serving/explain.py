"""Why an item was recommended, in words a person understands.

For each recommended item, the history items most similar to it (by the model's item representations, or by
co-occurrence in the training data, or by text) are named with what the user did with them; the categories the
item shares with them and how closely its text matches are added::

    Because you watched Toy Story (1995) and Aladdin (1992); shared categories: Animation, Children's

A model with a learned ranker (:class:`~lmrec.models.capabilities.RankingReasons`, the retrieve-and-rank
pipeline) adds the inputs that raised the item most, from the ranker's feature contributions::

    ...; ranked up because: recent interest in Label Makers, bought by people who bought Stapler
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lmrec.data.ragged import Ragged
from lmrec.models.capabilities import RankingReasons
from lmrec.serving.bundle import ModelBundle

#: How an event type reads in a sentence ("Because you ... X").
VERBS: dict[str, str] = {
    "view": "viewed", "click": "clicked", "cart": "added to your cart", "purchase": "bought",
    "rating": "rated", "like": "liked", "fav": "saved", "share": "shared",
}
#: Only history items at least this similar are named.
MIN_SIMILARITY = 0.05
#: Newest history items considered.
MAX_HISTORY = 50
#: How a ranker's reason reads ("ranked up because: ..."); collaborative retrievers and categories are
#: phrased with the history (:func:`_reason_words`).
REASONS: dict[str, str] = {
    "seqrec": "it often comes next after what you did recently",
    "content-lm": "its description is close to what you liked",
    "popular": "popular with other users", "trending": "trending now", "price": "in your usual price range",
    "fresh": "recently active in the catalogue", "activity": "it suits how you shop",
    "listed_by": "several recommenders agree on it",
}
COLLABORATIVE = ("itemknn", "ease", "als", "userknn", "bpr")


@dataclass
class Contribution:
    item_id: str
    title: str
    similarity: float
    event_type: str


@dataclass
class Explanation:
    text: str
    because: list[Contribution] = field(default_factory=list)
    shared_categories: list[str] = field(default_factory=list)
    text_match: float | None = None
    source: str = "popularity"
    #: From a learned ranker: the reasons that raised the item most (reason, contribution), best first.
    ranked_by: list[tuple[str, float]] = field(default_factory=list)


def _names(titles: list[str]) -> str:
    quoted = titles[:]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def explain(bundle: ModelBundle, recs: np.ndarray, history: np.ndarray, history_types: list[str],
            profile_match: np.ndarray | None = None, profile: str | None = None,
            user: int = 0) -> list[Explanation]:
    """Explanations for recommended item indices ``recs`` given the user's history indices (oldest first).

    Parameters
    ----------
    bundle:
        The model bundle the recommendations came from.
    recs:
        ``(k,)`` recommended item indices.
    history:
        ``(h,)`` the user's positive history, oldest first (unknown items as 0 are skipped).
    history_types:
        The event type of each history entry.
    profile_match, profile:
        For recommendations from profile text: each item's text similarity to it, and the text.
    user:
        The user's index (0: anonymous), for models whose ranker reads user features.
    """
    recs = np.asarray(recs, dtype=np.int64)
    hist = np.asarray(history, dtype=np.int64)[-MAX_HISTORY:]
    types = list(history_types)[-MAX_HISTORY:]
    keep = hist > 0
    hist, types = hist[keep], [t for t, k in zip(types, keep, strict=True) if k]
    # The newest occurrence of each history item speaks for it.
    last: dict[int, int] = {}
    for pos, it in enumerate(hist.tolist()):
        last[it] = pos
    uniq = np.array(sorted(last, key=last.__getitem__), dtype=np.int64)
    uniq_types = [types[last[i]] for i in uniq.tolist()]

    source, sims = "popularity", None
    if len(uniq):
        sims = bundle.behaviour_similarity(recs, uniq)
        source = "behaviour" if sims is not None else source
    text_sims = bundle.text_similarity(recs, uniq) if len(uniq) else None
    if sims is None and text_sims is not None:
        sims, source = text_sims, "text"

    reasons: list[list[tuple[str, float]]] = [[] for _ in recs]
    if isinstance(bundle.model, RankingReasons) and profile_match is None and len(recs) and len(hist):
        full = np.asarray(history, dtype=np.int64)
        rows = Ragged.from_lists([full[full > 0]] * len(recs))
        reasons = bundle.model.ranking_reasons(rows, np.full(len(recs), user, dtype=np.int64), recs)

    out = []
    for r, item in enumerate(recs.tolist()):
        cats = bundle.categories(item)
        if profile_match is not None:
            m = float(profile_match[r])
            words = f'Matches your profile "{_short(profile or "")}" (text match {m:.2f})'
            out.append(Explanation(_with_categories(words, cats), [], [], m, "profile"))
            continue
        if sims is None or not len(uniq):
            pop = int(bundle.model.popularity_[item]) if bundle.model.popularity_ is not None and \
                item < len(bundle.model.popularity_) else 0
            words = (f"Popular with other users ({pop:,} interactions)" if pop else "New in the catalogue")
            out.append(Explanation(words, source="popularity"))
            continue
        row = sims[r]
        order = [j for j in np.argsort(-row, kind="stable")[:3].tolist() if row[j] >= MIN_SIMILARITY]
        because = [Contribution(bundle.model.item_map.raw(int(uniq[j])), bundle.title(int(uniq[j])),  # type: ignore[union-attr]
                                float(row[j]), uniq_types[j]) for j in order[:2]]
        match = float(text_sims[r].max()) if text_sims is not None and text_sims.shape[1] else None
        hist_cats = set().union(*(bundle.categories(int(i)) for i in uniq.tolist()))
        ranked = _ranked_up(reasons[r], because, cats, hist_cats)
        if not because:
            words = "Not closely related to your recent activity; shown to complete the list"
            out.append(Explanation(words + ranked, [], [], match, source, reasons[r]))
            continue
        verb = VERBS.get(because[0].event_type, "interacted with")
        words = f"Because you {verb} {_names([c.title for c in because])}"
        hist_cats = set().union(*(bundle.categories(int(uniq[j])) for j in order))
        shared = [c for c in cats if c in hist_cats]
        if shared:
            words += f"; shared categories: {', '.join(shared[:3])}"
        if match is not None and match >= 0.5:
            words += f"; its text is close to what you liked (text match {match:.2f})"
        out.append(Explanation(words + ranked, because, shared, match, source, reasons[r]))
    return out


def _reason_words(reason: str, because: list[Contribution], cats: list[str], hist_cats: set[str]) -> str:
    """One ranker reason in words, with the history for collaborative retrievers and categories."""
    if reason in COLLABORATIVE:
        if because:
            verb = VERBS.get(because[0].event_type, "interacted with")
            done = "chosen" if verb == "interacted with" else verb
            return f"{done} by people who {verb} {because[0].title}"
        return "chosen by people with histories like yours"
    if reason == "categories":
        shared = [c for c in cats if c in hist_cats]
        return f"recent interest in {shared[0] if shared else (cats[0] if cats else 'its category')}"
    return REASONS.get(reason, reason.replace("_", " "))


def _ranked_up(reasons: list[tuple[str, float]], because: list[Contribution], cats: list[str],
               hist_cats: set[str]) -> str:
    words = list(dict.fromkeys(_reason_words(r, because, cats, hist_cats) for r, _ in reasons))
    return f"; ranked up because: {', '.join(words)}" if words else ""


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _with_categories(words: str, cats: list[str]) -> str:
    return words + (f"; categories: {', '.join(cats[:3])}" if cats else "")
