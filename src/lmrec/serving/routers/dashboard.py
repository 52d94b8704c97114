"""A self-contained web dashboard, and the JSON it reads: the service, model versions with their offline and
online figures, experiments with per-arm metrics, a user's timeline beside their recommendations, and
ingestion and update activity."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse

from lmrec.privacy import user_key
from lmrec.serving.dashboard_page import PAGE
from lmrec.serving.deps import AdminAccess, EngineDep, GuardedRoute, ReadAccess, StatsDep
from lmrec.serving.engine import RecRequest
from lmrec.serving.errors import NotFoundError
from lmrec.serving.experiments import version_info
from lmrec.serving.schemas import RecommendationsOut
from lmrec.store.experiments import iso
from lmrec.store.keys import event_activity, user_timeline

router = APIRouter(route_class=GuardedRoute, tags=["dashboard"])


@router.get("/dashboard", response_class=HTMLResponse, summary="The web dashboard (HTML)")
def dashboard() -> HTMLResponse:
    return HTMLResponse(PAGE)


@router.get("/v1/dashboard/stats", summary="What the dashboard shows: model, catalogue, recent latency")
def stats(engine: EngineDep, live: StatsDep, _: ReadAccess) -> dict[str, Any]:
    return {**engine.status(), "requests": live.summary()}


def _figure(metric: dict[str, Any]) -> dict[str, Any]:
    return {k: metric.get(k) for k in ("value", "low", "high")}


@router.get("/v1/dashboard/versions",
            summary="Model versions, oldest first: offline figures (their folders) and online figures "
                    "(the experiment arms that served them)")
def versions(engine: EngineDep, _: ReadAccess) -> dict[str, Any]:
    online: dict[str, list[dict[str, Any]]] = {}
    for rep in engine.experiments.reports():
        for arm in rep["arms"]:
            online.setdefault(arm["version"], []).append({
                "experiment": rep["name"], "arm": arm["arm"], "status": rep["status"], "users": arm["users"],
                "answers": arm["answers"], "started": iso(rep["created_at"]),
                **{m: _figure(v) for m, v in arm["metrics"].items()}})
    active = engine.bundle.version
    out = []
    for v in engine.versions():
        try:
            info = version_info(engine.version_path(v))
        except NotFoundError:  # the active model lives outside the registry
            info = {"version": v, "model": engine.bundle.model_name, "saved_at": None, "offline": {}}
        out.append({**info, "saved": iso(info["saved_at"]), "active": v == active,
                    "online": online.get(v, [])})
    out.sort(key=lambda r: (r["saved_at"] is None, r["saved_at"] or 0, r["version"]))
    return {"active": active, "versions": out}


@router.get("/v1/dashboard/experiments", summary="Every experiment with per-arm metrics, intervals and tests")
def experiments(engine: EngineDep, _: ReadAccess) -> list[dict[str, Any]]:
    reports = engine.experiments.reports()
    for r in reports:
        r["created"], r["stopped"] = iso(r["created_at"]), iso(r["stopped_at"])
    return reports


@router.get("/v1/dashboard/users/{user_id}/timeline",
            summary="A user's events (newest first, with titles) and their recommendations now, explained "
                    "(admin: a user's history is personal data; this look is not recorded as an answer)")
def timeline(user_id: Annotated[str, Path(min_length=1, max_length=256)], engine: EngineDep, _: AdminAccess,
             limit: Annotated[int, Query(ge=1, le=1000)] = 50,
             k: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, Any]:
    uid = user_key(user_id)
    engine.writer.flush()
    events = user_timeline(engine.reader, uid, limit)
    for e in events:
        e["time"] = iso(e["timestamp"])
    recs, note = None, None
    try:
        recs = RecommendationsOut.of(engine.user_recommendations(uid, RecRequest(k=k, explain=True),
                                                                 record=False), user_id).model_dump()
    except NotFoundError as exc:
        note = exc.message
    return {"user_id": user_id, "events": events, "recommendations": recs, "note": note}


@router.get("/v1/dashboard/activity",
            summary="Ingestion and update activity: events by type over the newest days of event time, and "
                    "the service's write and admin calls (events, items, model swaps, experiments) per hour")
def activity(engine: EngineDep, _: ReadAccess,
             days: Annotated[int, Query(ge=1, le=365)] = 14,
             hours: Annotated[int, Query(ge=1, le=24 * 90)] = 48) -> dict[str, Any]:
    engine.writer.flush()
    newest = engine.reader.execute("SELECT max(timestamp) FROM events")[0][0]
    bucket = 86_400 if days > 2 else 3_600
    since = (int(newest) // bucket + 1) * bucket - days * 86_400 if newest is not None else 0
    rows = event_activity(engine.reader, since, bucket) if newest is not None else []
    totals: dict[int, int] = dict.fromkeys(range(since, int(newest) + 1, bucket), 0) if newest is not None \
        else {}
    for t, _, n in rows:
        totals[t] = totals.get(t, 0) + n
    calls = engine.audit.per_hour(datetime.now() - timedelta(hours=hours))
    for c in calls:
        c["hour"] = c["hour"].isoformat(timespec="minutes")
    answers = engine.experiments.table.exposures_per_hour(time.time() - hours * 3600)
    return {"events": {"bucket_s": bucket, "since": iso(since) if newest is not None else None,
                       "rows": [{"t": iso(t), "event_type": et, "count": n} for t, et, n in rows],
                       "totals": [{"t": iso(t), "count": n} for t, n in sorted(totals.items())]},
            "calls": calls,
            "answers": [{"hour": iso(h), "answers": n} for h, n in answers.iter_rows()],
            "events_committed": engine.writer.committed, "catalogue_size": engine.bundle.n_items}
