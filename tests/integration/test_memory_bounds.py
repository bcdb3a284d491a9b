"""Memory is bounded by what the service decides, not by what a client asks: unknown parameters are
refused and make no cache entries, every cache stays inside its byte budget, and an oversized body is served unstored."""

from __future__ import annotations

from datetime import date, timedelta

from tests.support.apps import fake_app, running
from tests.support.fake_backend import FakeBackend

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
        assert responses.bytes <= app.settings.cache_bytes("responses")
        assert daily.bytes <= daily.max_bytes == app.settings.cache_bytes("daily")
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
