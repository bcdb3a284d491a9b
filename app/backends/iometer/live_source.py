"""IOmeter live readings: one `liveReadings(installationId)` subscription per stream, over
GraphQL-over-WebSocket (`graphql-transport-ws`) on the query URL (docs/vendors/iometer.md, "subscriptions").

The protocol is spoken directly over the `websockets` package rather than through gql's
`WebsocketsTransport`: the hub owns reconnects (backoff, jitter, catch-up), and a connection here is
one short, explicit exchange per attempt (`connection_init` with a fresh `Authorization` value, so a
fresh WSSE nonce per connection → `connection_ack` → one `subscribe` → `next`…), with no session or
reconnect state of its own to fight. Any close, `error` or `complete` ends the stream by raising.

Values are normalized by the adapter's own functions (`payloads.normalize`): energy in kWh, power
in W, ids prefixed, exactly as `/readings` serves them.

The vendor's page allows either GraphQL over WebSocket or GraphQL over Server-Sent Events. WebSocket
is pinned and tried first; when the server refuses it (the handshake is rejected), the source speaks
graphql-sse instead ("distinct connections" mode: one POST per subscription, `Accept:
text/event-stream`, the `Authorization` header as on queries, `event: next` / `event: complete`),
remembers which one works, and falls back the other way as well when SSE is refused (issue 21;
`make doctor`'s `live_protocol` says which the vendor speaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import httpx

from app.backends.iometer.payloads import TimeParser, bad, normalize, readings_page
from app.backends.live import CONNECTED, Connected, LiveTarget
from app.domain.models import Reading
from app.infra import tolerance
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


# issue 21: GraphQL over Server-Sent Events, when the vendor refuses the WebSocket
EVENT_STREAM = "text/event-stream"
SSE_READ_TIMEOUT = 20 * 60.0
"""Seconds without a byte before an SSE connection counts as dead (longer than the 15-minute cadence)."""

Protocol_ = Literal["ws", "sse"]


class ProtocolRefused(Exception):
    """The server refused this subscription protocol before any event (the other one may work)."""


@dataclass(frozen=True, slots=True)
class OpenedStream:
    """A streamed HTTP answer: its status, content type and body chunks as they arrive."""

    status: int
    content_type: str
    chunks: AsyncIterator[bytes]


EventStreamConnector = Callable[[str, dict[str, str], bytes], contextlib.AbstractAsyncContextManager[OpenedStream]]
"""`(url, headers, body)` → a POST's streamed answer for the duration of the context."""


@contextlib.asynccontextmanager
async def httpx_event_stream(url: str, headers: dict[str, str], body: bytes) -> AsyncIterator[OpenedStream]:
    """A real POST streamed with httpx (no proxy from the environment, like the WebSocket)."""
    timeout = httpx.Timeout(10.0, read=SSE_READ_TIMEOUT)
    async with (
        httpx.AsyncClient(timeout=timeout, trust_env=False) as client,
        client.stream("POST", url, headers=headers, content=body) as response,
    ):
        yield OpenedStream(response.status_code, response.headers.get("content-type", ""), response.aiter_bytes())


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, str]]:
    """(event, data) per Server-Sent Event of a byte stream (`event` defaults to `message`; several
    `data:` lines are joined with newlines; comments and unknown fields are skipped)."""
    buffer = b""
    event, data = "message", list[str]()
    async for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if not line:
                if data:
                    yield event, "\n".join(data)
                event, data = "message", []
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
        if len(buffer) > 2**20:
            raise bad("a subscription event is larger than 1 MiB")


def websocket_url(query_url: str) -> str:
    """The subscription URL: the query URL with `ws(s)://` (docs/vendors/iometer.md: same path)."""
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
        events: EventStreamConnector | None = httpx_event_stream,
    ) -> None:
        self.url = websocket_url(query_url)
        self.query_url = query_url
        self._authorization = authorization
        self._connect = connect
        self._ack_timeout = ack_timeout
        self._events = events
        self._ids = itertools.count(1)
        self.protocol: Protocol_ = "ws"
        """The protocol that worked last (WebSocket, as pinned, until the server refuses it)."""

    def channel_key(self, target: LiveTarget) -> str:
        if not target.site_id or not target.site_id.startswith(f"{NAME}:"):
            raise UpstreamBadResponse("IOmeter meter has no installation", backend=NAME)
        return target.site_id.split(":", 1)[1]

    async def stream(self, key: str, since: datetime | None) -> AsyncIterator[Connected | Sequence[Reading]]:
        """`liveReadings` of installation `key` (`since` is not used: the subscription has no start),
        over the protocol that worked last, or the other one when the server refuses it."""
        order: list[Protocol_] = [self.protocol]
        if self._events is not None:
            order.append("sse" if self.protocol == "ws" else "ws")
        for attempt, protocol in enumerate(order):
            items = self._websocket(key) if protocol == "ws" else self._event_stream(key)
            try:
                async with contextlib.aclosing(items):
                    async for item in items:
                        yield item
                return
            except ProtocolRefused:
                if attempt == len(order) - 1:
                    raise UpstreamBadResponse("IOmeter refused every subscription protocol", backend=NAME) from None
                self.protocol = order[attempt + 1]
                tolerance.record(NAME, "live_protocol", self.protocol, pinned=self.protocol == "ws")

    async def _event_stream(self, key: str) -> AsyncGenerator[Connected | Sequence[Reading], None]:
        """GraphQL over SSE: one POST, `next` events until the server ends it (which raises)."""
        assert self._events is not None
        body = {"query": LIVE_READINGS, "operationName": "LiveReadings", "variables": {"installationId": key}}
        headers = {
            "Authorization": self._authorization(),
            "Accept": EVENT_STREAM,
            "Content-Type": "application/json",
        }
        async with self._events(self.query_url, headers, json.dumps(body).encode()) as answer:
            if answer.status in (401, 403):
                raise UpstreamAuthFailed("IOmeter rejected our credentials", backend=NAME)
            if answer.status != 200 or not answer.content_type.startswith(EVENT_STREAM):
                raise ProtocolRefused(f"HTTP {answer.status} {answer.content_type}")
            yield CONNECTED
            parse_time = TimeParser()
            async for event, data in sse_events(answer.chunks):
                if event == "next":
                    yield parse_next(_message(data), parse_time)
                elif event == "complete":
                    break
            raise UpstreamBadResponse("IOmeter ended the live subscription", backend=NAME)

    async def _websocket(self, key: str) -> AsyncGenerator[Connected | Sequence[Reading], None]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                ws = await stack.enter_async_context(self._connect(self.url, SUBPROTOCOL))
            except Exception as exc:
                if handshake_refused(exc):
                    raise ProtocolRefused(type(exc).__name__) from exc
                raise
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


def handshake_refused(exc: BaseException) -> bool:
    """Whether opening the WebSocket failed because the server refused it (an HTTP status instead of
    the upgrade, a subprotocol it will not speak, or a close before accepting: `websockets`' handshake
    errors, the in-process connector's `WebSocketClosed`), not because it could not be reached."""
    return type(exc).__name__ in ("InvalidStatus", "InvalidHandshake", "NegotiationError", "WebSocketClosed")


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
