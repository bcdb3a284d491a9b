"""The IOmeter adapter against the IOmeter emulator, value by value against the emulator's own data.

Over `httpx.ASGITransport` with WSSE and with Basic auth; one module of error mapping; and the
loopback socket tests at the end (real uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client import CollectorRegistry

from app.backends.base import AuthState
from app.backends.iometer import create_backend
from app.backends.iometer.adapter import IometerBackend
from app.backends.iometer.emulator import SANDBOX_SETTINGS, Emulator, create_emulator
from app.backends.iometer.emulator.data import BERLIN, ReadingRecord
from app.domain.models import DailyConsumption, Meter, Reading
from app.factory import backend_context
from app.infra.config import Settings
from app.infra.errors import NotFound, NotSupported, UpstreamAuthFailed, UpstreamRateLimited, UpstreamTimeout
from app.infra.timeutil import days, local_midnight
from app.infra.tolerance import WireShapeCollector
from tests.support.clock import FakeClock
from tests.support.servers import serve_in_thread

URL = "http://iometer.test/api/v1/query"
QUANTITY = {
    "1-0:1.8.0": "energy_import",
    "1-0:1.8.1": "energy_import_t1",
    "1-0:1.8.2": "energy_import_t2",
    "1-0:2.8.0": "energy_export",
    "1-0:16.7.0": "power",
}
UNKNOWN = "0badc0de-0000-4000-8000-000000000000"


def settings(auth: str = "wsse", secret: str | None = None, url: str = URL, **extra: Any) -> Settings:
    return Settings(
        IOMETER_PARTNER_ID=SANDBOX_SETTINGS["IOMETER_PARTNER_ID"],
        IOMETER_PARTNER_SECRET=secret or SANDBOX_SETTINGS["IOMETER_PARTNER_SECRET"],
        IOMETER_URL=url,
        IOMETER_AUTH=auth,
        **extra,
    )


class Rig:
    def __init__(
        self,
        emulator: Emulator,
        clock: FakeClock,
        http: httpx.AsyncClient,
        auth: str = "wsse",
        secret: str | None = None,
        **extra: Any,
    ) -> None:
        self.emulator, self.clock, self.http = emulator, clock, http
        self.retries: list[tuple[str, str]] = []
        configured = settings(auth, secret, **extra)
        ctx = backend_context(
            configured,
            http,
            clock=clock,
            sleep=clock.sleep,
            rng=random.Random(0),
            mode="sandbox",
            on_retry=lambda backend, reason: self.retries.append((backend, reason)),
        )
        backend = create_backend(ctx, configured.vendor_settings("iometer"))
        assert isinstance(backend, IometerBackend)
        self.backend = backend

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def http_for() -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def make(emulator: Emulator) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(emulator.app)))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture(params=["wsse", "basic"])
def rig(request: pytest.FixtureRequest, clock: FakeClock, http_for: Any) -> Rig:
    emulator = create_emulator(clock, page_size=7)
    return Rig(emulator, clock, http_for(emulator), auth=request.param)


@pytest.fixture
def big_pages(clock: FakeClock, http_for: Any) -> Rig:
    emulator = create_emulator(clock)
    return Rig(emulator, clock, http_for(emulator))


def expected_device(inst: Any, meter_id: str) -> str | None:
    """The device on a meter where the installation says so: the only meter's current device, or of
    several meters the current meter's current device; otherwise unknown."""
    if len(inst.meter_ids) == 1 or meter_id == inst.current_meter_id:
        return f"iometer:{inst.current_device_id}" if inst.current_device_id else None
    return None


def expected_meters(emulator: Emulator) -> list[Meter]:
    out = []
    for inst in emulator.data.installations:
        for meter_id in inst.meter_ids:
            meter = emulator.data.meter(meter_id)
            assert meter is not None
            out.append(
                Meter(
                    id=f"iometer:{meter.id}",
                    backend="iometer",
                    serial_number=meter.number,
                    name=None,
                    medium="electricity",
                    unit="kWh",
                    site_id=f"iometer:{inst.id}",
                    device_id=expected_device(inst, meter_id),
                )
            )
    return out


