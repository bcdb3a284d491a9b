"""`GET /readings/live`: a meter's readings as Server-Sent Events (CONTRACT.md, "Round 2 additions")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from app.api.deps import problem_responses, rfc3339
from app.api.routes.readings import _OBIS, QUANTITIES
from app.infra.errors import InvalidRequest, NotSupported
from app.live import sse
from app.live.hub import Hub
from app.live.response import EventStream

router = APIRouter(tags=["readings"])

DESCRIPTION = """
`text/event-stream`, one `event: readings` per instant of the meter:

```
event: readings
id: 2026-03-28T10:15:00Z
data: {"meter_id": "iometer:…", "time": "2026-03-28T10:15:00Z", "items": [Reading, …]}
```

`items` are the normalized readings of that instant, as `/readings` serves them (energy kWh, power W,
volume m3), filtered by `quantity`. A `: ping` comment comes at least every 15 s. `event: status` with
`{"upstream": "reconnecting"|"live"}` says when the vendor stream is interrupted and back (what was
missed is replayed); `{"upstream": "overflow"}` is the last event of a client that fell too far behind.

**Resume:** with `Last-Event-ID` (or `since`), the instants after that time (at most 24 h back) are
replayed first, then the stream goes live: nothing is lost or repeated across a reconnect.
"""


def _quantities(quantity: list[str] | None) -> frozenset[str] | None:
    if not quantity:
        return None
    for q in quantity:
        if q not in QUANTITIES and not _OBIS.match(q):
            raise InvalidRequest(f"unknown quantity {q[:40]!r}", field="quantity")
    return frozenset(quantity)


@router.get(
    "/readings/live",
    operation_id="streamLiveReadings",
    summary="Live readings of one meter (Server-Sent Events)",
    description=DESCRIPTION,
    response_class=Response,
    responses={
        200: {
            "description": "The event stream.",
            "content": {sse.MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        **problem_responses(404, 422, 501, 502, 503, 504),
    },
)
async def live_readings(
    request: Request,
    meter_id: Annotated[
        str, Query(description="`<backend>:<id>`", examples=["iometer:8d116ece-1738-47d9-bd9c-172411e20b8f"])
    ],
    quantity: Annotated[
        list[str] | None,
        Query(
            description="Repeatable filter: " + ", ".join(f"`{q}`" for q in QUANTITIES) + ", or `obis:<code>`.",
            examples=[["power"]],
        ),
    ] = None,
    since: Annotated[
        str | None,
        Query(
            description="RFC 3339: replay the instants after this time (at most 24 h back) before going live.",
            examples=["2026-05-19T06:15:00Z"],
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="The `id` of the last event received (browsers send it on reconnect); wins over `since`.",
            examples=["2026-05-19T06:15:00Z"],
        ),
    ] = None,
) -> Response:
    hub: Hub | None = request.app.runtime.live
    if hub is None:
        raise NotSupported("Live readings are not available on this service.")
    quantities = _quantities(quantity)
    resume = None
    if last_event_id is not None and last_event_id.strip():
        resume = rfc3339(last_event_id.strip()[:64], "Last-Event-ID")
    elif since is not None:
        resume = rfc3339(since, "since")
    target = await hub.resolve(meter_id)
    sub = hub.subscribe(target, quantities)
    try:
        replay = await hub.replay(sub, resume) if resume is not None else []
    except BaseException:
        hub.unsubscribe(sub)
        raise
    return EventStream(hub, sub, replay)
