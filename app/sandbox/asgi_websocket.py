"""An in-process WebSocket client for an ASGI app: what `httpx.ASGITransport` is to HTTP.

The sandbox serves its emulators in-process, without sockets; this lets the IOmeter live source run
its unchanged `graphql-transport-ws` exchange against the emulator's WebSocket route.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message


class WebSocketClosed(ConnectionError):
    def __init__(self, code: int) -> None:
        super().__init__(f"WebSocket closed with code {code}")
        self.code = code


class _Connection:
    def __init__(self, to_app: asyncio.Queue[Message], from_app: asyncio.Queue[Message]) -> None:
        self._to_app = to_app
        self._from_app = from_app
        self.close_code: int | None = None

    async def send(self, message: str) -> None:
        if self.close_code is not None:
            raise WebSocketClosed(self.close_code)
        await self._to_app.put({"type": "websocket.receive", "text": message})

    async def recv(self) -> str | bytes:
        if self.close_code is not None:
            raise WebSocketClosed(self.close_code)
        message = await self._from_app.get()
        if message["type"] == "websocket.send":
            text = message.get("text")
            return text if text is not None else bytes(message.get("bytes") or b"")
        self.close_code = int(message.get("code", 1000))
        raise WebSocketClosed(self.close_code)


class AsgiWebSocketConnector:
    """`connector(url, subprotocol)`: a WebSocket connection to `app` at the URL's path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @contextlib.asynccontextmanager
    async def __call__(self, url: str, subprotocol: str) -> AsyncIterator[_Connection]:
        parts = urlsplit(url)
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": parts.scheme or "ws",
            "path": parts.path or "/",
            "raw_path": (parts.path or "/").encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [(b"host", (parts.netloc or "localhost").encode())],
            "client": ("127.0.0.1", 0),
            "server": (parts.hostname or "localhost", parts.port or 80),
            "subprotocols": [subprotocol],
            "state": {},
        }
        to_app: asyncio.Queue[Message] = asyncio.Queue()
        from_app: asyncio.Queue[Message] = asyncio.Queue()
        await to_app.put({"type": "websocket.connect"})

        async def run() -> None:
            try:
                await self.app(scope, to_app.get, from_app.put)
            finally:
                await from_app.put({"type": "websocket.close", "code": 1006})

        task = asyncio.create_task(run())
        try:
            first = await from_app.get()
            if first["type"] != "websocket.accept":
                raise WebSocketClosed(int(first.get("code", 1006)))
            yield _Connection(to_app, from_app)
        finally:
            await to_app.put({"type": "websocket.disconnect", "code": 1000})
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
