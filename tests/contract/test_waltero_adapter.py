"""The Waltero adapter against the sandbox emulator, value by value against the emulator's own data.

Over `httpx.ASGITransport` (with a base URL ending in `/prod`) and, at the end, over a real loopback
socket. The clock is a FakeClock at 2026-05-17T06:40:00Z unless a test says otherwise.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client import CollectorRegistry

from app.backends.base import Backend
from app.backends.waltero.emulator import (
    EMPTY_NAME_DEVICE,
    GAPPY_DEVICES,
    ORG_NORTH,
    ORG_SOUTH,
    SILENT_DEVICE,
    Emulator,
    create_emulator,
)
from app.backends.waltero.mapping import unit_scale
from app.domain.models import Change
from app.infra.errors import ConfigurationError, InvalidRequest, NotFound
from app.infra.timeutil import local_midnight
from app.infra.tolerance import WireShapeCollector
from tests.support.clock import FakeClock
from tests.support.servers import serve_in_thread
from tests.unit.backends.waltero.harness import Rig, waltero_rig

NOW = datetime(2026, 5, 17, 6, 40, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
KITCHEN = "11111111-1111-1111-1111-111111111101"  # water, m3
HOT_WATER = "11111111-1111-1111-1111-111111111102"  # water, m3, multiplier 0.001
GARDEN = "11111111-1111-1111-1111-111111111103"  # water, L
MAIN_POWER = "11111111-1111-1111-1111-111111111105"  # electricity, kWh, wired
HEAT_PUMP = "11111111-1111-1111-1111-111111111106"  # electricity, Wh
DISTRICT_HEAT = "11111111-1111-1111-1111-111111111108"  # heat, MWh
BOILER_GAS = "11111111-1111-1111-1111-111111111104"  # gas, m3, multiplier 0.01
OTHER_TENANT = "33333333-3333-3333-3333-333333333301"


def scaled(emulator: Emulator, device_id: str, value: float | None) -> float | None:
    return unit_scale(emulator.device(device_id).unit).apply(value)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with waltero_rig() as rig:
        yield rig


def test_the_backend_satisfies_the_protocol(rig: Rig) -> None:
    backend = rig.backend
    assert isinstance(backend, Backend)
    assert backend.name == "waltero"
    assert backend.daily_grain == "meter"
    assert backend.mode == "sandbox"
    assert backend.capabilities == {"meters", "readings", "consumption.daily", "device_status", "changes"}
    assert backend.is_valid_id(KITCHEN)
    assert backend.is_valid_id("a3657fc3-b038-4e95-99a8-d3e8d4f19dcb")
    for bad in (
        "A3657FC3-B038-4E95-99A8-D3E8D4F19DCB",
        KITCHEN.replace("-", ""),
        "x",
        "",
        f"{KITCHEN}/telemetry",
        "../x",
    ):
        assert not backend.is_valid_id(bad)


# --- meters ---------------------------------------------------------------------------------------------------
async def test_list_meters_matches_every_device(rig: Rig) -> None:
    meters = {m.id: m for m in await rig.backend.list_meters()}
    devices = rig.emulator.devices()
    assert set(meters) == {f"waltero:{d.id}" for d in devices}
    units = {"m3": "m3", "L": "m3", "kWh": "kWh", "Wh": "kWh", "MWh": "kWh"}
    media = {"water_cold": "water", "water_hot": "water", "gas": "gas", "electricity": "electricity", "heat": "heat"}
    for device in devices:
        meter = meters[f"waltero:{device.id}"]
        assert meter.backend == "waltero"
        assert meter.device_id == meter.id
        assert meter.serial_number == device.serial_number
        assert meter.name == (device.name or device.external_id)
        assert meter.medium == media[device.meter_type]
        assert meter.unit == units[device.unit]
        assert meter.site_id == f"waltero:{device.organization_id}"
    assert meters[f"waltero:{EMPTY_NAME_DEVICE}"].name == rig.emulator.device(EMPTY_NAME_DEVICE).external_id
    assert rig.emulator.stats["me"] == 1
    assert rig.emulator.stats["devices"] == 2


async def test_configured_organizations_skip_the_user_record() -> None:
    async with waltero_rig(WALTERO_ORGANIZATIONS=ORG_SOUTH) as rig:
        meters = await rig.backend.list_meters()
        assert {m.site_id for m in meters} == {f"waltero:{ORG_SOUTH}"}
        assert len(meters) == 5
        assert rig.emulator.stats["me"] == 0
        with pytest.raises(NotFound):
            await rig.backend.get_meter(KITCHEN)  # a readable device, but not of a configured organization


async def test_organizations_are_cached_for_a_few_minutes(rig: Rig) -> None:
    await rig.backend.list_meters()
    await rig.backend.list_meters()
    assert rig.emulator.stats["me"] == 1
    rig.clock.advance(301)
    await rig.backend.list_meters()
    assert rig.emulator.stats["me"] == 2


async def test_get_meter(rig: Rig) -> None:
    meter = await rig.backend.get_meter(DISTRICT_HEAT)
    assert (meter.medium, meter.unit, meter.name) == ("heat", "kWh", "District heating")
    for unknown in ("11111111-1111-1111-1111-111111111199", OTHER_TENANT):
        with pytest.raises(NotFound):
            await rig.backend.get_meter(unknown)


# --- readings -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device_id", "quantity", "unit"),
    [
        (HOT_WATER, "volume", "m3"),
        (GARDEN, "volume", "m3"),
        (HEAT_PUMP, "energy_import", "kWh"),
        (DISTRICT_HEAT, "energy_import", "kWh"),
        (BOILER_GAS, "volume", "m3"),
    ],
)
async def test_readings_value_by_value(rig: Rig, device_id: str, quantity: str, unit: str) -> None:
    start, end = datetime(2026, 5, 10, 22, tzinfo=UTC), datetime(2026, 5, 12, 22, tzinfo=UTC)
    readings = await rig.backend.readings(device_id, start, end, None, 1000)
    assert [r.time for r in readings] == [start + timedelta(hours=i) for i in range(48)]
    for reading in readings:
        assert (reading.meter_id, reading.quantity, reading.unit, reading.obis) == (
            f"waltero:{device_id}",
            quantity,
            unit,
            None,
        )
        expected = scaled(rig.emulator, device_id, rig.emulator.processed_value(device_id, reading.time))
        assert reading.value == pytest.approx(expected, rel=1e-12)


async def test_readings_skip_the_hours_without_data(rig: Rig) -> None:
    first, stop = rig.emulator.data.gaps(GAPPY_DEVICES[1])[-1]
    readings = await rig.backend.readings(
        GAPPY_DEVICES[1], first - timedelta(hours=2), stop + timedelta(hours=2), None, 100
    )
    assert [r.time for r in readings] == [
        first - timedelta(hours=2),
        first - timedelta(hours=1),
        stop,
        stop + timedelta(hours=1),
    ]


async def test_readings_convert_units(rig: Rig) -> None:
    at = datetime(2026, 5, 10, 12, tzinfo=UTC)
    window = (at, at + timedelta(hours=1))
    garden = (await rig.backend.readings(GARDEN, *window, None, 10))[0].value
    assert garden == pytest.approx(rig.emulator.processed_value(GARDEN, at) / 1000)
    heat = (await rig.backend.readings(DISTRICT_HEAT, *window, None, 10))[0].value
    assert heat == pytest.approx(rig.emulator.processed_value(DISTRICT_HEAT, at) * 1000)


async def test_long_windows_are_chunked_and_stop_at_the_limit(rig: Rig) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    readings = await rig.backend.readings(KITCHEN, start, start + timedelta(days=40), None, 10_000)
    assert len(readings) == 40 * 24
    assert rig.emulator.stats["telemetry"] == 2  # 31 days + 9 days
    few = await rig.backend.readings(KITCHEN, start, start + timedelta(days=60), None, 10)
    assert len(few) >= 10
    assert few[0].time == start
    assert rig.emulator.stats["telemetry"] == 3  # one more call was enough


async def test_readings_filter_by_quantity(rig: Rig) -> None:
    start = datetime(2026, 5, 10, tzinfo=UTC)
    assert await rig.backend.readings(MAIN_POWER, start, start + timedelta(hours=3), frozenset({"volume"}), 10) == []
    assert (
        len(await rig.backend.readings(MAIN_POWER, start, start + timedelta(hours=3), frozenset({"energy_import"}), 10))
        == 3
    )
    assert rig.emulator.stats["telemetry"] == 1
    with pytest.raises(NotFound):
        await rig.backend.readings("11111111-1111-1111-1111-111111111199", start, start + timedelta(hours=3), None, 10)


# --- daily consumption ------------------------------------------------------------------------------------
def expected_day(emulator: Emulator, device_id: str, day: date, tz: ZoneInfo) -> float | None:
    """Consumption over the real local day, from the emulator's own data (independent of segmentation)."""
    value = emulator.data.bucket_consumption(
        device_id, local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz), emulator.clock()
    )
    return scaled(emulator, device_id, value)


