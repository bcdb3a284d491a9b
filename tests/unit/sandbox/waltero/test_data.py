"""The emulator's demo data and the rules of its data endpoints, value by value."""

import itertools
import math
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.backends.waltero.emulator import (
    EMPTY_NAME_DEVICE,
    GAPPY_DEVICES,
    ORG_NORTH,
    ORG_SOUTH,
    SILENT_DEVICE,
    Emulator,
    create_emulator,
)
from app.backends.waltero.emulator.data import add_months
from app.infra.timeutil import parse_rfc3339
from tests.support.clock import FakeClock

NOW = datetime(2026, 5, 17, 6, 40, tzinfo=UTC)  # FakeClock's default
KITCHEN = "11111111-1111-1111-1111-111111111101"  # water_cold, m3, multiplier 1
HOT_WATER = "11111111-1111-1111-1111-111111111102"  # water_hot, m3, multiplier 0.001
MAIN_POWER = "11111111-1111-1111-1111-111111111105"  # electricity, wired
DAILY = "/api/organizations/{org}/applications/metering/v3/data/device-daily-consumption"


def ms(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_clock_assumption(clock: FakeClock) -> None:
    assert datetime.fromtimestamp(clock.now, UTC) == NOW


# --- devices --------------------------------------------------------------------------------------------
async def test_devices_page_by_limit_and_offset(api: httpx.AsyncClient, emulator: Emulator) -> None:
    seen, offset, totals = [], 0, set()
    while True:
        body = (await api.get(f"/api/organizations/{ORG_NORTH}/devices", params={"limit": 5, "offset": offset})).json()
        totals.add(body["total"])
        if not body["data"]:
            break
        assert len(body["data"]) <= 5
        seen.extend(body["data"])
        offset += len(body["data"])
    assert totals == {12}
    assert offset == 12  # three pages: 5, 5, 2
    assert seen == [d.to_wire() for d in emulator.devices(ORG_NORTH)]
    assert [d["id"] for d in seen] == sorted(d["id"] for d in seen)


async def test_devices_default_limit_is_100(api: httpx.AsyncClient) -> None:
    body = (await api.get(f"/api/organizations/{ORG_SOUTH}/devices")).json()
    assert body["total"] == len(body["data"]) == 5


def test_demo_covers_every_meter_type_and_unit(emulator: Emulator) -> None:
    devices = emulator.devices()
    assert {d.meter_type for d in devices} == {"water_cold", "water_hot", "gas", "electricity", "heat"}
    assert {d.unit for d in devices} == {"m3", "L", "kWh", "Wh", "MWh"}
    assert {d.multiplier for d in devices} >= {1.0, 0.001, 0.01, 10.0, 0.1}
    assert {d.organization_id for d in devices} == {ORG_NORTH, ORG_SOUTH}
    empty = emulator.device(EMPTY_NAME_DEVICE)
    assert empty.name == ""
    assert empty.external_id
    assert len({d.serial_number for d in devices}) == len(devices)


async def test_one_device(api: httpx.AsyncClient, emulator: Emulator) -> None:
    body = (await api.get(f"/api/devices/{HOT_WATER}")).json()
    assert body == emulator.device(HOT_WATER).to_wire()
    assert set(body) == {
        "id",
        "name",
        "serial_number",
        "external_id",
        "meter_type",
        "unit",
        "multiplier",
        "organization_id",
    }


def test_demo_data_is_deterministic() -> None:
    a, b, c = (create_emulator(FakeClock(), seed=s) for s in (7, 7, 8))
    at = NOW - timedelta(days=3, hours=5, minutes=40)
    assert [d.serial_number for d in a.devices()] == [d.serial_number for d in b.devices()]
    assert a.processed_value(KITCHEN, at) == b.processed_value(KITCHEN, at) != c.processed_value(KITCHEN, at)
    assert [x.id for x in a.changes(ORG_NORTH)] == [x.id for x in b.changes(ORG_NORTH)]


# --- telemetry ------------------------------------------------------------------------------------------
async def test_telemetry_is_hourly_ascending_and_half_open(api: httpx.AsyncClient, emulator: Emulator) -> None:
    start, end = datetime(2026, 5, 10, 22, tzinfo=UTC), datetime(2026, 5, 11, 22, tzinfo=UTC)
    body = (
        await api.get(f"/api/devices/{HOT_WATER}/telemetry", params={"startDate": ms(start), "endDate": ms(end)})
    ).json()
    assert body["deviceId"] == HOT_WATER
    times = [parse_rfc3339(p["timestamp"]) for p in body["data"]]
    assert times == [start + timedelta(hours=i) for i in range(24)]
    multiplier = emulator.device(HOT_WATER).multiplier
    for point, at in zip(body["data"], times, strict=True):
        assert point["meter.value.processed"] == pytest.approx(point["meter.value.raw"] * multiplier, abs=1e-9)
        assert point["meter.value.processed"] == emulator.processed_value(HOT_WATER, at)
        assert point["timestamp"].endswith(".000Z")
    registers = [p["meter.value.processed"] for p in body["data"]]
    assert registers == sorted(registers)
    battery = [p for p in body["data"] if "battery.voltage" in p]
    assert len(battery) == 4
    assert all(parse_rfc3339(p["timestamp"]).hour % 6 == 0 for p in battery)
    assert all(isinstance(p["battery.percent"], int) for p in battery)
    assert all("connection.rssi" in p for p in body["data"])


async def test_telemetry_fields_filter(api: httpx.AsyncClient) -> None:
    params = {"startDate": "2026-05-10T00:00:00Z", "endDate": "2026-05-11T00:00:00Z", "fields": "battery.voltage"}
    body = (await api.get(f"/api/devices/{KITCHEN}/telemetry", params=params)).json()
    assert len(body["data"]) == 4
    assert all(set(p) == {"timestamp", "battery.voltage"} for p in body["data"])
    params["fields"] = "meter.value.processed,connection.rssi,no.such.field"
    body = (await api.get(f"/api/devices/{KITCHEN}/telemetry", params=params)).json()
    assert len(body["data"]) == 24
    assert all(set(p) == {"timestamp", "meter.value.processed", "connection.rssi"} for p in body["data"])


async def test_fields_per_variant(api: httpx.AsyncClient) -> None:
    battery = (await api.get(f"/api/devices/{KITCHEN}/fields")).json()
    assert battery == {
        "meter": ["meter.value.processed", "meter.value.raw"],
        "battery": ["battery.voltage", "battery.percent"],
        "connection": ["connection.rssi"],
        "meta": ["meta.temperature"],
    }
    wired = (await api.get(f"/api/devices/{MAIN_POWER}/fields")).json()
    assert wired["battery"] == []
    assert "connection.last_seen" in wired["connection"]
    params = {"startDate": "2026-05-10T00:00:00Z", "endDate": "2026-05-10T03:00:00Z"}
    points = (await api.get(f"/api/devices/{MAIN_POWER}/telemetry", params=params)).json()["data"]
    assert all(p["connection.last_seen"] == p["timestamp"] and "battery.voltage" not in p for p in points)


async def test_telemetry_ends_at_now(api: httpx.AsyncClient, clock: FakeClock) -> None:
    params = {"startDate": "2026-05-17T00:00:00Z", "endDate": "2026-05-18T00:00:00Z"}
    points = (await api.get(f"/api/devices/{KITCHEN}/telemetry", params=params)).json()["data"]
    assert points[-1]["timestamp"] == "2026-05-17T06:00:00.000Z"
    clock.advance(3600)
    points = (await api.get(f"/api/devices/{KITCHEN}/telemetry", params=params)).json()["data"]
    assert points[-1]["timestamp"] == "2026-05-17T07:00:00.000Z"


def test_ninety_days_of_history(emulator: Emulator) -> None:
    points = emulator.telemetry(KITCHEN, NOW - timedelta(days=200), NOW + timedelta(days=1), ["meter.value.raw"])
    assert parse_rfc3339(points[0].to_wire()["timestamp"]) == datetime(2026, 2, 16, tzinfo=UTC)
    assert len(points) == 90 * 24 + 7


def test_silent_device_stopped_reporting_over_a_day_ago(emulator: Emulator) -> None:
    since = emulator.data.silent_since(SILENT_DEVICE)
    assert since is not None
    assert NOW - since == timedelta(hours=59, minutes=40)
    assert emulator.telemetry(SILENT_DEVICE, NOW - timedelta(days=2), NOW) == []
    before = emulator.telemetry(SILENT_DEVICE, NOW - timedelta(days=4), NOW)
    assert before
    assert before[-1].timestamp == since - timedelta(hours=1)
    assert all(emulator.data.silent_since(d.id) is None for d in emulator.devices() if d.id != SILENT_DEVICE)


def test_gappy_devices_have_whole_days_without_points(emulator: Emulator) -> None:
    for device_id in GAPPY_DEVICES:
        gaps = emulator.data.gaps(device_id)
        assert len(gaps) == 3
        for first, stop in gaps:
            assert stop - first == timedelta(hours=48)
            assert emulator.telemetry(device_id, first, stop) == []
            assert emulator.telemetry(device_id, first - timedelta(hours=1), first)
    assert NOW - emulator.data.gaps(GAPPY_DEVICES[0])[-1][0] < timedelta(days=7)


# --- daily consumption ----------------------------------------------------------------------------------
def positive_steps(values: list[float]) -> float:
    return sum(max(0.0, b - a) for a, b in itertools.pairwise(values))


def expected_bucket(emulator: Emulator, device_id: str, first: datetime, stop: datetime) -> float | None:
    """Independent reading of the pinned rule: null without a point in [first, stop); else the sum of
    non-negative steps over the points in [first, stop]."""
    inside = emulator.telemetry(device_id, first, stop, ["meter.value.processed"])
    if not inside:
        return None
    closing = emulator.telemetry(device_id, stop, stop + timedelta(seconds=1), ["meter.value.processed"])
    values = [p.number("meter.value.processed") for p in inside + closing]
    return positive_steps([v for v in values if v is not None])


async def test_daily_rows_follow_the_pinned_buckets(api: httpx.AsyncClient, emulator: Emulator) -> None:
    start = datetime(2026, 5, 4, 22, tzinfo=UTC)
    end = start + timedelta(days=12, hours=6)  # 13 buckets, the last one 6 h long
    params = {"startDate": ms(start), "endDate": ms(end), "resolution": "day"}
    rows = (await api.get(DAILY.format(org=ORG_NORTH), params=params)).json()["data"]
    devices = emulator.devices(ORG_NORTH)
    assert len(rows) == len(devices) * 13
    assert [r["deviceId"] for r in rows] == [d.id for d in devices for _ in range(13)]
    gap_start = emulator.data.gaps(GAPPY_DEVICES[0])[-1][0]
    nulls = 0
    for n, row in enumerate(rows):
        first = start + timedelta(days=n % 13)
        stop = min(end, first + timedelta(days=1))
        device = emulator.device(row["deviceId"])
        assert row["serialNumber"] == device.serial_number
        assert row["deviceName"] == (device.name or device.external_id)
        expected = expected_bucket(emulator, device.id, first, stop)
        if expected is None:
            nulls += 1
            assert row == {
                "deviceId": device.id,
                "deviceName": row["deviceName"],
                "serialNumber": device.serial_number,
                "consumption": None,
            }
        else:
            assert row["date"] == first.date().isoformat()  # UTC day of the bucket's start: 22:00Z -> that day
            assert row["consumption"] == pytest.approx(expected, abs=2e-6)
            assert row["consumption"] > 0
    assert nulls >= 2  # the gappy device's 48 h gap inside the range
    assert gap_start >= start


async def test_daily_value_is_the_register_difference(api: httpx.AsyncClient, emulator: Emulator) -> None:
    first = datetime(2026, 5, 9, 22, tzinfo=UTC)
    params = {"startDate": ms(first), "endDate": ms(first + timedelta(days=1)), "resolution": "day"}
    rows = (await api.get(DAILY.format(org=ORG_NORTH), params=params)).json()["data"]
    row = next(r for r in rows if r["deviceId"] == HOT_WATER)
    difference = emulator.processed_value(HOT_WATER, first + timedelta(days=1)) - emulator.processed_value(
        HOT_WATER, first
    )
    assert row["consumption"] == pytest.approx(difference, abs=1e-6)
    assert row["date"] == "2026-05-09"


async def test_daily_null_rows_for_the_silent_device_and_partial_today(
    api: httpx.AsyncClient, emulator: Emulator
) -> None:
    first = datetime(2026, 5, 14, tzinfo=UTC)
    params = {"startDate": ms(first), "endDate": "2026-05-18T00:00:00Z", "resolution": "day"}
    rows = [r for r in (await api.get(DAILY.format(org=ORG_NORTH), params=params)).json()["data"]]
    silent = [r for r in rows if r["deviceId"] == SILENT_DEVICE]
    assert [r.get("date") for r in silent] == ["2026-05-14", None, None, None]
    kitchen = [r for r in rows if r["deviceId"] == KITCHEN]
    today = kitchen[-1]
    assert today["date"] == "2026-05-17"
    assert today["consumption"] == pytest.approx(
        emulator.processed_value(KITCHEN, datetime(2026, 5, 17, 6, tzinfo=UTC))
        - emulator.processed_value(KITCHEN, datetime(2026, 5, 17, tzinfo=UTC)),
        abs=1e-6,
    )


async def test_daily_accepts_timestamps_with_and_without_milliseconds(api: httpx.AsyncClient) -> None:
    with_ms = {"startDate": "2026-05-10T22:00:00.000Z", "endDate": "2026-05-12T22:00:00.000Z", "resolution": "day"}
    without = {"startDate": "2026-05-10T22:00:00Z", "endDate": "2026-05-12T22:00:00Z", "resolution": "day"}
    a = (await api.get(DAILY.format(org=ORG_SOUTH), params=with_ms)).json()
    b = (await api.get(DAILY.format(org=ORG_SOUTH), params=without)).json()
    assert a == b
    assert len(a["data"]) == 10


async def test_daily_outside_the_history_is_all_null(api: httpx.AsyncClient) -> None:
    params = {"startDate": "2025-01-01T00:00:00Z", "endDate": "2025-01-03T00:00:00Z", "resolution": "day"}
    rows = (await api.get(DAILY.format(org=ORG_SOUTH), params=params)).json()["data"]
    assert len(rows) == 10
    assert all(r["consumption"] is None and "date" not in r for r in rows)


async def test_week_month_year_resolutions(api: httpx.AsyncClient, emulator: Emulator) -> None:
    async def dates(start: str, end: str, resolution: str) -> list[str | None]:
        params = {"startDate": start, "endDate": end, "resolution": resolution}
        rows = (await api.get(DAILY.format(org=ORG_NORTH), params=params)).json()["data"]
        return [r.get("date") for r in rows if r["deviceId"] == KITCHEN]

    assert await dates("2026-03-01T00:00:00Z", "2026-03-22T00:00:00Z", "week") == [
        "2026-03-01",
        "2026-03-08",
        "2026-03-15",
    ]
    assert await dates("2026-02-20T00:00:00Z", "2026-05-10T00:00:00Z", "month") == [
        "2026-02-20",
        "2026-03-20",
        "2026-04-20",
    ]
    assert await dates("2026-02-20T00:00:00Z", "2026-05-10T00:00:00Z", "year") == ["2026-02-20"]
    month = emulator.daily_buckets(
        ORG_NORTH, datetime(2026, 3, 20, tzinfo=UTC), datetime(2026, 4, 20, tzinfo=UTC), "month"
    )
    kitchen = next(r for r in month if r.device_id == KITCHEN)
    assert kitchen.consumption == pytest.approx(
        emulator.processed_value(KITCHEN, datetime(2026, 4, 20, tzinfo=UTC))
        - emulator.processed_value(KITCHEN, datetime(2026, 3, 20, tzinfo=UTC)),
        abs=1e-6,
    )


def test_add_months_clamps_the_day() -> None:
    assert add_months(datetime(2026, 1, 31, 23, tzinfo=UTC), 1) == datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert add_months(datetime(2026, 1, 31, tzinfo=UTC), 2) == datetime(2026, 3, 31, tzinfo=UTC)
    assert add_months(datetime(2024, 2, 29, tzinfo=UTC), 12) == datetime(2025, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 11, 15, tzinfo=UTC), 3) == datetime(2027, 2, 15, tzinfo=UTC)