def expected_readings(record: ReadingRecord) -> list[tuple[datetime, str, str, float, str]]:
    rows = []
    for v in record.values:
        code = v.code
        if code in QUANTITY:
            value, unit = (v.value / 1000, "kWh") if v.unit == "Wh" else (v.value, v.unit)
            rows.append((record.at, QUANTITY[code], code, value, unit))
        else:
            rows.append((record.at, f"obis:{code}", code, v.value, v.unit))
    return sorted(rows, key=lambda r: (r[0], r[1]))


def as_tuples(readings: list[Reading]) -> list[tuple[datetime, str, str | None, float, str | None]]:
    return [(r.time, r.quantity, r.obis, r.value, r.unit) for r in readings]


# --- meters ------------------------------------------------------------------------------------------


def test_is_configured() -> None:
    assert settings().vendor_settings("iometer").configured()
    assert not Settings().vendor_settings("iometer").configured()


async def test_meters_value_by_value(rig: Rig) -> None:
    assert await rig.backend.list_meters() == expected_meters(rig.emulator)
    assert await rig.backend.auth_state() == AuthState(authenticated=True, token_expires_at=None)


async def test_get_meter_for_every_meter_and_not_found(rig: Rig) -> None:
    for meter in expected_meters(rig.emulator):
        assert await rig.backend.get_meter(meter.id.removeprefix("iometer:")) == meter
    for hidden in (rig.emulator.data.foreign_meters[0].id, UNKNOWN):
        with pytest.raises(NotFound):
            await rig.backend.get_meter(hidden)


# --- readings ----------------------------------------------------------------------------------------


async def test_readings_value_by_value_across_many_small_pages(rig: Rig) -> None:
    meter = rig.emulator.data.meters[1]  # sends an extra OBIS code (voltage) too
    start = rig.now - timedelta(hours=12, minutes=3)
    end = rig.now - timedelta(minutes=50)
    got = await rig.backend.readings(meter.id, start, end, None, 1000)
    want = [row for record in rig.emulator.data.readings(meter.id, start, end) for row in expected_readings(record)]
    assert as_tuples(got) == want
    assert len(want) == 45 * 5  # import, T1, T2, power, voltage (no export register)
    assert {r.quantity for r in got} == {
        "energy_import",
        "energy_import_t1",
        "energy_import_t2",
        "power",
        "obis:1-0:32.7.0",
    }
    assert all(r.meter_id == f"iometer:{meter.id}" for r in got)
    assert rig.emulator.stats["MeterReadings"] >= 7  # seven readings a page


async def test_readings_filtered_by_quantity_and_limited(rig: Rig) -> None:
    meter = rig.emulator.data.meters[0]  # solar: has export
    start = rig.now - timedelta(days=2)
    got = await rig.backend.readings(meter.id, start, rig.now, frozenset({"energy_export", "power"}), 10)
    assert len(got) >= 10
    records = rig.emulator.data.readings(meter.id, start, rig.now)
    want = [r for rec in records for r in expected_readings(rec) if r[1] in {"energy_export", "power"}]
    assert as_tuples(got) == want[: len(got)]
    assert rig.emulator.stats["MeterReadings"] < 10  # stopped paging soon after the limit


async def test_readings_around_the_gap_and_the_swap(rig: Rig) -> None:
    data = rig.emulator.data
    [(gapped, [(gap_start, gap_end)])] = [
        (m, g) for m, g in data.gaps.items() if g[0][1] - g[0][0] > timedelta(hours=6)
    ]
    got = await rig.backend.readings(
        gapped, gap_start - timedelta(hours=1), gap_end + timedelta(hours=1), frozenset({"energy_import"}), 1000
    )
    times = [r.time for r in got]
    assert gap_start in times
    assert gap_end in times
    assert not any(gap_start < t < gap_end for t in times)
    [(swapped, swap)] = data.swaps.items()
    got = await rig.backend.readings(
        swapped, swap - timedelta(minutes=30), swap + timedelta(minutes=30), frozenset({"energy_import"}), 1000
    )
    assert [r.value for r in got] == [
        r.value("1-0:1.8.0") / 1000
        for r in data.readings(swapped, swap - timedelta(minutes=30), swap + timedelta(minutes=30))  # type: ignore[operator]
    ]
    assert got[2].value < 0.1 < got[1].value


