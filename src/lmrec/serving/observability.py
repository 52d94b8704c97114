"""Request ids, size limits, error bodies without stack traces, Prometheus metrics and live stats.

One pure ASGI middleware does it all (Starlette's ``BaseHTTPMiddleware`` costs a task switch per request).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("lmrec.serving")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The service's Prometheus collectors, in a registry of their own (no process-global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lmrec_requests", "HTTP requests served.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("lmrec_request_seconds", "Request latency in seconds.", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model_info = Gauge("lmrec_model_info", "The active model (value 1).", ["version", "model"],
                                registry=self.registry)
        self.catalogue = Gauge("lmrec_catalogue_items", "Items the active model can recommend.",
                               registry=self.registry)
        self.swaps = Counter("lmrec_model_activations", "Model versions activated.", registry=self.registry)

    def set_model(self, version: str, model: str, n_items: int) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version, model=model).set(1)
        self.catalogue.set(n_items)
        self.swaps.inc()


class LiveStats:
    """The last N requests (route, status, seconds), for the dashboard."""

    def __init__(self, window: int = 2000) -> None:
        self._recent: deque[tuple[float, str, int, float]] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.total = 0
        self.started = time.time()

    def add(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._recent.append((time.time(), route, status, seconds))
            self.total += 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            recent = list(self._recent)
        routes: dict[str, list[tuple[int, float]]] = {}
        for _, route, status, secs in recent:
            routes.setdefault(route, []).append((status, secs))
        span = (recent[-1][0] - recent[0][0]) if len(recent) > 1 else 0.0
        out = {"total_requests": self.total, "window": len(recent), "uptime_s": time.time() - self.started,
               "requests_per_s": len(recent) / span if span > 0 else 0.0, "routes": {}}
        for route, rows in sorted(routes.items()):
            ms = np.array([r[1] for r in rows]) * 1000
            out["routes"][route] = {
                "count": len(rows), "errors": sum(1 for r in rows if r[0] >= 500),
                "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                "p99_ms": float(np.percentile(ms, 99))}
        return out


class BodyTooLarge(Exception):
    pass


def error_body(status: int, code: str, detail: Any, request_id: str) -> bytes:
    return json.dumps({"error": code, "detail": detail, "request_id": request_id}).encode()


class ServiceMiddleware:
    """Gives every request an id (``X-Request-ID``), refuses bodies over the limit (413), turns any unhandled
    exception into a generic 500 body (the trace goes to the log, never to the client), and records
    metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, stats: LiveStats, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.stats = stats
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        status = {"code": 500, "started": False}

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                raise BodyTooLarge
            if length is None and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
                # A chunked body has no length up front: read it here, so that an oversized one is a 413 (the
                # framework would turn an error while it reads the body into a 400).
                receive = await self._buffered(receive)
            else:
                receive = self._counting(receive)
            await self.app(scope, receive, send_wrapped)
        except BodyTooLarge:
            if not status["started"]:
                await self._respond(send_wrapped, 413, "payload_too_large",
                                    f"request body is larger than {self.max_body} bytes", rid)
        except Exception:
            # the route's template, not the path: a path can carry a user id, and logs must not
            route = getattr(scope.get("route"), "path", None) or "unmatched route"
            log.exception("request %s %s failed (request id %s)", scope.get("method"), route, rid)
            if not status["started"]:
                await self._respond(send_wrapped, 500, "internal_error",
                                    "internal server error; quote the request id when reporting it", rid)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            secs = time.perf_counter() - start
            method = scope.get("method", "")
            self.metrics.requests.labels(method=method, route=name, status=str(status["code"])).inc()
            self.metrics.latency.labels(method=method, route=name).observe(secs)
            self.stats.add(f"{method} {name}", int(status["code"]), secs)
            self._audit(scope, int(status["code"]))

    @staticmethod
    def _audit(scope: Scope, status: int) -> None:
        """Record the request's audit entry (opened by the route) unless the route already committed it."""
        entry = (scope.get("state") or {}).get("audit")
        if entry is None or entry.recorded:
            return
        entry.status = status
        engine = getattr(getattr(scope.get("app"), "state", None), "engine", None)
        if engine is not None:
            engine.writer.record(entry)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def receive_wrapped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge
            return message

        return receive_wrapped

    async def _buffered(self, receive: Receive) -> Receive:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first: Message = message
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                raise BodyTooLarge
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return first
            return await receive()

        return replay

    @staticmethod
    async def _respond(send: Send, status: int, code: str, detail: str, rid: str) -> None:
        body = error_body(status, code, detail, rid)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
