"""`GET /consumption` at 15min / hour / day / month against both emulators, across DST in Europe/Berlin."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.factory import create_app
from app.infra.config import Settings
from app.sandbox import create_emulators
from tests.support.apps import running
from tests.support.clock import FakeClock

TZ = "Europe/Berlin"
SPRING = date(2026, 3, 29)  # 23 h
FALL = date(2026, 10, 25)  # 25 h
NEXT = timedelta(days=1)


class Stack:
    def __init__(self, client: httpx.AsyncClient, emulators: dict[str, Any]) -> None:
        self.client = client
        self.iometer = emulators["iometer"]
        self.waltero = emulators["waltero"]

    async def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body
        return list(body["items"])


@pytest.fixture(params=[SPRING, FALL], ids=["spring-forward", "fall-back"])
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Stack, date]]:
    day: date = request.param
    # The emulators keep 90 days of history before "now": put now three weeks after the DST day.
    clock = FakeClock(datetime(day.year, day.month, day.day, 10, 7, tzinfo=UTC) + timedelta(days=21))
    emulators = create_emulators(clock)
    app = create_app(
        Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0), clock=clock, sleep=clock.sleep, emulators=emulators
    )
    async with running(app, key=None) as client:
        yield Stack(client, emulators), day


def by_meter(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[row["meter_id"]].append(row)
    return out


async def test_hours_and_quarter_hours_sum_to_the_day_for_both_vendors(stack: tuple[Stack, date]) -> None:
    s, day = stack
    hours_in_day = 23 if day == SPRING else 25
    window = {"start": str(day), "end": str(day + NEXT), "tz": TZ}
    daily = {r["meter_id"]: r for r in await s.items("/consumption/daily", **window)}
    checked: dict[str, int] = defaultdict(int)
    for resolution, per_hour in (("hour", 1), ("15min", 4)):
        rows = by_meter(await s.items("/consumption", resolution=resolution, **window))
        assert set(rows) == set(daily)  # every meter present
        for meter_id, meter_rows in rows.items():
            assert len(meter_rows) == hours_in_day * per_hour
            before, after = ("+01:00", "+02:00") if day == SPRING else ("+02:00", "+01:00")
            assert meter_rows[0]["start"] == f"{day}T00:00:00{before}"
            assert meter_rows[-1]["end"] == f"{day + NEXT}T00:00:00{after}"
            assert all(a["end"] == b["start"] for a, b in itertools.pairwise(meter_rows))
            assert {r["unit"] for r in meter_rows} == {daily[meter_id]["unit"]}
            assert {r["source"] for r in meter_rows} == {"derived"}
            if all(r["complete"] for r in meter_rows) and daily[meter_id]["complete"]:
                total = sum(r["consumption"] for r in meter_rows)
                # every row (and the day) is rounded to a millionth of the unit: that much per row may differ
                rounding = (len(meter_rows) + 1) * 0.5e-6
                assert total == pytest.approx(daily[meter_id]["consumption"], rel=1e-9, abs=rounding)
                checked[meter_id.split(":")[0]] += 1
    assert checked["iometer"] >= 2  # the property held for real meters of both vendors, at both resolutions
    assert checked["waltero"] >= 2


async def test_the_dst_hours_carry_their_local_offsets(stack: tuple[Stack, date]) -> None:
    s, day = stack
    meter = (await s.items("/meters", backend="iometer"))[0]["id"]
    rows = await s.items("/consumption", resolution="hour", meter_id=meter, start=str(day), end=str(day + NEXT), tz=TZ)
    starts = [r["start"] for r in rows]
    if day == SPRING:
        assert starts[1:3] == [f"{day}T01:00:00+01:00", f"{day}T03:00:00+02:00"]
    else:
        assert starts[2:5] == [f"{day}T02:00:00+02:00", f"{day}T02:00:00+01:00", f"{day}T03:00:00+01:00"]


async def test_a_month_is_the_sum_of_its_days_for_both_vendors(stack: tuple[Stack, date]) -> None:
    s, day = stack
    start, end = date(day.year, day.month - 1, 20), day + timedelta(days=2)
    window = {"start": str(start), "end": str(end), "tz": TZ}
    days = by_meter(await s.items("/consumption/daily", **window))
    months = by_meter(await s.items("/consumption", resolution="month", **window))
    assert set(months) == set(days)
    sources = set()
    for meter_id, rows in months.items():
        assert [r["start"][:10] for r in rows] == [str(start), f"{day.year}-{day.month:02d}-01"]
        assert rows[-1]["end"][:10] == str(end)
        split = date(day.year, day.month, 1)
        for row, part in zip(
            rows,
            (
                [d for d in days[meter_id] if d["date"] < str(split)],
                [d for d in days[meter_id] if d["date"] >= str(split)],
            ),
            strict=True,
        ):
            known = [d["consumption"] for d in part if d["consumption"] is not None]
            if known:
                assert row["consumption"] == pytest.approx(sum(known), abs=1e-5)
            else:
                assert row["consumption"] is None
            assert row["complete"] == all(d["complete"] for d in part)
            sources.add((meter_id.split(":")[0], row["source"]))
    assert sources == {("iometer", "derived"), ("waltero", "upstream")}


async def test_day_resolution_is_the_daily_answer(stack: tuple[Stack, date]) -> None:
    s, day = stack
    window = {"start": str(day - NEXT), "end": str(day + NEXT), "tz": TZ}
    daily = await s.items("/consumption/daily", **window)
    rows = await s.items("/consumption", resolution="day", **window)
    assert [(r["meter_id"], r["consumption"], r["complete"], r["source"]) for r in rows] == [
        (d["meter_id"], d["consumption"], d["complete"], d["source"]) for d in daily
    ]
    assert [r["start"][:10] for r in rows] == [d["date"] for d in daily]


async def test_finer_resolutions_cost_no_vendor_call_that_readings_already_made(stack: tuple[Stack, date]) -> None:
    s, day = stack
    io_meter = (await s.items("/meters", backend="iometer"))[0]["id"]
    wa_meter = (await s.items("/meters", backend="waltero"))[0]["id"]
    around = {"start": f"{day - NEXT * 2}T00:00:00Z", "end": f"{day + NEXT * 2}T00:00:00Z", "limit": 1000}
    for meter in (io_meter, wa_meter):
        readings = await s.items("/readings", meter_id=meter, quantity=["energy_import", "volume"], **around)
        assert readings
    io_calls, wa_calls = s.iometer.stats["MeterReadings"], s.waltero.stats["telemetry"]
    for resolution in ("hour", "15min"):
        for meter in (io_meter, wa_meter):
            rows = await s.items(
                "/consumption", resolution=resolution, meter_id=meter, start=str(day), end=str(day + NEXT), tz=TZ
            )
            assert rows
            assert all(r["complete"] for r in rows)
    assert s.iometer.stats["MeterReadings"] == io_calls
    assert s.waltero.stats["telemetry"] == wa_calls
    # and the other way round: readings of a window the consumption already read cost nothing either
    later = day + timedelta(days=5)
    await s.items("/consumption", resolution="hour", meter_id=io_meter, start=str(later), end=str(later + NEXT), tz=TZ)
    io_calls = s.iometer.stats["MeterReadings"]
    await s.items("/readings", meter_id=io_meter, start=f"{later}T00:00:00Z", end=f"{later}T12:00:00Z")
    assert s.iometer.stats["MeterReadings"] == io_calls


@pytest.mark.parametrize(
    ("resolution", "start", "end", "limit"),
    [
        ("15min", "2026-01-01", "2026-02-02", "31 days"),
        ("hour", "2026-01-01", "2026-02-02", "31 days"),
        ("day", "2025-01-01", "2026-01-03", "366 days"),
        ("month", "2016-01-01", "2026-01-02", "10 years"),
    ],
)
async def test_a_window_beyond_the_limit_is_a_422_that_says_the_limit(
    stack: tuple[Stack, date], resolution: str, start: str, end: str, limit: str
) -> None:
    s, _ = stack
    response = await s.client.get("/consumption", params={"resolution": resolution, "start": start, "end": end})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert limit in response.json()["detail"]


async def test_bad_resolution_and_foreign_meters_are_problems(stack: tuple[Stack, date]) -> None:
    s, day = stack
    base = {"start": str(day), "end": str(day + NEXT)}
    bad = await s.client.get("/consumption", params={"resolution": "minute", **base})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "resolution"
    missing = await s.client.get("/consumption", params={"resolution": "hour", **base, "meter_id": "iometer:nope"})
    assert missing.status_code in (404, 422)
    assert missing.headers["content-type"] == "application/problem+json"
    unknown = await s.client.get(
        "/consumption",
        params={"resolution": "hour", **base, "meter_id": "iometer:0badc0de-0000-4000-8000-000000000000"},
    )
    assert unknown.status_code == 404


async def test_a_long_window_over_a_short_history_costs_a_few_vendor_calls(stack: tuple[Stack, date]) -> None:
    s, _ = stack
    meter = (await s.items("/meters", backend="iometer"))[0]["id"]
    history = s.iometer.data.window_start  # the emulator holds about 90 days; ask for a year
    now = datetime.fromtimestamp(s.iometer.data.clock(), UTC)
    calls = s.iometer.stats["MeterReadings"]
    wide = await s.client.get(
        "/readings",
        params={"meter_id": meter, "start": f"{(now - timedelta(days=366)):%Y-%m-%dT%H:%M:%SZ}", "limit": 50},
    )
    assert wide.status_code == 200
    # the empty days before the history are known empty from the first chunks' look-ahead, not read one by one
    assert s.iometer.stats["MeterReadings"] - calls <= 2 * 4 + 2
    narrow = await s.client.get(
        "/readings", params={"meter_id": meter, "start": f"{history:%Y-%m-%dT%H:%M:%SZ}", "limit": 50}
    )
    assert wide.json()["items"] == narrow.json()["items"]
    assert wide.json()["items"][0]["time"] >= f"{history:%Y-%m-%dT%H:%M:%SZ}"
