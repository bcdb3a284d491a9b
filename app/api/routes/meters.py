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
from app.api.thin_route import ThinRoute
from app.core.service import MeterFilters
from app.domain.models import Medium, Meter, Page
from app.infra.errors import InvalidRequest

router = APIRouter(tags=["meters"], route_class=ThinRoute)
MeterPage = Page[Meter]
"""Parametrised once: `Page[Meter]` looks its class up in pydantic's generic cache on every use."""


@router.get(
    "/meters",
    operation_id="listMeters",
    response_model=MeterPage,
    summary="List meters of every backend",
    description="Meters of both vendors in one list ordered by `id`. If one backend fails, the others' meters "
    "are returned with an `errors` entry for the failed one.",
    responses={**export_responses(fields_of(Meter)), **problem_responses(*UPSTREAM_ERRORS)},
)
async def list_meters(
    request: Request,
    service: ServiceDep,
    backend: BackendParam = None,
    limit: LimitParam = None,
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
    medium: Annotated[
        Medium | None, Query(description="Only meters measuring this medium.", examples=["water"])
    ] = None,
    site_id: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Only meters of this site (`site_id` of a meter: an IOmeter installation or a Waltero "
            "organization, prefixed); an unknown site gives an empty list.",
            examples=["waltero:00000000-0000-0000-0000-000000000001"],
        ),
    ] = None,
) -> Response:
    form = wanted(request, format)
    if serial_number is not None and not (1 <= len(serial_number) <= 64 and serial_number.isprintable()):
        raise InvalidRequest("serial_number must be 1 to 64 printable characters", field="serial_number")
    if site_id is not None and not (1 <= len(site_id) <= 200 and site_id.isprintable()):
        raise InvalidRequest("site_id must be 1 to 200 printable characters", field="site_id")
    filters = MeterFilters(serial_number=serial_number, medium=medium, site_id=site_id)
    if form == "ndjson":  # the whole list, no paging
        answer = await within_deadline(request, service.list_meters(backend, 100_000, None, filters))
        items, _ = answer.value
        return await render_ndjson(one_batch(items), filename("meters", extension="ndjson"), answer.errors)
    answer = await within_deadline(request, service.list_meters(backend, limit, cursor, filters))
    items, next_cursor = answer.value
    if form == "csv":
        return render_csv(request, answer, items, fields_of(Meter), filename("meters", extension="csv"), next_cursor)
    page = MeterPage(items=items, next_cursor=next_cursor, errors=answer.errors or None)
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
