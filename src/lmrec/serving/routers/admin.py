"""Model versions: list them, and hot-swap to another without failing a request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from lmrec.serving.deps import AdminAccess, EngineDep, GuardedRoute, audit_of
from lmrec.serving.schemas import ERRORS, ModelOut, VersionsOut

router = APIRouter(route_class=GuardedRoute, prefix="/v1/admin/models", tags=["admin"], responses=ERRORS)

#: A version is one folder name: letters, digits, '.', '_' and '-', not starting with '.'.
VERSION_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"


@router.get("", response_model=VersionsOut, summary="Model versions available in the models directory")
def list_versions(engine: EngineDep, _: AdminAccess) -> VersionsOut:
    return VersionsOut(active=engine.bundle.version, versions=engine.versions())


@router.post("/{version}/activate", response_model=ModelOut, summary="Load a model version, then swap it in")
def activate(version: Annotated[str, Path(pattern=VERSION_PATTERN, description="A folder name in the models "
                                                                                "directory.")],
             request: Request, engine: EngineDep, _: AdminAccess) -> ModelOut:
    if (entry := audit_of(request)) is not None:
        entry.target = version
    b = engine.activate(version)
    return ModelOut(version=b.version, model=b.model_name, catalogue_size=b.n_items)
