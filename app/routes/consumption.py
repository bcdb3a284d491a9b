from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.deps import UPSTREAM_ERRORS, BackendParam, ServiceDep, iso_date, problem_responses, time_zone, within_deadline
from app.errors import InvalidRequest
from app.http_cache import render
from app.models import DailyConsumptionList
from app.timeutil import local_midnight

router = APIRouter(tags=["consumption"])
MAX_DAYS = 366


@router.get(
    "/consumption/daily",
    operation_id="getDailyConsumption",
    response_model=DailyConsumptionList,
    summary="Daily consumption per meter",
    description="One row per meter per local day of `[start, end)` in `tz`, ordered by `meter_id`, `date`; every "
    "requested day of every meter is present. Waltero rows come from the vendor (`source: upstream`); IOmeter rows "
    "are derived from register 1-0:1.8.0 (`source: derived`). Days are real local days (23 h / 25 h on DST changes).",
    responses=problem_responses(404, *UPSTREAM_ERRORS),
)
async def daily_consumption(
    request: Request,
    service: ServiceDep,
    start: Annotated[
        str,
        Query(
            description="First local day, `YYYY-MM-DD`.", examples=["2026-05-19"], json_schema_extra={"format": "date"}
        ),
    ],
    end: Annotated[
        str | None,
        Query(
            description="Day after the last one (exclusive), `YYYY-MM-DD`; at most 366 days after `start`. "
            "Default: tomorrow in `tz` (so today is included, incomplete).",
            examples=["2026-05-26"],
            json_schema_extra={"format": "date"},
        ),
    ] = None,
    meter_id: Annotated[
        list[str] | None,
        Query(
            description="Repeatable; none = every meter.", examples=[["waltero:11111111-1111-1111-1111-111111111101"]]
        ),
    ] = None,
    backend: BackendParam = None,
    tz: Annotated[
        str | None,
        Query(description="IANA time zone; default `FACADE_TIMEZONE`, else UTC.", examples=["Europe/Berlin"]),
    ] = None,
) -> Response:
    zone = time_zone(tz if tz is not None else service.default_tz)
    first = iso_date(start, "start")
    if end is not None:
        last = iso_date(end, "end")
    else:
        last = datetime.fromtimestamp(service.clock(), zone).date() + timedelta(days=1)
    if last <= first:
        raise InvalidRequest("end must be after start", field="end")
    if (last - first).days > MAX_DAYS:
        raise InvalidRequest(f"at most {MAX_DAYS} days per request", field="end")
    try:  # the day bounds must exist as UTC instants (not so near year 1 or 9999)
        local_midnight(first, zone), local_midnight(last, zone)
    except (OverflowError, ValueError):
        raise InvalidRequest("dates out of range", field="start") from None
    if meter_id and len(meter_id) > 1000:
        raise InvalidRequest("at most 1000 meter_id values", field="meter_id")
    answer = await within_deadline(request, service.daily_consumption(meter_id or [], backend, first, last, zone))
    body = DailyConsumptionList(items=answer.value, errors=answer.errors or None)
    return render(request, answer, body, exclude=None if answer.errors else {"errors"})
