"""A request's work stops when its client disconnects.

uvicorn does not cancel an ASGI request when the client goes away: it only reports `http.disconnect`
to the next `receive()`, which a `GET` route never calls. So a client that gave up on a long
`/consumption` window used to leave its vendor calls running to the end (or to the request deadline).
Here a watcher task reads `receive()` while the request runs on in the server's task; when the client
disconnects, the request's task is cancelled (the cancellation is taken back once the request has
ended). Its cache loads see one waiter fewer, and a load with no waiter left is cancelled too
(`SingleFlightCache`), while a load another caller still waits for goes on. The watcher starts only
once the request first waits, so a request answered without waiting costs no task.

Only `GET` (and `HEAD`, which runs as one) is watched: those are the routes that call vendors, and none
reads a request body, so the watcher drops any body a client sends instead of buffering it. Whatever
the inner app reads gets an empty body, then `http.disconnect` once the client has gone. A request
ended this way is logged with status 499 (the client closed the request; nothing was sent).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.infra.context import Answered, answer_of, request_info

CLIENT_CLOSED = 499
"""The status recorded (never sent) for a request whose client disconnected before the answer."""

_WATCHED = frozenset({"GET", "HEAD"})


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inner = answer_of(app)

    def answer(self, scope: Scope) -> Answered | None:
        """The layer below's stored answer: a stored answer is sent at once, with nothing to cancel."""
        return self._inner.answer(scope) if self._inner is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        if scope["type"] != "http" or scope["method"] not in _WATCHED or task is None:
            await self.app(scope, receive, send)
            return
        watch = _Watch(receive, task)
        # The watcher starts on the loop's next turn: a request that ends without ever waiting (no
        # vendor call) never starts one; a request that waits has it from its first wait on.
        handle = asyncio.get_running_loop().call_soon(watch.start)
        try:
            await self.app(scope, watch.receive, send)
        except asyncio.CancelledError:
            request_info(scope).status = CLIENT_CLOSED  # the work was not done
            if not watch.left:
                raise  # not the client's leaving: the server is stopping
        finally:
            handle.cancel()
            watch.stop()
            if watch.left:
                task.uncancel()  # the request is over: its server task carries on as after any answer
        if watch.left and task.cancelling():
            raise asyncio.CancelledError  # someone else cancelled it too: the server is stopping


class _Watch:
    """For one request: reads `receive()` in a task of its own and, when the client disconnects while
    the request is under way, cancels the request's task (once)."""

    __slots__ = ("_body_read", "_gone", "_over", "_receive", "_task", "_watcher", "left")

    def __init__(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        self._receive = receive
        self._task = task
        self._watcher: asyncio.Task[None] | None = None
        self._gone: asyncio.Event | None = None
        self._body_read = False
        self._over = False
        self.left = False
        """The client disconnected while the request was under way, and its task was cancelled."""

    def start(self) -> None:
        if not self._over:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        """The request is over: stop watching, and never cancel it from now on."""
        self._over = True
        if self._watcher is not None:
            self._watcher.cancel()

    async def _watch(self) -> None:
        with contextlib.suppress(OSError):  # a connection that cannot be read is gone too
            while (await self._receive())["type"] != "http.disconnect":
                pass  # a GET body: nobody reads it, so it is dropped here
        self._event().set()
        if not self._over:
            self.left = True
            self._task.cancel()

    def _event(self) -> asyncio.Event:
        if self._gone is None:
            self._gone = asyncio.Event()
        return self._gone

    async def receive(self) -> Message:
        """What the request's app reads: an empty body, then `http.disconnect` once the client has gone."""
        if not self._body_read:
            self._body_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._event().wait()
        return {"type": "http.disconnect"}
