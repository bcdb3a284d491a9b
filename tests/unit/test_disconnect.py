"""`CancelOnDisconnect` at the ASGI level: a client leaving cancels the request's work (499), never the
caller's task, and a server stopping the request is never swallowed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.api.middleware.disconnect import CLIENT_CLOSED, CancelOnDisconnect
from app.infra.context import request_info


def scope(method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/readings", "headers": []}


class Client:
    """A server's `receive`/`send` for one request: the empty body, then `http.disconnect` once
    `leave()` is called."""

    def __init__(self) -> None:
        self.reads = 0
        self.sent: list[dict[str, Any]] = []
        self._left = asyncio.Event()

    def leave(self) -> None:
        self._left.set()

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        if self.reads == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def answer(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_client_that_leaves_cancels_the_work_and_is_recorded_as_499() -> None:
    reached: list[str] = []
    vendor = asyncio.Event()  # never set: the vendor is slow

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append("vendor")
        try:
            await vendor.wait()
        except asyncio.CancelledError:
            reached.append("cancelled")
            raise
        reached.append("answered")

    client = Client()
    s = scope()
    request = asyncio.ensure_future(CancelOnDisconnect(app)(s, client.receive, client.send))
    for _ in range(5):
        await asyncio.sleep(0)
    assert reached == ["vendor"]
    client.leave()
    await asyncio.wait_for(request, 5)
    assert reached == ["vendor", "cancelled"]
    assert request_info(s).status == CLIENT_CLOSED
    assert client.sent == []


async def test_the_callers_task_is_not_left_cancelled_after_a_disconnect() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    client = Client()
    asyncio.get_running_loop().call_later(0.01, client.leave)
    await CancelOnDisconnect(app)(scope(), client.receive, client.send)
    me = asyncio.current_task()
    assert me is not None
    assert me.cancelling() == 0
    await asyncio.sleep(0.01)  # the server's task carries on (a cancellation left pending would raise here)
    async with asyncio.timeout(1):  # and its own timeouts still work
        await asyncio.sleep(0)


async def test_the_app_reads_the_body_then_the_disconnect() -> None:
    seen: list[dict[str, Any]] = []
    listeners: list[asyncio.Task[None]] = []

    async def listen(receive: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # like a streaming answer's listener for the client's leaving, in a task of its own
        listeners.append(asyncio.create_task(listen(receive)))
        await asyncio.Event().wait()

    client = Client()
    asyncio.get_running_loop().call_later(0.01, client.leave)
    await CancelOnDisconnect(app)(scope(), client.receive, client.send)
    await asyncio.wait_for(listeners[0], 5)
    assert seen == [{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}]


async def test_a_server_stopping_still_cancels_the_request() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    client = Client()
    s = scope()
    request = asyncio.ensure_future(CancelOnDisconnect(app)(s, client.receive, client.send))
    await asyncio.sleep(0.01)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert request_info(s).status == CLIENT_CLOSED


async def test_a_server_stopping_after_the_client_left_is_not_swallowed() -> None:
    stop = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await stop.wait()  # cleanup that waits: the server stops meanwhile

    client = Client()
    request = asyncio.ensure_future(CancelOnDisconnect(app)(scope(), client.receive, client.send))
    await asyncio.sleep(0.01)
    client.leave()
    await asyncio.sleep(0.01)
    request.cancel()  # the server stops
    stop.set()
    with pytest.raises(asyncio.CancelledError):
        await request


async def test_other_methods_are_not_watched() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.01)
        assert (await receive())["type"] == "http.request"
        await answer(send)

    client = Client()
    await CancelOnDisconnect(app)(scope("POST"), client.receive, client.send)
    assert client.reads == 1  # only the app's own read
