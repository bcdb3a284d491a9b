"""The adapter against a scripted GraphQL server (httpx.MockTransport): paging rules, shapes, index."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from app.backends.base import Backend
from app.backends.http import RetryPolicy, current_operation
from app.backends.iometer.adapter import IometerBackend, meter_device
from app.backends.iometer.auth import BasicAuth
from app.backends.iometer.client import IometerClient, PartnerTransport
from app.infra.errors import NotFound, NotSupported, UpstreamBadResponse
from tests.support.clock import FakeClock

M1 = "11111111-1111-4111-8111-111111111111"
M2 = "22222222-2222-4222-8222-222222222222"
I1 = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
I2 = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
D1 = "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
D2 = "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee"
T0 = datetime(2026, 5, 4, tzinfo=UTC)

Script = Callable[[str, dict[str, Any]], Any]


class FakeServer:
    """Answers by operation name with `script(operation, variables)` → the `data` object."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        match = re.search(r"query (\w+)", body["query"])
        assert match
        operation, variables = match.group(1), body.get("variables") or {}
        self.calls.append((operation, variables))
        return httpx.Response(200, json={"data": self.script(operation, variables)})

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)


def backend(script: Script, clock: FakeClock | None = None) -> tuple[IometerBackend, FakeServer]:
    server = FakeServer(script)
    clock = clock or FakeClock()
    transport = PartnerTransport(
        "http://iometer.test/api/v1/query",
        http=httpx.AsyncClient(transport=httpx.MockTransport(server)),
        auth=BasicAuth("p", SecretStr("s")),
        policy=RetryPolicy(),
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(0),
    )
    return IometerBackend(IometerClient(transport), mode="live", clock=clock, max_gap=21600), server


def reading(t: datetime, kwh: float, meter: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "time": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "values": [
            {"obisCode": "1-0:16.7.0", "value": 500.0, "unit": "W"},
            {"obisCode": "1-0:1.8.0", "value": kwh * 1000, "unit": "Wh"},
        ],
    }
    if meter:
        row["meter"] = {"id": meter}
    return row


PROBE = {"readings": [{"values": [{"obisCode": "1-0:1.8.0"}]}]}
"""A meter's first reading's OBIS codes (the medium probe of the Installations and Meter documents)."""


def installation(inst: str, meters: list[str], devices: list[str]) -> dict[str, Any]:
    return {
        "id": inst,
        "currentDevice": {"id": devices[0]} if devices else None,
        "currentMeter": {"id": meters[0]} if meters else None,
        "meters": [{"id": m, "number": f"NR-{m[:4]}", "readings": PROBE} for m in meters],
        "devices": [{"id": d} for d in devices],
    }


def meter_answer(meter: str, number: str, inst: str, device: str | None = None) -> dict[str, Any]:
    return {
        "partner": {
            "meter": {
                "id": meter,
                "number": number,
                "readings": PROBE,
                "installation": {
                    "id": inst,
                    "currentDevice": {"id": device} if device else None,
                    "currentMeter": {"id": meter},
                    "meters": [{"id": meter}],
                    "devices": [{"id": device}] if device else [],
                },
            }
        }
    }


def test_protocol_shape_and_ids() -> None:
    b, _ = backend(lambda op, v: None)
    assert isinstance(b, Backend)
    assert b.name == "iometer"
    assert b.capabilities == frozenset({"meters", "readings", "consumption.daily", "device_status"})
    assert b.daily_grain == "meter"
    assert b.is_valid_id(M1)
    assert b.is_valid_id("0cb1e29c-658c-4a14-95e6-0af593bd04cf")
    assert not b.is_valid_id("0CB1E29C-658C-4A14-95E6-0AF593BD04CF")  # one spelling per id
    for bad in ("", "1", M1 + "0", M1.replace("-", ""), "zzzzzzzz-1111-4111-8111-111111111111", f"{M1}\n"):
        assert not b.is_valid_id(bad)


async def test_changes_are_not_supported() -> None:
    b, server = backend(lambda op, v: None)
    with pytest.raises(NotSupported):
        await b.changes(T0, 10, None)
    assert server.calls == []


