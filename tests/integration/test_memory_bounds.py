"""Memory is bounded by what the service decides, not by what a client asks: unknown parameters are
refused and make no cache entries, every cache stays inside its byte budget, and an oversized body is
served unstored."""

from __future__ import annotations

import asyncio
import os
from datetime import date, timedelta

import httpx

from app.core.caches import data_cache_bytes
from tests.support.apps import API_KEY, fake_app, running
from tests.support.fake_backend import FakeBackend
from tests.support.servers import RawConnection, rss_kib, serve_facade

MIB = 1024 * 1024


def year_from(day: date) -> dict[str, str]:
    return {"start": str(day), "end": str(day + timedelta(days=366)), "tz": "Europe/Berlin"}


async def test_the_junk_parameter_attack_makes_no_entries():
    app = fake_app({"waltero": FakeBackend("waltero", meters=6)})
    async with running(app) as c:
        first = await c.get("/consumption/daily", params=year_from(date(2025, 12, 1)))
        assert first.status_code == 200
        entries, size = len(app.responses), app.responses.bytes
        for i in range(1000):
            r = await c.get("/consumption/daily", params={**year_from(date(2025, 12, 1)), "junk": str(i)})
            assert r.status_code == 422
        assert (len(app.responses), app.responses.bytes) == (entries, size)
        daily = app.service.caches["daily"]
        assert len(daily) == 1


async def test_every_cache_stays_inside_its_byte_budget_under_distinct_valid_requests():
    app = fake_app({"waltero": FakeBackend("waltero", meters=3)}, FACADE_CACHE_MAX_BYTES=8 * MIB)
    async with running(app) as c:
        for i in range(120):
            r = await c.get("/consumption/daily", params=year_from(date(2024, 1, 1) + timedelta(days=i)))
            assert r.status_code == 200
        responses, daily = app.responses, app.service.caches["daily"]
        assert responses.bytes <= app.settings.responses_cache_bytes()
        assert daily.bytes <= daily.max_bytes == data_cache_bytes(app.settings, "daily")
        # a year of three meters is ~1,100 rows (~0.6 MB of rows): only a few fit, and the newest are the ones kept
        assert 0 < len(daily) < 40
        assert 0 < len(responses) < 40
        newest = await c.get("/consumption/daily", params=year_from(date(2024, 1, 1) + timedelta(days=119)))
        assert newest.headers["x-cache"] == "HIT"


async def test_a_body_over_the_per_entry_limit_is_served_but_not_stored():
    app = fake_app({"waltero": FakeBackend("waltero", meters=6)}, FACADE_CACHE_MAX_ENTRY_BYTES=64 * 1024)
    async with running(app) as c:
        big = await c.get("/consumption/daily", params=year_from(date(2025, 1, 1)))
        assert big.status_code == 200
        assert len(big.content) > 64 * 1024
        assert len(app.responses) == 0
        small = await c.get("/meters")
        assert small.status_code == 200
        assert len(app.responses) == 1


async def test_the_parsed_query_memo_holds_only_stored_answers_and_stays_inside_its_bytes():
    app = fake_app({"waltero": FakeBackend("waltero", meters=3)}, FACADE_CACHE_MAX_BYTES=1 * MIB)
    memo = app.responses._parsed
    async with running(app) as c:
        for i in range(300):  # misses and refusals: nothing memoised
            assert (await c.get("/meters", params={"serial_number": f"{i:064d}"})).status_code == 200
            assert (await c.get("/meters", params={"junk": "x" * 2000 + str(i)})).status_code == 422
        assert len(memo) == 0 and len(app.responses) > 0
        hits = app.hit_path.hits
        for i in range(300):  # hits of distinct stored answers: memoised, inside the memo's bytes
            assert (await c.get("/meters", params={"serial_number": f"{i:064d}"})).headers["x-cache"] in ("HIT", "MISS")
        assert app.hit_path.hits > hits
        assert 0 < len(memo) < 300
        assert memo.currsize <= memo.maxsize == max(64 * 1024, app.settings.responses_cache_bytes() // 16)
        assert app.responses.bytes <= app.settings.responses_cache_bytes()


def test_a_flood_of_junk_query_strings_leaves_memory_flat():
    """3,000 distinct 24 KB query strings, half on an open path and half on a keyed one, against the
    service as `make run` starts it: nothing a client sends is memoised, so RSS stays put."""

    async def flood(base: str, first: int, count: int) -> None:
        async def worker(lane: int) -> None:
            connection = await RawConnection.open(base)
            try:
                for i in range(first + lane, first + count, 4):
                    junk = os.urandom(12 * 1024).hex()  # 24 KB
                    path = "/healthz" if i % 2 else "/meters"
                    status, _, _ = await connection.get(f"{path}?j{i}={junk}", {"X-API-Key": API_KEY})
                    assert status < 500, (path, status)
            finally:
                await connection.close()

        await asyncio.wait_for(asyncio.gather(*(worker(lane) for lane in range(4))), timeout=300)

    with serve_facade({"FACADE_API_KEYS": API_KEY}) as (base, pid):
        assert httpx.get(f"{base}/meters", headers={"X-API-Key": API_KEY}).status_code == 200
        asyncio.run(flood(base, 0, 200))  # warm the allocator and the connections
        before = rss_kib(pid)
        asyncio.run(flood(base, 200, 3000))
        grown = (rss_kib(pid) - before) / 1024
        assert httpx.get(f"{base}/meters", headers={"X-API-Key": API_KEY}).headers["x-cache"] == "HIT"
    print(f"RSS grew {grown:.1f} MiB")
    assert grown < 40, f"RSS grew {grown:.1f} MiB"