async def test_readings_of_unknown_or_foreign_meters_are_not_found(rig: Rig) -> None:
    for hidden in (rig.emulator.data.foreign_meters[0].id, UNKNOWN):
        with pytest.raises(NotFound):
            await rig.backend.readings(hidden, rig.now - timedelta(hours=1), rig.now, None, 10)


# --- daily consumption -------------------------------------------------------------------------------


def straightforward_daily(
    emulator: Emulator, meter_id: str, start: date, end: date, tz: ZoneInfo, max_gap: float = 21600
) -> list[tuple[date, float | None, bool]]:
    """CONTRACT.md's recipe applied literally to the emulator's readings (kWh), day by day, pair by pair."""
    lo, hi = local_midnight(start, tz) - timedelta(days=2), local_midnight(end, tz) + timedelta(days=2)
    points = [(r.time, r.value("1-0:1.8.0") / 1000) for r in emulator.data.readings(meter_id, lo, hi)]  # type: ignore[operator]
    out = []
    for day in days(start, end):
        t0 = local_midnight(day, tz).timestamp()
        t1 = local_midnight(day + timedelta(days=1), tz).timestamp()
        total, contributing = 0.0, False
        start_ok = any(t == t0 for t, _ in points)
        end_ok = any(t == t1 for t, _ in points)
        for (a_t, a_v), (b_t, b_v) in itertools.pairwise(points):
            increase = max(0.0, b_v - a_v)
            if t0 <= a_t and b_t <= t1:
                total += increase
                contributing = True
            elif (a_t < t0 < b_t or a_t < t1 < b_t) and b_t - a_t <= max_gap:
                total += increase * (min(b_t, t1) - max(a_t, t0)) / (b_t - a_t)
                contributing = True
                start_ok = start_ok or a_t < t0 < b_t
                end_ok = end_ok or a_t < t1 < b_t
        out.append((day, total if contributing else None, start_ok and end_ok))
    return out


def assert_daily_matches(
    rows: list[DailyConsumption], emulator: Emulator, meter_ids: list[str], start: date, end: date, tz: ZoneInfo
) -> None:
    assert [(r.meter_id, r.date) for r in rows] == [
        (f"iometer:{m}", d) for m in sorted(meter_ids) for d in days(start, end)
    ]
    by_meter = {m: straightforward_daily(emulator, m, start, end, tz) for m in meter_ids}
    for row in rows:
        assert row.unit == "kWh"
        assert row.source == "derived"
        meter_id = row.meter_id.removeprefix("iometer:")
        [(_, want, complete)] = [x for x in by_meter[meter_id] if x[0] == row.date]
        assert row.complete == complete, row
        if want is None:
            assert row.consumption is None, row
        else:
            assert row.consumption == pytest.approx(want, abs=1e-5), row


async def test_daily_for_every_meter_through_the_dst_change(big_pages: Rig) -> None:
    emulator = big_pages.emulator
    start, end = date(2026, 3, 27), date(2026, 3, 31)  # 2026-03-29 is 23 h long in Berlin
    rows = await big_pages.backend.daily_consumption(None, start, end, BERLIN)
    assert_daily_matches(rows, emulator, [m.id for m in emulator.data.meters], start, end, BERLIN)
    assert emulator.stats["PartnerReadings"] >= 1
    assert emulator.stats["MeterReadings"] == 0  # one partner-wide chain
    sixth = [r for r in rows if r.meter_id == f"iometer:{emulator.data.meters[5].id}"]
    assert all(r.consumption is None and not r.complete for r in sixth)  # it starts reading 30 days before today


async def test_daily_around_gaps_and_the_swap(big_pages: Rig) -> None:
    emulator = big_pages.emulator
    today = emulator.data.today
    start, end = today - timedelta(days=13), today - timedelta(days=3)
    rows = await big_pages.backend.daily_consumption(None, start, end, BERLIN)
    meter_ids = [m.id for m in emulator.data.meters]
    assert_daily_matches(rows, emulator, meter_ids, start, end, BERLIN)
    gapped = {r.date: r for r in rows if r.meter_id == f"iometer:{emulator.data.meters[0].id}"}
    assert not gapped[today - timedelta(days=12)].complete
    assert not gapped[today - timedelta(days=11)].complete
    short_gap = {r.date: r for r in rows if r.meter_id == f"iometer:{emulator.data.meters[1].id}"}
    assert short_gap[today - timedelta(days=8)].complete
    assert short_gap[today - timedelta(days=7)].complete
    swapped = {r.date: r for r in rows if r.meter_id == f"iometer:{emulator.data.meters[4].id}"}
    swap_day = swapped[today - timedelta(days=5)]
    assert swap_day.complete
    assert swap_day.consumption is not None
    assert 0 < swap_day.consumption < 30


