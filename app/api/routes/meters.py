from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from app.api.deps import (
    UPSTREAM_ERRORS,
    BackendParam,
    CursorParam,
    LimitParam,
    ServiceDep,
    problem_responses,
    within_deadline,
)
from app.api.exports import (
    FormatParam,
    export_responses,
    fields_of,
    filename,
    one_batch,
    render_csv,
    render_ndjson,
    wanted,
)
from app.api.http_cache import render
from app.domain.models import Meter, Page
from app.infra.errors import InvalidRequest

router = APIRouter(tags=["meters"])


@router.get(
    "/meters",
    operation_id="listMeters",
    response_model=Page[Meter],
    summary="List meters of every backend",
    description="Meters of both vendors in one list ordered by `id`. If one backend fails, the others' meters "
    "are returned with an `errors` entry for the failed one.",
    responses={**export_responses(fields_of(Meter)), **problem_responses(*UPSTREAM_ERRORS)},
)
async def list_meters(
    request: Request,
    service: ServiceDep,
    backend: BackendParam = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
    serial_number: Annotated[
        str | None,
        Query(
            description="Only meters with exactly this number printed on them, across every vendor (none: an empty "
            "list). IOmeter is asked with `meter(number:)`; Waltero devices are matched in the cached device "
            "directory.",
            examples=["WS5942859575"],
        ),
    ] = None,
    format: FormatParam = None,
) -> Response:
    form = wanted(request, format)
    if serial_number is not None and not (1 <= len(serial_number) <= 64 and serial_number.isprintable()):
        raise InvalidRequest("serial_number must be 1 to 64 printable characters", field="serial_number")
    if form == "ndjson":  # the whole list, no paging
        answer = await within_deadline(request, service.list_meters(backend, 100_000, None, serial_number))
        items, _ = answer.value
        return await render_ndjson(one_batch(items), filename("meters", extension="ndjson"), answer.errors)
    answer = await within_deadline(request, service.list_meters(backend, limit, cursor, serial_number))
    items, next_cursor = answer.value
    if form == "csv":
        return render_csv(request, answer, items, fields_of(Meter), filename("meters", extension="csv"), next_cursor)
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
