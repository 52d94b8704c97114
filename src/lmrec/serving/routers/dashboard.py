"""A self-contained web dashboard: model, catalogue, live request stats, and a recommendation form."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from lmrec.serving.dashboard_page import PAGE
from lmrec.serving.deps import EngineDep, GuardedRoute, ReadAccess, StatsDep

router = APIRouter(route_class=GuardedRoute, tags=["dashboard"])


@router.get("/dashboard", response_class=HTMLResponse, summary="The web dashboard (HTML)")
def dashboard() -> HTMLResponse:
    return HTMLResponse(PAGE)


@router.get("/v1/dashboard/stats", summary="What the dashboard shows: model, catalogue, recent latency")
def stats(engine: EngineDep, live: StatsDep, _: ReadAccess) -> dict[str, Any]:
    return {**engine.status(), "requests": live.summary()}
