"""Profile of the hit path: where a warm cache hit's time goes, through the whole middleware stack
(request id, metrics, access log, API key, response cache), driven in-process with no socket so the
profile shows the service's own cost."""

from __future__ import annotations

import asyncio
import logging
import os

from pyinstrument import Profiler

from app.factory import create_app
from app.infra.config import Settings
from app.infra.logs import configure_logging
from bench.asgi import InProcess

KEY = "profile-key"


async def _run(n: int) -> Profiler:
    configure_logging("INFO", stream=open(os.devnull, "w"))
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0, FACADE_API_KEYS=KEY), freeze_gc=True)
    client = InProcess(app, KEY)

    async with app.router.lifespan_context(app):
        meters = app.service
        page = await meters.list_meters("iometer", 1, None)
        path = f"/meters/{page.value[0][0].id}"

        await client.get(path)  # miss: fills the cache
        _, headers, _ = await client.get(path)
        assert (b"x-cache", b"HIT") in headers
        profiler = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        for _ in range(n):
            await client.call(path)
            client.sent.clear()
        profiler.stop()
    logging.getLogger().handlers.clear()
    return profiler


def profile(n: int = 20000) -> str:
    profiler = asyncio.run(_run(n))
    return str(profiler.output_text(unicode=False, color=False, show_all=False, time="percent_of_total"))


if __name__ == "__main__":
    print(profile())
