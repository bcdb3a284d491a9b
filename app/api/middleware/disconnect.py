"""A request's work stops when its client disconnects.

uvicorn does not cancel an ASGI request when the client goes away: it only reports `http.disconnect`
to the next `receive()`, which a `GET` route never calls. So a client that gave up on a long
`/consumption` window used to leave its vendor calls running to the end (or to the request deadline).
Here the request runs in its own task while a watcher reads `receive()`; when the client disconnects,
the task is cancelled. Its cache loads see one waiter fewer, and a load with no waiter left is
cancelled too (`SingleFlightCache`), while a load another caller still waits for goes on.

Only `GET` (and `HEAD`, which runs as one) is watched: those are the routes that call vendors, and none
reads a request body, so the watcher drops any body a client sends instead of buffering it. Whatever
the inner app reads gets an empty body, then `http.disconnect` once the client has gone. A request
ended this way is logged with status 499 (the client closed the request; nothing was sent).
"""

from __future__ import annotations

import asyncio
import contextlib

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
        if scope["type"] != "http" or scope["method"] not in _WATCHED:
            await self.app(scope, receive, send)
            return
        gone = asyncio.Event()
        body_read = False

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass  # a GET body: nobody reads it, so it is dropped here
            gone.set()

        async def inner_receive() -> Message:
            nonlocal body_read
            if not body_read:
                body_read = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        work = asyncio.ensure_future(self.app(scope, inner_receive, send))
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done():  # the client has gone (or the server is stopping): stop its work
                work.cancel()
                request_info(scope).status = CLIENT_CLOSED
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        try:
            await work  # re-raises what the app raised; a cancelled one is over
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the server is stopping this request too (e.g. while the app cleaned up)
