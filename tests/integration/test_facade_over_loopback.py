"""The whole service over loopback sockets, in live mode, against both emulators over loopback
sockets: every endpoint checked value by value against the emulators' own data.

The expected values come from the emulators' data accessors and CONTRACT.md's rules written out
here (units and media tables) or in the contract tests' reference functions, never from the
adapters' own mapping code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.backends.iometer import emulator as iometer_sandbox
from app.backends.waltero import emulator as waltero_sandbox
from app.factory import create_app
from app.infra.config import Settings
from app.infra.timeutil import parse_rfc3339
from tests.contract.test_iometer_adapter import expected_meters, expected_readings, straightforward_daily
from tests.support.servers import serve_in_thread

KEY = "loopback-key-0123456789"
BERLIN = ZoneInfo("Europe/Berlin")
# CONTRACT.md's normalization, written out independently of app/backends/waltero/mapping.py
UNITS = {"m3": ("m3", 1.0), "L": ("m3", 0.001), "kWh": ("kWh", 1.0), "Wh": ("kWh", 0.001), "MWh": ("kWh", 1000.0)}
MEDIA = {"water_cold": "water", "water_hot": "water", "gas": "gas", "electricity": "electricity", "heat": "heat"}


@dataclass
class Stack:
    facade: str
    iometer: Any
    waltero: Any

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.facade, headers={"X-API-Key": KEY}, timeout=60)


@contextlib.contextmanager
def stack(iometer_auth: str = "wsse", token_ttl: int = 86400, **settings: Any) -> Iterator[Stack]:
    iometer = iometer_sandbox.create_emulator()
    waltero = waltero_sandbox.create_emulator(token_ttl=token_ttl)
    with serve_in_thread(iometer.app) as io_url, serve_in_thread(waltero.app) as wa_url:
        values = {
            **iometer_sandbox.SANDBOX_SETTINGS,
            **waltero_sandbox.SANDBOX_SETTINGS,
            "IOMETER_URL": f"{io_url}/api/v1/query",
            "IOMETER_AUTH": iometer_auth,
            "WALTERO_URL": f"{wa_url}/prod",  # the vendor's base URL has a stage prefix
            "FACADE_API_KEYS": KEY,
            "FACADE_CHANGES_POLL": 0,
            **settings,
        }
        app = create_app(Settings(**values))
        with serve_in_thread(app) as facade:
            yield Stack(facade, iometer, waltero)


@pytest.fixture(scope="module", params=["wsse", "basic"])
def live(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with stack(request.param) as s:
        yield s


def rfc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def all_pages(client: httpx.Client, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        r = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


# --- IOmeter ------------------------------------------------------------------------------------


def test_iometer_meters(live: Stack) -> None:
    with live.client() as c:
        got = all_pages(c, "/meters", {"backend": "iometer", "limit": 2})
        want = sorted((m.model_dump(mode="json") for m in expected_meters(live.iometer)), key=lambda m: m["id"])
        assert got == want
        one = c.get(f"/meters/{want[0]['id']}").json()
        assert one == want[0]


def test_iometer_readings_paged(live: Stack) -> None:
    meter = live.iometer.data.installations[0].meter_ids[0]
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=3)
    with live.client() as c:
        got = all_pages(
            c, "/readings", {"meter_id": f"iometer:{meter}", "start": rfc(start), "end": rfc(end), "limit": 7}
        )
    want = [row for record in live.iometer.data.readings(meter, start, end) for row in expected_readings(record)]
    assert [(r["time"], r["quantity"], r["obis"], r["unit"]) for r in got] == [
        (rfc(t), q, code, unit) for t, q, code, _, unit in want
    ]
    assert [r["value"] for r in got] == pytest.approx([w[3] for w in want])
    assert {r["meter_id"] for r in got} == {f"iometer:{meter}"}


def test_iometer_daily_consumption(live: Stack) -> None:
    today = datetime.now(BERLIN).date()
    start, end = today - timedelta(days=5), today - timedelta(days=1)
    meters = [m for inst in live.iometer.data.installations for m in inst.meter_ids][:2]
    with live.client() as c:
        r = c.get(
            "/consumption/daily",
            params={
                "meter_id": [f"iometer:{m}" for m in meters],
                "start": str(start),
                "end": str(end),
                "tz": "Europe/Berlin",
            },
        )
    assert r.status_code == 200, r.text
    rows = r.json()["items"]
    assert [(row["meter_id"], row["date"]) for row in rows] == [
        (f"iometer:{m}", str(start + timedelta(days=i))) for m in sorted(meters) for i in range((end - start).days)
    ]
    for row in rows:
        meter = row["meter_id"].removeprefix("iometer:")
        [(_, want, complete)] = [
            x for x in straightforward_daily(live.iometer, meter, start, end, BERLIN) if str(x[0]) == row["date"]
        ]
        assert row["complete"] == complete
        assert row["source"] == "derived"
        assert row["unit"] == "kWh"
        assert row["consumption"] == (None if want is None else pytest.approx(want, abs=1e-5))


def test_iometer_device_status(live: Stack) -> None:
    with live.client() as c:
        for device in live.iometer.data.devices:
            body = c.get(f"/devices/iometer:{device.id}/status").json()
            online = (
                device.bridge_connection == "connected"
                and device.core_connection == "connected"
                and device.attachment == "attached"
            )
            assert body["online"] is online, body
            assert body["battery_percent"] == device.battery_level
            assert body["power_source"] == device.power
            assert body["details"]["core"]["pinStatus"] == device.pin
            assert body["details"]["bridge"]["connectionStatus"] == device.bridge_connection


# --- Waltero ------------------------------------------------------------------------------------


def test_waltero_meters(live: Stack) -> None:
    with live.client() as c:
        got = {m["id"]: m for m in all_pages(c, "/meters", {"backend": "waltero", "limit": 3})}
    devices = live.waltero.devices()
    assert set(got) == {f"waltero:{d.id}" for d in devices}
    for d in devices:
        meter = got[f"waltero:{d.id}"]
        assert meter["device_id"] == meter["id"]
        assert meter["serial_number"] == d.serial_number
        assert meter["name"] == (d.name or d.external_id)
        assert meter["medium"] == MEDIA[d.meter_type]
        assert meter["unit"] == UNITS[d.unit][0]
        assert meter["site_id"] == f"waltero:{d.organization_id}"


def test_waltero_readings(live: Stack) -> None:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=30)
    for device in live.waltero.devices()[:6]:
        with live.client() as c:
            got = all_pages(
                c, "/readings", {"meter_id": f"waltero:{device.id}", "start": rfc(start), "end": rfc(end), "limit": 10}
            )
        unit, factor = UNITS[device.unit]
        points = [
            p
            for p in live.waltero.telemetry(device.id, start, end, ["meter.value.processed"])
            if p.number("meter.value.processed") is not None
        ]
        assert [r["time"] for r in got] == [rfc(p.timestamp) for p in points]
        assert [r["value"] for r in got] == pytest.approx([p.number("meter.value.processed") * factor for p in points])
        quantity = "volume" if MEDIA[device.meter_type] in ("water", "gas") else "energy_import"
        assert {(r["quantity"], r["unit"], r["obis"]) for r in got} <= {(quantity, unit, None)}


def test_waltero_daily_consumption(live: Stack) -> None:
    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=10), today - timedelta(days=1)
    with live.client() as c:
        rows = c.get("/consumption/daily", params={"backend": "waltero", "start": str(start), "end": str(end)}).json()[
            "items"
        ]
    devices = sorted(live.waltero.devices(), key=lambda d: d.id)
    assert [(r["meter_id"], r["date"]) for r in rows] == [
        (f"waltero:{d.id}", str(start + timedelta(days=i))) for d in devices for i in range((end - start).days)
    ]
    nulls = 0
    for row in rows:
        device = live.waltero.device(row["meter_id"].removeprefix("waltero:"))
        day = date.fromisoformat(row["date"])
        value = live.waltero.data.bucket_consumption(
            device.id,
            datetime(day.year, day.month, day.day, tzinfo=UTC),
            datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1),
            live.waltero.clock(),
        )
        assert row["unit"] == UNITS[device.unit][0]
        assert row["source"] == "upstream"
        if value is None:
            nulls += 1
            assert row["consumption"] is None
            assert row["complete"] is False
        else:
            assert row["consumption"] == pytest.approx(value * UNITS[device.unit][1], rel=1e-9, abs=1e-6)
    assert nulls > 0  # the demo data has days without readings


def test_waltero_device_status(live: Stack) -> None:
    now = datetime.now(UTC)
    with live.client() as c:
        for device in live.waltero.devices():
            body = c.get(f"/devices/waltero:{device.id}/status").json()
            points = live.waltero.telemetry(
                device.id,
                now - timedelta(days=7),
                now + timedelta(minutes=1),
                ["battery.voltage", "battery.percent", "connection.rssi"],
            )
            if not points:
                assert body["online"] is False
                assert body["last_seen"] is None
                continue
            newest = points[-1]
            assert body["last_seen"] == rfc(newest.timestamp)
            assert body["online"] is (now - newest.timestamp <= timedelta(hours=24))
            voltage = next(
                (p.number("battery.voltage") for p in reversed(points) if p.number("battery.voltage") is not None), None
            )
            rssi = next(
                (p.number("connection.rssi") for p in reversed(points) if p.number("connection.rssi") is not None), None
            )
            assert body["battery_voltage"] == voltage
            assert body["rssi_dbm"] == rssi


def test_waltero_changes_paged(live: Stack) -> None:
    since = datetime.now(UTC) - timedelta(days=60)
    with live.client() as c:
        got = all_pages(c, "/changes", {"since": rfc(since), "limit": 3})
    rows = sorted(
        (
            ch
            for org in (waltero_sandbox.ORG_NORTH, waltero_sandbox.ORG_SOUTH)
            for ch in live.waltero.changes(org, since)
        ),
        key=lambda ch: (ch.changed_at, ch.id),
    )
    assert [g["id"] for g in got] == [f"waltero:{ch.id}" for ch in rows]
    assert {g["actor"] for g in got} == {"system", "user"}
    for g, ch in zip(got, rows, strict=True):
        factor = UNITS[live.waltero.device(ch.device_id).unit][1]
        assert g["meter_id"] == f"waltero:{ch.device_id}"
        # the wire carries milliseconds; the emulator's own record keeps microseconds
        millis = ch.changed_at.replace(microsecond=ch.changed_at.microsecond // 1000 * 1000)
        assert parse_rfc3339(g["changed_at"]) == millis
        assert parse_rfc3339(g["time"]) == ch.timestamp
        assert g["new_value"] == pytest.approx(ch.new_value * factor)
        assert g["previous_value"] == pytest.approx(ch.previous_value * factor)


# --- Waltero tokens and throttling, through the whole service ------------------------------------


def test_a_burst_of_first_requests_logs_in_once() -> None:
    with stack() as s:

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=s.facade, headers={"X-API-Key": KEY}, timeout=60) as c:
                devices = [d.id for d in s.waltero.devices()]
                answers = await asyncio.gather(
                    *(c.get(f"/devices/waltero:{devices[i % len(devices)]}/status") for i in range(50))
                )
                return [a.status_code for a in answers]

        assert set(asyncio.run(burst())) == {200}
        assert s.waltero.stats["login"] == 1


def test_short_token_lifetimes_under_steady_traffic() -> None:
    lifetime = 3
    with stack(token_ttl=lifetime, FACADE_TTL_RECENT=0, FACADE_TTL_DEVICE_STATUS=0) as s:
        devices = [d.id for d in s.waltero.devices()]
        statuses = []
        started = time.monotonic()
        with s.client() as c:
            i = 0
            while time.monotonic() - started < 3 * lifetime:
                statuses.append(c.get(f"/devices/waltero:{devices[i % len(devices)]}/status").status_code)
                i += 1
                time.sleep(0.02)
        elapsed = time.monotonic() - started
        assert set(statuses) == {200}, statuses
        logins = s.waltero.stats["login"]
        # about one login per lifetime: `exp` is whole seconds after a floored `iat`, so a token lives
        # between lifetime-1 and lifetime seconds, and is renewed a tenth of that early
        assert 1 <= logins <= elapsed / (lifetime - 1) + 1, logins


def test_429_and_500_knobs_are_absorbed() -> None:
    with stack() as s, s.client() as c:
        c.get("/meters", params={"backend": "waltero"})
        device = s.waltero.devices()[0].id
        s.waltero.faults.fail_next = [429, 500]
        r = c.get(f"/devices/waltero:{device}/status")
        assert r.status_code == 200
        s.iometer.faults.fail_next = [429]
        assert c.get("/meters", params={"backend": "iometer"}).status_code == 200
        metrics = c.get("/metrics").text
        assert 'facade_upstream_retries_total{backend="waltero",reason="429"} 1.0' in metrics
        assert 'facade_upstream_retries_total{backend="waltero",reason="5xx"} 1.0' in metrics
        assert 'facade_upstream_retries_total{backend="iometer",reason="429"} 1.0' in metrics
        assert 'facade_token_refreshes_total{backend="waltero"} 1.0' in metrics