async def test_installations_are_paged_until_an_empty_page_not_a_short_one() -> None:
    pages = [[installation(I1, [M1], [D1])], [installation(I2, [M2], [])], []]

    def script(op: str, v: dict[str, Any]) -> Any:
        # The server caps pages at one installation, far below the asked limit.
        return {"installations": pages[v["pagination"]["offset"]]}

    b, server = backend(script)
    meters = await b.list_meters()
    assert [m.id for m in meters] == [f"iometer:{M1}", f"iometer:{M2}"]
    assert meters[0].device_id == f"iometer:{D1}"
    assert meters[1].device_id is None
    assert meters[0].site_id == f"iometer:{I1}"
    assert meters[0].serial_number == f"NR-{M1[:4]}"
    assert [v["pagination"]["offset"] for _, v in server.calls] == [0, 1, 2]


async def test_a_server_that_ignores_offset_does_not_loop_forever() -> None:
    b, _ = backend(lambda op, v: {"installations": [installation(I1, [M1], [D1])]})
    with pytest.raises(UpstreamBadResponse):
        await b.list_meters()


async def test_a_meter_missing_a_field_is_a_bad_response() -> None:
    b, _ = backend(
        lambda op, v: {"installations": [{"id": I1, "currentDevice": None, "meters": [{"id": M1}], "devices": []}]}
    )
    with pytest.raises(UpstreamBadResponse):
        await b.list_meters()


async def test_get_meter_and_not_found() -> None:
    def script(op: str, v: dict[str, Any]) -> Any:
        if v["id"] == M1:
            return meter_answer(M1, "N1", I1)
        return {"partner": {"meter": None}}

    b, _ = backend(script)
    meter = await b.get_meter(M1)
    assert (meter.id, meter.serial_number, meter.site_id, meter.device_id) == (
        f"iometer:{M1}",
        "N1",
        f"iometer:{I1}",
        None,
    )
    with pytest.raises(NotFound):
        await b.get_meter(M2)


def paged_readings(rows: list[dict[str, Any]], page: int) -> Script:
    """Serve `rows` for a meter `page` at a time regardless of `limit`, cursor = next index."""

    def script(op: str, v: dict[str, Any]) -> Any:
        start = int(v["cursor"] or 0)
        chunk = rows[start : start + page]
        cursor = str(start + page) if start + page < len(rows) else None
        return {"partner": {"meter": {"id": v["meterId"], "readings": {"readings": chunk, "cursor": cursor}}}}

    return script


async def test_readings_follow_the_cursor_through_short_pages() -> None:
    rows = [reading(T0 + timedelta(minutes=15 * i), 100 + i) for i in range(20)]
    b, server = backend(paged_readings(rows, 3))
    items = await b.readings(M1, T0, T0 + timedelta(days=1), None, 1000)
    assert len(items) == 40
    assert server.count("MeterReadings") == 7
    assert [r.time for r in items] == sorted(r.time for r in items)
    assert items[0].quantity == "energy_import"
    assert items[1].quantity == "power"  # (time, quantity) order
    assert items[0].value == 100.0
    assert items[0].unit == "kWh"
    assert server.calls[0][1]["startTime"] == "2026-05-04T00:00:00Z"


async def test_readings_stop_once_a_page_reaches_the_end() -> None:
    rows = [reading(T0 + timedelta(minutes=15 * i), 100 + i) for i in range(40)]
    b, server = backend(paged_readings(rows, 4))
    items = await b.readings(
        M1, T0 + timedelta(minutes=10), T0 + timedelta(hours=2), frozenset({"energy_import"}), 1000
    )
    assert [r.time for r in items] == [T0 + timedelta(minutes=15 * i) for i in range(1, 8)]
    # Pages end at 00:45, 01:45, 02:45: the third reaches the end, so the other seven pages are never asked.
    assert server.count("MeterReadings") == 3


async def test_readings_stop_paging_once_the_limit_is_reached() -> None:
    rows = [reading(T0 + timedelta(minutes=15 * i), 100 + i) for i in range(100)]
    b, server = backend(paged_readings(rows, 5))
    items = await b.readings(M1, T0, T0 + timedelta(days=2), frozenset({"power"}), 12)
    assert len(items) >= 12
    assert server.count("MeterReadings") == 3
    assert server.calls[0][1]["limit"] == 12


