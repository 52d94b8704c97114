"""Dependencies the routes declare with ``Annotated`` aliases: the engine, the settings and API-key scopes.

They are ``async`` because they only read app state (and, once per key every few seconds, the key table):
FastAPI runs a plain ``def`` dependency in a worker thread, a hop that would cost more than the work.

Every route is a :class:`GuardedRoute`: it checks the key (and the key's rate) *before* the body is read or
parsed, so a request without a valid key gets 401 whatever its body, and opens the audit entry of a write or
admin call, which :class:`~lmrec.serving.observability.ServiceMiddleware` records once the status is known.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader

from lmrec.serving.engine import Engine
from lmrec.serving.observability import LiveStats, Metrics
from lmrec.serving.security import Authenticator
from lmrec.serving.settings import ServingSettings
from lmrec.store.audit import AuditEntry
from lmrec.store.keys import ApiKey, parse_key

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="An lmrec API key (`lmrec keys create`); not needed in dev mode.")

_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
#: POST routes that only read.
_READ_POSTS = {"/v1/recommendations"}


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def get_settings(request: Request) -> ServingSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


async def get_stats(request: Request) -> LiveStats:
    return request.app.state.stats  # type: ignore[no-any-return]


def _presented(request: Request, header: str | None = None) -> str | None:
    header = header or request.headers.get("x-api-key")
    if header:
        return header
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _check(request: Request, scope: str) -> ApiKey | None:
    """Authenticate once per request (the route checks before the body, the dependency reuses it)."""
    state = request.state
    if getattr(state, "auth_checked", None) == scope:
        return state.api_key  # type: ignore[no-any-return]
    presented = _presented(request)
    entry: AuditEntry | None = getattr(state, "audit", None)
    if entry is not None and presented and (parsed := parse_key(presented)) is not None:
        entry.key_id = parsed[0]  # the id it claims; never the secret
    auth: Authenticator = request.app.state.auth
    key = auth.check(presented, scope)
    auth.take(key)  # 429 when the key is over its rate
    state.api_key, state.auth_checked = key, scope
    return key


def _require(scope: str):  # noqa: ANN202 - a dependency factory
    async def dependency(request: Request, key: Annotated[str | None,
                                                    Security(api_key_header)] = None) -> ApiKey | None:
        return _check(request, scope)

    dependency.__name__ = f"require_{scope}"
    dependency.lmrec_scope = scope  # type: ignore[attr-defined]
    return dependency


def audited(method: str, path: str) -> bool:
    """Whether calls to this route are written to the audit log: every write and every admin call."""
    return path.startswith("/v1/admin") or (method in _WRITE_METHODS and path not in _READ_POSTS)


class GuardedRoute(APIRoute):
    """A route that authenticates before reading the body and opens the audit entry of write/admin calls."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        scope = next((getattr(d.call, "lmrec_scope", None) for d in self.dependant.dependencies
                      if getattr(d.call, "lmrec_scope", None)), None)
        path = self.path
        methods = self.methods or set()

        async def handler(request: Request) -> Response:
            if audited(request.method, path) and request.method in methods:
                request.state.audit = AuditEntry(request.method, path,
                                                 request_id=getattr(request.state, "request_id", None))
            if scope is not None:
                _check(request, scope)
            return await original(request)

        return handler


def audit_of(request: Request) -> AuditEntry | None:
    """The open audit entry of this request (routes fill in the target and the count)."""
    return getattr(request.state, "audit", None)


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[ServingSettings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
StatsDep = Annotated[LiveStats, Depends(get_stats)]
ReadAccess = Annotated[ApiKey | None, Depends(_require("read"))]
WriteAccess = Annotated[ApiKey | None, Depends(_require("write"))]
AdminAccess = Annotated[ApiKey | None, Depends(_require("admin"))]
