"""Both socket layers under the httpx client talk to a vendor over a real socket: the default
(`aiohttp`, httpx-aiohttp's AiohttpTransport) and httpx's own, with auth, retries and errors alike."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.backends.waltero.emulator import DEMO_PASSWORD, DEMO_USERNAME
from app.factory import create_app
from app.infra.config import Settings
from tests.support.apps import API_KEY, running
from tests.support.servers import PYTHON, free_port, serve_process


@pytest.fixture(scope="module")
def vendor() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serve_process([PYTHON, "-m", "app.backends.waltero.emulator", "--port", str(port)], f"{url}/_sandbox/stats"):
        yield url


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_each_transport_logs_in_reads_and_maps_errors(vendor, transport):
    settings = Settings(
        WALTERO_URL=vendor,
        WALTERO_USERNAME=DEMO_USERNAME,
        WALTERO_PASSWORD=DEMO_PASSWORD,
        FACADE_API_KEYS=API_KEY,
        FACADE_CHANGES_POLL=0,
        FACADE_UPSTREAM_TRANSPORT=transport,
    )
    async with running(create_app(settings)) as c:
        meters = await c.get("/meters")
        assert meters.status_code == 200
        assert len(meters.json()["items"]) > 1
        httpx.put(f"{vendor}/_sandbox/faults", json={"fail_next": [500, 500, 500, 500]}, timeout=5)
        try:
            broken = await c.get(f"/devices/{meters.json()['items'][0]['device_id']}/status")
        finally:
            httpx.post(f"{vendor}/_sandbox/reset", timeout=5)
        assert broken.status_code == 502
        assert broken.headers["content-type"] == "application/problem+json"