async def test_daily_in_utc_is_one_call_per_organization(rig: Rig) -> None:
    start, end = date(2026, 5, 4), date(2026, 5, 18)
    rows = await rig.backend.daily_consumption(None, start, end, UTC_ZONE)
    assert rig.emulator.stats["daily_consumption"] == 2
    devices = sorted(rig.emulator.devices(), key=lambda d: d.id)
    days = [start + timedelta(days=i) for i in range(14)]
    assert [(r.meter_id, r.date) for r in rows] == [(f"waltero:{d.id}", day) for d in devices for day in days]
    nulls = 0
    for row in rows:
        device_id = row.meter_id.removeprefix("waltero:")
        expected = expected_day(rig.emulator, device_id, row.date, UTC_ZONE)
        assert row.source == "upstream"
        assert row.unit == unit_scale(rig.emulator.device(device_id).unit).unit
        if expected is None:
            nulls += 1
            assert row.consumption is None
            assert row.complete is False
        else:
            assert row.consumption == pytest.approx(expected, rel=1e-9, abs=1e-6)
            assert row.complete is (row.date < date(2026, 5, 17))  # today has not ended
    assert nulls >= 2 + 2 + 3  # both gappy devices' 48 h gaps, the silent meter's last days


async def test_daily_rows_of_gaps_and_silence(rig: Rig) -> None:
    gap = rig.emulator.data.gaps(GAPPY_DEVICES[0])[-1][0].date()
    rows = await rig.backend.daily_consumption(
        frozenset({GAPPY_DEVICES[0], SILENT_DEVICE}), gap - timedelta(days=1), date(2026, 5, 18), UTC_ZONE
    )
    gappy = {r.date: r for r in rows if r.meter_id == f"waltero:{GAPPY_DEVICES[0]}"}
    assert gappy[gap].consumption is None
    assert gappy[gap + timedelta(days=1)].consumption is None
    assert gappy[gap - timedelta(days=1)].complete is True
    silent = [r for r in rows if r.meter_id == f"waltero:{SILENT_DEVICE}"]
    assert [r.consumption is None for r in silent][-3:] == [True, True, True]


