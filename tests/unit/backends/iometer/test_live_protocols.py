"""The IOmeter live source speaks GraphQL over WebSocket (pinned) or over Server-Sent Events (the
vendor's page allows both), and falls back to the other one when the server refuses the first (issue
21): against the emulator's `sse_only` variant in-process and over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.backends.iometer.asgi_events import AsgiEventStreamConnector
from app.backends.iometer.auth import wsse_created, wsse_header
from app.backends.iometer.emulator import SANDBOX_SETTINGS, Emulator, create_emulator
from app.backends.iometer.live_source import IometerLiveSource, httpx_event_stream, sse_events, websockets_connect
from app.backends.live import CONNECTED
from app.infra.errors import UpstreamAuthFailed
from app.sandbox.asgi_websocket import AsgiWebSocketConnector
from tests.support.clock import FakeClock
from tests.support.servers import serve_in_thread

PARTNER = SANDBOX_SETTINGS["IOMETER_PARTNER_ID"]
SECRET = SANDBOX_SETTINGS["IOMETER_PARTNER_SECRET"]
URL = "http://iometer.test/api/v1/query"


def slot_clock() -> FakeClock:
    return FakeClock(1_779_000_000.0 - 1_779_000_000.0 % 900 + 60)


def authorization(clock: FakeClock, secret: str = SECRET) -> Any:
    return lambda: wsse_header(PARTNER, secret, nonce=os.urandom(16).hex(), created=wsse_created(clock()))


async def one_slot(source: IometerLiveSource, emulator: Emulator, clock: FakeClock) -> list[Any]:
    """CONNECTED, then the installation's readings of the next 15-minute slot."""
    installation = emulator.data.installations[1]
    subscriptions = emulator.stats["LiveReadings"]
    async with contextlib.aclosing(source.stream(installation.id, None)) as stream, asyncio.timeout(10):
        assert await anext(stream) is CONNECTED
        for _ in range(2000):  # the server has started the subscription
            if emulator.stats["LiveReadings"] > subscriptions:
                break
            await asyncio.sleep(0.005)
        clock.advance(900)
        batches = [await anext(stream) for _ in installation.meter_ids]
    slot = datetime.fromtimestamp(clock() - clock() % 900, UTC)
    assert {b[0].meter_id for b in batches} == {f"iometer:{m}" for m in installation.meter_ids}
    assert {r.time for b in batches for r in b} == {slot}
    return batches


async def test_a_refused_websocket_falls_back_to_server_sent_events() -> None:
    clock = slot_clock()
    emulator = create_emulator(clock, subscription_poll=0.01, breaks={"sse_only"})
    source = IometerLiveSource(
        URL,
        authorization(clock),
        connect=AsgiWebSocketConnector(emulator.app),
        events=AsgiEventStreamConnector(emulator.app),
        ack_timeout=2,
    )
    assert source.protocol == "ws"
    await one_slot(source, emulator, clock)
    assert source.protocol == "sse"
    await one_slot(source, emulator, clock)  # the next connection goes straight to SSE
    assert emulator.stats["sse:connections"] == 2
    assert emulator.stats["ws:connections"] == 0


async def test_refused_server_sent_events_fall_back_to_the_websocket() -> None:
    clock = slot_clock()
    emulator = create_emulator(clock, subscription_poll=0.01)
    source = IometerLiveSource(
        URL,
        authorization(clock),
        connect=AsgiWebSocketConnector(emulator.app),
        events=AsgiEventStreamConnector(emulator.app),
        ack_timeout=2,
    )
    source.protocol = "sse"  # say an earlier connection found SSE; the vendor now speaks WebSocket only
    await one_slot(source, emulator, clock)
    assert source.protocol == "ws"
    assert emulator.stats["ws:connections"] == 1


async def test_over_real_sockets_the_fallback_speaks_sse_with_the_authorization_header() -> None:
    clock = slot_clock()
    emulator = create_emulator(clock, subscription_poll=0.01, breaks={"sse_only"})
    with serve_in_thread(emulator.app) as url:
        source = IometerLiveSource(
            f"{url}/api/v1/query", authorization(clock), connect=websockets_connect, events=httpx_event_stream
        )
        await one_slot(source, emulator, clock)
        assert source.protocol == "sse"
        rejected = IometerLiveSource(
            f"{url}/api/v1/query", authorization(clock, "wrong"), connect=websockets_connect, events=httpx_event_stream
        )
        with pytest.raises(UpstreamAuthFailed):
            async with contextlib.aclosing(rejected.stream(emulator.data.installations[0].id, None)) as stream:
                await anext(stream)
    assert emulator.stats["auth:bad_digest"] == 1


async def test_server_sent_events_are_parsed_across_chunks() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b": comment\n\nevent: ne", b'xt\ndata: {"a":\ndata: 1}\n\n', b"event: complete\r\ndata: \r\n\r\n"):
            yield part

    events = [e async for e in sse_events(chunks())]
    assert events == [("next", '{"a":\n1}'), ("complete", "")]