async def test_readings_of_an_unknown_meter_are_not_found() -> None:
    b, _ = backend(lambda op, v: {"partner": {"meter": None}})
    with pytest.raises(NotFound):
        await b.readings(M2, T0, T0 + timedelta(hours=1), None, 10)


async def test_a_repeated_cursor_is_a_bad_response() -> None:
    row = reading(T0, 1.0)
    b, _ = backend(lambda op, v: {"partner": {"meter": {"id": M1, "readings": {"readings": [row], "cursor": "same"}}}})
    with pytest.raises(UpstreamBadResponse):
        await b.readings(M1, T0, T0 + timedelta(days=1), None, 1000)


async def test_daily_for_a_subset_uses_each_meters_chain() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 5, 3, 12, tzinfo=UTC)
    rows = [reading(start + timedelta(hours=i), 10 + i) for i in range(72)]

    def script(op: str, v: dict[str, Any]) -> Any:
        if v["meterId"] == M2:
            return {"partner": {"meter": None}}
        return paged_readings(rows, 1000)(op, v)

    b, server = backend(script)
    result = await b.daily_consumption(frozenset({M1}), date(2026, 5, 4), date(2026, 5, 6), berlin)
    assert [(r.meter_id, r.date, r.consumption, r.complete, r.unit, r.source) for r in result] == [
        (f"iometer:{M1}", date(2026, 5, 4), 24.0, True, "kWh", "derived"),
        (f"iometer:{M1}", date(2026, 5, 5), 24.0, True, "kWh", "derived"),
    ]
    # Only [local midnight(start) - max_gap, local midnight(end) + max_gap] is asked for.
    assert server.calls[0][1]["startTime"] == "2026-05-03T16:00:00Z"
    with pytest.raises(NotFound):
        await b.daily_consumption(frozenset({M1, M2}), date(2026, 5, 4), date(2026, 5, 6), berlin)


async def test_device_status_uses_a_cached_index() -> None:
    def script(op: str, v: dict[str, Any]) -> Any:
        if op == "Installations":
            return {"installations": [] if v["pagination"]["offset"] else [installation(I1, [M1], [D1, D2])]}
        core = {
            "connectionStatus": "connected",
            "attachmentStatus": "attached",
            "batteryLevel": 80,
            "powerStatus": "battery",
            "pinStatus": "entered",
        }
        return {
            "installation": {
                "id": v["installationId"],
                "device": {"id": v["deviceId"], "bridge": {"connectionStatus": "connected"}, "core": core},
            }
        }

    clock = FakeClock()
    b, server = backend(script, clock)
    status = await b.device_status(D1)
    assert status.online is True
    assert status.battery_percent == 80
    assert status.power_source == "battery"
    await b.device_status(D2)
    assert server.count("Installations") == 2  # one listing (two pages) served both devices
    unknown = "ffffffff-ffff-4fff-8fff-ffffffffffff"
    with pytest.raises(NotFound):
        await b.device_status(unknown)
    assert server.count("Installations") == 2  # the index is fresh: no rescan per request
    clock.advance(10)
    with pytest.raises(NotFound):
        await b.device_status(unknown)
    assert server.count("Installations") == 4  # a miss refreshes, at most every few seconds
    assert [op for op, v in server.calls if op == "DeviceStatus"] == ["DeviceStatus"] * 2


async def test_device_status_with_a_malformed_core_is_a_bad_response() -> None:
    def script(op: str, v: dict[str, Any]) -> Any:
        if op == "Installations":
            return {"installations": [] if v["pagination"]["offset"] else [installation(I1, [M1], [D1])]}
        return {
            "installation": {
                "id": I1,
                "device": {
                    "id": D1,
                    "bridge": {"connectionStatus": "connected"},
                    "core": {"connectionStatus": "connected"},
                },
            }
        }

    b, _ = backend(script)
    with pytest.raises(UpstreamBadResponse):
        await b.device_status(D1)


