"""Loopback helpers for the live-stream tests: a TCP proxy that can drop and refuse connections, a
server whose accepted sockets have a small send buffer, and an SSE reader.

Everything listens on 127.0.0.1 on a free port, runs in a daemon thread with its own event loop and
is stopped (and joined, bounded) when its context exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.sandbox.loopback import serve_in_thread
from tests.support.servers import free_port


class TcpProxy:
    """127.0.0.1:`port` → 127.0.0.1:`target_port`. `cut()` drops every open connection; while
    `refusing`, new connections are closed at once (the upstream looks down)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.refusing = False
        self.accepted = 0
        self._open: set[asyncio.StreamWriter] = set()
        self._upgrades: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def open_connections(self) -> int:
        return len(self._open) // 2

    @property
    def open_upgrades(self) -> int:
        """Open connections that began with a WebSocket upgrade (the adapters' queries are POSTs)."""
        return len(self._upgrades)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        pending = asyncio.all_tasks(self._loop)  # connection handlers still piping
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()
            await self._cut()
        server.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_w.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self.accepted += 1
        self._open.update((client_w, up_w))
        first = await client_r.read(65536)
        if b"upgrade: websocket" in first.lower():
            self._upgrades.add(client_w)
        up_w.write(first)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
        self._open.discard(client_w)
        self._open.discard(up_w)
        self._upgrades.discard(client_w)

    async def _cut(self) -> None:
        for writer in list(self._open):
            transport = writer.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()
        self._open.clear()
        self._upgrades.clear()

    def cut(self, *, refuse: bool = True) -> None:
        """Drop every open connection; with `refuse`, keep refusing new ones until `allow()`."""
        self.refusing = refuse
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(10)

    def allow(self) -> None:
        self.refusing = False


@contextlib.contextmanager
def serve_small_buffers(app: Any, *, send_buffer: int = 8192) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 from a listening socket whose accepted connections have a
    `send_buffer`-byte kernel send buffer (fixed, not autotuned), so a client that stops reading
    pushes back on the server within a few kilobytes. Yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    try:
        with serve_in_thread(app, sock=sock) as url:
            yield url
    finally:
        sock.close()


@dataclass
class Event:
    event: str
    data: Any
    id: str | None


def parse_events(text: str) -> tuple[list[Event], int, str]:
    """Complete SSE blocks of `text` → (events, pings, unparsed rest)."""
    events: list[Event] = []
    pings = 0
    while "\n\n" in text:
        block, text = text.split("\n\n", 1)
        name, data, ident = "message", None, None
        for line in block.split("\n"):
            if line == ": ping":
                pings += 1
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line.startswith("id: "):
                ident = line[4:]
        if data is not None:
            events.append(Event(name, data, ident))
    return events, pings, text


@dataclass
class SseReader:
    """Reads one `/readings/live` response in the background; `events` grows as they arrive."""

    response: httpx.Response
    events: list[Event] = field(default_factory=list)
    pings: int = 0
    ended: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> SseReader:
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        rest = ""
        try:
            async for chunk in self.response.aiter_text():
                events, pings, rest = parse_events(rest + chunk)
                self.events += events
                self.pings += pings
                self._changed.set()
        except httpx.HTTPError:
            pass
        finally:
            self.ended = True
            self._changed.set()

    def readings(self) -> list[Event]:
        return [e for e in self.events if e.event == "readings"]

    def times(self) -> list[str]:
        return [e.data["time"] for e in self.readings()]

    async def wait(self, predicate: Callable[[SseReader], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                if self.ended:
                    raise AssertionError(f"stream ended first: {self.events}")
                await self._changed.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.response.aclose()
