"""Memory per `/consumption` request is bounded by its page, not its window (real processes).

`make run`'s sandbox (both emulators in the process) runs as its own uvicorn process on a loopback port;
its RSS is read from /proc every 20 ms while clients ask for quarter-hours over 31 days of every sandbox
meter (~68,000 rows): four walking every page at once, then eight streaming the whole window as NDJSON at
once. One unpaged answer of that window used to add ~100 MiB on its own, eight NDJSON exports 260 MiB.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bench.ndjson_export import _Sampler, _status
from bench.run import free_port, server

MIB = 1024 * 1024
KEY = "memory-test-key-0123456789abcdef"
SANDBOX_ROWS = 68_000  # the sandbox meters' quarter-hours over 31 days: a little more than this


@pytest.fixture(scope="module")
def facade() -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))}
    env.update(
        {
            "FACADE_SANDBOX": "true",
            "FACADE_API_KEYS": KEY,
            "FACADE_CHANGES_POLL": "0",
            "FACADE_REQUEST_DEADLINE": "120",
            "FACADE_LOG_LEVEL": "WARNING",
        }
    )
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with server([*argv, "--no-access-log"], f"http://127.0.0.1:{port}/healthz", env, cpu=None, startup=60) as pid:
        url = f"http://127.0.0.1:{port}"
        warm_up(url)
        yield url, pid


def window(days: int, before: int = 0) -> dict[str, Any]:
    """Quarter-hours over `days` days that end `before` days before yesterday."""
    end = datetime.now(UTC).date() - timedelta(days=1 + before)
    return {"resolution": "15min", "start": str(end - timedelta(days=days)), "end": str(end)}


async def every_page(client: httpx.AsyncClient, params: dict[str, Any]) -> int:
    """Rows of every page of `params`, following `next_cursor` (and checking `Link` agrees)."""
    rows = 0
    for _ in range(200):
        r = await client.get("/consumption", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        rows += len(body["items"])
        if body["next_cursor"] is None:
            assert "link" not in r.headers
            return rows
        assert r.headers["link"].endswith('>; rel="next"')
        params = {**params, "cursor": body["next_cursor"]}
    raise AssertionError("more than 200 pages")


async def export(client: httpx.AsyncClient, params: dict[str, Any]) -> int:
    rows = 0
    async with client.stream("GET", "/consumption", params=params, headers={"Accept": "application/x-ndjson"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        async for line in r.aiter_lines():
            if line:
                assert "error" not in json.loads(line), line
                rows += 1
    return rows


def peak_growth(pid: int, work: Any) -> tuple[list[int], float]:
    """Run the coroutine `work()` against the facade; (its result, peak RSS growth in MiB)."""
    before = _status(pid)["VmRSS"]
    sampler = _Sampler(pid)
    sampler.start()
    try:
        result = asyncio.run(work())
    finally:
        sampler.stop.set()
        sampler.join()
    return result, max(sampler.peak, _status(pid)["VmRSS"]) - before


def client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=300)


def warm_up(url: str) -> None:
    """The same code paths over the 31 days before the measured window: imports, pools and first
    allocations are made, and every cache is filled up to its byte budget (`FACADE_CACHE_MAX_BYTES`,
    48 MiB, bounded on its own in test_memory_bounds.py), so what is measured is what requests hold."""

    async def once() -> None:
        async with client(url) as c:
            assert await every_page(c, {**window(31, before=31), "limit": 3000}) > SANDBOX_ROWS
            assert await export(c, window(1, before=31)) > 0

    asyncio.run(once())


def test_four_clients_paging_31_days_of_quarter_hours_grow_rss_under_60_mib(facade: tuple[str, int]) -> None:
    url, pid = facade

    async def four() -> list[int]:
        async with client(url) as c:
            return list(await asyncio.gather(*(every_page(c, {**window(31), "limit": 3000}) for _ in range(4))))

    rows, growth = peak_growth(pid, four)
    assert all(n == rows[0] for n in rows)
    assert rows[0] > SANDBOX_ROWS  # every page of the whole window was served
    assert growth < 60, growth


def test_eight_concurrent_ndjson_exports_of_the_window_grow_rss_under_100_mib(facade: tuple[str, int]) -> None:
    url, pid = facade

    async def eight() -> list[int]:
        async with client(url) as c:
            return list(await asyncio.gather(*(export(c, window(31)) for _ in range(8))))

    rows, growth = peak_growth(pid, eight)
    assert all(n == rows[0] > SANDBOX_ROWS for n in rows)  # the whole window, not a page
    assert growth < 100, growth