async def test_every_upstream_call_is_labelled_with_its_operation() -> None:
    labels: list[tuple[str, str]] = []
    rows = [reading(T0 + timedelta(minutes=15 * i), 100 + i, meter=M1) for i in range(8)]

    def script(op: str, v: dict[str, Any]) -> Any:
        labels.append((op, current_operation.get()))
        if op == "Installations":
            return {"installations": [] if v["pagination"]["offset"] else [installation(I1, [M1], [D1])]}
        if op == "Meter":
            return meter_answer(M1, "N", I1)
        if op == "MeterReadings":
            return paged_readings(rows, 100)(op, v)
        if op == "PartnerReadings":
            return {"readings": {"readings": rows, "cursor": None}}
        if op == "PartnerId":
            return {"partner": {"id": "p"}}
        return {"installation": None}

    b, _ = backend(script)
    await b.list_meters()
    await b.get_meter(M1)
    await b.readings(M1, T0, T0 + timedelta(hours=1), None, 10)
    await b.daily_consumption(None, date(2026, 5, 4), date(2026, 5, 5), ZoneInfo("UTC"))
    await b.daily_consumption(frozenset({M1}), date(2026, 5, 4), date(2026, 5, 5), ZoneInfo("UTC"))
    with pytest.raises(NotFound):
        await b.device_status(D1)
    await b.check_ready()
    assert sorted(set(labels)) == sorted(
        {
            ("Installations", "meters"),
            ("Meter", "meter"),
            ("MeterReadings", "readings"),
            ("Installations", "daily_consumption"),
            ("PartnerReadings", "daily_consumption"),
            ("MeterReadings", "daily_consumption"),
            ("DeviceStatus", "device_status"),
            ("PartnerId", "ready"),
        }
    )


@pytest.mark.parametrize(
    ("meter", "meters", "devices", "current_meter", "current_device", "expected"),
    [
        ("m1", ["m1"], ["d1", "d2"], "m1", "d2", "d2"),  # the only meter: the current device
        ("m1", ["m1"], ["d1"], None, None, "d1"),  # the only meter and the only device
        ("m1", ["m1"], ["d1", "d2"], None, None, None),  # several devices, none current: unknown
        ("m1", ["m1", "m2"], ["d1", "d2"], "m1", "d1", "d1"),  # the current meter: the current device
        ("m2", ["m1", "m2"], ["d1", "d2"], "m1", "d1", None),  # another meter: unknown, not guessed
        ("m1", ["m1"], [], "m1", None, None),
    ],
)
def test_a_meter_has_a_device_only_where_the_installation_says_so(
    meter: str,
    meters: list[str],
    devices: list[str],
    current_meter: str | None,
    current_device: str | None,
    expected: str | None,
) -> None:
    assert meter_device(meter, meters, devices, current_meter, current_device) == expected


async def test_readings_in_any_order_with_duplicates_are_sorted_and_unique() -> None:
    times = [T0 + timedelta(minutes=15 * i) for i in range(6)]
    shuffled = [reading(times[i], 100 + i) for i in (3, 0, 5, 1, 1, 4, 2)]
    b, _ = backend(lambda op, v: {"partner": {"meter": {"id": M1, "readings": {"readings": shuffled, "cursor": None}}}})
    got = await b.readings(M1, T0, T0 + timedelta(hours=2), frozenset({"energy_import"}), 100)
    assert [(r.time, r.value) for r in got] == [(t, 100.0 + i) for i, t in enumerate(times)]


async def test_a_late_reading_on_a_later_page_is_not_cut_off() -> None:
    """Receive order: page 1 already reaches past the end, page 2 still holds an earlier (late) reading."""
    end = T0 + timedelta(hours=1)
    pages = {
        None: ([reading(T0 + timedelta(minutes=30), 2), reading(T0, 1), reading(end + timedelta(hours=1), 9)], "c1"),
        "c1": ([reading(T0 + timedelta(minutes=15), 1.5)], None),
    }

    def script(op: str, v: dict[str, Any]) -> Any:
        rows, cursor = pages[v["cursor"]]
        return {"partner": {"meter": {"id": M1, "readings": {"readings": rows, "cursor": cursor}}}}

    b, server = backend(script)
    got = await b.readings(M1, T0, end, frozenset({"energy_import"}), 100)
    assert [r.value for r in got] == [1.0, 1.5, 2.0]
    assert len(server.calls) == 2
