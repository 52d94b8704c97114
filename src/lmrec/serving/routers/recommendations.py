"""Recommendations for a known user, or for an anonymous session / profile text."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from lmrec.privacy import user_key
from lmrec.serving.deps import EngineDep, GuardedRoute, ReadAccess, SettingsDep
from lmrec.serving.engine import RecRequest
from lmrec.serving.schemas import ERRORS, RecommendationsOut, SessionRequest

router = APIRouter(route_class=GuardedRoute, prefix="/v1", tags=["recommendations"], responses=ERRORS)

UserId = Annotated[str, Path(min_length=1, max_length=256, description="The user's id.")]


@router.get("/users/{user_id}/recommendations", response_model=RecommendationsOut,
            summary="Top-k items for a user, reflecting every event ingested so far")
def user_recommendations(
    user_id: UserId, engine: EngineDep, settings: SettingsDep, _: ReadAccess,
    k: Annotated[int, Query(ge=1, le=1000, description="How many items.")] = 10,
    exclude_seen: Annotated[bool, Query(description="Drop items the user already interacted with.")] = True,
    category: Annotated[list[str] | None, Query(description="Keep only items in these categories.")] = None,
    exclude_category: Annotated[list[str] | None,
                                Query(description="Drop items in these categories.")] = None,
    diversity: Annotated[float | None, Query(ge=0.0, le=1.0, description="MMR diversity weight.")] = None,
    explain: Annotated[bool, Query(description="Say why each item was recommended.")] = False,
    max_group_share: Annotated[float | None, Query(
        gt=0.0, le=1.0, description="Exposure cap: no category above this share of the list (1 = off).",
    )] = None,
    min_tail_share: Annotated[float | None, Query(
        ge=0.0, le=1.0, description="At least this share of long-tail items in the list (0 = off).",
    )] = None,
    unknown: Annotated[Literal["error", "popular"], Query(
        description="A user the service does not know: 'error' (404) or 'popular' (the most popular items, "
                    "marked fallback='unknown-user').")] = "error",
) -> RecommendationsOut:
    req = RecRequest(k, exclude_seen, tuple(category or ()), tuple(exclude_category or ()),
                     settings.diversity if diversity is None else diversity, explain, unknown,
                     settings.max_group_share if max_group_share is None else max_group_share,
                     settings.min_tail_share if min_tail_share is None else min_tail_share)
    return RecommendationsOut.of(engine.user_recommendations(user_key(user_id), req), user_id)


@router.post("/recommendations", response_model=RecommendationsOut,
             summary="Top-k items for an anonymous session (item ids) or a cold user's profile text")
def session_recommendations(body: SessionRequest, engine: EngineDep, settings: SettingsDep,
                            _: ReadAccess) -> RecommendationsOut:
    req = RecRequest(body.k, body.exclude_seen, tuple(body.categories), tuple(body.exclude_categories),
                     settings.diversity if body.diversity is None else body.diversity, body.explain,
                     max_group_share=(settings.max_group_share if body.max_group_share is None
                                      else body.max_group_share),
                     min_tail_share=(settings.min_tail_share if body.min_tail_share is None
                                     else body.min_tail_share))
    return RecommendationsOut.of(engine.session_recommendations(body.items, body.profile, req))