async def test_daily_for_some_meters_asks_only_their_organization(rig: Rig) -> None:
    rows = await rig.backend.daily_consumption(
        frozenset({HEAT_PUMP, GARDEN}), date(2026, 5, 1), date(2026, 5, 8), UTC_ZONE
    )
    assert rig.emulator.stats["daily_consumption"] == 1
    assert {r.meter_id for r in rows} == {f"waltero:{GARDEN}", f"waltero:{HEAT_PUMP}"}
    assert [r.meter_id for r in rows] == sorted(r.meter_id for r in rows)
    heat_pump = [r for r in rows if r.meter_id == f"waltero:{HEAT_PUMP}"]
    assert all(r.unit == "kWh" and 2 < r.consumption < 12 for r in heat_pump)  # ~6000 Wh a day, in kWh
    with pytest.raises(NotFound):
        await rig.backend.daily_consumption(
            frozenset({KITCHEN, "11111111-1111-1111-1111-111111111199"}), date(2026, 5, 1), date(2026, 5, 2), UTC_ZONE
        )
    assert await rig.backend.daily_consumption(None, date(2026, 5, 2), date(2026, 5, 2), UTC_ZONE) == []


async def test_daily_in_berlin_without_transition_is_one_call_per_org(rig: Rig) -> None:
    rows = await rig.backend.daily_consumption(frozenset({KITCHEN}), date(2026, 5, 1), date(2026, 5, 15), BERLIN)
    assert rig.emulator.stats["daily_consumption"] == 1
    for row in rows:
        assert row.consumption == pytest.approx(expected_day(rig.emulator, KITCHEN, row.date, BERLIN), abs=1e-6)


