"""The app factory: ``create_app(settings)`` builds the FastAPI service; nothing is created at import time."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmrec.data.cleaning import DataError
from lmrec.experiment.updates import UpdatePolicy
from lmrec.serving.bundle import ModelBundle
from lmrec.serving.engine import Engine
from lmrec.serving.errors import RateLimitedError, ServingError
from lmrec.serving.observability import LiveStats, Metrics, ServiceMiddleware
from lmrec.serving.replicas import ReplicaSync
from lmrec.serving.routers import (
    admin,
    admin_ops,
    dashboard,
    events,
    experiments,
    health,
    items,
    onboarding,
    recommendations,
    updates,
    users,
)
from lmrec.serving.security import Authenticator, AuthError
from lmrec.serving.settings import ServingSettings
from lmrec.serving.text import Encoder, load_encoder
from lmrec.serving.updater import BackgroundUpdater
from lmrec.store.duckdb_store import Store

log = logging.getLogger("lmrec.serving")

_UNSET: Any = object()


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def _error(request: Request, status: int, code: str, detail: Any,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, "request_id": _request_id(request)},
                        status_code=status,
                        headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """``('body', 'events', 0, 'user_id')`` → ``body.events[0].user_id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in exc.errors()]
        return _error(request, 422, "validation_error", detail)

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        located = exc.row is not None and exc.field
        field = f"body.events[{exc.row}].{exc.field}" if located else (exc.field or "")
        return _error(request, 422, "validation_error", [{"field": field, "message": str(exc)}])

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> JSONResponse:
        headers = None
        if isinstance(exc, RateLimitedError):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        return _error(request, exc.status, exc.code, exc.message, headers)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "ApiKey"} if exc.status == 401 else None
        return _error(request, exc.status, "unauthorized" if exc.status == 401 else "forbidden", exc.message,
                      headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(request, exc.status_code, code, exc.detail, getattr(exc, "headers", None))


def create_app(settings: ServingSettings | None = None, *, store: Store | None = None,
               encoder: Encoder | None = _UNSET, engine: Engine | None = None) -> FastAPI:
    """Build the lmrec service.

    Parameters
    ----------
    settings:
        The settings; by default read from ``LMREC_*`` environment variables now (not at import).
    store:
        An open store to use instead of opening ``settings.store`` (tests, embedding in another app).
    encoder:
        A text encoder to use instead of the one named by ``settings.text_encoder`` (``None``: text off).
    engine:
        A ready engine (then ``store`` and ``encoder`` are ignored).

    Returns
    -------
    The FastAPI app. The model is loaded when the app starts (its lifespan), so that building the app is cheap
    and readiness says when it is servable.
    """
    settings = settings or ServingSettings()
    metrics, stats = Metrics(), LiveStats(settings.stats_window)

    def on_activate(b: ModelBundle) -> None:
        metrics.set_model(b.version, b.model_name, b.n_items)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = False
        eng = engine
        if eng is None:
            enc = load_encoder(settings.text_encoder) if encoder is _UNSET else encoder
            st = store
            if st is None:
                st, own_store = Store(settings.store), True
            eng = Engine.open(settings, st, enc, on_activate)
        else:
            on_activate(eng.bundle)
        app.state.engine = eng
        app.state.auth = Authenticator(eng.keys, required=not settings.dev_mode,
                                       cache_seconds=settings.key_cache_seconds,
                                       rate_per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst)
        if settings.dev_mode:
            log.warning("dev mode: API keys are not checked")
        updater = BackgroundUpdater(eng, UpdatePolicy(holdout=settings.update_holdout,
                                                      tolerance=settings.update_tolerance,
                                                      passes=settings.update_passes),
                                    settings.update_interval_s, settings.update_min_events)
        app.state.updater = updater
        updater.start()
        # replicas on one PostgreSQL store follow each other's keys, erasures and model activations
        sync = ReplicaSync(eng, on_keys=app.state.auth.forget).start() if eng.shared else None
        try:
            yield
        finally:
            if sync is not None:
                sync.close()
            updater.stop()
            app.state.engine = None
            eng.close()
            if own_store:
                eng.store.close()

    # the docs pages load Swagger UI and ReDoc from files shipped in the fastapi-offline wheel, not a CDN, so
    # /docs and /redoc work on a machine without internet
    app = FastAPIOffline(
        title="lmrec",
        version="1",
        summary="Recommendations, similar items, predictions, real-time events and cold-start items.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.stats = stats
    app.state.engine = None
    for module in (recommendations, items, events, users, onboarding, admin, admin_ops, experiments, updates,
                   health, dashboard):
        app.include_router(module.router)
    _install_handlers(app)
    app.add_middleware(ServiceMiddleware, metrics=metrics, stats=stats,  # type: ignore[arg-type]
                       max_body_bytes=settings.max_body_bytes)
    return app
