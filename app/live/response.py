"""The streaming response of one live client: replayed events, then the queue, with keep-alive pings.

A plain ASGI response rather than Starlette's `StreamingResponse`: it needs three things at once,
each cheap for a thousand clients:
- it waits on its subscriber's queue (a bare future; the hub's one ticker wakes it for keep-alives);
- a small watcher task notices the client going away (`http.disconnect`), since a server's `send`
  to a closed connection does not fail;
- after an overflow it sends the last `status: overflow` and completes the response; a client that
  does not even take that within the grace is cut off (the response is abandoned, which makes the
  server close the connection).
Every write is sent at once (no buffering here, and the pure-ASGI middleware passes each message
straight through), with headers that keep proxies from buffering either.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.live import sse
from app.live.hub import Hub, Subscriber

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class EventStream(Response):
    media_type = sse.MEDIA_TYPE

    def __init__(self, hub: Hub, sub: Subscriber, replay: list[bytes]) -> None:
        # No body and no Content-Length: the body is streamed (chunked) until the client leaves.
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = list(HEADERS)
        self._hub = hub
        self._sub = sub
        self._replay = replay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub, hub = self._sub, self._hub
        pump = asyncio.create_task(self._pump(send))
        watcher = asyncio.create_task(_watch_disconnect(receive, sub))
        sub.abort = lambda: _cancel(pump)
        try:
            await pump
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves (server shutdown)
            # else: the pump was aborted (overflowed and stuck): leave the response incomplete so the
            # server closes the connection
        finally:
            sub.closed = True
            hub.unsubscribe(sub)
            for task in (pump, watcher):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _pump(self, send: Send) -> None:
        sub = self._sub
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        opening = b"".join([sse.retry_hint(3000), *self._replay])
        self._replay = []
        await send({"type": "http.response.body", "body": opening, "more_body": True})
        sub.written = time.monotonic()
        while not sub.closed:
            if not sub.queue and not sub.ping_due and not sub.ending:
                await sub.wait()
                if sub.closed:
                    break
            chunks = []
            last = sub.last
            while sub.queue:
                at, chunk = sub.queue.popleft()
                if at is not None:
                    if last is not None and at <= last:
                        continue  # already replayed
                    last = at
                chunks.append(chunk)
            sub.last = last
            if sub.ping_due:
                sub.ping_due = False
                if not chunks:
                    chunks.append(sse.PING)
            if chunks:
                await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
                sub.written = time.monotonic()
            if (sub.overflowed or sub.ending) and not sub.queue:
                break
        if not sub.closed:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()


async def _watch_disconnect(receive: Receive, sub: Subscriber) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            sub.closed = True
            sub.wake()
            return