async def test_daily_for_a_subset_and_in_utc(clock: FakeClock, http_for: Any) -> None:
    emulator = create_emulator(clock)
    big = Rig(emulator, clock, http_for(emulator), auth="basic")
    wanted = [emulator.data.meters[2].id, emulator.data.meters[0].id]
    start, end = emulator.data.today - timedelta(days=4), emulator.data.today + timedelta(days=1)
    utc = ZoneInfo("UTC")
    rows = await big.backend.daily_consumption(frozenset(wanted), start, end, utc)
    assert_daily_matches(rows, emulator, wanted, start, end, utc)
    assert emulator.stats["PartnerReadings"] == 0
    assert emulator.stats["MeterReadings"] >= 2
    last = rows[-1]
    assert last.date == emulator.data.today
    assert not last.complete  # today has not ended
    assert last.consumption is not None
    assert rows[-2].complete


async def test_daily_names_unknown_meters(big_pages: Rig) -> None:
    with pytest.raises(NotFound):
        await big_pages.backend.daily_consumption(
            frozenset({big_pages.emulator.data.meters[0].id, UNKNOWN}), date(2026, 5, 1), date(2026, 5, 2), BERLIN
        )


# --- device status -----------------------------------------------------------------------------------


async def test_device_status_for_every_device(rig: Rig) -> None:
    for device in rig.emulator.data.devices:
        status = await rig.backend.device_status(device.id)
        assert status.device_id == f"iometer:{device.id}"
        assert status.backend == "iometer"
        assert status.online == (
            device.bridge_connection == "connected"
            and device.core_connection == "connected"
            and device.attachment == "attached"
        )
        assert status.battery_percent == device.battery_level
        assert status.power_source == device.power
        assert (status.battery_voltage, status.rssi_dbm, status.last_seen) == (None, None, None)
        assert status.details == {
            "bridge": {"connectionStatus": device.bridge_connection},
            "core": {
                "connectionStatus": device.core_connection,
                "attachmentStatus": device.attachment,
                "batteryLevel": device.battery_level,
                "powerStatus": device.power,
                "pinStatus": device.pin,
            },
        }
    assert {s for s in [(await rig.backend.device_status(d.id)).online for d in rig.emulator.data.devices]} == {
        True,
        False,
    }
    assert rig.emulator.stats["Installations"] == 2  # one listing (a page, then the empty page) built the index


async def test_device_status_not_found(rig: Rig) -> None:
    for hidden in (rig.emulator.data.foreign_devices[0].id, UNKNOWN):
        with pytest.raises(NotFound):
            await rig.backend.device_status(hidden)


async def test_changes_are_not_supported(rig: Rig) -> None:
    with pytest.raises(NotSupported):
        await rig.backend.changes(rig.now, 10, None)
    assert rig.emulator.stats["requests"] == 0


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["wsse", "basic"])
async def test_a_wrong_secret_is_auth_failed_without_the_secret(clock: FakeClock, http_for: Any, auth: str) -> None:
    emulator = create_emulator(clock)
    wrong = "definitely-not-the-secret-1234"
    rig = Rig(emulator, clock, http_for(emulator), auth=auth, secret=wrong)
    with pytest.raises(UpstreamAuthFailed) as info:
        await rig.backend.list_meters()
    assert info.value.detail == "IOmeter rejected the partner credentials"
    assert info.value.backend == "iometer"
    for text in (str(info.value), repr(info.value), info.value.detail):
        assert wrong not in text
        assert SANDBOX_SETTINGS["IOMETER_PARTNER_SECRET"] not in text
    assert (await rig.backend.auth_state()).authenticated is False
    with pytest.raises(UpstreamAuthFailed):
        await rig.backend.check_ready()
    assert emulator.stats["requests"] == 2  # a 401 is not retried


