"""Behaviour events: ingested in batches, idempotent by event id, answered once committed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from lmrec.privacy import user_key
from lmrec.serving.deps import EngineDep, GuardedRoute, WriteAccess, audit_of
from lmrec.serving.schemas import ERRORS, EventsIn, EventsOut

router = APIRouter(route_class=GuardedRoute, prefix="/v1/events", tags=["events"], responses=ERRORS)


@router.post("", response_model=EventsOut, summary="Ingest a batch of events (answered once they are stored)")
def ingest_events(body: EventsIn, request: Request, engine: EngineDep, _: WriteAccess) -> EventsOut:
    entry = audit_of(request)
    if entry is not None:
        entry.count, entry.status = len(body.events), 200  # committed with the events
    return EventsOut.of(engine.ingest([_keyed(e.model_dump()) for e in body.events], audit=entry))


def _keyed(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its user id as lmrec stores it (a pseudonym when pseudonyms are on)."""
    return {**event, "user_id": user_key(event["user_id"])} if event.get("user_id") is not None else event
