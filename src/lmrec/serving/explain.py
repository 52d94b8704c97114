"""Why an item was recommended, in words a person understands.

For each recommended item, the history items most similar to it (by the model's item representations, or by
co-occurrence in the training data, or by text) are named with what the user did with them; the categories the
item shares with them and how closely its text matches are added::

    Because you watched Toy Story (1995) and Aladdin (1992); shared categories: Animation, Children's
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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


def _names(titles: list[str]) -> str:
    quoted = titles[:]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def explain(bundle: ModelBundle, recs: np.ndarray, history: np.ndarray, history_types: list[str],
            profile_match: np.ndarray | None = None, profile: str | None = None) -> list[Explanation]:
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
        if not because:
            words = "Not closely related to your recent activity; shown to complete the list"
            out.append(Explanation(words, [], [], match, source))
            continue
        verb = VERBS.get(because[0].event_type, "interacted with")
        words = f"Because you {verb} {_names([c.title for c in because])}"
        hist_cats = set().union(*(bundle.categories(int(uniq[j])) for j in order))
        shared = [c for c in cats if c in hist_cats]
        if shared:
            words += f"; shared categories: {', '.join(shared[:3])}"
        if match is not None and match >= 0.5:
            words += f"; its text is close to what you liked (text match {match:.2f})"
        out.append(Explanation(words, because, shared, match, source))
    return out


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _with_categories(words: str, cats: list[str]) -> str:
    return words + (f"; categories: {', '.join(cats[:3])}" if cats else "")
