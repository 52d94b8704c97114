"""Users: predictions from multi-task heads, and erasure."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request

from lmrec.privacy import user_key, user_tag
from lmrec.serving.deps import AdminAccess, EngineDep, GuardedRoute, ReadAccess, audit_of
from lmrec.serving.schemas import ERRORS, ErasureOut, PredictionsOut

router = APIRouter(route_class=GuardedRoute, prefix="/v1/users", tags=["users"], responses=ERRORS)

UserId = Annotated[str, Path(min_length=1, max_length=256)]


@router.get("/{user_id}/predictions", response_model=PredictionsOut,
            summary="Rating for given items, next action type and user value (models with those heads)")
def predictions(
    user_id: UserId, engine: EngineDep, _: ReadAccess,
    items: Annotated[list[str] | None, Query(max_length=1000,
                                             description="Items to predict a rating for.")] = None,
    heads: Annotated[list[Literal["rating", "next_action", "value"]] | None, Query(
        description="Which predictions; default: every head the model has.")] = None,
) -> PredictionsOut:
    p, version = engine.predictions(user_key(user_id), list(items or []), list(heads or []) or None)
    return PredictionsOut(user_id=user_id, model_version=version, ratings=p.ratings,
                          next_action=p.next_action,
                          value=p.value)


@router.delete("/{user_id}", response_model=ErasureOut,
               summary="Erase a user: events, profile and all cached state; afterwards the user is unknown")
def erase_user(user_id: UserId, request: Request, engine: EngineDep, _: AdminAccess) -> ErasureOut:
    if (entry := audit_of(request)) is not None:
        entry.target = user_tag(user_key(user_id))  # never the raw id: the audit log outlives the erasure
    removed = engine.erase_user(user_key(user_id))
    return ErasureOut(user_id=user_id, events_deleted=removed["events"],
                      profile_deleted=bool(removed["users"]),
                      cache_cleared=bool(removed["cached"]))
