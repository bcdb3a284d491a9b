"""Waltero answers daily consumption for a whole organization: the facade caches it once per organization
and window, and answers any subset of that organization's meters from the one entry (issue 21)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.backends.registry import create_emulators
from app.factory import create_app
from app.infra.config import Settings
from tests.support.apps import running
from tests.support.clock import FakeClock

NORTH = "00000000-0000-0000-0000-000000000001"
WINDOW = {"start": "2026-06-01", "end": "2026-06-08", "tz": "Europe/Berlin"}


@pytest.fixture
async def stack() -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    clock = FakeClock(datetime(2026, 6, 20, 10, 7, tzinfo=UTC))
    emulators = create_emulators(clock)
    app = create_app(
        Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0), clock=clock, sleep=clock.sleep, emulators=emulators
    )
    async with running(app, key=None) as client:
        yield client, emulators["waltero"]


async def daily(client: httpx.AsyncClient, meters: list[str]) -> list[dict[str, Any]]:
    response = await client.get("/consumption/daily", params={**WINDOW, "meter_id": meters})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_fifty_requests_for_twelve_meters_of_one_organization_cost_one_vendor_call(
    stack: tuple[httpx.AsyncClient, Any],
) -> None:
    client, waltero = stack
    meters = [f"waltero:{d.id}" for d in waltero.data.org_devices(NORTH)]
    assert len(meters) == 12
    first = await daily(client, meters[:1])
    assert {r["meter_id"] for r in first} == {meters[0]}
    assert waltero.stats["daily_consumption"] == 1
    calls = dict(waltero.stats)

    rnd = random.Random(21)
    answered: dict[str, list[dict[str, Any]]] = {}
    for n in range(49):  # one by one, then subsets of every size
        asked = [meters[n % 12]] if n < 24 else rnd.sample(meters, rnd.randint(2, 12))
        rows = await daily(client, asked)
        assert {r["meter_id"] for r in rows} == set(asked)
        assert len(rows) == 7 * len(asked)
        for meter in asked:
            mine = [r for r in rows if r["meter_id"] == meter]
            answered.setdefault(meter, mine)
            assert mine == answered[meter]  # the same figures whichever subset asked
    assert len(answered) == 12
    assert waltero.stats["daily_consumption"] == 1  # 50 requests, 12 meters: one organization-wide call
    assert waltero.stats["requests"] == calls["requests"]  # and nothing else reached the vendor after the first


async def test_the_whole_backend_and_a_subset_share_the_organization_entries(
    stack: tuple[httpx.AsyncClient, Any],
) -> None:
    client, waltero = stack
    response = await client.get("/consumption/daily", params={**WINDOW, "backend": "waltero"})
    assert response.status_code == 200, response.text
    everything = response.json()["items"]
    assert waltero.stats["daily_consumption"] == 2  # one per readable organization
    some = [f"waltero:{d.id}" for d in waltero.data.org_devices(NORTH)][3:6]
    rows = await daily(client, some)
    assert rows == [r for r in everything if r["meter_id"] in some]
    assert waltero.stats["daily_consumption"] == 2
    unknown = await client.get(
        "/consumption/daily", params={**WINDOW, "meter_id": "waltero:99999999-9999-9999-9999-999999999999"}
    )
    assert unknown.status_code == 404


async def test_cached_organization_entries_answer_while_the_circuit_is_open() -> None:
    clock = FakeClock(datetime(2026, 6, 20, 10, 7, tzinfo=UTC))
    emulators = create_emulators(clock)
    settings = Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0, FACADE_RETRY_ATTEMPTS=1)
    app = create_app(settings, clock=clock, sleep=clock.sleep, emulators=emulators)
    waltero = emulators["waltero"]
    meters = [f"waltero:{d.id}" for d in waltero.data.org_devices(NORTH)]
    async with running(app, key=None) as client:
        before = await daily(client, meters[:2])
        waltero.faults.outage = True
        for k in range(8):  # windows nobody asked for: each must reach the failing vendor
            r = await client.get("/readings", params={"meter_id": meters[0], "start": f"2026-05-{k + 1:02d}T00:00:00Z"})
            assert r.status_code in (502, 503), r.text
        backends = (await client.get("/backends")).json()["items"]
        assert next(b for b in backends if b["name"] == "waltero")["circuit"] == "open"
        calls = waltero.stats["requests"]
        assert await daily(client, meters[:2]) == before  # from the organization's entry
        assert await daily(client, meters[1:2]) == [r for r in before if r["meter_id"] == meters[1]]
        assert waltero.stats["requests"] == calls
