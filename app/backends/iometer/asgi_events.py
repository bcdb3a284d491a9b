"""An in-process client for a streamed HTTP answer of an ASGI app (Server-Sent Events): what
`httpx.ASGITransport` cannot do, since it waits for the whole body before it answers.

The sandbox serves its emulators in-process; this lets the IOmeter live source speak GraphQL over SSE
to the emulator's `sse_only` variant exactly as it does over a socket (issue 21)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message

from app.backends.iometer.live_source import OpenedStream


class AsgiEventStreamConnector:
    """`connector(url, headers, body)`: POST `body` to `app` at the URL's path; the answer's status,
    content type and body chunks as the app sends them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @contextlib.asynccontextmanager
    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> AsyncIterator[OpenedStream]:
        parts = urlsplit(url)
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": parts.scheme or "http",
            "path": parts.path or "/",
            "raw_path": (parts.path or "/").encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [(b"host", (parts.netloc or "localhost").encode())]
            + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 0),
            "server": (parts.hostname or "localhost", parts.port or 80),
            "state": {},
        }
        from_app: asyncio.Queue[Message] = asyncio.Queue()
        sent = False
        done = asyncio.Event()

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def run() -> None:
            try:
                await self.app(scope, receive, from_app.put)
            finally:
                await from_app.put({"type": "http.response.body", "body": b"", "more_body": False})

        task = asyncio.create_task(run())
        try:
            start = await from_app.get()
            if start["type"] != "http.response.start":
                raise ConnectionError("the app sent no answer")
            found = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}

            async def chunks() -> AsyncIterator[bytes]:
                while True:
                    message = await from_app.get()
                    if message["type"] != "http.response.body":
                        continue
                    if message.get("body"):
                        yield bytes(message["body"])
                    if not message.get("more_body", False):
                        return

            yield OpenedStream(int(start["status"]), found.get("content-type", ""), chunks())
        finally:
            done.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
