"""The catalogue: similar items, and adding or changing items (cold start at once)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request

from lmrec.serving.deps import EngineDep, GuardedRoute, ReadAccess, WriteAccess, audit_of
from lmrec.serving.schemas import ERRORS, ItemsIn, ItemsOut, SimilarOut

router = APIRouter(route_class=GuardedRoute, prefix="/v1/items", tags=["items"], responses=ERRORS)


@router.get("/{item_id}/similar", response_model=SimilarOut, summary="Items most like this one")
def similar_items(
    item_id: Annotated[str, Path(min_length=1, max_length=256)], engine: EngineDep, _: ReadAccess,
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    by: Annotated[Literal["text", "behaviour"], Query(
        description="behaviour: the model's item vectors or co-occurrence; text: item text vectors",
    )] = "behaviour",
) -> SimilarOut:
    return SimilarOut.of(engine.similar_items(item_id, k, by))


@router.put("", response_model=ItemsOut, summary="Add or change items; they are recommendable at once")
def upsert_items(body: ItemsIn, request: Request, engine: EngineDep, _: WriteAccess) -> ItemsOut:
    if (entry := audit_of(request)) is not None:
        entry.count = len(body.items)
    rows = [{**i.model_dump(exclude={"attributes"}),
             "attributes": None if i.attributes is None else json.dumps(i.attributes)}
            for i in body.items]
    return ItemsOut.of(engine.upsert_items(rows))
