from __future__ import annotations

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from app.deps import (
    UPSTREAM_ERRORS,
    BackendParam,
    CursorParam,
    LimitParam,
    ServiceDep,
    problem_responses,
    within_deadline,
)
from app.http_cache import render
from app.models import Meter, Page

router = APIRouter(tags=["meters"])


@router.get(
    "/meters",
    operation_id="listMeters",
    response_model=Page[Meter],
    summary="List meters of every backend",
    description="Meters of both vendors in one list ordered by `id`. If one backend fails, the others' meters "
    "are returned with an `errors` entry for the failed one.",
    responses=problem_responses(*UPSTREAM_ERRORS),
)
async def list_meters(
    request: Request,
    service: ServiceDep,
    backend: BackendParam = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Response:
    answer = await within_deadline(request, service.list_meters(backend, limit, cursor))
    items, next_cursor = answer.value
    page = Page[Meter](items=items, next_cursor=next_cursor, errors=answer.errors or None)
    return render(request, answer, page, exclude=None if answer.errors else {"errors"})


@router.get(
    "/meters/{meter_id}",
    operation_id="getMeter",
    response_model=Meter,
    summary="One meter",
    responses=problem_responses(404, *UPSTREAM_ERRORS),
)
async def get_meter(
    request: Request,
    service: ServiceDep,
    meter_id: str = Path(description="`<backend>:<id>`", examples=["iometer:8d116ece-1738-47d9-bd9c-172411e20b8f"]),
) -> Response:
    answer = await within_deadline(request, service.get_meter(meter_id))
    return render(request, answer, answer.value)
