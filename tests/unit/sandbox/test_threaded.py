"""`ThreadedASGITransport`: a request its caller gave up on never reaches an emulator that was busy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from app.sandbox.threaded import EmulatorLoop, ThreadedASGITransport


class Busy:
    """An ASGI app that counts requests; `/block` holds its loop on the CPU, like graphql-core does."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.seen.append(scope["path"])
        if scope["path"] == "/block":
            time.sleep(0.5)  # the point: the emulator's loop is busy
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_a_request_given_up_while_the_emulator_was_busy_never_reaches_it() -> None:
    app, loop = Busy(), EmulatorLoop("test-emulator")
    try:
        async with httpx.AsyncClient(transport=ThreadedASGITransport(app, loop), base_url="http://emulator") as c:
            busy = asyncio.create_task(c.get("/block"))
            await asyncio.sleep(0.1)  # the emulator is on the CPU now
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(c.get("/queued"), 0.1)
            assert (await busy).status_code == 200
            assert (await c.get("/after")).status_code == 200
        assert app.seen == ["/block", "/after"]
    finally:
        loop.close()
