"""The IOmeter live source: its subscription document, the `graphql-transport-ws` exchange (a fresh
`Authorization` per connection), normalization, and how it ends on trouble. Driven against the
emulator in-process (`AsgiWebSocketConnector`) and against scripted connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import build_schema, parse, validate

from app.backends.iometer import documents as docs
from app.backends.iometer.auth import wsse_created, wsse_header
from app.backends.iometer.emulator import SANDBOX_SETTINGS, create_emulator
from app.backends.iometer.live_source import (
    LIVE_READINGS,
    IometerLiveSource,
    parse_next,
    websocket_url,
    websockets_connect,
)
from app.backends.iometer.payloads import TimeParser
from app.backends.live import CONNECTED, LiveTarget
from app.infra.errors import UpstreamAuthFailed, UpstreamBadResponse
from app.live.asgi_websocket import AsgiWebSocketConnector
from tests.support.clock import FakeClock
from tests.support.servers import serve_in_thread

PARTNER = SANDBOX_SETTINGS["IOMETER_PARTNER_ID"]
SECRET = SANDBOX_SETTINGS["IOMETER_PARTNER_SECRET"]
URL = "http://iometer.test/api/v1/query"


def test_the_subscription_validates_against_the_pinned_sdl() -> None:
    assert validate(build_schema(docs.schema_sdl()), parse(LIVE_READINGS)) == []


@pytest.mark.parametrize(
    ("query_url", "ws_url"),
    [
        ("https://partner.prod.iometer.cloud/api/v1/query", "wss://partner.prod.iometer.cloud/api/v1/query"),
        ("http://127.0.0.1:8080/api/v1/query", "ws://127.0.0.1:8080/api/v1/query"),
    ],
)
def test_the_websocket_url_is_the_query_url(query_url: str, ws_url: str) -> None:
    assert websocket_url(query_url) == ws_url


def test_values_are_normalized_like_readings() -> None:
    payload = {
        "data": {
            "liveReadings": {
                "meter": {"id": "578936DC-8020-4022-A560-2F59D2DCA9EE"},
                "time": "2026-03-28T10:15:00Z",
                "values": [
                    {"obisCode": "1-0:1.8.0", "value": 12345678, "unit": "Wh"},
                    {"obisCode": "1-0:16.7.0", "value": 1.5, "unit": "kW"},
                    {"obisCode": "1-0:32.7.0", "value": 230.1, "unit": "V"},
                ],
            }
        }
    }
    rows = parse_next(payload, TimeParser())
    assert [(r.meter_id, r.quantity, r.obis, r.value, r.unit) for r in rows] == [
        ("iometer:578936dc-8020-4022-a560-2f59d2dca9ee", "energy_import", "1-0:1.8.0", 12345.678, "kWh"),
        ("iometer:578936dc-8020-4022-a560-2f59d2dca9ee", "power", "1-0:16.7.0", 1500.0, "W"),
        ("iometer:578936dc-8020-4022-a560-2f59d2dca9ee", "obis:1-0:32.7.0", "1-0:32.7.0", 230.1, "V"),
    ]
    assert {r.time for r in rows} == {datetime(2026, 3, 28, 10, 15, tzinfo=UTC)}
    with pytest.raises(UpstreamBadResponse):
        parse_next({"data": {"liveReadings": {"time": "x"}}}, TimeParser())
    with pytest.raises(UpstreamBadResponse):
        parse_next({"errors": [{"message": "boom"}]}, TimeParser())


def source_for(clock: FakeClock, connect: Any, headers: list[str] | None = None) -> IometerLiveSource:
    def authorization() -> str:
        value = wsse_header(PARTNER, SECRET, nonce=os.urandom(16).hex(), created=wsse_created(clock()))
        if headers is not None:
            headers.append(value)
        return value

    return IometerLiveSource(URL, authorization, connect=connect, ack_timeout=2)


async def test_streams_the_emulators_new_readings_with_a_fresh_nonce_per_connection() -> None:
    clock = FakeClock(1_779_000_000.0 - 1_779_000_000.0 % 900 + 60)
    emulator = create_emulator(clock, subscription_poll=0.01)
    installation = emulator.data.installations[1]
    headers: list[str] = []
    source = source_for(clock, AsgiWebSocketConnector(emulator.app), headers)
    key = source.channel_key(LiveTarget("iometer", "iometer:x", "x", f"iometer:{installation.id}"))
    assert key == installation.id
    for connection in range(2):  # the emulator refuses a nonce it has seen: the second connection proves a new one
        async with contextlib.aclosing(source.stream(key, None)) as stream, asyncio.timeout(5):
            assert await anext(stream) is CONNECTED
            while emulator.stats["LiveReadings"] <= connection:  # the server has started the subscription
                await asyncio.sleep(0.005)
            clock.advance(900)
            batches = [await anext(stream) for _ in installation.meter_ids]
        slot = datetime.fromtimestamp(clock() - clock() % 900, UTC)
        assert {b[0].meter_id for b in batches} == {f"iometer:{m}" for m in installation.meter_ids}
        assert {r.time for b in batches for r in b} == {slot}
        assert emulator.stats["ws:connections"] == connection + 1
    nonces = [h.split('Nonce="')[1].split('"')[0] for h in headers]
    assert len(set(nonces)) == 2
    assert emulator.stats["LiveReadings"] == 2


async def test_rejected_credentials_are_an_auth_failure() -> None:
    clock = FakeClock()
    emulator = create_emulator(clock)

    def bad() -> str:
        return wsse_header(PARTNER, "wrong", nonce=os.urandom(16).hex(), created=wsse_created(clock()))

    source = IometerLiveSource(URL, bad, connect=AsgiWebSocketConnector(emulator.app), ack_timeout=2)
    with pytest.raises(UpstreamAuthFailed):
        async with contextlib.aclosing(source.stream(emulator.data.installations[0].id, None)) as stream:
            await anext(stream)
    assert emulator.stats["auth:bad_digest"] == 1


class Scripted:
    """A connection that answers with scripted server messages and records what the client sent."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.incoming = [json.dumps(m) for m in messages]
        self.sent: list[dict[str, Any]] = []

    async def send(self, message: str) -> None:
        self.sent.append(json.loads(message))

    async def recv(self) -> str:
        if not self.incoming:
            raise ConnectionError("closed")
        return self.incoming.pop(0)

    @contextlib.asynccontextmanager
    async def __call__(self, url: str, subprotocol: str) -> AsyncIterator[Scripted]:
        assert (url, subprotocol) == ("ws://iometer.test/api/v1/query", "graphql-transport-ws")
        yield self


