"""IOmeter readings uploaded late (issue 21, item 3), over HTTP against the emulator's `late_uploads`
variant: the vendor lists readings in the order it received them, and most of one meter's past day
arrives the next evening, listed after the next day's readings. The facade keeps them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from app.backends.iometer.emulator import Emulator
from app.backends.iometer.emulator import create_emulator as iometer_emulator
from app.backends.iometer.emulator.data import BERLIN
from app.backends.iometer.emulator.late import LATE_DAY, LATE_METER, ON_TIME, RECEIVED_AFTER
from app.backends.waltero.emulator import create_emulator as waltero_emulator
from app.factory import create_app
from app.infra.config import Settings
from app.infra.timeutil import format_rfc3339, local_midnight
from tests.support.apps import running
from tests.support.clock import FakeClock

NOW = datetime(2026, 11, 20, 10, 7, tzinfo=UTC)


@contextlib.asynccontextmanager
async def facade(
    clock: FakeClock, breaks: set[str], page_size: int | None = None, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Emulator]]:
    io = iometer_emulator(clock, page_size=page_size, breaks=breaks)
    emulators = {"iometer": io, "waltero": waltero_emulator(clock)}
    configured = Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0, **settings)
    app = create_app(configured, clock=clock, sleep=clock.sleep, emulators=emulators)
    async with running(app, key=None) as client:
        yield client, io


def late_day(io: Emulator) -> tuple[str, date]:
    return "iometer:" + io.data.meters[LATE_METER].id, io.data.today - timedelta(days=LATE_DAY)


async def readings_of_day(client: httpx.AsyncClient, meter: str, day: date) -> list[dict[str, Any]]:
    params = {
        "meter_id": meter,
        "start": format_rfc3339(local_midnight(day, BERLIN)),
        "end": format_rfc3339(local_midnight(day + timedelta(days=1), BERLIN)),
        "quantity": "energy_import",
        "limit": 1000,
    }
    response = await client.get("/readings", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def daily(client: httpx.AsyncClient, meter: str, day: date) -> list[dict[str, Any]]:
    params = {"meter_id": meter, "start": str(day), "end": str(day + timedelta(days=1))}
    response = await client.get("/consumption/daily", params={**params, "tz": "Europe/Berlin"})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_readings_uploaded_late_are_returned_sorted_and_once() -> None:
    clock = FakeClock(NOW)
    async with facade(clock, set()) as (client, io):
        meter, day = late_day(io)
        expected = await readings_of_day(client, meter, day)
    async with facade(clock, {"late_uploads"}) as (client, io):
        got = await readings_of_day(client, meter, day)
    assert len(expected) == 96
    # before the fix: the first page looked ascending and ended past the day, so only the 4 readings
    # received on time were returned (92 of 96 lost)
    assert len(got) == 96, f"{len(got)} of 96 readings"
    assert got == expected


async def test_daily_consumption_of_the_late_day_is_right() -> None:
    """With the vendor's pages capped at 100 readings, the late day's consumption equals the faithful
    vendor's (before the fix: the buffered readings, the next midnight's among them, were lost)."""
    clock = FakeClock(NOW)
    async with facade(clock, set(), page_size=100) as (client, io):
        meter, day = late_day(io)
        expected = await daily(client, meter, day)
    async with facade(clock, {"late_uploads"}, page_size=100) as (client, io):
        got = await daily(client, meter, day)
    assert [r["date"] for r in got] == [str(day)]
    assert all(r["complete"] for r in expected)
    assert got == expected


async def test_a_reading_later_than_the_late_window_is_not_read() -> None:
    """`IOMETER_LATE_WINDOW` bounds the read: the upload came 30 h after the day's end, so with a one
    hour window only the readings received on time are returned (the documented bound)."""
    clock = FakeClock(NOW)
    async with facade(clock, {"late_uploads"}, IOMETER_LATE_WINDOW=3600) as (client, io):
        meter, day = late_day(io)
        got = await readings_of_day(client, meter, day)
    assert len(got) == ON_TIME


async def test_a_day_is_cached_as_past_only_once_its_late_window_has_passed() -> None:
    """A day that ended within `IOMETER_LATE_WINDOW` may still receive late uploads: it is cached for
    `FACADE_TTL_RECENT`, so an upload stays invisible at most that long; an older day for `FACADE_TTL_PAST`."""
    clock = FakeClock(NOW)
    settings = {"FACADE_TTL_RECENT": 60, "FACADE_TTL_PAST": 3600}
    async with facade(clock, set(), **settings) as (client, io):
        meter = "iometer:" + io.data.meters[LATE_METER].id
        yesterday, older = io.data.today - timedelta(days=1), io.data.today - timedelta(days=5)

        async def calls_for(day: date) -> int:
            before = io.stats["MeterReadings"]
            window = {"meter_id": meter, "start": str(day), "end": str(day + timedelta(days=1))}
            response = await client.get("/consumption/daily", params={**window, "tz": "Europe/Berlin"})
            assert response.status_code == 200, response.text
            return int(io.stats["MeterReadings"] - before)

        assert await calls_for(yesterday) >= 1
        assert await calls_for(older) >= 1
        clock.advance(120)
        assert await calls_for(yesterday) >= 1  # not settled: read again after FACADE_TTL_RECENT
        assert await calls_for(older) == 0  # settled: still cached


async def test_a_read_meeting_late_readings_of_a_later_window_evicts_that_window() -> None:
    """IOmeter has no corrections feed: a read that meets readings listed late beyond its own window
    (here: the previous UTC day's chunk, read after the upload arrived) evicts the meter's cached
    windows, so the stale later window is read again at once, not after `FACADE_TTL_RECENT`."""
    clock = FakeClock(NOW)
    settings = {"IOMETER_LATE_WINDOW": 72 * 3600, "FACADE_TTL_RECENT": 7200, "FACADE_TTL_PAST": 7200}
    async with facade(clock, {"late_uploads"}, **settings) as (client, io):
        meter, day = late_day(io)
        received = local_midnight(day + timedelta(days=1), BERLIN) + timedelta(seconds=RECEIVED_AFTER)
        clock.now = received.timestamp() - 1800  # half an hour before the buffered upload arrives
        utc_day = datetime(day.year, day.month, day.day, tzinfo=UTC)  # the UTC day of the buffered readings

        async def chunk(start: datetime) -> list[dict[str, Any]]:
            window = {"start": format_rfc3339(start), "end": format_rfc3339(start + timedelta(days=1))}
            params = {"meter_id": meter, "quantity": "energy_import", "limit": 1000, **window}
            response = await client.get("/readings", params=params)
            assert response.status_code == 200, response.text
            return list(response.json()["items"])

        before = await chunk(utc_day)  # cached without the upload (not yet received)
        clock.advance(3600)  # the upload has arrived; the cached day is still fresh (FACADE_TTL_RECENT)
        assert await chunk(utc_day) == before
        assert len(before) < 10
        await chunk(utc_day - timedelta(days=1))  # its read passes the upload, listed late
        after = await chunk(utc_day)
    assert len(after) == 96
