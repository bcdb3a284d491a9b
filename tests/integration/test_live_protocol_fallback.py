"""`GET /readings/live` over loopback sockets against an IOmeter that speaks GraphQL over Server-Sent
Events and refuses the WebSocket (the emulator's `sse_only` variant; the vendor's page allows either):
the facade's live source falls back to SSE and the stream goes on as with a WebSocket vendor (issue 21)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx

from app.backends.iometer import emulator as iometer_sandbox
from app.backends.waltero import emulator as waltero_sandbox
from app.factory import create_app
from app.infra.config import Settings
from tests.integration.test_live_stream import KEY, SLOT, START, Stack, expected_items, items_of
from tests.support.clock import FakeClock
from tests.support.live import TcpProxy
from tests.support.servers import serve_in_thread


@contextlib.asynccontextmanager
async def sse_vendor_stack() -> AsyncIterator[Stack]:
    clock = FakeClock(START)
    iometer = iometer_sandbox.create_emulator(clock, subscription_poll=0.02, breaks={"sse_only"})
    waltero = waltero_sandbox.create_emulator(clock)
    with contextlib.ExitStack() as servers:
        io_url = servers.enter_context(serve_in_thread(iometer.app))
        wa_url = servers.enter_context(serve_in_thread(waltero.app))
        values: dict[str, Any] = {
            **iometer_sandbox.SANDBOX_SETTINGS,
            **waltero_sandbox.SANDBOX_SETTINGS,
            "IOMETER_URL": f"{io_url}/api/v1/query",
            "WALTERO_URL": f"{wa_url}/prod",
            "FACADE_API_KEYS": KEY,
            "FACADE_CHANGES_POLL": 0,
            "FACADE_LIVE_PING": 0.5,
            "FACADE_LIVE_BACKOFF": 0.05,
        }
        app = create_app(Settings(**values), clock=clock)
        with serve_in_thread(app) as facade:
            async with httpx.AsyncClient(base_url=facade, headers={"X-API-Key": KEY}, timeout=30) as http:
                yield Stack(facade, clock, iometer, waltero, cast(TcpProxy, None), http)  # no proxy needed


async def test_a_vendor_speaking_sse_only_streams_live_readings() -> None:
    async with sse_vendor_stack() as s:
        meter = s.iometer.data.installations[0].meter_ids[0]
        reader = await s.open(f"iometer:{meter}", quantity=["power"])
        try:
            await s.subscribed()
            # The emulator counts the subscription before its stream starts reading the clock, so a slot
            # advanced in between may fall before the stream: advance slot by slot (bounded) until one
            # arrives, then check it is exactly that slot's readings.
            for n in range(1, 4):
                s.clock.advance(SLOT)
                with contextlib.suppress(TimeoutError):
                    await reader.wait(lambda r: len(r.readings()) >= 1, timeout=5)
                    break
            event = reader.readings()[0]
            slot = next(k for k in range(1, n + 1) if event.id == s.slot(k))
            want = [w for w in expected_items(s.iometer, meter, s.slot(slot)) if w[0] == "power"]
            assert items_of(event) == want
            assert [e.data["upstream"] for e in reader.events if e.event == "status"] in ([], ["live"])
        finally:
            await reader.close()
    assert s.iometer.stats["sse:connections"] == 1
    assert s.iometer.stats["ws:connections"] == 0
