"""Live administration: API keys (create, list, revoke while serving), the audit log, and backups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from lmrec.serving.deps import AdminAccess, EngineDep, GuardedRoute, audit_of
from lmrec.serving.errors import CapabilityError, InvalidRequestError, NotFoundError
from lmrec.serving.schemas import ERRORS, AuditOut, BackupIn, BackupOut, KeyIn, KeyOut, NewKeyOut
from lmrec.store.backup import backup

router = APIRouter(route_class=GuardedRoute, prefix="/v1/admin", tags=["admin"], responses=ERRORS)

KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$", description="A key's id (`GET /v1/admin/keys`).")]


@router.get("/keys", response_model=list[KeyOut], summary="API keys (ids, names, scopes, state; no secrets)")
def list_keys(engine: EngineDep, _: AdminAccess) -> list[KeyOut]:
    return [KeyOut.of(k) for k in engine.keys.list()]


@router.post("/keys", response_model=NewKeyOut, status_code=201,
             summary="Create an API key; the full key is in this answer only")
def create_key(body: KeyIn, request: Request, engine: EngineDep, _: AdminAccess) -> NewKeyOut:
    key, record = engine.keys.create(body.name, list(body.scopes), body.rate_limit)
    if (entry := audit_of(request)) is not None:
        entry.target = record.key_id
    return NewKeyOut(key=key, **KeyOut.of(record).model_dump())


@router.delete("/keys/{key_id}", response_model=KeyOut,
               summary="Revoke an API key; refused by this service from the next request")
def revoke_key(key_id: KeyId, request: Request, engine: EngineDep, caller: AdminAccess) -> KeyOut:
    if (entry := audit_of(request)) is not None:
        entry.target = key_id
    if caller is not None and caller.key_id == key_id:
        raise CapabilityError("a key cannot revoke itself (that would lock its holder out); "
                              "revoke it with another admin key")
    if not engine.keys.revoke(key_id):
        raise NotFoundError(f"no active key with id {key_id!r}")
    request.app.state.auth.forget()
    record = engine.keys.get(key_id)
    assert record is not None
    return KeyOut.of(record)


@router.get("/audit", response_model=list[AuditOut], summary="The audit log, newest first")
def audit(engine: EngineDep, _: AdminAccess,
          key_id: Annotated[str | None, Query(max_length=64, description="Only this key's calls.")] = None,
          route: Annotated[str | None, Query(max_length=256, description="Routes containing this.")] = None,
          target: Annotated[str | None, Query(max_length=256,
                                              description="Only calls on this target.")] = None,
          limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[AuditOut]:
    engine.writer.flush()  # entries queued a moment ago are included
    rows = engine.audit.query(key_id=key_id, route=route, target=target, limit=limit)
    return [AuditOut(**{**r, "logged_at": r["logged_at"].isoformat()}) for r in rows]


@router.post("/backup", response_model=BackupOut,
             summary="Write a consistent backup of the store and the model registry to backup_dir/NAME")
def make_backup(body: BackupIn, request: Request, engine: EngineDep, _: AdminAccess) -> BackupOut:
    path = engine.settings.resolved_backup_dir() / body.name
    if path.exists():
        raise InvalidRequestError(f"a backup named {body.name!r} exists; choose a new name")
    if (entry := audit_of(request)) is not None:
        entry.target = body.name
        entry.status = 200
        engine.writer.record(entry)  # so the backup holds its own entry
    engine.writer.flush()
    try:
        manifest = backup(engine.store, path, engine.settings.resolved_models_dir())
    except OSError as exc:
        raise InvalidRequestError(f"cannot write the backup {body.name!r}: {exc}") from None
    return BackupOut(path=str(path), tables=manifest["tables"], models=manifest["models"])
