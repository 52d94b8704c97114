"""Liveness, readiness and Prometheus metrics (no key needed: probes and scrapers are infrastructure)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lmrec.serving.deps import GuardedRoute, MetricsDep
from lmrec.serving.schemas import HealthOut

router = APIRouter(route_class=GuardedRoute, tags=["health"])


@router.get("/health/live", response_model=HealthOut, summary="The process is up")
def live() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/health/ready", response_model=HealthOut, summary="A model is loaded and the store answers",
            responses={503: {"model": HealthOut}})
def ready(request: Request, response: Response) -> HealthOut:
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        response.status_code = 503
        return HealthOut(status="starting")
    engine.store.ping()
    return HealthOut(status="ok", model_version=engine.bundle.version)


@router.get("/metrics", summary="Prometheus metrics: request counts, latency histograms, model version",
            response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(m: MetricsDep) -> Response:
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
