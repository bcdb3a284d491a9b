"""`GET /readings/live` end to end: the facade in live mode on a loopback port, against both emulators
on loopback ports (IOmeter behind a TCP proxy that can drop and refuse connections), all on one fake
clock that the tests move to make the emulators take new readings.

Expected values come from the emulators' data and CONTRACT.md's unit rules written out here, never
from the adapters' mapping code. Every server runs on 127.0.0.1 and is stopped when its context exits;
every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.backends.iometer import emulator as iometer_sandbox
from app.backends.waltero import emulator as waltero_sandbox
from app.factory import create_app
from app.infra.config import Settings
from app.infra.timeutil import format_rfc3339, from_epoch
from tests.contract.test_iometer_adapter import expected_readings
from tests.support.clock import FakeClock
from tests.support.live import SseReader, TcpProxy, serve_small_buffers
from tests.support.servers import serve_in_thread

KEY = "live-key-0123456789"
SLOT = 900
START = 1_779_000_000.0 - 1_779_000_000.0 % SLOT + 60  # a minute past a 15-minute slot


@dataclass
class Stack:
    facade: str
    clock: FakeClock
    iometer: Any
    waltero: Any
    proxy: TcpProxy
    http: httpx.AsyncClient

    def slot(self, k: int) -> str:
        """The k-th 15-minute slot after the start, as the stream's ids spell it."""
        return format_rfc3339(from_epoch(START - START % SLOT + k * SLOT))

    async def open(self, meter_id: str, *, headers: dict[str, str] | None = None, **params: Any) -> SseReader:
        request = self.http.build_request(
            "GET", "/readings/live", params={"meter_id": meter_id, **params}, headers=headers or {}
        )
        response = await self.http.send(request, stream=True)
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        return SseReader(response).start()

    async def metric(self, sample: str) -> float | None:
        text = (await self.http.get("/metrics")).text
        match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else None

    async def until(self, check: Callable[[], Any], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.02)

    async def until_metric(self, sample: str, value: float, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while await self.metric(sample) != value:
                await asyncio.sleep(0.05)

    async def subscribed(self, n: int = 1) -> None:
        """Wait until the emulator has `n` live subscriptions in all (then new readings reach the facade)."""
        await self.until(lambda: self.iometer.stats["LiveReadings"] >= n)


@contextlib.asynccontextmanager
async def stack(*, small_buffers: bool = False, **settings: Any) -> AsyncIterator[Stack]:
    clock = FakeClock(START)
    iometer = iometer_sandbox.create_emulator(clock, subscription_poll=0.02)
    waltero = waltero_sandbox.create_emulator(clock)
    with contextlib.ExitStack() as servers:
        io_url = servers.enter_context(serve_in_thread(iometer.app))
        wa_url = servers.enter_context(serve_in_thread(waltero.app))
        proxy = servers.enter_context(TcpProxy(int(io_url.rsplit(":", 1)[1])))
        values = {
            **iometer_sandbox.SANDBOX_SETTINGS,
            **waltero_sandbox.SANDBOX_SETTINGS,
            "IOMETER_URL": f"http://127.0.0.1:{proxy.port}/api/v1/query",
            "WALTERO_URL": f"{wa_url}/prod",
            "FACADE_API_KEYS": KEY,
            "FACADE_CHANGES_POLL": 0,
            "FACADE_LIVE_PING": 0.5,
            "FACADE_LIVE_LINGER": 5,
            "FACADE_LIVE_BACKOFF": 0.05,
            **settings,
        }
        app = create_app(Settings(**values), clock=clock)
        serve = serve_small_buffers(app) if small_buffers else serve_in_thread(app)
        with serve as facade:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(
                base_url=facade, headers={"X-API-Key": KEY}, timeout=30, limits=limits
            ) as http:
                yield Stack(facade, clock, iometer, waltero, proxy, http)


def expected_items(emulator: Any, meter_id: str, slot: str) -> list[tuple[str, str | None, float, str | None]]:
    """CONTRACT.md's normalization of the emulator's own reading (Wh → kWh, W as sent)."""
    at = datetime.strptime(slot, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    [record] = emulator.data.readings(meter_id, at, at + timedelta(seconds=1))
    return [(q, code, value, unit) for _, q, code, value, unit in expected_readings(record)]


def items_of(event: Any) -> list[tuple[str, str | None, float, str | None]]:
    return sorted((i["quantity"], i["obis"], i["value"], i["unit"]) for i in event.data["items"])


async def close_all(readers: list[SseReader]) -> None:
    await asyncio.gather(*(r.close() for r in readers))


# --- IOmeter ------------------------------------------------------------------------------------------


async def test_fifty_clients_on_one_installation_share_one_subscription_and_see_the_same_instants() -> None:
    async with stack() as s:
        installation = s.iometer.data.installations[1]
        meters = list(installation.meter_ids)
        assert len(meters) == 2
        readers = await asyncio.gather(*(s.open(f"iometer:{meters[i % 2]}") for i in range(50)))
        try:
            await s.until_metric("facade_live_clients", 50)
            await s.subscribed()
            for k in (1, 2):
                s.clock.advance(SLOT)
                for reader in readers:
                    await reader.wait(lambda r, k=k: len(r.readings()) >= k)
            await asyncio.sleep(0.3)  # nothing else may arrive
            for i, reader in enumerate(readers):
                meter = meters[i % 2]
                assert reader.times() == [s.slot(1), s.slot(2)]
                assert {e.data["meter_id"] for e in reader.readings()} == {f"iometer:{meter}"}
                assert [e.id for e in reader.readings()] == reader.times()
                # units as /readings serves them: Wh → kWh, W stays W
                for event in reader.readings():
                    got, want = items_of(event), sorted(expected_items(s.iometer, meter, event.data["time"]))
                    assert [g[:2] + g[3:] for g in got] == [w[:2] + w[3:] for w in want]
                    assert [g[2] for g in got] == pytest.approx([w[2] for w in want])
                    assert {g[3] for g in got if not g[0].startswith("obis:")} == {"kWh", "W"}
            first = [r.readings() for r in readers if r is readers[0] or r is readers[2]]
            assert first[0][0].data == first[1][0].data  # byte-for-byte the same instant for every client
            assert s.iometer.stats["ws:connections"] == 1
            assert s.iometer.stats["LiveReadings"] == 1
            assert await s.metric('facade_live_upstream_streams{backend="iometer"}') == 1
            assert await s.metric('facade_live_events_total{backend="iometer"}') == 4  # 2 meters x 2 instants
            assert await s.metric("facade_live_clients") == 50
        finally:
            await close_all(readers)
        await s.until_metric("facade_live_clients", 0)


async def test_quantity_filter_and_power_in_watts() -> None:
    async with stack() as s:
        meter = s.iometer.data.installations[0].meter_ids[0]
        reader = await s.open(f"iometer:{meter}", quantity=["power", "energy_import"])
        try:
            await s.subscribed()
            s.clock.advance(SLOT)
            await reader.wait(lambda r: len(r.readings()) == 1)
            want = {w[0]: w for w in expected_items(s.iometer, meter, s.slot(1))}
            got = {g[0]: g for g in items_of(reader.readings()[0])}
            assert sorted(got) == ["energy_import", "power"]
            assert got["power"][3] == "W"
            assert got["power"][2] == pytest.approx(want["power"][2])
            assert got["energy_import"][3] == "kWh"
            assert got["energy_import"][2] == pytest.approx(want["energy_import"][2])
        finally:
            await reader.close()


async def test_resume_with_last_event_id_loses_and_repeats_nothing() -> None:
    async with stack() as s:
        meter = s.iometer.data.installations[0].meter_ids[0]
        first = await s.open(f"iometer:{meter}")
        await s.subscribed()
        for k in (1, 2):
            s.clock.advance(SLOT)
            await first.wait(lambda r, k=k: len(r.readings()) == k)
        last_id = first.readings()[-1].id
        await first.close()
        # while the client is away (the upstream stream lingers) two instants arrive
        for _ in range(2):
            s.clock.advance(SLOT)
        await s.until_metric('facade_live_events_total{backend="iometer"}', 4)
        history_before = s.iometer.stats["MeterReadings"]
        # Last-Event-ID wins over the (older) `since` the browser repeats from its original URL
        again = await s.open(f"iometer:{meter}", headers={"Last-Event-ID": last_id}, since=s.slot(0))
        try:
            await again.wait(lambda r: len(r.readings()) == 2)
            assert s.iometer.stats["MeterReadings"] == history_before  # replayed from memory, no vendor call
            s.clock.advance(SLOT)
            await again.wait(lambda r: len(r.readings()) == 3)
            await asyncio.sleep(0.3)
            assert first.times() == [s.slot(1), s.slot(2)]
            assert again.times() == [s.slot(3), s.slot(4), s.slot(5)]
        finally:
            await again.close()


async def test_since_before_the_stream_replays_from_history_then_goes_live() -> None:
    async with stack() as s:
        meter = s.iometer.data.installations[0].meter_ids[0]
        since = s.slot(-8)  # two hours back: before any live stream existed
        reader = await s.open(f"iometer:{meter}", since=since)
        try:
            await reader.wait(lambda r: len(r.readings()) == 8)
            assert s.iometer.stats["MeterReadings"] >= 1  # read from the vendor's history
            assert reader.times() == [s.slot(k) for k in range(-7, 1)]
            for event in reader.readings():
                got, want = items_of(event), sorted(expected_items(s.iometer, meter, event.data["time"]))
                assert [g[2] for g in got] == pytest.approx([w[2] for w in want])
            await s.subscribed()
            s.clock.advance(SLOT)
            await reader.wait(lambda r: len(r.readings()) == 9)
            await asyncio.sleep(0.3)
            assert reader.times() == [s.slot(k) for k in range(-7, 2)]
        finally:
            await reader.close()


async def test_a_dropped_upstream_connection_reports_status_and_replays_what_was_missed() -> None:
    async with stack() as s:
        meter = s.iometer.data.installations[0].meter_ids[0]
        reader = await s.open(f"iometer:{meter}")
        try:
            await s.subscribed()
            s.clock.advance(SLOT)
            await reader.wait(lambda r: len(r.readings()) == 1)
            s.proxy.cut(refuse=True)
            await reader.wait(lambda r: r.events[-1].event == "status")
            assert reader.events[-1].data == {"upstream": "reconnecting"}
            for _ in range(2):  # taken while the facade cannot see the vendor
                s.clock.advance(SLOT)
            await asyncio.sleep(0.3)
            assert len(reader.readings()) == 1
            s.proxy.allow()
            await reader.wait(lambda r: r.events[-1].event == "status" and r.events[-1].data["upstream"] == "live")
            await s.subscribed(2)
            s.clock.advance(SLOT)
            await reader.wait(lambda r: len(r.readings()) == 4)
            await asyncio.sleep(0.3)
            sequence = [(e.event, e.data.get("time") or e.data.get("upstream")) for e in reader.events]
            assert sequence == [
                ("readings", s.slot(1)),
                ("status", "reconnecting"),
                ("readings", s.slot(2)),
                ("readings", s.slot(3)),
                ("status", "live"),
                ("readings", s.slot(4)),
            ]
            assert s.iometer.stats["ws:connections"] == 2
        finally:
            await reader.close()


async def test_the_upstream_subscription_closes_within_the_linger_after_the_last_client() -> None:
    linger = 1.0
    async with stack(FACADE_LIVE_LINGER=linger) as s:
        meter = s.iometer.data.installations[0].meter_ids[0]
        readers = [await s.open(f"iometer:{meter}") for _ in range(2)]
        await s.subscribed()
        await s.until(lambda: s.proxy.open_upgrades == 1)
        await readers[0].close()
        await asyncio.sleep(0.2)
        assert s.proxy.open_upgrades == 1  # another client still watches
        await readers[1].close()
        left = time.monotonic()
        await s.until(lambda: s.proxy.open_upgrades == 0, timeout=linger + 5)
        closed_after = time.monotonic() - left
        assert linger - 0.05 <= closed_after <= linger + 3  # not before the linger, and soon after it
        assert await s.metric('facade_live_upstream_streams{backend="iometer"}') == 0
        # a client arriving later opens a new subscription
        reader = await s.open(f"iometer:{meter}")
        try:
            await s.subscribed(2)
            assert await s.metric('facade_live_upstream_streams{backend="iometer"}') == 1
        finally:
            await reader.close()


def _dechunk(raw: bytes) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, body = out + body[:size], body[size + 2 :]
    raise AssertionError("the response did not end")


async def test_a_slow_client_is_disconnected_alone_with_a_last_overflow_status() -> None:
    async with stack(small_buffers=True, FACADE_LIVE_QUEUE=128, FACADE_LIVE_OVERFLOW_GRACE=30) as s:
        meter = s.iometer.data.installations[0].meter_ids[0]
        fast = await s.open(f"iometer:{meter}")
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = s.facade.removeprefix("http://").split(":")
        slow.connect((host, int(port)))
        request = f"GET /readings/live?meter_id=iometer:{meter} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {KEY}\r\n\r\n"
        slow.sendall(request.encode())
        try:
            await s.until_metric("facade_live_clients", 2)
            await s.subscribed()
            days = 0
            while await s.metric("facade_live_clients") == 2:
                assert days < 12, "the slow client never overflowed"
                s.clock.advance(86400)  # 96 new instants at once
                days += 1
                await fast.wait(lambda r, n=96 * days: len(r.readings()) == n)
            # nobody else slowed: the fast client has every instant, in order, once
            assert fast.times() == [s.slot(k) for k in range(1, 96 * days + 1)]
            s.clock.advance(SLOT)
            await fast.wait(lambda r, n=96 * days + 1: len(r.readings()) == n)
            # the slow client finally reads: whatever was in flight, then `overflow`, then the end
            slow.setblocking(False)
            loop = asyncio.get_running_loop()
            raw = b""
            async with asyncio.timeout(20):
                while chunk := await loop.sock_recv(slow, 65536):
                    raw += chunk
            text = _dechunk(raw).decode()
            blocks = [b for b in text.split("\n\n") if b]
            assert blocks[-1] == 'event: status\ndata: {"upstream":"overflow"}'
            assert sum(b.startswith("event: readings") for b in blocks) < 96 * days
            assert await s.metric("facade_live_clients") == 1
        finally:
            slow.close()
            await fast.close()


# --- Waltero ------------------------------------------------------------------------------------------

HEAT_PUMP = "11111111-1111-1111-1111-111111111106"  # electricity, display unit Wh


async def test_twenty_clients_on_one_waltero_device_share_one_poll_per_interval() -> None:
    poll = 0.25
    async with stack(FACADE_LIVE_POLL=poll) as s:
        readers = await asyncio.gather(*(s.open(f"waltero:{HEAT_PUMP}") for _ in range(20)))
        try:
            await s.until_metric("facade_live_clients", 20)
            await s.until(lambda: s.waltero.stats["telemetry"] >= 2)
            before, started = s.waltero.stats["telemetry"], time.monotonic()
            await asyncio.sleep(2.0)
            polls, elapsed = s.waltero.stats["telemetry"] - before, time.monotonic() - started
            assert elapsed / poll / 3 <= polls <= elapsed / poll + 1  # one poll per interval, not twenty
            assert await s.metric('facade_live_upstream_streams{backend="waltero"}') == 1
            # the telemetry advances with the clock: the next whole hour arrives for every client
            now = s.clock()
            s.clock.advance(3600 - now % 3600)
            hour = from_epoch(s.clock())
            for reader in readers:
                await reader.wait(lambda r: len(r.readings()) == 1)
            index = s.waltero.data.index_at(hour)
            want = s.waltero.data.processed(HEAT_PUMP, index) / 1000  # Wh → kWh (CONTRACT.md)
            for reader in readers:
                [event] = reader.readings()
                assert event.id == format_rfc3339(hour)
                [item] = event.data["items"]
                assert (item["quantity"], item["unit"], item["obis"]) == ("energy_import", "kWh", None)
                assert item["value"] == pytest.approx(want)
        finally:
            await close_all(readers)


async def test_a_waltero_outage_reports_status_and_the_poll_resumes_from_the_last_point() -> None:
    async with stack(FACADE_LIVE_POLL=0.2, FACADE_RETRY_ATTEMPTS=1) as s:
        reader = await s.open(f"waltero:{HEAT_PUMP}")
        try:
            await s.until(lambda: s.waltero.stats["telemetry"] >= 1)
            s.clock.advance(3600 - s.clock() % 3600)
            await reader.wait(lambda r: len(r.readings()) == 1)
            s.waltero.faults.outage = True
            await reader.wait(lambda r: r.events[-1].event == "status")
            for _ in range(2):  # two hourly points taken while the vendor is down
                s.clock.advance(3600)
            await asyncio.sleep(0.3)
            s.waltero.faults.outage = False
            await reader.wait(lambda r: r.events[-1].event == "status" and r.events[-1].data["upstream"] == "live")
            s.clock.advance(3600)
            await reader.wait(lambda r: len(r.readings()) == 4)
            await asyncio.sleep(0.3)
            first = datetime.fromisoformat(reader.times()[0])
            sequence = [(e.event, e.data.get("time") or e.data.get("upstream")) for e in reader.events]
            hours = [format_rfc3339(first + timedelta(hours=h)) for h in range(4)]
            assert sequence == [
                ("readings", hours[0]),
                ("status", "reconnecting"),
                ("readings", hours[1]),
                ("readings", hours[2]),
                ("status", "live"),
                ("readings", hours[3]),
            ]
        finally:
            await reader.close()


# --- errors before the stream ------------------------------------------------------------------------


async def test_errors_before_the_stream_are_problems() -> None:
    async with stack(FACADE_LIVE_MAX_CLIENTS=1) as s:
        meter = f"iometer:{s.iometer.data.installations[0].meter_ids[0]}"
        cases = [
            ({"meter_id": meter}, {"X-API-Key": "wrong"}, 401),
            ({"meter_id": "iometer:00000000-0000-4000-8000-000000000000"}, {}, 404),
            ({"meter_id": "nope:1"}, {}, 404),
            ({"meter_id": meter, "since": "yesterday"}, {}, 422),
            ({"meter_id": meter}, {"Last-Event-ID": "garbage"}, 422),
            ({"meter_id": meter, "quantity": "bogus"}, {}, 422),
            ({}, {}, 422),
        ]
        for params, headers, status in cases:
            r = await s.http.get("/readings/live", params=params, headers=headers)
            assert r.status_code == status, (params, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["status"] == status
        assert (await s.http.get("/live-demo")).status_code == 404  # the demo page is sandbox-only
        reader = await s.open(meter)
        try:
            r = await s.http.get("/readings/live", params={"meter_id": meter})
            assert r.status_code == 503
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["type"] == "/problems/overloaded"
        finally:
            await reader.close()
        await s.until_metric("facade_live_clients", 0)
        reader = await s.open(meter)  # room again
        await reader.close()


async def test_keep_alive_pings_arrive_within_the_interval() -> None:
    async with stack(FACADE_LIVE_PING=0.2) as s:
        reader = await s.open(f"iometer:{s.iometer.data.installations[0].meter_ids[0]}")
        try:
            await asyncio.sleep(1.1)
            assert 3 <= reader.pings <= 9  # every 2/3 to 3/3 of the interval (3: a loaded machine)
        finally:
            await reader.close()