# --- corrections and the data-audit feed ------------------------------------------------------------------
async def test_a_correction_changes_telemetry_daily_and_the_feed(
    raw: httpx.AsyncClient, api: httpx.AsyncClient, emulator: Emulator, clock: FakeClock
) -> None:
    at = datetime(2026, 5, 10, 12, tzinfo=UTC)
    day = (datetime(2026, 5, 10, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC))
    before_value = emulator.processed_value(HOT_WATER, at)
    before_day = emulator.daily_buckets(ORG_NORTH, *day)
    clock.advance(30)
    response = await raw.post(
        "/_sandbox/corrections",
        json={
            "device_id": HOT_WATER,
            "timestamp": "2026-05-10T12:00:00Z",
            "new_value": before_value + 5,
            "actor": "user",
        },
    )
    assert response.status_code == 201
    change = response.json()
    assert change["previous_value"] == before_value
    assert change["new_value"] == before_value + 5
    assert change["changed_at"] == ms(NOW + timedelta(seconds=30)).replace(".000Z", ".000Z")
    assert change["timestamp"] == "2026-05-10T12:00:00.000Z"
    assert change["actor"] == "user"
    point = emulator.telemetry(HOT_WATER, at, at + timedelta(hours=1))[0].to_wire()
    assert point["meter.value.processed"] == before_value + 5
    assert point["meter.value.raw"] == pytest.approx((before_value + 5) / 0.001)
    after_day = emulator.daily_buckets(ORG_NORTH, *day)
    old = next(r.consumption for r in before_day if r.device_id == HOT_WATER)
    new = next(r.consumption for r in after_day if r.device_id == HOT_WATER)
    assert new != old
    assert new == pytest.approx(expected_bucket(emulator, HOT_WATER, *day), abs=2e-6)
    since = {"since": ms(NOW)}
    feed = (await api.get(f"/api/organizations/{ORG_NORTH}/data-audit/changes", params=since)).json()["data"]
    assert feed == [change]


