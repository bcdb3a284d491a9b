"""Caching, coalescing and resilience against the sandbox emulators (both on one injected clock)."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from app.factory import create_app
from app.infra.config import Settings
from app.sandbox import create_emulators
from tests.support.apps import running
from tests.support.clock import FakeClock

WATER = "waltero:11111111-1111-1111-1111-111111111101"
GAS = "waltero:11111111-1111-1111-1111-111111111104"


def build(clock, **settings):
    emulators = create_emulators(clock)
    values = {"FACADE_SANDBOX": True, "FACADE_CHANGES_POLL": 0, **settings}
    app = create_app(Settings(**values), clock=clock, sleep=clock.sleep, emulators=emulators)
    return app, emulators["iometer"], emulators["waltero"]


@pytest.fixture
def clock():
    return FakeClock(datetime.now(UTC).replace(minute=7, second=0, microsecond=0))


async def test_hundred_identical_cold_requests_cost_one_upstream_call(clock):
    app, _, waltero = build(clock)
    async with running(app, key=None) as c:
        assert (await c.get("/meters", params={"backend": "waltero"})).status_code == 200  # log in first
        waltero.faults.latency = 0.05
        before = waltero.stats.copy()
        answers = await asyncio.gather(*(c.get(f"/devices/{WATER}/status") for _ in range(100)))
        assert {a.status_code for a in answers} == {200}
        assert waltero.stats["telemetry"] - before["telemetry"] == 1
        assert sum(a.headers["x-cache"] == "MISS" for a in answers) == 1
        assert len({a.content for a in answers}) == 1
        calls = waltero.stats["requests"]
        clock.advance(20)  # within the 30 s TTL
        again = await asyncio.gather(*(c.get(f"/devices/{WATER}/status") for _ in range(10)))
        assert waltero.stats["requests"] == calls
        assert {a.headers["x-cache"] for a in again} == {"HIT"}
        assert again[0].headers["age"] == "20"
        assert again[0].headers["cache-control"] == "private, max-age=10"
        metrics = (await c.get("/metrics")).text
        assert 'facade_coalesced_requests_total{cache="device_status"} 99.0' in metrics


async def test_stale_served_while_the_vendor_is_down_then_an_error(clock):
    app, _iometer, waltero = build(clock, FACADE_STALE_IF_ERROR=600)
    async with running(app, key=None) as c:
        fresh = await c.get("/meters", params={"backend": "waltero"})
        assert fresh.headers["x-cache"] == "MISS"
        waltero.faults.outage = True
        clock.advance(301)  # past the 300 s TTL of meters
        stale = await c.get("/meters", params={"backend": "waltero"})
        assert stale.status_code == 200
        assert stale.headers["x-cache"] == "STALE"
        assert stale.json()["items"] == fresh.json()["items"]
        assert stale.headers["cache-control"].startswith("private, max-age=")
        clock.advance(600)  # past the stale window too
        gone = await c.get("/meters", params={"backend": "waltero"})
        assert gone.status_code in (502, 503)
        assert gone.headers["content-type"] == "application/problem+json"
        assert gone.json()["backend"] == "waltero"
        # across both backends the good part is kept
        both = await c.get("/meters")
        assert both.status_code == 200
        assert {m["backend"] for m in both.json()["items"]} == {"iometer"}
        assert [e["backend"] for e in both.json()["errors"]] == ["waltero"]


async def test_circuit_opens_fails_fast_and_closes_again(clock):
    app, _, waltero = build(clock, FACADE_CIRCUIT_FAILURES=3, FACADE_CIRCUIT_RESET=30)
    async with running(app, key=None) as c:
        await c.get("/meters", params={"backend": "waltero"})
        waltero.faults.outage = True
        devices = [f"waltero:11111111-1111-1111-1111-11111111110{i}" for i in range(1, 9)]
        for device in devices[:3]:
            r = await c.get(f"/devices/{device}/status")
            assert r.status_code in (502, 503)
        calls = waltero.stats["requests"]
        fast = await c.get(f"/devices/{devices[4]}/status")
        assert fast.status_code == 503
        assert int(fast.headers["retry-after"]) >= 1
        assert fast.json()["backend"] == "waltero"
        assert waltero.stats["requests"] == calls  # failed fast: no upstream call
        info = {b["name"]: b for b in (await c.get("/backends")).json()["items"]}
        assert info["waltero"]["circuit"] == "open"
        assert info["waltero"]["status"] == "down"
        assert info["iometer"]["circuit"] == "closed"
        assert (await c.get("/readyz")).status_code == 503
        waltero.faults.outage = False
        clock.advance(31)
        probe = await c.get(f"/devices/{devices[5]}/status")
        assert probe.status_code == 200
        info = {b["name"]: b for b in (await c.get("/backends")).json()["items"]}
        assert info["waltero"]["circuit"] == "closed"
        assert 'facade_circuit_state{backend="waltero"} 0.0' in (await c.get("/metrics")).text


async def test_a_correction_reaches_daily_consumption_within_one_poll(clock):
    app, _iometer, waltero = build(clock, FACADE_CHANGES_POLL=0.05)
    day = (datetime.fromtimestamp(clock.now, UTC) - timedelta(days=3)).date()
    params = {"start": str(day), "end": str(day + timedelta(days=1))}
    async with running(app, key=None) as c:
        io_meter = (await c.get("/meters", params={"backend": "iometer"})).json()["items"][0]["id"]
        before = (await c.get("/consumption/daily", params={**params, "meter_id": WATER})).json()["items"][0]
        await c.get("/consumption/daily", params={**params, "meter_id": io_meter})
        t0 = datetime.fromtimestamp(clock.now, UTC).replace(minute=0) - timedelta(hours=2)
        gas_before = await c.get("/readings", params={"meter_id": GAS, "start": f"{t0:%Y-%m-%dT%H:%M:%SZ}"})
        # raise the register at noon of that day (UTC): the day's consumption grows by 5 m3
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        device = WATER.split(":")[1]
        old = waltero.data.processed(device, waltero.data.index_at(noon))
        waltero.correct(device, noon, old + 5.0, actor="user")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            after = await c.get("/consumption/daily", params={**params, "meter_id": WATER})
            if after.headers["x-cache"] != "HIT":
                break
            await asyncio.sleep(0.05)
        row = after.json()["items"][0]
        assert after.headers["x-cache"] == "MISS"
        assert row["consumption"] != before["consumption"]
        # what the correction did not touch stays cached
        assert (await c.get("/consumption/daily", params={**params, "meter_id": io_meter})).headers["x-cache"] == "HIT"
        gas_again = await c.get("/readings", params={"meter_id": GAS, "start": f"{t0:%Y-%m-%dT%H:%M:%SZ}"})
        assert gas_again.headers["x-cache"] == "HIT"
        assert gas_again.content == gas_before.content
        assert "facade_correction_evictions_total" in (await c.get("/metrics")).text


async def test_the_deadline_holds_against_a_vendor_that_never_answers(clock):
    app, _, waltero = build(clock, FACADE_REQUEST_DEADLINE=0.3)
    async with running(app, key=None) as c:
        await c.get("/meters", params={"backend": "waltero"})
        waltero.faults.hang = True
        started = time.monotonic()
        r = await c.get(f"/devices/{WATER}/status")
        assert r.status_code == 504
        assert r.headers["content-type"] == "application/problem+json"
        assert time.monotonic() - started < 2.0
        waltero.faults.hang = False


async def test_429s_are_absorbed_and_persistent_ones_reported(clock):
    app, _, waltero = build(clock)
    async with running(app, key=None) as c:
        await c.get("/meters", params={"backend": "waltero"})
        waltero.faults.fail_next = [429, 429]
        r = await c.get(f"/devices/{WATER}/status")
        assert r.status_code == 200
        assert 'facade_upstream_retries_total{backend="waltero",reason="429"} 2.0' in (await c.get("/metrics")).text
        waltero.faults.rate_limit_rate = 1.0
        r = await c.get(f"/devices/{GAS}/status")
        assert r.status_code == 503
        assert r.headers["retry-after"]
        assert r.json()["backend"] == "waltero"


async def test_a_slow_backend_is_its_own_error_entry_not_a_504_for_the_list(clock):
    app, iometer, _waltero = build(clock, FACADE_REQUEST_DEADLINE=0.5)
    async with running(app, key=None) as c:
        iometer.faults.hang = True
        started = time.monotonic()
        r = await c.get("/meters")
        assert time.monotonic() - started < 2.0
        assert r.status_code == 200
        body = r.json()
        assert {m["backend"] for m in body["items"]} == {"waltero"}
        assert body["errors"][0]["backend"] == "iometer"
        assert body["errors"][0]["status"] == 504
        alone = await c.get("/meters", params={"backend": "iometer"})
        assert alone.status_code == 504
        assert alone.json()["backend"] == "iometer"
        iometer.faults.hang = False


async def test_two_spellings_of_one_time_share_one_cache_entry(clock):
    app, _, waltero = build(clock)
    async with running(app, key=None) as c:
        t0 = datetime.fromtimestamp(clock.now, UTC).replace(minute=0) - timedelta(hours=5)
        t1 = t0 + timedelta(hours=2)
        first = await c.get(
            "/readings",
            params={"meter_id": WATER, "start": f"{t0:%Y-%m-%dT%H:%M:%SZ}", "end": f"{t1:%Y-%m-%dT%H:%M:%SZ}"},
        )
        calls = waltero.stats["telemetry"]
        berlin = await c.get(
            "/readings",
            params={
                "meter_id": WATER,
                "start": f"{t0:%Y-%m-%dT%H:%M:%S}+00:00",
                "end": (t1 + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+01:00"),
            },
        )
        assert first.headers["x-cache"] == "MISS"
        assert berlin.headers["x-cache"] == "HIT"
        assert berlin.json() == first.json()
        assert waltero.stats["telemetry"] == calls


async def test_a_changes_response_evicts_what_it_carries(clock):
    app, _, waltero = build(clock)
    day = (datetime.fromtimestamp(clock.now, UTC) - timedelta(days=3)).date()
    params = {"meter_id": WATER, "start": str(day), "end": str(day + timedelta(days=1))}
    async with running(app, key=None) as c:
        assert (await c.get("/consumption/daily", params=params)).headers["x-cache"] == "MISS"
        assert (await c.get("/consumption/daily", params=params)).headers["x-cache"] == "HIT"
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        device = WATER.split(":")[1]
        waltero.correct(device, noon, waltero.data.processed(device, waltero.data.index_at(noon)) + 1.0)
        since = datetime.fromtimestamp(clock.now, UTC) - timedelta(minutes=1)
        feed = (await c.get("/changes", params={"since": f"{since:%Y-%m-%dT%H:%M:%SZ}"})).json()["items"]
        assert [ch["meter_id"] for ch in feed] == [WATER]
        assert (await c.get("/consumption/daily", params=params)).headers["x-cache"] == "MISS"
