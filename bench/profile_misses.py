"""Profile of the miss path: where a cache miss's time goes in the facade itself, from the ASGI call to
the vendor's answer and back, with the Waltero emulator in its own process on loopback (so its work is
not in the profile), the facade driven in-process with no client socket."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pyinstrument import Profiler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.backends.waltero.emulator import DEMO_PASSWORD, DEMO_USERNAME  # noqa: E402
from app.factory import create_app  # noqa: E402
from app.infra.config import Settings  # noqa: E402
from app.infra.logs import configure_logging  # noqa: E402
from bench.run import free_port  # noqa: E402

KEY = "profile-key"


async def _run(base: str, n: int) -> Profiler:
    configure_logging("WARNING", stream=open(os.devnull, "w"))
    settings = Settings(
        WALTERO_URL=base,
        WALTERO_USERNAME=DEMO_USERNAME,
        WALTERO_PASSWORD=DEMO_PASSWORD,
        FACADE_API_KEYS=KEY,
        FACADE_CHANGES_POLL=0,
    )
    app = create_app(settings)
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def scope(path: str, query: str) -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [(b"host", b"f"), (b"x-api-key", KEY.encode())],
            "http_version": "1.1",
            "scheme": "http",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 1),
            "root_path": "",
            "app": app,
            "state": {},
        }

    async with app.router.lifespan_context(app):
        meters = (await app.service.list_meters("waltero", 1, None)).value[0]
        meter = meters[0].id
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

        def query(i: int) -> str:
            t0 = now - timedelta(hours=10 + 24 * 7 * i)  # a week apart: every request is its own chunk
            return f"meter_id={meter}&start={t0:%Y-%m-%dT%H:%M:%SZ}&end={t0 + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"

        for i in range(20):  # warm: login, connections
            await app(scope("/readings", query(400 + i)), receive, send)
        profiler = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        for i in range(n):
            await app(scope("/readings", query(i)), receive, send)
        profiler.stop()
        statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
        assert set(statuses) == {200}, set(statuses)
    return profiler


def profile_misses(n: int = 300) -> str:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.backends.waltero.emulator", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/_sandbox/stats", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        profiler = asyncio.run(_run(base, n))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return str(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    print(profile_misses())
