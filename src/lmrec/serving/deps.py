"""Dependencies the routes declare with ``Annotated`` aliases: the engine, the settings and API-key scopes.

They are ``async`` because they only read app state (and, once per key every few seconds, the key table):
FastAPI runs a plain ``def`` dependency in a worker thread, a hop that would cost more than the work.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from lmrec.serving.engine import Engine
from lmrec.serving.observability import LiveStats, Metrics
from lmrec.serving.security import Authenticator
from lmrec.serving.settings import ServingSettings
from lmrec.store.keys import ApiKey

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="An lmrec API key (`lmrec keys create`); not needed in dev mode.")


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def get_settings(request: Request) -> ServingSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


async def get_stats(request: Request) -> LiveStats:
    return request.app.state.stats  # type: ignore[no-any-return]


def _presented(request: Request, header: str | None) -> str | None:
    if header:
        return header
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _require(scope: str):  # noqa: ANN202 - a dependency factory
    async def dependency(request: Request, key: Annotated[str | None,
                                                    Security(api_key_header)] = None) -> ApiKey | None:
        auth: Authenticator = request.app.state.auth
        return auth.check(_presented(request, key), scope)

    dependency.__name__ = f"require_{scope}"
    return dependency


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[ServingSettings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
StatsDep = Annotated[LiveStats, Depends(get_stats)]
ReadAccess = Annotated[ApiKey | None, Depends(_require("read"))]
WriteAccess = Annotated[ApiKey | None, Depends(_require("write"))]
AdminAccess = Annotated[ApiKey | None, Depends(_require("admin"))]
