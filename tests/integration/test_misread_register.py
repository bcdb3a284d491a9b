"""A misread register value at the HTTP level, against both emulators (each serving one misread, a
knob that is off by default): the spike is never complete and the figure is right."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.backends.registry import create_emulators
from app.factory import create_app
from app.infra.config import Settings
from app.infra.timeutil import local_midnight
from tests.support.apps import running
from tests.support.clock import FakeClock

NOW = datetime(2026, 6, 20, 10, 7, tzinfo=UTC)
DAY = date(2026, 6, 10)
BERLIN = "Europe/Berlin"
DISTRICT_HEATING = "11111111-1111-1111-1111-111111111108"  # heat, MWh display unit, multiplier 0.001


class Stack:
    def __init__(self, client: httpx.AsyncClient, emulators: dict[str, Any]) -> None:
        self.client = client
        self.iometer = emulators["iometer"]
        self.waltero = emulators["waltero"]

    async def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return list(response.json()["items"])


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    clock = FakeClock(NOW)
    emulators = create_emulators(clock)
    app = create_app(
        Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0), clock=clock, sleep=clock.sleep, emulators=emulators
    )
    async with running(app, key=None) as client:
        yield Stack(client, emulators)


def iometer_kwh(stack: Stack, meter: Any, at: datetime) -> float:
    value = stack.iometer.data.reading_at(meter, at.timestamp()).value("1-0:1.8.0")
    assert value is not None
    return float(value) / 1000


async def test_an_iometer_misread_to_zero_is_ignored_and_the_day_is_not_complete(stack: Stack) -> None:
    data = stack.iometer.data
    meter = data.meters[3]  # no gap, no swap
    tz = ZoneInfo(BERLIN)
    t0, t1 = local_midnight(DAY, tz), local_midnight(DAY + timedelta(days=1), tz)
    truth = iometer_kwh(stack, meter, t1) - iometer_kwh(stack, meter, t0)
    noon = datetime.combine(DAY, time(12), tz)
    data.misread(meter.id, noon, 0.0)  # the optical head read 0 Wh once
    assert data.readings(meter.id, noon, noon + timedelta(minutes=1))[0].value("1-0:1.8.0") == 0.0

    window = {"meter_id": f"iometer:{meter.id}", "start": str(DAY), "end": str(DAY + timedelta(days=1)), "tz": BERLIN}
    [day] = await stack.items("/consumption/daily", **window)
    assert day["consumption"] == pytest.approx(truth, abs=1e-6)  # not truth + the whole register
    assert day["quality"] == "suspect"
    assert day["complete"] is False

    hours = await stack.items("/consumption", resolution="hour", **window)
    assert len(hours) == 24
    around = {h["start"][11:16] for h in hours if h["quality"] == "suspect"}
    assert around == {"11:00", "12:00"}  # the two hours that share the pair around the ignored reading
    assert all(h["complete"] is False for h in hours if h["quality"] == "suspect")
    assert all(h["complete"] and h["quality"] == "measured" for h in hours if h["start"][11:16] not in around)
    assert sum(h["consumption"] for h in hours) == pytest.approx(truth, abs=1e-5)

    [month] = await stack.items("/consumption", resolution="month", **window)
    assert (month["quality"], month["complete"]) == ("suspect", False)


async def test_a_waltero_misaligned_digit_is_ignored_in_hours_and_flags_the_vendors_day(stack: Stack) -> None:
    data = stack.waltero.data
    start, end = datetime.combine(DAY, time(0), UTC), datetime.combine(DAY + timedelta(days=1), time(0), UTC)
    noon = datetime.combine(DAY, time(12), UTC)

    def kwh(at: datetime) -> float:
        index = data.index_at(at)
        assert index is not None
        return float(data.processed(DISTRICT_HEATING, index)) * 1000  # MWh -> kWh

    truth, before, after = kwh(end) - kwh(start), kwh(noon - timedelta(hours=1)), kwh(noon + timedelta(hours=1))
    data.misread(DISTRICT_HEATING, noon, kwh(noon) / 1000 * 10)  # one digit shifted: x10

    window = {"meter_id": f"waltero:{DISTRICT_HEATING}", "start": str(DAY), "end": str(DAY + timedelta(days=1))}
    hours = await stack.items("/consumption", resolution="hour", tz="UTC", **window)
    assert len(hours) == 24
    suspect = [h for h in hours if h["quality"] == "suspect"]
    assert [h["start"] for h in suspect] == [f"{DAY}T11:00:00Z", f"{DAY}T12:00:00Z"]
    assert all(h["complete"] is False for h in suspect)
    assert sum(h["consumption"] for h in suspect) == pytest.approx(after - before, abs=1e-3)
    assert sum(h["consumption"] for h in hours) == pytest.approx(truth, abs=1e-3)
    assert all(h["complete"] for h in hours if h["quality"] != "suspect")

    # The vendor's own daily figure counts the misread (its sum of rises): the plausibility bound of a
    # heat meter (FACADE_PLAUSIBLE_KW_HEAT) says it cannot be, so it is suspect and never complete.
    [day] = await stack.items("/consumption/daily", tz="UTC", **window)
    assert day["source"] == "upstream"
    assert day["consumption"] > 2000 * 24
    assert (day["quality"], day["complete"]) == ("suspect", False)


async def test_without_a_misread_the_rows_are_measured_and_complete(stack: Stack) -> None:
    meter = stack.iometer.data.meters[3]
    window = {"start": str(DAY), "end": str(DAY + timedelta(days=1)), "tz": BERLIN}
    for meter_id in (f"iometer:{meter.id}", f"waltero:{DISTRICT_HEATING}"):
        [day] = await stack.items("/consumption/daily", meter_id=meter_id, **window)
        assert (day["quality"], day["complete"]) == ("measured", True)
        hours = await stack.items("/consumption", resolution="hour", meter_id=meter_id, **window)
        assert all(h["complete"] for h in hours)
        # IOmeter reads on the quarter hours (measured); Waltero's hourly points are on UTC hours,
        # which are the local hours of Berlin too (measured)
        assert {h["quality"] for h in hours} == {"measured"}


async def test_a_figure_above_the_configured_bound_is_suspect() -> None:
    clock = FakeClock(NOW)
    emulators = create_emulators(clock)
    settings = Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0, FACADE_PLAUSIBLE_KW_ELECTRICITY=0.001)
    app = create_app(settings, clock=clock, sleep=clock.sleep, emulators=emulators)
    meter = emulators["iometer"].data.meters[3]
    window = {"meter_id": f"iometer:{meter.id}", "start": str(DAY), "end": str(DAY + timedelta(days=1)), "tz": BERLIN}
    async with running(app, key=None) as client:
        stack = Stack(client, emulators)
        [day] = await stack.items("/consumption/daily", **window)
        hours = await stack.items("/consumption", resolution="hour", **window)
    assert day["consumption"] > 0.001 * 24
    assert (day["quality"], day["complete"]) == ("suspect", False)
    assert {(h["quality"], h["complete"]) for h in hours} == {("suspect", False)}


async def test_the_misread_knobs_over_http_are_off_by_default_and_checked() -> None:
    clock = FakeClock(NOW)
    emulators = create_emulators(clock)
    io, wa = emulators["iometer"], emulators["waltero"]
    meter = io.data.meters[3]
    assert io.data.misreads == {}
    noon = datetime.combine(DAY, time(12), UTC)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=io.app), base_url="http://io.test") as io_client,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=wa.app), base_url="http://wa.test") as wa_client,
    ):
        ok = await io_client.post(
            "/_sandbox/misreads", json={"meter_id": meter.id, "time": "2026-06-10T12:00:00Z", "value_wh": 0}
        )
        assert ok.status_code == 201, ok.text
        assert io.data.readings(meter.id, noon, noon + timedelta(minutes=1))[0].value("1-0:1.8.0") == 0.0
        off_grid = await io_client.post(
            "/_sandbox/misreads", json={"meter_id": meter.id, "time": "2026-06-10T12:01:00Z", "value_wh": 0}
        )
        assert off_grid.status_code == 400
        unknown = await io_client.post(
            "/_sandbox/misreads", json={"meter_id": "nope", "time": "2026-06-10T12:00:00Z", "value_wh": 0}
        )
        assert unknown.status_code == 400

        ok = await wa_client.post(
            "/_sandbox/misreads",
            json={"device_id": DISTRICT_HEATING, "timestamp": "2026-06-10T12:00:00Z", "value": 1.5},
        )
        assert ok.status_code == 201, ok.text
        index = wa.data.index_at(noon)
        assert wa.data.processed(DISTRICT_HEATING, index) == 1.5
        assert wa.data.changes("00000000-0000-0000-0000-000000000001", since=NOW - timedelta(hours=1)) == []
        bad = await wa_client.post(
            "/_sandbox/misreads", json={"device_id": DISTRICT_HEATING, "timestamp": "2026-06-10T12:30:00Z", "value": 1}
        )
        assert bad.status_code == 400
