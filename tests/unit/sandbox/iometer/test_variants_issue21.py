"""The emulator variants of issue 21, asked over GraphQL-over-HTTP: `late_uploads` (receive order with
a late upload, cursor over the receive position), `page_cap`, `lower_units`, and `sse_only`'s
Server-Sent Events answer."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from app.backends.iometer.asgi_events import AsgiEventStreamConnector
from app.backends.iometer.emulator import Emulator, create_emulator
from app.backends.iometer.emulator.data import BERLIN
from app.backends.iometer.emulator.late import LATE_DAY, LATE_METER, ON_TIME
from app.infra.timeutil import format_rfc3339, from_epoch, parse_rfc3339
from tests.support.clock import FakeClock
from tests.unit.sandbox.iometer.conftest import PATH, Caller, wsse

METER_READINGS = (
    "query R($id: Uuid, $t: DateTime, $n: Int, $c: String) { partner { meter(id: $id) "
    "{ readings(startTime: $t, limit: $n, cursor: $c) { readings { time values { unit } } cursor } } } }"
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def caller_for(emulator: Emulator, clock: FakeClock) -> AsyncIterator[Caller]:
    async def make() -> AsyncIterator[Caller]:
        transport = httpx.ASGITransport(emulator.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://iometer.test") as http:
            yield Caller(http, clock)

    return make()


async def walk(caller: Caller, meter: str, start: str, limit: int) -> list[str]:
    times: list[str] = []
    cursor = None
    for _ in range(500):
        data = await caller.data(METER_READINGS, {"id": meter, "t": start, "n": limit, "c": cursor})
        page = data["partner"]["meter"]["readings"]
        times += [r["time"] for r in page["readings"]]
        cursor = page["cursor"]
        if cursor is None:
            return times
    raise AssertionError("the cursor never ended")


async def test_late_uploads_are_listed_after_later_readings_and_the_cursor_follows_receive_order(
    clock: FakeClock,
) -> None:
    emulator = create_emulator(clock, breaks={"late_uploads"})
    meter = emulator.data.meters[LATE_METER].id
    day = emulator.data.today - timedelta(days=LATE_DAY)
    start = f"{day - timedelta(days=1)}T00:00:00Z"
    async for caller in caller_for(emulator, clock):
        whole = await walk(caller, meter, start, 1000)
        paged = await walk(caller, meter, start, 37)
    assert paged == whole
    assert len(set(whole)) == len(whole)  # each reading once
    late = [(a, b) for a, b in itertools.pairwise(whole) if b < a]
    assert len(late) == 1  # one place where the listing goes back in time: the buffered upload
    back_to = whole.index(late[0][1])
    # the buffer (93 readings) is listed after everything received before it arrived: more than a day
    run = [t for t in whole[back_to:] if t < whole[back_to - 1]]
    assert len(run) == 93
    assert parse_rfc3339(whole[back_to - 1]) - parse_rfc3339(run[-1]) > timedelta(hours=24)
    assert sum(1 for t in whole if parse_rfc3339(t).astimezone(BERLIN).date() == day) == 96
    assert ON_TIME + 92 == 96


async def test_page_cap_and_lower_units(clock: FakeClock) -> None:
    emulator = create_emulator(clock, breaks={"page_cap", "lower_units"})
    meter = emulator.data.meters[0].id
    since = format_rfc3339(from_epoch(clock()) - timedelta(days=5))
    async for caller in caller_for(emulator, clock):
        data = await caller.data(METER_READINGS, {"id": meter, "t": since, "n": 1000})
    page = data["partner"]["meter"]["readings"]
    assert len(page["readings"]) == 250
    assert page["cursor"] is not None
    assert {v["unit"] for r in page["readings"] for v in r["values"]} == {"wh", "w"}


async def test_sse_only_answers_a_subscription_as_server_sent_events(clock: FakeClock) -> None:
    emulator = create_emulator(clock, breaks={"sse_only"})
    since = format_rfc3339(from_epoch(clock()) - timedelta(minutes=20))
    body = {
        "query": "subscription M($t: DateTime) { meterReadings(startTime: $t) { meter { id } time } }",
        "variables": {"t": since},
    }
    async for caller in caller_for(emulator, clock):
        plain = await caller.http.post(PATH, json=body, headers={"Authorization": wsse(clock)})
        assert plain.status_code == 400  # without `Accept: text/event-stream`, as before
    # httpx.ASGITransport waits for the whole body: an endless stream is read in-process like this
    connect = AsgiEventStreamConnector(emulator.app)
    headers = {"Authorization": wsse(clock), "Accept": "text/event-stream", "Content-Type": "application/json"}
    async with connect("http://iometer.test" + PATH, headers, json.dumps(body).encode()) as answer:
        assert answer.status == 200
        assert answer.content_type.startswith("text/event-stream")
        first = b""
        async for chunk in answer.chunks:
            first += chunk
            if b"\n\n" in first:
                break
    event, data = first.split(b"\n\n")[0].split(b"\n")
    assert event == b"event: next"
    assert json.loads(data.removeprefix(b"data: "))["data"]["meterReadings"]["time"] >= since