@pytest.mark.parametrize(
    ("now", "start", "end", "transition", "hours"),
    [
        (datetime(2026, 4, 10, tzinfo=UTC), date(2026, 3, 25), date(2026, 4, 2), date(2026, 3, 29), 23),
        (datetime(2026, 11, 5, tzinfo=UTC), date(2026, 10, 20), date(2026, 10, 30), date(2026, 10, 25), 25),
    ],
)
async def test_daily_across_a_dst_transition_in_berlin(
    now: datetime, start: date, end: date, transition: date, hours: int
) -> None:
    async with waltero_rig(FakeClock(now)) as rig:
        rows = await rig.backend.daily_consumption(None, start, end, BERLIN)
        assert rig.emulator.stats["daily_consumption"] == 2 * 3  # three segments per organization
        assert len(rows) == 17 * (end - start).days
        assert {r.date for r in rows} == {start + timedelta(days=i) for i in range((end - start).days)}
        for row in rows:
            device_id = row.meter_id.removeprefix("waltero:")
            expected = expected_day(rig.emulator, device_id, row.date, BERLIN)
            if expected is None:
                assert row.consumption is None
                assert not row.complete
            else:
                assert row.consumption == pytest.approx(expected, rel=1e-9, abs=1e-6)
                assert row.complete
        kitchen = next(r for r in rows if r.meter_id == f"waltero:{KITCHEN}" and r.date == transition)
        day_start = local_midnight(transition, BERLIN)
        assert local_midnight(transition + timedelta(days=1), BERLIN) - day_start == timedelta(hours=hours)
        register = rig.emulator.processed_value
        assert kitchen.consumption == pytest.approx(
            register(KITCHEN, day_start + timedelta(hours=hours)) - register(KITCHEN, day_start), abs=1e-6
        )


# --- device status ---------------------------------------------------------------------------------------
async def test_device_status_of_a_battery_sensor(rig: Rig) -> None:
    rig.clock.advance(2 * 3600)  # now 08:40: newest point 08:00, newest battery report 06:00
    status = await rig.backend.device_status(KITCHEN)
    newest, battery = datetime(2026, 5, 17, 8, tzinfo=UTC), datetime(2026, 5, 17, 6, tzinfo=UTC)
    points = {p.timestamp: p for p in rig.emulator.telemetry(KITCHEN, battery, newest + timedelta(hours=1))}
    assert status.device_id == f"waltero:{KITCHEN}"
    assert status.backend == "waltero"
    assert status.last_seen == newest
    assert status.online is True
    assert status.battery_voltage == points[battery].number("battery.voltage")
    assert status.battery_percent == points[battery].number("battery.percent")
    assert isinstance(status.battery_percent, int)
    assert status.rssi_dbm == points[newest].number("connection.rssi")
    assert status.power_source == "battery"
    window = rig.emulator.telemetry(
        KITCHEN,
        NOW + timedelta(hours=2) - timedelta(days=7),
        NOW + timedelta(hours=3),
        ["battery.voltage", "battery.percent", "connection.rssi"],
    )
    assert status.details["points_7d"] == len(window)
    assert status.details["meter_type"] == "water_cold"


async def test_device_status_of_a_wired_meter(rig: Rig) -> None:
    status = await rig.backend.device_status(MAIN_POWER)
    assert status.online is True
    assert status.power_source is None
    assert status.battery_percent is None
    assert status.battery_voltage is None
    assert status.rssi_dbm is not None
    assert status.last_seen == datetime(2026, 5, 17, 6, tzinfo=UTC)


async def test_device_status_of_a_silent_device(rig: Rig) -> None:
    status = await rig.backend.device_status(SILENT_DEVICE)
    silent_since = rig.emulator.data.silent_since(SILENT_DEVICE)
    assert silent_since is not None
    assert status.online is False
    assert status.last_seen == silent_since - timedelta(hours=1)
    rig.clock.advance(6 * 86400)  # a week and more without a point
    status = await rig.backend.device_status(SILENT_DEVICE)
    assert status.online is False
    assert status.last_seen is None
    assert status.details["points_7d"] == 0
    with pytest.raises(NotFound):
        await rig.backend.device_status(OTHER_TENANT)


