from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from app.api.deps import (
    UPSTREAM_ERRORS,
    BackendParam,
    CursorParam,
    ServiceDep,
    iso_date,
    problem_responses,
    time_zone,
    within_deadline,
)
from app.api.exports import (
    FormatParam,
    export_responses,
    fields_of,
    filename,
    one_batch,
    primed,
    render_csv,
    render_csv_stream,
    render_ndjson,
    wanted,
)
from app.api.http_cache import render
from app.api.thin_route import ThinRoute
from app.core.service import MeterService
from app.domain.intervals import window_error
from app.domain.models import DailyConsumption, DailyConsumptionList, IntervalConsumption, IntervalConsumptionList
from app.guard.provenance import Answer
from app.infra.errors import InvalidRequest
from app.infra.timeutil import local_midnight

router = APIRouter(tags=["consumption"], route_class=ThinRoute)
MeterIdsParam = Annotated[
    list[str] | None,
    Query(description="Repeatable; none = every meter.", examples=[["waltero:11111111-1111-1111-1111-111111111101"]]),
]
TzParam = Annotated[
    str | None, Query(description="IANA time zone; default `FACADE_TIMEZONE`, else UTC.", examples=["Europe/Berlin"])
]


@router.get(
    "/consumption/daily",
    operation_id="getDailyConsumption",
    response_model=DailyConsumptionList,
    summary="Daily consumption per meter",
    description="One row per meter per local day of `[start, end)` in `tz`, ordered by `meter_id`, `date`; every "
    "requested day of every meter is present. Waltero rows come from the vendor (`source: upstream`); IOmeter rows "
    "are derived from register 1-0:1.8.0 (`source: derived`). Days are real local days (23 h / 25 h on DST changes).",
    responses={**export_responses(fields_of(DailyConsumption)), **problem_responses(404, *UPSTREAM_ERRORS)},
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
    meter_id: MeterIdsParam = None,
    backend: BackendParam = None,
    tz: TzParam = None,
    format: FormatParam = None,
) -> Response:
    form = wanted(request, format)
    zone, first, last = _window(service, start, end, tz, meter_id, "day")
    answer = await within_deadline(request, service.daily_consumption(meter_id or [], backend, first, last, zone))
    name = filename("consumption-daily", str(first), str(last - timedelta(days=1)), extension=form)  # last day
    return await _respond(request, answer, form, name, DailyConsumption, DailyConsumptionList)


async def _respond(
    request: Request,
    answer: Answer[Any],
    form: str,
    name: str,
    row: type[BaseModel],
    listing: type[DailyConsumptionList] | type[IntervalConsumptionList],
) -> Response:
    """The rows as NDJSON, CSV or the JSON list (with `errors` when a backend failed)."""
    if form == "ndjson":
        return await render_ndjson(one_batch(answer.value), name, answer.errors)
    if form == "csv":
        return render_csv(request, answer, answer.value, fields_of(row), name)
    body = listing(items=answer.value, errors=answer.errors or None)
    return render(request, answer, body, exclude=None if answer.errors else {"errors"})


def _window(
    service: MeterService,
    start: str,
    end: str | None,
    tz: str | None,
    meter_id: list[str] | None,
    resolution: str,
) -> tuple[ZoneInfo, date, date]:
    """The checked zone and local days `[first, last)`; 422s name the field and, for a wide window, the limit."""
    zone = time_zone(tz if tz is not None else service.default_tz)
    first = iso_date(start, "start")
    if end is not None:
        last = iso_date(end, "end")
    else:
        last = datetime.fromtimestamp(service.clock(), zone).date() + timedelta(days=1)
    if last <= first:
        raise InvalidRequest("end must be after start", field="end")
    too_wide = window_error(first, last, resolution)
    if too_wide is not None:
        raise InvalidRequest(too_wide, field="end")
    try:  # the day bounds must exist as UTC instants (not so near year 1 or 9999)
        local_midnight(first, zone), local_midnight(last, zone)
    except (OverflowError, ValueError):
        raise InvalidRequest("dates out of range", field="start") from None
    if meter_id and len(meter_id) > 1000:
        raise InvalidRequest("at most 1000 meter_id values", field="meter_id")
    return zone, first, last


