"""Incremental updates of the active model: their status, and a run on demand
(:mod:`lmrec.serving.updater`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lmrec.serving.deps import AdminAccess, EngineDep, GuardedRoute
from lmrec.serving.schemas import ERRORS

router = APIRouter(route_class=GuardedRoute, prefix="/v1/admin/updates", tags=["admin"], responses=ERRORS)


@router.get("", summary="The background updater: enabled, running, the last run's figures and verdict")
def update_status(request: Request, engine: EngineDep, _: AdminAccess) -> dict[str, Any]:
    return request.app.state.updater.status()


@router.post("/run", status_code=202, summary="Start an incremental update of the active model now "
                                              "(in the background; GET this collection for its outcome)")
def run_update(request: Request, engine: EngineDep, _: AdminAccess) -> JSONResponse:
    started = request.app.state.updater.trigger()
    return JSONResponse({"started": started, **({} if started else {"reason": "an update is running"})},
                        status_code=202 if started else 409)
