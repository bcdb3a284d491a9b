"""Drive the app in-process, without a socket or a client library, so a CPU counter or a profiler sees
the facade's own work. One driver for every in-process bench (`profile_hits`, `profile_misses`,
`round3`).

`receive` behaves as a server's does: the (empty) request body once, then it waits until the client
disconnects, which here never happens. A `receive` that kept answering `http.request` would spin
`CancelOnDisconnect`'s watcher, which reads `receive()` until `http.disconnect`, without ever yielding.
"""

from __future__ import annotations

import asyncio
from typing import Any


class InProcess:
    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.headers = [(b"host", b"f"), (b"x-api-key", key.encode())]
        self.sent: list[dict[str, Any]] = []
        self._forever = asyncio.Event()  # never set: the client never leaves

    def scope(self, path: str, query: str = "") -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": self.headers,
            "http_version": "1.1",
            "scheme": "http",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 1),
            "root_path": "",
            "app": self.app,
            "state": {},
        }

    async def call(self, path: str, query: str = "") -> None:
        """One GET; its messages are appended to `sent`."""
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._forever.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            self.sent.append(message)

        await self.app(self.scope(path, query), receive, send)

    async def get(self, path: str, query: str = "") -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One GET: its status, headers and body (`sent` is left empty)."""
        self.sent.clear()
        await self.call(path, query)
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        self.sent.clear()
        return start["status"], list(start["headers"]), body
