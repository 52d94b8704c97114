"""Live administration: API keys (create, list, revoke while serving), the audit log, and backups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from lmrec.serving.deps import AdminAccess, EngineDep, GuardedRoute, audit_of
from lmrec.serving.errors import CapabilityError, InvalidRequestError, NotFoundError
from lmrec.serving.schemas import (
    BACKUP_NAME_PATTERN,
    ERRORS,
    AuditOut,
    BackupIn,
    BackupOut,
    KeyIn,
    KeyOut,
    NewKeyOut,
)
from lmrec.store.backup import MANIFEST, archive, backup

router = APIRouter(route_class=GuardedRoute, prefix="/v1/admin", tags=["admin"], responses=ERRORS)

KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$", description="A key's id (`GET /v1/admin/keys`).")]
BackupName = Annotated[str, Path(pattern=BACKUP_NAME_PATTERN,
                                 description="A backup's name (as given to `POST /v1/admin/backup`).")]


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
    # The call's audit entry is written once the backup has finished, with its real status (the middleware
    # records it after the answer): a backup therefore holds the entries of the calls before it, not its own.
    if (entry := audit_of(request)) is not None:
        entry.target = body.name
    path = engine.settings.resolved_backup_dir() / body.name
    if path.exists():
        raise InvalidRequestError(f"a backup named {body.name!r} exists; choose a new name")
    engine.writer.flush()  # every call acknowledged before this one is in the snapshot
    try:
        manifest = backup(engine.store, path, engine.settings.resolved_models_dir())
    except OSError as exc:
        raise InvalidRequestError(f"cannot write the backup {body.name!r}: {exc}") from None
    return BackupOut(path=str(path), tables=manifest["tables"], models=manifest["models"])


@router.get("/backups/{name}", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-tar": {}},
                             "description": "The backup folder as an uncompressed tar (relative names)."}},
            summary="Download a backup written by POST /v1/admin/backup, as a tar stream")
def download_backup(name: BackupName, request: Request, engine: EngineDep,
                    _: AdminAccess) -> StreamingResponse:
    if (entry := audit_of(request)) is not None:
        entry.target = name
    path = engine.settings.resolved_backup_dir() / name
    if not (path / MANIFEST).is_file():
        raise NotFoundError(f"no backup named {name!r}")
    return StreamingResponse(archive(path), media_type="application/x-tar",
                             headers={"Content-Disposition": f'attachment; filename="{name}.tar"'})