# --- changes -----------------------------------------------------------------------------------------------
def expected_changes(
    emulator: Emulator, since: datetime
) -> list[tuple[str, str, datetime, float | None, float | None]]:
    rows = sorted(
        (c for org in (ORG_NORTH, ORG_SOUTH) for c in emulator.changes(org, since)),
        key=lambda c: (c.changed_at, c.id),
    )
    return [
        (
            f"waltero:{c.id}",
            f"waltero:{c.device_id}",
            c.changed_at,
            scaled(emulator, c.device_id, c.previous_value),
            scaled(emulator, c.device_id, c.new_value),
        )
        for c in rows
    ]


def as_tuples(changes: list[Change]) -> list[tuple[str, str, datetime, float | None, float | None]]:
    return [(c.id, c.meter_id, c.changed_at, c.previous_value, c.new_value) for c in changes]


async def page_through(backend: Backend, since: datetime, limit: int) -> tuple[list[Change], int]:
    items: list[Change] = []
    cursor, pages = None, 0
    while True:
        page = await backend.changes(since, limit, cursor)
        pages += 1
        assert len(page.items) <= limit
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items, pages


async def test_changes_merge_every_organization(rig: Rig) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    page = await rig.backend.changes(since, 1000, None)
    assert page.next_cursor is None
    assert as_tuples(page.items) == expected_changes(rig.emulator, since)
    assert {c.meter_id.split(":")[1][:2] for c in page.items} == {"11", "22"}
    for change in page.items:
        device = rig.emulator.device(change.meter_id.removeprefix("waltero:"))
        assert change.unit == unit_scale(device.unit).unit
        assert change.actor in ("system", "user")
        assert change.backend == "waltero"


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
async def test_changes_pages_neither_lose_nor_repeat(rig: Rig, limit: int) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    items, pages = await page_through(rig.backend, since, limit)
    expected = expected_changes(rig.emulator, since)
    assert as_tuples(items) == expected
    assert pages >= len(expected) // limit


async def test_changes_since_is_inclusive(rig: Rig) -> None:
    since = NOW - timedelta(hours=2)  # the recent corrections share exactly this changed_at
    page = await rig.backend.changes(since, 100, None)
    assert as_tuples(page.items) == expected_changes(rig.emulator, since)
    assert len(page.items) == 4
    assert {c.changed_at for c in page.items} == {since}


async def test_changes_made_while_paging_are_picked_up(rig: Rig) -> None:
    since = NOW - timedelta(hours=3)
    first = await rig.backend.changes(since, 3, None)
    assert first.next_cursor is not None
    rig.clock.advance(60)
    made = rig.emulator.correct(GARDEN, datetime(2026, 5, 10, 12, tzinfo=UTC), 123456.0, "user")
    rest, _ = await page_through_from(rig.backend, since, 3, first.next_cursor)
    ids = [c.id for c in first.items + rest]
    assert len(ids) == len(set(ids)) == 5
    assert ids[-1] == f"waltero:{made.id}"
    assert (rest[-1].new_value, rest[-1].unit) == (123.456, "m3")  # litres in m3


async def page_through_from(backend: Backend, since: datetime, limit: int, cursor: str) -> tuple[list[Change], int]:
    items: list[Change] = []
    pages = 0
    next_cursor: str | None = cursor
    while next_cursor is not None:
        page = await backend.changes(since, limit, next_cursor)
        pages += 1
        items.extend(page.items)
        next_cursor = page.next_cursor
    return items, pages


async def test_changes_reject_a_garbled_cursor(rig: Rig) -> None:
    for cursor in ("garbage", "eyJ2IjoxfQ", "!!!"):
        with pytest.raises(InvalidRequest):
            await rig.backend.changes(NOW, 10, cursor)


# --- auth state -------------------------------------------------------------------------------------------
async def test_auth_state_and_readiness(rig: Rig) -> None:
    state = await rig.backend.auth_state()
    assert state.authenticated is None
    assert state.token_expires_at is None
    await rig.backend.check_ready()
    state = await rig.backend.auth_state()
    assert state.authenticated is True
    assert state.token_expires_at == datetime.fromtimestamp(int(rig.clock.now) + 86400, UTC)
    assert rig.logins == 1
    await rig.backend.check_ready()
    assert rig.logins == 1
    assert "ey" not in repr(rig.backend)
    assert "password" not in repr(rig.backend).lower()


