from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.api.deps import (
    UPSTREAM_ERRORS,
    CursorParam,
    LimitParam,
    ServiceDep,
    problem_responses,
    rfc3339,
    within_deadline,
)
from app.api.exports import FormatParam, export_responses, fields_of, filename, render_csv, render_ndjson, wanted
from app.api.http_cache import render
from app.api.thin_route import ThinRoute
from app.domain.models import Page, Reading
from app.infra.errors import InvalidRequest
from app.infra.timeutil import from_epoch

router = APIRouter(tags=["readings"], route_class=ThinRoute)
ReadingPage = Page[Reading]
"""Parametrised once: `Page[Reading]` looks its class up in pydantic's generic cache on every use."""

QUANTITIES = ("energy_import", "energy_import_t1", "energy_import_t2", "energy_export", "power", "volume")
MAX_WINDOW = timedelta(days=366)
_OBIS = re.compile(r"^obis:[0-9A-Za-z:.*\-]{1,32}\Z")


@router.get(
    "/readings",
    operation_id="listReadings",
    response_model=ReadingPage,
    summary="Register readings of one meter",
    description="Readings with `start <= time < end`, ascending by `time`. Energy in kWh, power in W, volume in m3.",
    responses={**export_responses(fields_of(Reading)), **problem_responses(404, 501, *UPSTREAM_ERRORS)},
)
async def list_readings(
    request: Request,
    service: ServiceDep,
    meter_id: Annotated[
        str | None,
        Query(
            description="`<backend>:<id>`. Required, unless `cursor` is given alone.",
            examples=["iometer:8d116ece-1738-47d9-bd9c-172411e20b8f"],
        ),
    ] = None,
    start: Annotated[
        str | None,
        Query(
            description="RFC 3339, inclusive. Required, unless `cursor` is given alone.",
            examples=["2026-05-19T00:00:00Z"],
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            description="RFC 3339, exclusive; default now.",
            examples=["2026-05-20T00:00:00Z"],
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    quantity: Annotated[
        list[str] | None,
        Query(
            description="Repeatable filter: " + ", ".join(f"`{q}`" for q in QUANTITIES) + ", or `obis:<code>`.",
            examples=[["energy_import"]],
        ),
    ] = None,
    limit: LimitParam = None,
    cursor: CursorParam = None,
    format: FormatParam = None,
) -> Response:
    form = wanted(request, format)
    if cursor is None and meter_id is None:
        raise InvalidRequest("meter_id is required (or a cursor from a previous page)", field="meter_id")
    if cursor is None and start is None:
        raise InvalidRequest("start is required (or a cursor from a previous page)", field="start")
    start_at = rfc3339(start, "start") if start is not None else None
    end_at = rfc3339(end, "end") if end is not None else None
    if start_at is not None:
        if end_at is not None and end_at <= start_at:
            raise InvalidRequest("end must be after start", field="end")
        # Bounded like daily consumption: an open-ended window from year 1 would page through centuries of
        # empty vendor history. Longer spans are read window by window.
        if (end_at or from_epoch(service.clock())) - start_at > MAX_WINDOW:
            raise InvalidRequest(
                "at most 366 days between start and end (end defaults to now); read longer spans window by window",
                field="start",
            )
    quantities = None
    if quantity:
        for q in quantity:
            if q not in QUANTITIES and not _OBIS.match(q):
                raise InvalidRequest(
                    f"unknown quantity {q[:40]!r}; valid: {', '.join(QUANTITIES)}, "
                    "or obis:<code> (e.g. obis:1-0:32.7.0)",
                    field="quantity",
                )
        quantities = frozenset(quantity)
    if form == "ndjson":  # the whole window, no paging, streamed chunk by chunk
        if meter_id is None or start_at is None:
            raise InvalidRequest("an NDJSON export needs meter_id and start (cursors page JSON and CSV)", field="start")
        stream = await within_deadline(request, service.stream_readings(meter_id, start_at, end_at, quantities))
        name = filename("readings", meter_id, start or "", extension="ndjson")
        return await render_ndjson(stream, name)
    answer = await within_deadline(request, service.readings(meter_id, start_at, end_at, quantities, limit, cursor))
    items, next_cursor = answer.value
    if form == "csv":
        name = filename("readings", meter_id or "", start or "", extension="csv")
        return render_csv(request, answer, items, fields_of(Reading), name, next_cursor)
    return render(request, answer, ReadingPage(items=items, next_cursor=next_cursor), exclude={"errors"})