def test_corrections_made_at_one_instant_keep_their_order(emulator: Emulator) -> None:
    at = datetime(2026, 5, 10, 12, tzinfo=UTC)
    first = emulator.correct(KITCHEN, at, 1.0, "system")
    second = emulator.correct(KITCHEN, at, 2.0)
    assert (second.previous_value, second.actor) == (1.0, "user")
    assert emulator.changes(ORG_NORTH, NOW) == [first, second]
    assert emulator.processed_value(KITCHEN, at) == 2.0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"device_id": KITCHEN, "timestamp": "2026-05-10T12:30:00Z", "new_value": 1}, 400),  # not a reading time
        ({"device_id": SILENT_DEVICE, "timestamp": "2026-05-16T12:00:00Z", "new_value": 1}, 400),  # no reading
        ({"device_id": KITCHEN, "timestamp": "2026-05-10T12:00:00Z", "new_value": "x"}, 400),
        ({"device_id": KITCHEN, "timestamp": "2026-05-10T12:00:00Z", "new_value": 1, "actor": "robot"}, 400),
        ({"device_id": KITCHEN, "new_value": 1}, 400),
        (
            {"device_id": "11111111-1111-1111-1111-111111111199", "timestamp": "2026-05-10T12:00:00Z", "new_value": 1},
            404,
        ),
    ],
)
async def test_bad_corrections(raw: httpx.AsyncClient, body: dict[str, object], status: int) -> None:
    response = await raw.post("/_sandbox/corrections", json=body)
    assert response.status_code == status
    assert set(response.json()) == {"code", "message"}


