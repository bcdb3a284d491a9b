"""Dependencies and parameter parsing shared by the routes.

Parsing errors become 422 problems naming the field. Times are RFC 3339 with an offset; dates are
`YYYY-MM-DD`; `tz` is an IANA name; `limit` is 1..1000.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from datetime import date, datetime
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import Depends, Query, Request

from app.core.service import MeterService
from app.infra.errors import InvalidRequest, UpstreamTimeout
from app.infra.timeutil import SUPPORTED_FROM, SUPPORTED_UNTIL, check_supported, parse_rfc3339, zone

T = TypeVar("T")


async def get_service(request: Request) -> MeterService:
    # async: FastAPI runs a plain `def` dependency in a worker thread, which cost a miss ~1 ms
    service: MeterService = request.app.service
    return service


ServiceDep = Annotated[MeterService, Depends(get_service)]
BackendParam = Annotated[str | None, Query(max_length=64, description="Only this backend.", examples=["waltero"])]
LimitParam = Annotated[int, Query(ge=1, le=1000, description="Page size, 1..1000.", examples=[100])]
CursorParam = Annotated[
    str | None,
    Query(max_length=4096, description="Opaque: `next_cursor` of the previous page, unchanged."),
]


_OFFSET_AS_SPACE = re.compile(r"T\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}:\d{2}$")
"""`...T06:15:00 02:00`: a `+02:00` offset sent unencoded in a query string, where `+` means a space."""


def rfc3339(value: str, field: str) -> datetime:
    """Parse a query parameter as RFC 3339; a 422 naming `field` otherwise (with a hint when an
    unencoded `+` of the offset arrived as a space)."""
    try:
        return check_supported(parse_rfc3339(value))
    except ValueError as exc:
        message = str(exc)
        if len(value) <= 40 and _OFFSET_AS_SPACE.search(value):
            fixed = value[:-6] + "%2B" + value[-5:]
            message += f"; a '+' in a query string means a space: write the offset as %2B ({field}={fixed}) or use Z"
        raise InvalidRequest(message, field=field) from None


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def iso_date(value: str, field: str) -> date:
    try:
        if not _DATE.match(value):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest("must be a calendar date YYYY-MM-DD", field=field) from None
    if not SUPPORTED_FROM.date() <= day < SUPPORTED_UNTIL.date():
        raise InvalidRequest("is outside the supported range: years 1970 to 9998", field=field)
    return day


def time_zone(value: str, field: str = "tz") -> ZoneInfo:
    try:
        if len(value) > 64:
            raise ValueError
        return zone(value)
    except ValueError:
        raise InvalidRequest(f"unknown IANA time zone {value[:64]!r} (e.g. Europe/Berlin)", field=field) from None


async def within_deadline(request: Request, work: Awaitable[T]) -> T:
    """No client waits past `FACADE_REQUEST_DEADLINE`; the shared upstream call itself goes on and
    still fills the cache for the next caller."""
    deadline: float = request.app.settings.request_deadline
    try:
        async with asyncio.timeout(deadline):
            return await work
    except TimeoutError:
        raise UpstreamTimeout(f"No answer from the vendor within the {deadline:g} s request deadline.") from None


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        401: "Missing or wrong API key.",
        404: "No such resource (unknown id or prefix).",
        422: "Invalid parameters; `errors` names each bad field.",
        501: "The backend has no such operation.",
        502: "The vendor failed, rejected our credentials, or sent a bad payload.",
        503: "The vendor throttles us, its circuit is open, or too many vendor calls are in flight here "
        "(`overloaded`); see `Retry-After`.",
        504: "The vendor or the request deadline timed out.",
    }
    return {
        code: {
            "description": descriptions[code],
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in codes
    }


UPSTREAM_ERRORS = (401, 422, 502, 503, 504)