# --- over a real socket ----------------------------------------------------------------------------------------
async def test_over_a_loopback_socket() -> None:
    clock = FakeClock()
    emulator = create_emulator(clock)
    with serve_in_thread(emulator.app) as url:
        async with waltero_rig(
            clock, emulator=emulator, url=url + "/prod/", transport=httpx.AsyncHTTPTransport()
        ) as rig:
            meters = await rig.backend.list_meters()
            assert len(meters) == len(emulator.devices())
            rows = await rig.backend.daily_consumption(None, date(2026, 5, 10), date(2026, 5, 14), UTC_ZONE)
            assert len(rows) == 17 * 4
            for row in rows:
                device_id = row.meter_id.removeprefix("waltero:")
                expected = expected_day(emulator, device_id, row.date, UTC_ZONE)
                assert row.consumption == (pytest.approx(expected, abs=1e-6) if expected is not None else None)
            start = datetime(2026, 5, 12, tzinfo=UTC)
            readings = await rig.backend.readings(HEAT_PUMP, start, start + timedelta(hours=5), None, 100)
            assert [r.value for r in readings] == pytest.approx(
                [emulator.processed_value(HEAT_PUMP, start + timedelta(hours=i)) / 1000 for i in range(5)]
            )
            status = await rig.backend.device_status(KITCHEN)
            assert status.online is True
            items, _ = await page_through(rig.backend, datetime(2026, 1, 1, tzinfo=UTC), 5)
            assert as_tuples(items) == expected_changes(emulator, datetime(2026, 1, 1, tzinfo=UTC))
            assert emulator.stats["login"] == 1


# --- round 2: concurrency, one organization per meter, tolerated variants -----------------------------------
async def test_concurrent_cold_device_lookups_all_answer() -> None:
    emulator = create_emulator(FakeClock())
    emulator.faults.latency = 0.005  # a real pause per request, so the lookups interleave
    async with waltero_rig(emulator=emulator, clock=FakeClock()) as rig:
        devices = [d.id for d in rig.emulator.devices()]
        statuses = await asyncio.gather(*(rig.backend.device_status(d) for d in devices))
        assert [s.device_id for s in statuses] == [f"waltero:{d}" for d in devices]
        assert (rig.emulator.stats["login"], rig.emulator.stats["me"]) == (1, 1)  # both single-flight


async def test_daily_for_one_meter_on_a_cold_backend_asks_its_organization_only(rig: Rig) -> None:
    """One meter's daily consumption: one device lookup (its organization) and one daily call, no
    listing of every organization's devices."""
    rows = await rig.backend.daily_consumption(frozenset({KITCHEN}), date(2026, 5, 1), date(2026, 5, 8), UTC_ZONE)
    stats = rig.emulator.stats
    assert (stats["daily_consumption"], stats["device"], stats["devices"], stats["me"]) == (1, 1, 0, 1)
    assert len(rows) == 7
    for row in rows:
        assert row.consumption == pytest.approx(expected_day(rig.emulator, KITCHEN, row.date, UTC_ZONE), abs=1e-6)
    await rig.backend.daily_consumption(frozenset({KITCHEN}), date(2026, 5, 8), date(2026, 5, 9), UTC_ZONE)
    assert (stats["daily_consumption"], stats["device"]) == (2, 1)  # the directory answered the second time


def _wire_shapes(aspect: str, shape: str) -> float:
    registry = CollectorRegistry()
    registry.register(WireShapeCollector())
    value = registry.get_sample_value(
        "facade_vendor_wire_shapes_total", {"backend": "waltero", "aspect": aspect, "shape": shape}
    )
    return value or 0.0


async def answers(backend: Backend, since: datetime) -> dict[str, object]:
    """Everything the facade shows, for comparing a variant with the pinned emulator."""
    return {
        "meters": sorted(await backend.list_meters(), key=lambda m: m.id),
        "readings": await backend.readings(HOT_WATER, NOW - timedelta(days=2), NOW, None, 1000),
        "daily_utc": await backend.daily_consumption(None, date(2026, 5, 10), date(2026, 5, 17), UTC_ZONE),
        "daily_berlin": await backend.daily_consumption(
            frozenset({HOT_WATER, GARDEN}), date(2026, 5, 10), date(2026, 5, 17), BERLIN
        ),
        "status": await backend.device_status(KITCHEN),
        "changes": (await page_through(backend, since, 3))[0],
    }


