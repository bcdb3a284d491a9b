from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.api.deps import (
    UPSTREAM_ERRORS,
    BackendParam,
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
from app.domain.models import Change, Page
from app.infra.errors import InvalidRequest

router = APIRouter(tags=["changes"], route_class=ThinRoute)
ChangePage = Page[Change]
"""Parametrised once: `Page[Change]` looks its class up in pydantic's generic cache on every use."""


@router.get(
    "/changes",
    operation_id="listChanges",
    response_model=ChangePage,
    summary="Corrections to stored readings",
    description="Waltero's data-audit feed, ascending by `changed_at`: every post-hoc correction made since `since`. "
    "IOmeter has no such feed (`backend=iometer` is a 501).",
    responses={**export_responses(fields_of(Change)), **problem_responses(501, *UPSTREAM_ERRORS)},
)
async def list_changes(
    request: Request,
    service: ServiceDep,
    since: Annotated[
        str | None,
        Query(
            description="RFC 3339; corrections made at or after it. Required, unless `cursor` is given alone.",
            examples=["2026-05-25T00:00:00Z"],
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    backend: BackendParam = None,
    limit: LimitParam = None,
    cursor: CursorParam = None,
    format: FormatParam = None,
) -> Response:
    form = wanted(request, format)
    if since is None and cursor is None:
        raise InvalidRequest("since is required (or a cursor from a previous page)", field="since")
    since_at = rfc3339(since, "since") if since is not None else None
    if form == "ndjson":  # every correction since `since`, page after page
        if since_at is None:
            raise InvalidRequest("an NDJSON export needs since (cursors page JSON and CSV)", field="since")
        stream = await within_deadline(request, service.stream_changes(since_at, backend))
        return await render_ndjson(stream, filename("changes", since or "", extension="ndjson"))
    answer = await within_deadline(request, service.changes(since_at, backend, limit, cursor))
    items, next_cursor = answer.value
    if form == "csv":
        name = filename("changes", since or "", extension="csv")
        return render_csv(request, answer, items, fields_of(Change), name, next_cursor)
    return render(request, answer, ChangePage(items=items, next_cursor=next_cursor), exclude={"errors"})
