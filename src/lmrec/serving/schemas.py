"""Request and response bodies of the HTTP API (kept apart from the store's tables and the engine's
objects)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lmrec.serving import engine as eng

_ID = Field(min_length=1, max_length=256)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------- recommendations
class ContributionOut(BaseModel):
    item_id: str
    title: str
    similarity: float
    event_type: str


class ExplanationOut(BaseModel):
    text: str = Field(description="Why, in words: 'Because you watched A and B; shared categories: ...'.")
    because: list[ContributionOut] = Field(description="History items that contributed most.")
    shared_categories: list[str]
    text_match: float | None = Field(description="Best text similarity to the history or profile, if known.")
    source: Literal["behaviour", "text", "profile", "popularity"]


class ItemOut(BaseModel):
    item_id: str
    score: float
    title: str
    categories: list[str]
    explanation: ExplanationOut | None = None

    @classmethod
    def of(cls, item: eng.RecommendedItem) -> ItemOut:
        e = item.explanation
        return cls(item_id=item.item_id, score=item.score, title=item.title, categories=item.categories,
                   explanation=None if e is None else ExplanationOut(
                       text=e.text, because=[ContributionOut(**vars(c)) for c in e.because],
                       shared_categories=e.shared_categories, text_match=e.text_match,
                       source=e.source))  # type: ignore[arg-type]


class RecommendationsOut(BaseModel):
    user_id: str | None = None
    model_version: str
    strategy: str = Field(description="model, ann+rescore, profile-text or popularity")
    items: list[ItemOut]
    ignored_items: list[str] = Field(default_factory=list,
                                     description="Session items the model does not know.")

    @classmethod
    def of(cls, recs: eng.Recommendations, user_id: str | None = None) -> RecommendationsOut:
        return cls(user_id=user_id, model_version=recs.model_version, strategy=recs.strategy,
                   items=[ItemOut.of(i) for i in recs.items], ignored_items=recs.ignored_items)


class SessionRequest(_Body):
    """An anonymous visitor: the items of their session (oldest first), or a profile text, or both."""

    items: list[str] = Field(default_factory=list, max_length=1000, description="Item ids, oldest first.")
    profile: str | None = Field(None, max_length=5000,
                                description="Free text about the visitor, used without session items.")
    k: int = Field(10, ge=1, le=1000)
    exclude_seen: bool = True
    categories: list[str] = Field(default_factory=list, max_length=50,
                                  description="Keep only these categories.")
    exclude_categories: list[str] = Field(default_factory=list, max_length=50)
    diversity: float | None = Field(None, ge=0.0, le=1.0, description="MMR weight; default from settings.")
    explain: bool = False


class SimilarOut(BaseModel):
    item_id: str
    by: Literal["text", "behaviour"]
    model_version: str
    items: list[ItemOut]
    note: str | None = None

    @classmethod
    def of(cls, s: eng.SimilarItems) -> SimilarOut:
        return cls(item_id=s.item_id, by=s.by, model_version=s.model_version,  # type: ignore[arg-type]
                   items=[ItemOut.of(i) for i in s.items], note=s.note)


class PredictionsOut(BaseModel):
    user_id: str
    model_version: str
    ratings: dict[str, float] | None = Field(None, description="Predicted rating per requested item.")
    next_action: dict[str, float] | None = Field(None, description="Probability of each next event type.")
    value: float | None = Field(None, description="Predicted user value.")


# ---------------------------------------------------------------------- writes
class EventIn(_Body):
    event_id: str | None = Field(None, max_length=256,
                                 description="Makes ingestion idempotent; derived from the fields if absent.")
    user_id: str = _ID
    item_id: str = _ID
    event_type: str = Field("view", min_length=1, max_length=64,
                            description="view, click, cart, purchase, rating, like, dislike, skip, ...")
    timestamp: int | None = Field(None, ge=0, description="Seconds since the epoch (UTC); now when absent.")
    value: float | None = Field(None, description="A rating, an amount, a watch time...")


class EventsIn(_Body):
    events: list[EventIn] = Field(min_length=1)


class EventsOut(BaseModel):
    accepted: int = Field(description="New events stored and applied.")
    duplicates: int = Field(description="Events whose id was already stored (ignored).")
    users: int

    @classmethod
    def of(cls, r: eng.IngestResult) -> EventsOut:
        return cls(accepted=r.accepted, duplicates=r.duplicates, users=r.users)


class ItemIn(_Body):
    item_id: str = _ID
    title: str | None = Field(None, max_length=1000)
    description: str | None = Field(None, max_length=20_000)
    categories: list[str] = Field(default_factory=list, max_length=100)
    attributes: dict[str, str | int | float | bool | None] | None = Field(None, description="Free fields.")


class ItemsIn(_Body):
    items: list[ItemIn] = Field(min_length=1)


class ItemsOut(BaseModel):
    created: int
    updated: int
    encoded: int = Field(description="Items whose text was encoded into vectors.")
    catalogue_size: int

    @classmethod
    def of(cls, r: eng.UpsertResult) -> ItemsOut:
        return cls(created=r.created, updated=r.updated, encoded=r.encoded, catalogue_size=r.catalogue_size)


class ErasureOut(BaseModel):
    user_id: str
    events_deleted: int
    profile_deleted: bool
    cache_cleared: bool


# ---------------------------------------------------------------------- admin, health, errors
class ModelOut(BaseModel):
    version: str
    model: str
    catalogue_size: int
    active: bool = True


class VersionsOut(BaseModel):
    active: str
    versions: list[str]


class HealthOut(BaseModel):
    status: Literal["ok", "starting"]
    model_version: str | None = None


class ErrorOut(BaseModel):
    error: str = Field(description="A short machine-readable code.")
    detail: str | list[dict[str, str]] = Field(description="What went wrong; for 422, one entry per field.")
    request_id: str


ERRORS: dict[int | str, dict[str, object]] = {
    c: {"model": ErrorOut} for c in (401, 403, 404, 409, 413, 422)
}