@pytest.mark.parametrize(
    ("variant", "settings", "aspect", "shape"),
    [
        ("nested_telemetry", {}, "telemetry_keys", "nested"),
        ("daily_bare", {}, "data_wrapper", "bare"),
        ("plain_org_ids", {}, "organizations", "plain_ids"),
        ("upper_ids", {}, "id_case", "upper"),
        ("offset_ignored", {}, None, None),
        ("audit_no_cursor", {}, "audit_paging", "since"),
        ("utc_calendar", {"WALTERO_DAILY_BUCKETS": "utc-calendar"}, None, None),
    ],
)
async def test_a_tolerated_variant_gives_the_same_answers(
    variant: str, settings: dict[str, str], aspect: str | None, shape: str | None
) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    async with waltero_rig() as pinned:
        expected = await answers(pinned.backend, since)
    before = _wire_shapes(aspect, shape) if aspect and shape else 0.0
    clock = FakeClock()
    emulator = create_emulator(clock, breaks={variant})
    async with waltero_rig(clock, emulator=emulator, **settings) as odd:
        got = await answers(odd.backend, since)
    assert got == expected
    if aspect and shape:
        assert _wire_shapes(aspect, shape) > before


async def test_calendar_buckets_read_as_rolling_ones_are_wrong_which_the_setting_fixes() -> None:
    """Why the setting exists: read with the pinned rolling rule, a calendar-day vendor's Berlin day D
    gets the wrong value; with WALTERO_DAILY_BUCKETS=utc-calendar every day is right."""
    clock = FakeClock()
    emulator = create_emulator(clock, breaks={"utc_calendar"})
    days = (date(2026, 5, 10), date(2026, 5, 14))
    async with waltero_rig(clock, emulator=emulator) as rolling:
        misread = await rolling.backend.daily_consumption(frozenset({KITCHEN}), *days, BERLIN)
    async with waltero_rig(clock, emulator=emulator, WALTERO_DAILY_BUCKETS="utc-calendar") as calendar:
        calls_before = emulator.stats["daily_consumption"]
        right = await calendar.backend.daily_consumption(frozenset({KITCHEN}), *days, BERLIN)
        assert emulator.stats["daily_consumption"] - calls_before == 4  # Berlin midnights are not UTC ones
    expected = [expected_day(emulator, KITCHEN, row.date, BERLIN) for row in right]
    assert [r.consumption for r in right] == pytest.approx(expected, abs=1e-6)
    assert [r.consumption for r in misread] != pytest.approx(expected, abs=1e-6)


async def test_daily_for_many_unknown_meters_lists_the_directory_once(rig: Rig) -> None:
    ids = frozenset(d.id for d in rig.emulator.devices(ORG_NORTH)[:6])
    rows = await rig.backend.daily_consumption(ids, date(2026, 5, 1), date(2026, 5, 3), UTC_ZONE)
    stats = rig.emulator.stats
    assert (stats["devices"], stats["device"], stats["daily_consumption"]) == (2, 0, 1)  # both orgs listed once
    assert {r.meter_id for r in rows} == {f"waltero:{i}" for i in ids}


def test_the_bucket_rule_is_a_setting_defaulting_to_the_pinned_reading() -> None:

    from tests.unit.backends.waltero.harness import waltero_settings

    def buckets(**given: str) -> str:
        return waltero_settings(**given).vendor_settings("waltero").daily_buckets  # type: ignore[attr-defined,no-any-return]

    assert buckets() == "rolling"
    assert buckets(WALTERO_DAILY_BUCKETS="utc-calendar") == "utc-calendar"
    with pytest.raises(ConfigurationError):
        buckets(WALTERO_DAILY_BUCKETS="weekly")


async def test_the_setting_reaches_the_backend() -> None:
    async with waltero_rig(WALTERO_DAILY_BUCKETS="utc-calendar") as rig:
        assert rig.backend.daily_buckets == "utc-calendar"
