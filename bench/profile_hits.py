"""Profile of the hit path: where a warm cache hit's time goes, through the whole middleware stack
(request id, metrics, access log, API key, response cache), driven in-process with no socket so the
profile shows the service's own cost."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from pyinstrument import Profiler

from app.factory import create_app
from app.infra.config import Settings
from app.infra.logs import configure_logging

KEY = "profile-key"


async def _run(n: int) -> Profiler:
    configure_logging("INFO", stream=open(os.devnull, "w"))
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0, FACADE_API_KEYS=KEY))
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with app.router.lifespan_context(app):
        meters = app.service
        page = await meters.list_meters("iometer", 1, None)
        path = f"/meters/{page.value[0][0].id}"

        def scope() -> dict[str, Any]:
            return {
                "type": "http",
                "method": "GET",
                "path": path,
                "raw_path": path.encode(),
                "query_string": b"",
                "headers": [(b"host", b"f"), (b"x-api-key", KEY.encode())],
                "http_version": "1.1",
                "scheme": "http",
                "server": ("127.0.0.1", 8000),
                "client": ("127.0.0.1", 1),
                "root_path": "",
                "app": app,
                "state": {},
            }

        await app(scope(), receive, send)  # miss: fills the cache
        await app(scope(), receive, send)
        assert any(
            h == (b"x-cache", b"HIT") for m in sent[-2:] if m["type"] == "http.response.start" for h in m["headers"]
        )
        profiler = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        for _ in range(n):
            await app(scope(), receive, send)
            sent.clear()
        profiler.stop()
    logging.getLogger().handlers.clear()
    return profiler


def profile(n: int = 20000) -> str:
    profiler = asyncio.run(_run(n))
    return str(profiler.output_text(unicode=False, color=False, show_all=False, time="percent_of_total"))


if __name__ == "__main__":
    print(profile())