def test_the_feed_is_consistent_with_the_data(emulator: Emulator) -> None:
    for org in (ORG_NORTH, ORG_SOUTH):
        rows = emulator.changes(org)
        assert rows == sorted(rows, key=lambda c: (c.changed_at, c.id))
        assert {c.actor for c in rows} == {"system", "user"}
        for change in rows:
            assert emulator.device(change.device_id).organization_id == org
            assert change.changed_at < NOW
            assert change.changed_at > change.timestamp
            assert change.new_value == emulator.processed_value(change.device_id, change.timestamp)
            assert change.previous_value != change.new_value
        recent = [c for c in rows if c.changed_at == NOW - timedelta(hours=2)]
        assert len(recent) == 2  # a tie on changed_at, ordered by id
    assert len(emulator.changes(ORG_NORTH)) >= 12


async def test_feed_since_is_inclusive_and_cursor_pages(api: httpx.AsyncClient, emulator: Emulator) -> None:
    path = f"/api/organizations/{ORG_NORTH}/data-audit/changes"
    everything = [c.to_wire() for c in emulator.changes(ORG_NORTH)]
    middle = everything[5]
    body = (await api.get(path, params={"since": middle["changed_at"]})).json()
    assert body["data"][0]["changed_at"] == middle["changed_at"]
    assert body["data"] == [c for c in everything if c["changed_at"] >= middle["changed_at"]]
    assert body["next_cursor"] is None
    pages, cursor = [], None
    while True:
        params = {"since": "2026-01-01T00:00:00.000Z", "limit": 4, **({"cursor": cursor} if cursor else {})}
        body = (await api.get(path, params=params)).json()
        pages.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [c for page in pages for c in page] == everything
    assert len(pages) == math.ceil(len(everything) / 4)


async def test_feed_default_limit_is_200(api: httpx.AsyncClient, emulator: Emulator) -> None:
    at = datetime(2026, 5, 10, 12, tzinfo=UTC)
    for n in range(205):
        emulator.correct(KITCHEN, at, float(n))
    body = (await api.get(f"/api/organizations/{ORG_NORTH}/data-audit/changes", params={"since": ms(NOW)})).json()
    assert len(body["data"]) == 200
    assert body["next_cursor"]
    body = (
        await api.get(f"/api/organizations/{ORG_NORTH}/data-audit/changes", params={"since": ms(NOW), "limit": 1000})
    ).json()
    assert [c["new_value"] for c in body["data"]] == [float(n) for n in range(205)]