@pytest.mark.parametrize(
    ("server_says", "error"),
    [
        ({"type": "error", "id": "1", "payload": [{"message": "installation not found"}]}, UpstreamBadResponse),
        ({"type": "complete", "id": "1"}, UpstreamBadResponse),
        (None, ConnectionError),
    ],
)
async def test_the_stream_ends_by_raising(server_says: dict[str, Any] | None, error: type[Exception]) -> None:
    messages = [{"type": "ping"}, {"type": "connection_ack"}, {"type": "ping"}]
    if server_says is not None:
        messages.append(server_says)
    conn = Scripted(*messages)
    source = source_for(FakeClock(), conn)
    got: list[Any] = []
    with pytest.raises(error):
        async for item in source.stream("inst-1", None):
            got.append(item)
    assert got == [CONNECTED]
    kinds = [m["type"] for m in conn.sent]
    assert kinds == ["connection_init", "pong", "subscribe", "pong"]
    assert conn.sent[0]["payload"]["Authorization"].startswith("UsernameToken ")
    assert conn.sent[2]["payload"]["variables"] == {"installationId": "inst-1"}


async def test_over_a_real_socket_rejected_credentials_are_an_auth_failure_too() -> None:
    clock = FakeClock()
    emulator = create_emulator(clock)

    def bad() -> str:
        return wsse_header(PARTNER, "wrong", nonce=os.urandom(16).hex(), created=wsse_created(clock()))

    with serve_in_thread(emulator.app) as url:
        source = IometerLiveSource(f"{url}/api/v1/query", bad, connect=websockets_connect, ack_timeout=5)
        with pytest.raises(UpstreamAuthFailed):
            async with contextlib.aclosing(source.stream(emulator.data.installations[0].id, None)) as stream:
                await anext(stream)
    assert emulator.stats["auth:bad_digest"] == 1
