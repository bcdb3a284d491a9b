"""Clients that leave stop their vendor work: `make run`'s sandbox (the emulators on a loop of their own,
like remote vendors, their request counters read in-process) behind a real uvicorn on a loopback port,
and clients that close their socket 0.3 s after sending a request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.factory import create_app
from app.infra.config import Settings
from tests.support.servers import serve_in_thread


@pytest.fixture
def stack() -> Iterator[tuple[str, Mapping[str, Any]]]:
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))
    with serve_in_thread(app) as url:
        yield url, app.emulators


def vendor_calls(emulators: Mapping[str, Any]) -> int:
    """Requests every emulator has received (logins included)."""
    return sum(e.stats["requests"] for e in emulators.values() if hasattr(e, "stats"))


async def give_up(url: str, params: dict[str, str], leave: float | asyncio.Event) -> None:
    """Send `GET /consumption?params`, and close the connection without an answer after `leave`
    seconds (or once the event `leave` is set)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /consumption?{httpx.QueryParams(params)} HTTP/1.1\r\nHost: facade\r\n\r\n".encode())
    await writer.drain()
    answer = asyncio.ensure_future(reader.read(1))
    waited = asyncio.ensure_future(asyncio.sleep(leave) if isinstance(leave, float) else leave.wait())
    done, _ = await asyncio.wait((answer, waited), return_when=asyncio.FIRST_COMPLETED)
    answer.cancel()
    waited.cancel()
    assert answer not in done, "answered before the client left"
    writer.close()
    await writer.wait_closed()


async def settle(emulators: Mapping[str, Any], seconds: float) -> int:
    """Vendor calls made during the next `seconds`."""
    before = vendor_calls(emulators)
    await asyncio.sleep(seconds)
    return vendor_calls(emulators) - before


async def test_month_windows_whose_clients_left_stop_calling_vendors(stack: tuple[str, Mapping[str, Any]]) -> None:
    url, emulators = stack
    today = datetime.now(UTC).date()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        assert (await client.get("/meters")).status_code == 200  # logins and listings done
        # eight year-long month windows, each a different one (no sharing between them)
        windows = [
            {
                "resolution": "month",
                "start": str(today - timedelta(days=365 + i)),
                "end": str(today - timedelta(days=i)),
            }
            for i in range(8)
        ]
        started = vendor_calls(emulators)
        leave = asyncio.Event()
        clients = asyncio.gather(*(give_up(url, w, leave) for w in windows))
        await asyncio.sleep(0.3)
        for _ in range(100):  # on a loaded machine the requests may take longer to reach a vendor
            if vendor_calls(emulators) > started:
                break
            await asyncio.sleep(0.1)
        assert vendor_calls(emulators) > started  # they had started their vendor work
        leave.set()
        await clients
        assert await settle(emulators, 4.0) <= 2
        # and it still answers
        short = {"resolution": "month", "start": str(today - timedelta(days=20)), "end": str(today)}
        again = await client.get("/consumption", params={**short, "backend": "waltero"})
        assert again.status_code == 200
        assert again.json()["items"]


async def test_a_load_still_wanted_by_a_caller_is_not_cancelled_when_another_leaves(
    stack: tuple[str, Mapping[str, Any]],
) -> None:
    url, _ = stack
    start = datetime.now(UTC).date() - timedelta(days=60)
    window = {"resolution": "month", "start": str(start), "end": str(start + timedelta(days=40))}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        patient = asyncio.create_task(client.get("/consumption", params={**window, "limit": 3000}))
        await give_up(url, {**window, "limit": 3000}, 0.3)
        answered = await patient
        assert answered.status_code == 200
        alone = await client.get("/consumption", params={**window, "limit": 3000})
        assert alone.json()["items"] == answered.json()["items"]


async def test_a_disconnect_is_counted_as_499_not_as_a_server_error(stack: tuple[str, Mapping[str, Any]]) -> None:
    url, _ = stack
    day = date.today() - timedelta(days=30)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await give_up(url, {"resolution": "month", "start": str(day), "end": str(day + timedelta(days=20))}, 0.05)
        await asyncio.sleep(0.3)
        metrics = (await client.get("/metrics")).text
    lines = [line for line in metrics.splitlines() if line.startswith("facade_http_requests_total{")]
    consumption = [line for line in lines if 'route="/consumption"' in line]
    assert any('status="499"' in line and not line.endswith(" 0.0") for line in consumption), consumption
    assert not any('status="500"' in line for line in consumption), consumption