async def test_check_ready(big_pages: Rig) -> None:
    assert (await big_pages.backend.auth_state()).authenticated is None
    await big_pages.backend.check_ready()
    assert big_pages.emulator.stats["PartnerId"] == 1
    assert (await big_pages.backend.auth_state()).authenticated is True


async def test_429s_are_absorbed_with_fresh_nonces(big_pages: Rig) -> None:
    emulator = big_pages.emulator
    emulator.faults.fail_next = [429, 429]
    emulator.faults.retry_after = 2
    assert await big_pages.backend.list_meters() == expected_meters(emulator)
    assert emulator.stats["requests"] == 4  # two 429s, then two pages of installations
    assert big_pages.clock.slept[:2] >= [2, 2]  # Retry-After honoured, on the injected sleep
    assert big_pages.retries == [("iometer", "429"), ("iometer", "429")]


async def test_persistent_429_is_rate_limited(big_pages: Rig) -> None:
    big_pages.emulator.faults.rate_limit_rate = 1.0
    with pytest.raises(UpstreamRateLimited) as info:
        await big_pages.backend.device_status(big_pages.emulator.data.devices[0].id)
    assert info.value.retry_after == 1
    assert big_pages.emulator.stats["requests"] == 4


# --- over a real loopback socket ---------------------------------------------------------------------


async def test_over_a_loopback_socket(clock: FakeClock) -> None:
    emulator = create_emulator(clock, page_size=50)
    with serve_in_thread(emulator.app) as base:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http:
            rig = Rig(emulator, clock, http, url=f"{base}/api/v1/query")
            assert await rig.backend.list_meters() == expected_meters(emulator)
            meter = emulator.data.meters[3]
            start = rig.now - timedelta(days=1)
            got = await rig.backend.readings(meter.id, start, rig.now, None, 1000)
            want = [row for rec in emulator.data.readings(meter.id, start, rig.now) for row in expected_readings(rec)]
            assert as_tuples(got) == want
            status = await rig.backend.device_status(emulator.data.devices[3].id)
            assert status.online is False
            assert status.details["core"]["pinStatus"] == "missing"


async def test_a_hanging_upstream_times_out(clock: FakeClock) -> None:
    emulator = create_emulator(clock)
    emulator.faults.hang = True
    with serve_in_thread(emulator.app) as base:
        async with httpx.AsyncClient(timeout=httpx.Timeout(0.3)) as http:
            rig = Rig(emulator, clock, http, url=f"{base}/api/v1/query")
            with pytest.raises(UpstreamTimeout):
                await rig.backend.check_ready()
        emulator.faults.hang = False


# --- concurrency (issue 11) --------------------------------------------------------------------------


async def test_concurrent_cold_device_lookups_all_find_their_device(clock: FakeClock, http_for: Any) -> None:
    """N devices of different installations looked up at once on a cold index: every one answers (the
    waiters share the one listing in flight and then read the index it built)."""
    emulator = create_emulator(clock)
    emulator.faults.latency = 0.005  # a real pause per request, so the lookups interleave
    rig = Rig(emulator, clock, http_for(emulator))
    devices = [d.id for d in emulator.data.devices]
    assert len({d.installation_id for d in emulator.data.devices}) >= 3
    statuses = await asyncio.gather(*(rig.backend.device_status(d) for d in devices))
    assert [s.device_id for s in statuses] == [f"iometer:{d}" for d in devices]
    assert emulator.stats["Installations"] == 2  # one listing (a page and the empty page that ends it)


# --- requests carry their operation name ---------------------------------------------------------------


