"""Fault knobs, stats and the control endpoints."""

import asyncio

import httpx
import pytest

from app.backends.waltero.emulator import Emulator, Faults, create_emulator
from tests.support.clock import FakeClock

from .conftest import CREDENTIALS


async def test_faults_get_and_put(raw: httpx.AsyncClient, emulator: Emulator) -> None:
    assert (await raw.get("/_sandbox/faults")).json() == {
        "latency": 0.0,
        "error_rate": 0.0,
        "rate_limit_rate": 0.0,
        "retry_after": 1,
        "outage": False,
        "hang": False,
        "fail_next": [],
    }
    response = await raw.put("/_sandbox/faults", json={"fail_next": [500, 429], "retry_after": 3, "latency": 0})
    assert response.status_code == 200
    assert response.json()["fail_next"] == [500, 429]
    assert emulator.faults.fail_next == [500, 429]
    assert emulator.faults.retry_after == 3


@pytest.mark.parametrize(
    "body",
    [
        {"nope": 1},
        {"outage": "yes"},
        {"error_rate": 2},
        {"fail_next": [200]},
        {"retry_after": -1},
        [1],
        {"latency": -1},
    ],
)
async def test_bad_fault_updates_change_nothing(raw: httpx.AsyncClient, emulator: Emulator, body: object) -> None:
    response = await raw.put("/_sandbox/faults", json={"retry_after": 5} | body if isinstance(body, dict) else body)
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_REQUEST"
    assert emulator.faults == Faults()


async def test_fail_next_answers_in_order_then_recovers(raw: httpx.AsyncClient, emulator: Emulator) -> None:
    await raw.put("/_sandbox/faults", json={"fail_next": [503, 429]})
    first = await raw.post("/api/auth/login", json=CREDENTIALS)
    second = await raw.post("/api/auth/login", json=CREDENTIALS)
    third = await raw.post("/api/auth/login", json=CREDENTIALS)
    assert [first.status_code, second.status_code, third.status_code] == [503, 429, 200]
    assert second.headers["retry-after"] == "1"
    assert emulator.stats["login"] == 3
    assert emulator.stats["tokens_issued"] == 1


async def test_faults_do_not_touch_the_control_endpoints(raw: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.outage = True
    assert (await raw.get("/_sandbox/stats")).status_code == 200
    response = await raw.post("/api/auth/login", json=CREDENTIALS)
    assert response.status_code == 503
    assert response.json()["code"] == "INTERNAL_ERROR"


async def test_rates_are_deterministic_fractions() -> None:
    async def statuses(seed: int) -> list[int]:
        emulator = create_emulator(FakeClock(), seed=seed)
        emulator.faults.error_rate = 0.3
        emulator.faults.rate_limit_rate = 0.3
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator.app), base_url="http://w") as c:
            return [(await c.post("/api/auth/login", json=CREDENTIALS)).status_code for _ in range(60)]

    first, again = await statuses(7), await statuses(7)
    assert first == again
    assert set(first) == {200, 429, 500}
    assert 8 <= first.count(500) <= 30
    assert 5 <= first.count(429) <= 30


async def test_latency_uses_the_injected_sleep() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    emulator = create_emulator(FakeClock(), sleep=sleep)
    emulator.faults.latency = 2.5
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator.app), base_url="http://w") as c:
        for _ in range(5):
            await c.post("/api/auth/login", json=CREDENTIALS)
    assert len(slept) == 5
    assert all(0 <= s <= 2.5 for s in slept)
    assert len(set(slept)) == 5


async def test_hang_holds_requests_until_cleared(raw: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.hang = True
    pending = asyncio.create_task(raw.post("/api/auth/login", json=CREDENTIALS))
    await asyncio.sleep(0.15)
    assert not pending.done()
    assert (await raw.post("/_sandbox/reset")).status_code == 200
    response = await asyncio.wait_for(pending, 2)
    assert response.status_code == 200


async def test_stats_count_operations_and_reset_clears(api: httpx.AsyncClient, emulator: Emulator) -> None:
    await api.get("/api/auth/me")
    await api.get("/api/devices/11111111-1111-1111-1111-111111111101")
    stats = (await api.get("/_sandbox/stats")).json()
    assert stats == {"requests": 3, "login": 1, "tokens_issued": 1, "me": 1, "device": 1}
    emulator.faults.fail_next = [500]
    body = (await api.post("/_sandbox/reset")).json()
    assert body == {"faults": {**body["faults"], "fail_next": []}, "stats": {}}
    assert emulator.stats == {}
    assert emulator.faults == Faults()


async def test_the_vendor_paths_are_also_served_under_prod(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/prod/api/auth/login", json=CREDENTIALS)
    assert response.status_code == 200
    me = await raw.get("/prod/api/auth/me", headers={"Authorization": f"Bearer {response.json()['token']}"})
    assert me.status_code == 200
