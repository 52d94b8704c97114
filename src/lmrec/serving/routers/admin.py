"""Model versions: list them, and hot-swap to another without failing a request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from lmrec.serving.deps import AdminAccess, EngineDep
from lmrec.serving.schemas import ERRORS, ModelOut, VersionsOut

router = APIRouter(prefix="/v1/admin/models", tags=["admin"], responses=ERRORS)


@router.get("", response_model=VersionsOut, summary="Model versions available in the models directory")
def list_versions(engine: EngineDep, _: AdminAccess) -> VersionsOut:
    return VersionsOut(active=engine.bundle.version, versions=engine.versions())


@router.post("/{version}/activate", response_model=ModelOut, summary="Load a model version, then swap it in")
def activate(version: Annotated[str, Path(min_length=1, max_length=256)], engine: EngineDep,
             _: AdminAccess) -> ModelOut:
    b = engine.activate(version)
    return ModelOut(version=b.version, model=b.model_name, catalogue_size=b.n_items)