ConsumptionLimitParam = Annotated[
    int,
    Query(
        ge=1,
        description="Rows per page, 1..`FACADE_CONSUMPTION_MAX_PAGE` (3000 unless configured; a larger value is "
        "a 422 naming it).",
        examples=[1000],
    ),
]


@router.get(
    "/consumption",
    operation_id="getConsumption",
    response_model=IntervalConsumptionList,
    summary="Consumption per meter at 15min, hour, day or month resolution",
    description="One row per meter per local interval of `[start, end)` in `tz`, ordered by `meter_id`, `start`; "
    "`start`/`end` carry the local UTC offset, so DST days have 23/25 hourly and 92/100 quarter-hourly rows. "
    "`15min`/`hour`: derived from register readings with the daily pair rule (interpolation across boundaries "
    "only within `FACADE_MAX_GAP`, meter swaps count zero), Waltero from its telemetry; at most 31 days. `day`: "
    "as `/consumption/daily`; at most 366 days. `month`: calendar months in `tz` as sums of their local days "
    "(the first and last cut at `start`/`end`); at most 10 years. Paged like every list: `limit` rows "
    '(at most `FACADE_CONSUMPTION_MAX_PAGE`), `next_cursor` and `Link: rel="next"` for the rest. A window '
    "whose meters x intervals (a month counts its days) exceed `FACADE_CONSUMPTION_WINDOW_BUDGET` (100,000 "
    "unless configured) is a 422 naming the budget. CSV and NDJSON stream the whole window (no paging).",
    responses={**export_responses(fields_of(IntervalConsumption)), **problem_responses(404, *UPSTREAM_ERRORS)},
)
async def consumption(
    request: Request,
    service: ServiceDep,
    resolution: Annotated[
        Literal["15min", "hour", "day", "month"] | None,
        Query(
            description="Interval length: `15min`, `hour`, `day` or `month`. Required, unless `cursor` is given.",
            examples=["hour"],
        ),
    ] = None,
    start: Annotated[
        str | None,
        Query(
            description="First local day, `YYYY-MM-DD`. Required, unless `cursor` is given.",
            examples=["2026-03-29"],
            json_schema_extra={"format": "date"},
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            description="Day after the last one (exclusive), `YYYY-MM-DD`. At most 31 days after `start` for "
            "`15min` and `hour`, 366 for `day`, 10 years for `month`. Default: tomorrow in `tz` (a cursor keeps "
            "the `end` of its first page).",
            examples=["2026-03-30"],
            json_schema_extra={"format": "date"},
        ),
    ] = None,
    meter_id: MeterIdsParam = None,
    backend: BackendParam = None,
    tz: TzParam = None,
    limit: ConsumptionLimitParam = 1000,
    cursor: CursorParam = None,
    format: FormatParam = None,
) -> Response:
    form = wanted(request, format)
    if cursor is not None and form == "json":
        # The cursor carries its query (its window was checked when it was made): parameters sent with it
        # are only parsed here, and must be the cursor's own.
        work = service.consumption(
            meter_id or [],
            backend,
            iso_date(start, "start") if start is not None else None,
            iso_date(end, "end") if end is not None else None,
            time_zone(tz) if tz is not None else None,
            resolution,
            limit=limit,
            cursor=cursor,
        )
    else:
        if resolution is None:
            raise InvalidRequest("resolution is required (or a cursor from a previous page)", field="resolution")
        if start is None:
            raise InvalidRequest("start is required (or a cursor from a previous page)", field="start")
        zone, first, last = _window(service, start, end, tz, meter_id, resolution)
        if form != "json":  # exports: the whole window, streamed batch by batch
            planned = await within_deadline(
                request, service.stream_consumption(meter_id or [], backend, first, last, zone, resolution)
            )
            batches = await within_deadline(request, primed(planned.value))
            name = filename("consumption", resolution, str(first), str(last), extension=form)
            if form == "ndjson":
                return await render_ndjson(batches, name, planned.errors)
            return await render_csv_stream(batches, fields_of(IntervalConsumption), name, planned.errors)
        work = service.consumption(meter_id or [], backend, first, last, zone, resolution, limit=limit, cursor=None)
    answer = await within_deadline(request, work)
    items, next_cursor = answer.value
    body = IntervalConsumptionList(items=items, next_cursor=next_cursor, errors=answer.errors or None)
    return render(request, answer, body, exclude=None if answer.errors else {"errors"})
