"""Fault knobs and the /_sandbox control endpoints."""

from __future__ import annotations

import asyncio

import httpx

from app.backends.iometer.emulator import Emulator, create_emulator
from tests.support.clock import FakeClock
from tests.unit.sandbox.iometer.conftest import Caller

QUERY = "query PartnerId { partner { id } }"


async def test_rate_limit_knob_answers_429_with_retry_after(caller: Caller, emulator: Emulator) -> None:
    emulator.faults.rate_limit_rate = 1.0
    emulator.faults.retry_after = 4
    response = await caller.post(QUERY)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "4"
    assert response.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_fail_next_answers_in_order_then_recovers(caller: Caller, emulator: Emulator) -> None:
    emulator.faults.fail_next = [503, 429, 500]
    statuses = [(await caller.post(QUERY)).status_code for _ in range(4)]
    assert statuses == [503, 429, 500, 200]
    assert emulator.stats["requests"] == 4
    assert emulator.stats["PartnerId"] == 1


async def test_outage_and_error_rate(caller: Caller, emulator: Emulator) -> None:
    emulator.faults.outage = True
    assert (await caller.post(QUERY)).status_code == 503
    emulator.faults.outage = False
    emulator.faults.error_rate = 1.0
    response = await caller.post(QUERY)
    assert response.status_code == 500
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


async def test_error_rate_is_deterministic_from_the_seed(clock: FakeClock) -> None:
    async def pattern() -> list[int]:
        emulator = create_emulator(clock, seed=11)
        emulator.faults.error_rate = 0.5
        async with httpx.AsyncClient(transport=httpx.ASGITransport(emulator.app), base_url="http://x") as http:
            caller = Caller(http, clock)
            return [(await caller.post(QUERY)).status_code for _ in range(12)]

    first, second = await pattern(), await pattern()
    assert first == second
    assert {200, 500} == set(first)


async def test_control_endpoints(http: httpx.AsyncClient, caller: Caller, emulator: Emulator) -> None:
    assert (await http.get("/_sandbox/faults")).json() == {
        "latency": 0.0,
        "error_rate": 0.0,
        "rate_limit_rate": 0.0,
        "retry_after": 1,
        "outage": False,
        "hang": False,
        "fail_next": [],
    }
    updated = await http.put("/_sandbox/faults", json={"fail_next": [429], "retry_after": 2})
    assert updated.status_code == 200
    assert emulator.faults.fail_next == [429]
    assert emulator.faults.retry_after == 2
    assert (await http.put("/_sandbox/faults", json={"bogus": 1})).status_code == 400
    assert (await http.put("/_sandbox/faults", json={"outage": "yes"})).status_code == 400
    assert (await http.put("/_sandbox/faults", json={"error_rate": -1})).status_code == 400
    assert (await caller.post(QUERY)).status_code == 429
    stats = (await http.get("/_sandbox/stats")).json()
    assert stats == {"requests": 1}  # control calls are not counted
    faults = emulator.faults
    faults.outage = True
    assert (await http.post("/_sandbox/reset")).json() == {"reset": True}
    assert emulator.faults is faults
    assert not faults.outage
    assert faults.retry_after == 1
    assert (await http.get("/_sandbox/stats")).json() == {}
    data = (await http.get("/_sandbox/data")).json()
    assert data["partner_id"] == emulator.data.partner.id
    assert len(data["meters"]) == len(emulator.data.meters)


async def test_faults_do_not_apply_to_controls(http: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.outage = True
    assert (await http.get("/_sandbox/faults")).status_code == 200
    assert (await http.get("/_sandbox/stats")).status_code == 200


async def test_hang_holds_requests_until_released(http: httpx.AsyncClient, caller: Caller, emulator: Emulator) -> None:
    emulator.faults.hang = True
    pending = asyncio.ensure_future(caller.post(QUERY))
    await asyncio.sleep(0.05)
    assert not pending.done()
    assert (await http.put("/_sandbox/faults", json={"hang": False})).status_code == 200
    response = await asyncio.wait_for(pending, 5)
    assert response.status_code == 200  # released: answered normally, the body was kept
    assert response.json()["data"]["partner"]["id"] == emulator.data.partner.id
    assert not emulator._hung  # the waiter is gone