async def test_every_request_names_its_operation(clock: FakeClock) -> None:
    emulator = create_emulator(clock)
    sent: list[dict[str, Any]] = []

    class Recording(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(emulator.app)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(json.loads(request.content))
            return await self.inner.handle_async_request(request)

    async with httpx.AsyncClient(transport=Recording()) as http:
        rig = Rig(emulator, clock, http)
        meter = emulator.data.meters[0].id
        await rig.backend.list_meters()
        await rig.backend.get_meter(meter)
        await rig.backend.readings(meter, rig.now - timedelta(hours=2), rig.now, None, 10)
        await rig.backend.daily_consumption(None, emulator.data.today - timedelta(days=1), emulator.data.today, BERLIN)
    names = {body.get("operationName") for body in sent}
    assert names == {"Installations", "Meter", "MeterReadings", "PartnerReadings"}
    for body in sent:
        assert f"query {body['operationName']}" in body["query"]
    readings_docs = [b["query"] for b in sent if b["operationName"] in ("MeterReadings", "PartnerReadings")]
    assert all("fragment ReadingFields on MeterReading" in q and "...ReadingFields" in q for q in readings_docs)


# --- meters: medium, unit and device per meter -------------------------------------------------------


async def test_only_the_meter_the_installation_names_gets_its_device(big_pages: Rig) -> None:
    """Installation 2 has two meters and two devices: its current meter gets its current device, the
    other meter's device is unknown (None), not the installation's current one."""
    emulator = big_pages.emulator
    inst = emulator.data.installations[1]
    assert len(inst.meter_ids) == 2
    assert inst.current_meter_id == inst.meter_ids[0]
    meters = {m.id: m for m in await big_pages.backend.list_meters()}
    assert meters[f"iometer:{inst.meter_ids[0]}"].device_id == f"iometer:{inst.current_device_id}"
    assert meters[f"iometer:{inst.meter_ids[1]}"].device_id is None
    single = emulator.data.installations[0]
    assert meters[f"iometer:{single.meter_ids[0]}"].device_id == f"iometer:{single.current_device_id}"
    assert {(m.medium, m.unit) for m in meters.values()} == {("electricity", "kWh")}


# --- emulator variants the adapter tolerates -----------------------------------------------------------


def _samples(vendor: str, aspect: str, shape: str) -> float:
    registry = CollectorRegistry()
    registry.register(WireShapeCollector())
    value = registry.get_sample_value(
        "facade_vendor_wire_shapes_total", {"backend": vendor, "aspect": aspect, "shape": shape}
    )
    return value or 0.0


@pytest.mark.parametrize("variant", ["receive_order", "hex_default", "upper_ids"])
async def test_readings_and_daily_are_the_same_under_a_tolerated_variant(
    clock: FakeClock, http_for: Any, variant: str
) -> None:
    """Readings in receive order with a duplicate, the hex OBIS form, or upper-case ids: the facade's
    answers are exactly those of the pinned emulator."""
    normal = create_emulator(clock, page_size=50)
    odd = create_emulator(clock, page_size=50, breaks={variant})
    a, b = Rig(normal, clock, http_for(normal)), Rig(odd, clock, http_for(odd))
    meter = normal.data.meters[1].id
    start, end = a.now - timedelta(hours=20), a.now - timedelta(hours=1)
    assert await b.backend.readings(meter, start, end, None, 1000) == await a.backend.readings(
        meter, start, end, None, 1000
    )
    day0, day1 = normal.data.today - timedelta(days=3), normal.data.today
    assert await b.backend.daily_consumption(frozenset({meter}), day0, day1, BERLIN) == (
        await a.backend.daily_consumption(frozenset({meter}), day0, day1, BERLIN)
    )
    assert await b.backend.daily_consumption(None, day0, day1, BERLIN) == (
        await a.backend.daily_consumption(None, day0, day1, BERLIN)
    )
    assert await b.backend.list_meters() == await a.backend.list_meters()
    device = normal.data.devices[0].id
    assert await b.backend.device_status(device) == await a.backend.device_status(device)


async def test_receive_order_is_counted_and_warned_once(
    clock: FakeClock, http_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    odd = create_emulator(clock, page_size=50, breaks={"receive_order"})
    rig = Rig(odd, clock, http_for(odd))
    meter = odd.data.meters[0].id
    before = _samples("iometer", "readings_order", "unordered")
    with caplog.at_level(logging.WARNING, logger="app.infra.tolerance"):
        await rig.backend.readings(meter, rig.now - timedelta(hours=30), rig.now, None, 1000)
        await rig.backend.readings(meter, rig.now - timedelta(hours=30), rig.now, None, 1000)
    pages = odd.stats["MeterReadings"]
    assert pages >= 4
    assert _samples("iometer", "readings_order", "unordered") - before == pages
    # once per process: at most one warning for the aspect, however many pages (none if an earlier
    # test in this process already warned)
    warned = [r for r in caplog.records if "readings order" in r.getMessage()]
    assert len(warned) <= 1


async def test_a_gas_meter_is_gas_in_m3(clock: FakeClock) -> None:
    """Medium and unit follow the OBIS group A of the meter's readings (7 = gas), and daily
    consumption comes from the gas volume register in m3."""

    def server(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        name = body["operationName"]
        if name == "Meter":
            probe = {"readings": [{"values": [{"obisCode": "7-0:3.0.0"}]}]}
            inst = {
                "id": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
                "currentDevice": None,
                "currentMeter": None,
                "meters": [{"id": UNKNOWN}],
                "devices": [],
            }
            meter = {"id": UNKNOWN, "number": "GAS-1", "readings": probe, "installation": inst}
            return httpx.Response(200, json={"data": {"partner": {"meter": meter}}})
        times = ["2026-05-15T00:00:00Z", "2026-05-15T12:00:00Z", "2026-05-16T00:00:00Z"]
        rows = [
            {"time": t, "values": [{"obisCode": "07-00:03.00.00*ff", "value": 1000.0 + 500 * i, "unit": "L"}]}
            for i, t in enumerate(times)
        ]
        page = {"readings": rows, "cursor": None}
        return httpx.Response(200, json={"data": {"partner": {"meter": {"id": UNKNOWN, "readings": page}}}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        rig = Rig(create_emulator(clock), clock, http)
        meter = await rig.backend.get_meter(UNKNOWN)
        assert (meter.medium, meter.unit) == ("gas", "m3")
        rows = await rig.backend.daily_consumption(frozenset({UNKNOWN}), date(2026, 5, 15), date(2026, 5, 16), UTC)
        assert [(r.consumption, r.unit, r.complete) for r in rows] == [(1.0, "m3", True)]
        readings = await rig.backend.readings(
            UNKNOWN, datetime(2026, 5, 15, tzinfo=UTC), datetime(2026, 5, 16, tzinfo=UTC), None, 10
        )
        assert [(r.obis, r.quantity, r.value, r.unit) for r in readings] == [
            ("7-0:3.0.0", "obis:7-0:3.0.0", 1000.0, "L"),
            ("7-0:3.0.0", "obis:7-0:3.0.0", 1500.0, "L"),
        ]


async def test_daily_for_many_meters_reads_the_partner_feed_once(
    clock: FakeClock, http_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.backends.iometer import adapter

    monkeypatch.setattr(adapter, "PARTNER_WIDE_FROM", 3)
    emulator = create_emulator(clock)
    big = Rig(emulator, clock, http_for(emulator), auth="basic")
    wanted = [m.id for m in emulator.data.meters[:3]]
    start, end = emulator.data.today - timedelta(days=4), emulator.data.today - timedelta(days=1)
    rows = await big.backend.daily_consumption(frozenset(wanted), start, end, BERLIN)
    assert_daily_matches(rows, emulator, wanted, start, end, BERLIN)
    assert {r.meter_id for r in rows} == {f"iometer:{m}" for m in wanted}
    assert emulator.stats["MeterReadings"] == 0
    assert emulator.stats["PartnerReadings"] >= 1
    with pytest.raises(NotFound):
        await big.backend.daily_consumption(
            frozenset([*wanted, "00000000-0000-4000-8000-00000000beef"]), start, end, BERLIN
        )


async def test_a_failing_meter_among_many_cancels_the_rest_cleanly(clock: FakeClock, http_for: Any) -> None:
    emulator = create_emulator(clock)
    big = Rig(emulator, clock, http_for(emulator), auth="basic")
    wanted = [emulator.data.meters[0].id, "00000000-0000-4000-8000-00000000beef"]
    start, end = emulator.data.today - timedelta(days=2), emulator.data.today
    with pytest.raises(NotFound):  # and no "coroutine was never awaited" warning (warnings are errors)
        await big.backend.daily_consumption(frozenset(wanted), start, end, BERLIN)
    import gc

    gc.collect()
