"""Onboarding a new user by active learning: the most informative questions, then first recommendations."""

from __future__ import annotations

from fastapi import APIRouter, Request

from lmrec.privacy import user_key
from lmrec.serving.deps import EngineDep, GuardedRoute, WriteAccess, audit_of
from lmrec.serving.schemas import ERRORS, ItemOut, OnboardingIn, OnboardingOut

router = APIRouter(route_class=GuardedRoute, prefix="/v1/onboarding", tags=["onboarding"], responses=ERRORS)


@router.post("/questions", response_model=OnboardingOut,
             summary="Items a new user should be asked about next, and first recommendations from the "
                     "answers")
def questions(body: OnboardingIn, request: Request, engine: EngineDep, _: WriteAccess) -> OnboardingOut:
    """Ask about the returned items (one at a time works best: post again with each new answer); the "yes"
    answers are the user's first history. With `user_id` they are also stored as `like` events, so
    `GET /v1/users/{user_id}/recommendations` follows from them at once."""
    answers = {a.item_id: a.chose for a in body.answers}
    user = user_key(body.user_id) if body.user_id is not None else None
    qs, recs, added = engine.onboarding(answers, body.n, body.k, user)
    if (entry := audit_of(request)) is not None:
        entry.count = added
    return OnboardingOut(model_version=engine.bundle.version, questions=[ItemOut.of(q) for q in qs],
                         recommendations=[ItemOut.of(r) for r in recs], events_added=added)
