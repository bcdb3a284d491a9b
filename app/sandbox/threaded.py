"""The emulators off the serving loop: their ASGI apps run on an event loop of their own, in a thread.

The IOmeter emulator executes GraphQL with graphql-core, on the CPU; run on the facade's own loop, six
year-long requests stalled `/healthz` for half a minute. Behind `ThreadedASGITransport` a vendor is as
slow as it is, and the facade stays responsive, as with the real thing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


class EmulatorLoop:
    """A daemon thread running an event loop, started on first use and stopped by `close()`."""

    def __init__(self, name: str = "sandbox-emulators") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name=self._name, daemon=True)
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the loop (if it runs), after whatever it was asked to do before."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(callback)

    def close(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        # Requests still there (given up, or cut by shutdown) are cancelled and run to their end first:
        # a task or coroutine dropped with the loop would only warn that it never finished.
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not loop.is_running():
            loop.close()


async def _cancel_all() -> None:
    this = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not this]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ThreadedASGITransport(httpx.AsyncBaseTransport):
    """`httpx.ASGITransport` whose app runs on an `EmulatorLoop`. Bodies are whole (the emulators answer
    small JSON documents); a caller that gives up cancels the request on the emulator's side too: one
    still queued there never reaches the emulator, one running is cancelled at its next await."""

    def __init__(self, app: Any, loop: EmulatorLoop) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._loop = loop

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        method, url, headers = request.method, request.url, request.headers
        abandoned = threading.Event()
        running: list[asyncio.Task[Any]] = []

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            # The emulator's loop may be busy for seconds (graphql-core on the CPU): a request the caller
            # gave up on meanwhile must not start then, as a vendor call nobody waits for.
            if abandoned.is_set():
                raise asyncio.CancelledError
            task = asyncio.current_task()
            if task is not None:
                running.append(task)
            inner_request = httpx.Request(method, url, headers=headers, content=body)
            response = await self._inner.handle_async_request(inner_request)
            content = await response.aread()
            return response.status_code, response.headers.raw, content

        future = self._loop.submit(call())
        try:
            status, raw_headers, content = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # A future already running on the other loop ignores `cancel()`: flag it, and cancel its task
            # there (the callback runs after `call` has either started, and registered, or not).
            abandoned.set()
            future.cancel()
            self._loop.call_soon(lambda: [task.cancel() for task in running])
            raise
        return httpx.Response(status, headers=raw_headers, content=content, request=request)
