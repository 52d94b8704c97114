"""Behaviour events: ingested in batches, idempotent by event id, visible to the next recommendation."""

from __future__ import annotations

from fastapi import APIRouter

from lmrec.serving.deps import EngineDep, WriteAccess
from lmrec.serving.schemas import ERRORS, EventsIn, EventsOut

router = APIRouter(prefix="/v1/events", tags=["events"], responses=ERRORS)


@router.post("", response_model=EventsOut, summary="Ingest a batch of events")
def ingest_events(body: EventsIn, engine: EngineDep, _: WriteAccess) -> EventsOut:
    return EventsOut.of(engine.ingest([e.model_dump() for e in body.events]))
