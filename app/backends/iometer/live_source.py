"""IOmeter live readings: one `liveReadings(installationId)` subscription per stream, over
GraphQL-over-WebSocket (`graphql-transport-ws`) on the query URL (UPSTREAMS.md, "subscriptions").

The protocol is spoken directly over the `websockets` package rather than through gql's
`WebsocketsTransport`: the hub owns reconnects (backoff, jitter, catch-up), and a connection here is
one short, explicit exchange per attempt (`connection_init` with a fresh `Authorization` value, so a
fresh WSSE nonce per connection → `connection_ack` → one `subscribe` → `next`…), with no session or
reconnect state of its own to fight. Any close, `error` or `complete` ends the stream by raising.

Values are normalized by the adapter's own functions (`payloads.normalize`): energy in kWh, power
in W, ids prefixed, exactly as `/readings` serves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from app.backends.iometer.payloads import TimeParser, bad, normalize, readings_page
from app.backends.live import CONNECTED, Connected, LiveTarget
from app.domain.models import Reading
from app.infra.errors import UpstreamAuthFailed, UpstreamBadResponse

NAME = "iometer"
SUBPROTOCOL = "graphql-transport-ws"
CLOSE_FORBIDDEN = 4403
"""`connection_init` refused (the emulator's and the protocol's code for rejected credentials)."""

# Kept beside its only user; the unit tests validate it against the pinned SDL like documents.py's.
LIVE_READINGS = """
subscription LiveReadings($installationId: ID!) {
  liveReadings(installationId: $installationId) {
    meter { id }
    time
    values { obisCode value unit }
  }
}
"""


class WebSocket(Protocol):
    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...


Connector = Callable[[str, str], contextlib.AbstractAsyncContextManager[WebSocket]]
"""`(url, subprotocol)` → an open WebSocket for the duration of the context."""


def websocket_url(query_url: str) -> str:
    """The subscription URL: the query URL with `ws(s)://` (UPSTREAMS.md: same path)."""
    if query_url.startswith("https://"):
        return "wss://" + query_url.removeprefix("https://")
    if query_url.startswith("http://"):
        return "ws://" + query_url.removeprefix("http://")
    return query_url


@contextlib.asynccontextmanager
async def websockets_connect(url: str, subprotocol: str) -> AsyncIterator[WebSocket]:
    """A real connection with the `websockets` package (protocol pings on, no proxy from the environment)."""
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    async with connect(
        url,
        subprotocols=[Subprotocol(subprotocol)],
        open_timeout=10,
        ping_interval=20,
        ping_timeout=20,
        close_timeout=2,
        proxy=None,
        max_size=2**20,
    ) as ws:
        yield ws


def parse_next(payload: Any, parse_time: TimeParser) -> list[Reading]:
    """A `next` payload's `liveReadings` as normalized readings (all values of one meter and time)."""
    if not isinstance(payload, dict):
        raise bad("a subscription message has no payload")
    if payload.get("errors"):
        raise UpstreamBadResponse("IOmeter sent errors on the live subscription", backend=NAME)
    data = payload.get("data")
    row = data.get("liveReadings") if isinstance(data, dict) else None
    page = readings_page({"readings": [row], "cursor": None}, with_meter=True)
    out: list[Reading] = []
    for wire in page.readings:
        assert wire.meter_id is not None  # with_meter=True checked it
        meter_id = f"{NAME}:{wire.meter_id.lower()}"
        time = parse_time(wire.time)
        for value in wire.values:
            quantity, obis, number, unit = normalize(value)
            out.append(Reading(meter_id=meter_id, time=time, quantity=quantity, obis=obis, value=number, unit=unit))
    return out


class IometerLiveSource:
    """`LiveSource` for IOmeter. `authorization()` gives a new `Authorization` value per call (WSSE:
    new nonce and `Created`)."""

    name = NAME
    resumable = False

    def __init__(
        self,
        query_url: str,
        authorization: Callable[[], str],
        *,
        connect: Connector = websockets_connect,
        ack_timeout: float = 10.0,
    ) -> None:
        self.url = websocket_url(query_url)
        self._authorization = authorization
        self._connect = connect
        self._ack_timeout = ack_timeout
        self._ids = itertools.count(1)

    def channel_key(self, target: LiveTarget) -> str:
        if not target.site_id or not target.site_id.startswith(f"{NAME}:"):
            raise UpstreamBadResponse("IOmeter meter has no installation", backend=NAME)
        return target.site_id.split(":", 1)[1]

    async def stream(self, key: str, since: datetime | None) -> AsyncIterator[Connected | Sequence[Reading]]:
        """`liveReadings` of installation `key` (`since` is not used: the subscription has no start)."""
        async with self._connect(self.url, SUBPROTOCOL) as ws:
            init = {"type": "connection_init", "payload": {"Authorization": self._authorization()}}
            await ws.send(json.dumps(init))
            await self._acknowledged(ws)
            sub_id = str(next(self._ids))
            subscribe = {
                "id": sub_id,
                "type": "subscribe",
                "payload": {
                    "query": LIVE_READINGS,
                    "operationName": "LiveReadings",
                    "variables": {"installationId": key},
                },
            }
            await ws.send(json.dumps(subscribe))
            yield CONNECTED
            parse_time = TimeParser()
            while True:
                message = _message(await ws.recv())
                kind = message.get("type")
                if kind == "next" and message.get("id") == sub_id:
                    yield parse_next(message.get("payload"), parse_time)
                elif kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "error":
                    raise UpstreamBadResponse("IOmeter refused the live subscription", backend=NAME)
                elif kind == "complete":
                    raise UpstreamBadResponse("IOmeter ended the live subscription", backend=NAME)

    async def _acknowledged(self, ws: WebSocket) -> None:
        try:
            async with asyncio.timeout(self._ack_timeout):
                while True:
                    message = _message(await ws.recv())
                    if message.get("type") == "connection_ack":
                        return
                    if message.get("type") == "ping":
                        await ws.send(json.dumps({"type": "pong"}))
        except Exception as exc:
            if close_code(exc) == CLOSE_FORBIDDEN:
                raise UpstreamAuthFailed("IOmeter rejected our credentials", backend=NAME) from None
            raise


def close_code(exc: BaseException) -> int | None:
    """The close code a server sent, from `websockets`' `ConnectionClosed` (`rcvd.code`) or any
    exception with a `code` attribute (the in-process connector's)."""
    received = getattr(exc, "rcvd", None)
    code = getattr(received, "code", None) if received is not None else getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def _message(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except ValueError:
        raise bad("a subscription message is not JSON") from None
    if not isinstance(message, dict):
        raise bad("a subscription message is not an object")
    return message
