"""Request and response bodies of the HTTP API (kept apart from the store's tables and the engine's
objects)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lmrec.data.cleaning import iso_seconds
from lmrec.evaluation.abtest import NAME_PATTERN
from lmrec.serving import engine as eng
from lmrec.store.experiments import iso

_ID = Field(min_length=1, max_length=256)


class _Body(BaseModel):
    # Strict: ``"value": false`` or ``"explain": 0`` is a 422, not a silent conversion.
    model_config = ConfigDict(extra="forbid", strict=True)


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
    strategy: str = Field(description="model, ann+rescore (one model: index candidates scored exactly), "
                                      "candidates (a blend: each component's candidates, blended exactly), "
                                      "profile-text or popularity")
    items: list[ItemOut]
    ignored_items: list[str] = Field(default_factory=list,
                                     description="Session items the model does not know.")
    fallback: str | None = Field(None, description="Set when a fallback answered instead of the user's own "
                                                   "history: 'unknown-user' (asked with unknown=popular).")
    list_id: str = Field(description="This answer's id: send it (with the item's position, 0 first) on the "
                                     "events that follow from it (a click, a cart) to join them to what was "
                                     "shown. A known user's answer is stored as impression events under it "
                                     "unless log_impressions is off; an experiment records it under the same "
                                     "id.")
    experiment: str | None = Field(None, description="The online experiment this user is in, if any.")
    arm: str | None = Field(None, description="The experiment's arm that answered (its model version is "
                                              "model_version).")

    @classmethod
    def of(cls, recs: eng.Recommendations, user_id: str | None = None) -> RecommendationsOut:
        return cls(user_id=user_id, model_version=recs.model_version, strategy=recs.strategy,
                   items=[ItemOut.of(i) for i in recs.items], ignored_items=recs.ignored_items,
                   fallback=recs.fallback, list_id=recs.list_id, experiment=recs.experiment, arm=recs.arm)


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
    diversity: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False,
                                    description="MMR weight; default from settings.")
    max_group_share: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False,
                                          description="No category above this share of the list (1 = off); "
                                                      "default from settings.")
    min_tail_share: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False,
                                         description="At least this share of long-tail items (0 = off); "
                                                     "default from settings.")
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
                            description="view, click, cart, purchase, rating, like, dislike, skip, ..., or "
                                        "impression (the item was shown: kept apart, never history)")
    timestamp: int | None = Field(None, description="Seconds (or milliseconds, above 1e11) since the epoch "
                                                    "(UTC), or ISO-8601 text as a CSV import takes it "
                                                    "(2026-11-29T10:15:00Z; naive means UTC), up to "
                                                    "9999-12-31; now when absent.",
                                  json_schema_extra={"anyOf": [{"type": "integer"}, {"type": "string"},
                                                               {"type": "null"}]})
    value: float | None = Field(None, allow_inf_nan=False, description="A rating, an amount, a watch time...")
    list_id: str | None = Field(None, max_length=256,
                                description="The list the item was shown in or clicked from (a "
                                            "recommendation answer's list_id).")
    position: int | None = Field(None, ge=0, le=2**31 - 1,
                                 description="The item's place in that list, 0 for the first.")

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_text(cls, v: object) -> object:
        """ISO-8601 text → whole seconds (the same reading as the importer's); numbers pass to the strict
        integer check unchanged."""
        if not isinstance(v, str):
            return v
        seconds = iso_seconds(v.strip())
        if seconds is None:
            raise ValueError(f"timestamp {v!r} is neither a number nor ISO-8601 text")
        return int(seconds)


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
    attributes: dict[str, str | int | float | bool | None] | None = Field(
        None, max_length=100, description="Free fields (finite numbers).")

    @field_validator("attributes")
    @classmethod
    def _finite(cls, v: dict[str, object] | None) -> dict[str, object] | None:
        for name, x in (v or {}).items():
            if isinstance(x, float) and not math.isfinite(x):
                raise ValueError(f"attribute {name!r} is not a finite number")
        return v


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


_ERROR_TEXT = {400: "Malformed request", 401: "No, malformed or revoked API key",
               403: "The key lacks the scope", 404: "Not found", 409: "Not supported by the active model",
               413: "Request body too large", 422: "Validation error (one entry per field)",
               429: "The key is over its rate limit (see Retry-After)",
               503: "Not stored: the commit failed (resending is safe)"}
ERRORS: dict[int | str, dict[str, object]] = {
    c: {"model": ErrorOut, "description": text} for c, text in _ERROR_TEXT.items()
}


# ---------------------------------------------------------------------- live administration
class KeyIn(_Body):
    name: str = Field(min_length=1, max_length=200, description="Who or what the key is for.")
    scopes: list[Literal["read", "write", "admin"]] = Field(min_length=1, max_length=3)
    rate_limit: float | None = Field(None, gt=0, le=1e6, allow_inf_nan=False,
                                     description="Requests per second (default: the service's).")


class KeyOut(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    created_at: str | None
    revoked_at: str | None
    rate_limit: float | None

    @classmethod
    def of(cls, k: object) -> KeyOut:
        return cls(key_id=k.key_id, name=k.name, scopes=list(k.scopes),  # type: ignore[attr-defined]
                   created_at=None if k.created_at is None else str(k.created_at),  # type: ignore[attr-defined]
                   revoked_at=None if k.revoked_at is None else str(k.revoked_at),  # type: ignore[attr-defined]
                   rate_limit=k.rate_limit)  # type: ignore[attr-defined]


class NewKeyOut(KeyOut):
    key: str = Field(description="The full key: shown only now, only its hash is stored.")


class AuditOut(BaseModel):
    logged_at: str
    key_id: str | None
    method: str
    route: str
    target: str | None
    status: int
    count: int | None
    request_id: str | None


#: A backup's name: one folder name under the service's backup_dir (no path, no leading dot).
BACKUP_NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"


class BackupIn(_Body):
    name: str = Field(pattern=BACKUP_NAME_PATTERN,
                      description="A new folder name under the service's backup_dir.")


class BackupOut(BaseModel):
    path: str
    tables: dict[str, dict[str, int | str]] = Field(description="Rows and content hash per table.")
    models: list[str] = Field(description="Model versions copied.")


# ---------------------------------------------------------------------- onboarding
class AnswerIn(_Body):
    item_id: str = _ID
    chose: bool = Field(description="Whether the user picked (knows, likes) the item asked about.")


class OnboardingIn(_Body):
    answers: list[AnswerIn] = Field(default_factory=list, max_length=200,
                                    description="The answers so far, in the order they were given.")
    n: int = Field(5, ge=1, le=50, description="How many questions to return, most informative first.")
    k: int = Field(10, ge=1, le=1000, description="How many first recommendations, from the answers.")
    user_id: str | None = Field(None, min_length=1, max_length=256,
                                description="Store the 'yes' answers as `like` events of this user, so "
                                            "their recommendations follow from them at once.")


class OnboardingOut(BaseModel):
    model_version: str
    questions: list[ItemOut] = Field(description="Items to ask about next (score 0: not a ranking).")
    recommendations: list[ItemOut] = Field(description="First recommendations from the answers (none before "
                                                       "the first answer).")
    events_added: int = Field(description="'yes' answers stored as like events of user_id.")


# ---------------------------------------------------------------------- online experiments
class ArmIn(_Body):
    name: str = Field(pattern=NAME_PATTERN, description="The arm's name (the first arm is the control).")
    version: str = Field(pattern=NAME_PATTERN, description="A model version: a folder of the models "
                                                           "directory.")
    share: float = Field(gt=0.0, le=1.0, allow_inf_nan=False, description="Its share of all users.")


class ExperimentIn(_Body):
    name: str = Field(pattern=NAME_PATTERN)
    arms: list[ArmIn] = Field(min_length=2, max_length=26,
                              description="Two or more arms; shares add up to at most 1 (the rest of the "
                                          "users get the active model and are not in the experiment).")
    salt: str = Field("", pattern=r"^[A-Za-z0-9._:@/+=-]{0,128}$",
                      description="Bucketing key (default: the name): letters, digits and ._:@/+=-")
    window_s: int = Field(86_400, gt=0, le=90 * 86_400,
                          description="Seconds after an answer during which events on its items count.")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="Significance level of the tests.")
    description: str = Field("", max_length=2000)

    @field_validator("description")
    @classmethod
    def _printable(cls, v: str) -> str:
        if any((ord(c) < 32 and c not in "\t\n") or 0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise ValueError("a description holds printable text (no control characters)")
        return v


class ExperimentOut(BaseModel):
    name: str
    salt: str
    arms: list[dict[str, Any]]
    window_s: int
    alpha: float
    description: str | None = None
    status: Literal["running", "stopped"]
    created_at: str
    stopped_at: str | None = None

    @classmethod
    def of(cls, record: dict[str, Any]) -> ExperimentOut:
        return cls(name=record["name"], salt=record["salt"], arms=record["arms"], window_s=record["window_s"],
                   alpha=record["alpha"], description=record.get("description"),
                   status="running" if record.get("stopped_at") is None else "stopped",
                   created_at=iso(record["created_at"]) or "", stopped_at=iso(record.get("stopped_at")))


class ExperimentReportOut(ExperimentOut):
    correction: str
    tests: list[dict[str, Any]] = Field(description="Each treatment arm against the control, per metric: "
                                                    "difference with its interval, p-value, Holm-adjusted "
                                                    "p-value, significant.")

    @classmethod
    def of_report(cls, report: dict[str, Any]) -> ExperimentReportOut:
        base = ExperimentOut.of(report).model_dump()
        return cls(**{**base, "arms": report["arms"]}, correction=report["correction"], tests=report["tests"])
