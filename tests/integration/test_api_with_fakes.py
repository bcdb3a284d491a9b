"""The whole HTTP surface against in-test fake backends (the vendor packages have their own tests)."""

import asyncio

import pytest

from app.infra.errors import UpstreamBadResponse, UpstreamRateLimited
from tests.support.apps import API_KEY, fake_app, running
from tests.support.clock import FakeClock
from tests.support.fake_backend import FakeBackend


@pytest.fixture
def fakes():
    return FakeBackend("iometer", meters=3, grain="meter"), FakeBackend("waltero", meters=4, changes=True)


@pytest.fixture
def clock():
    return FakeClock(1_779_000_000)  # 2026-05-17


async def test_client_auth(fakes, clock):
    app = fake_app({"iometer": fakes[0], "waltero": fakes[1]}, clock=clock)
    async with running(app, key=None) as c:
        r = await c.get("/meters")
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 401
        assert (await c.get("/meters", headers={"Authorization": f"Bearer {API_KEY}"})).status_code == 200
        assert (await c.get("/meters", headers={"Authorization": f"bearer {API_KEY}"})).status_code == 200
        assert (await c.get("/meters", headers={"X-API-Key": API_KEY})).status_code == 200
        assert (await c.get("/meters", headers={"X-API-Key": API_KEY + "x"})).status_code == 401
        assert (await c.get("/meters", headers={"Authorization": f"Basic {API_KEY}"})).status_code == 401
        for open_path in ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json"):
            assert (await c.get(open_path)).status_code == 200, open_path
        # a cached response is never served past the auth check
        assert (await c.get("/meters", headers={"X-API-Key": API_KEY})).headers["x-cache"] == "HIT"
        assert (await c.get("/meters")).status_code == 401


async def test_sandbox_or_anonymous_needs_no_key(fakes):
    app = fake_app({"iometer": fakes[0]}, FACADE_API_KEYS="", FACADE_ALLOW_ANONYMOUS=True)
    async with running(app, key=None) as c:
        assert (await c.get("/meters")).status_code == 200


async def test_meters_merge_sorted_and_paginate(fakes, clock):
    io, wa = fakes
    app = fake_app({"iometer": io, "waltero": wa}, clock=clock)
    async with running(app) as c:
        seen, cursor = [], None
        while True:
            r = await c.get("/meters", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200
            body = r.json()
            assert "errors" not in body
            seen += [m["id"] for m in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(seen)
        assert len(seen) == len(set(seen)) == 7
        assert io.calls["list_meters"] == 1
        assert wa.calls["list_meters"] == 1  # pages came from the cache
        only = (await c.get("/meters", params={"backend": "waltero"})).json()["items"]
        assert {m["backend"] for m in only} == {"waltero"}
        assert len(only) == 4
        # a cursor of one query is refused by another; a garbled one too
        first = (await c.get("/meters", params={"limit": 2})).json()["next_cursor"]
        for bad in (first + "x", "zzz", "a.b"):
            r = await c.get("/meters", params={"cursor": bad})
            assert r.status_code == 422
            assert r.json()["errors"][0]["field"] == "cursor"
        assert (await c.get("/meters", params={"backend": "waltero", "cursor": first})).status_code == 422


async def test_one_backend_failing_keeps_the_other(fakes, clock):
    io, wa = fakes
    wa.fail = UpstreamRateLimited("Waltero kept answering 429.", backend="waltero", retry_after=7)
    app = fake_app({"iometer": io, "waltero": wa}, clock=clock)
    async with running(app) as c:
        r = await c.get("/meters")
        assert r.status_code == 200
        body = r.json()
        assert {m["backend"] for m in body["items"]} == {"iometer"}
        assert body["errors"] == [
            {
                "backend": "waltero",
                "status": 503,
                "title": "Upstream rate limit",
                "detail": "Waltero kept answering 429.",
            }
        ]
        assert r.headers["cache-control"] == "private, max-age=0"
        daily = (await c.get("/consumption/daily", params={"start": "2026-05-10", "end": "2026-05-12"})).json()
        assert {row["meter_id"].split(":")[0] for row in daily["items"]} == {"iometer"}
        assert daily["errors"]
        io.fail = UpstreamBadResponse("IOmeter sent garbage.", backend="iometer")
        io_cache = app.service.caches["meters"]
        io_cache.clear()
        app.responses.clear()
        r = await c.get("/meters")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "7"
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["backend"] == "waltero"


async def test_etag_304_and_x_cache(fakes, clock):
    app = fake_app({"iometer": fakes[0], "waltero": fakes[1]}, clock=clock)
    meter = f"waltero:{fakes[1].meter_ids[0]}"
    async with running(app) as c:
        first = await c.get(f"/meters/{meter}")
        assert first.status_code == 200
        assert first.headers["x-cache"] == "MISS"
        assert first.headers["cache-control"] == "private, max-age=300"
        assert first.headers["age"] == "0"
        etag = first.headers["etag"]
        clock.advance(100)
        again = await c.get(f"/meters/{meter}")
        assert again.headers["x-cache"] == "HIT"
        assert again.headers["etag"] == etag
        assert again.headers["age"] == "100"
        assert again.headers["cache-control"] == "private, max-age=200"
        not_modified = await c.get(f"/meters/{meter}", headers={"If-None-Match": etag})
        assert not_modified.status_code == 304
        assert not_modified.content == b""
        assert (await c.get(f"/meters/{meter}", headers={"If-None-Match": '"other", ' + etag})).status_code == 304
        assert (await c.get(f"/meters/{meter}", headers={"If-None-Match": '"other"'})).status_code == 200
        clock.advance(201)
        expired = await c.get(f"/meters/{meter}")
        assert expired.headers["x-cache"] == "MISS"
        assert fakes[1].calls["get_meter"] == 2


async def test_readings_cursor_never_splits_or_repeats_a_timestamp(fakes, clock):
    io = fakes[0]
    app = fake_app({"iometer": io}, clock=clock)
    meter = f"iometer:{io.meter_ids[0]}"
    params = {"meter_id": meter, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T03:00:00+00:00"}
    async with running(app) as c:
        everything = (await c.get("/readings", params={**params, "limit": 1000})).json()
        assert len(everything["items"]) == 24
        assert everything["next_cursor"] is None
        pages, cursor = [], None
        while True:
            r = (
                await c.get("/readings", params={**params, "limit": 3, **({"cursor": cursor} if cursor else {})})
            ).json()
            pages += r["items"]
            cursor = r["next_cursor"]
            if not cursor:
                break
        assert pages == everything["items"]
        times = [row["time"] for row in pages]
        assert times == sorted(times)
        only_power = (await c.get("/readings", params={**params, "quantity": "power"})).json()["items"]
        assert {r["quantity"] for r in only_power} == {"power"}
        assert len(only_power) == 12


@pytest.mark.parametrize(
    "url, field",
    [
        ("/readings?meter_id=iometer:{m}&start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z", "end"),
        ("/readings?meter_id=iometer:{m}&start=yesterday", "start"),
        ("/readings?meter_id=iometer:{m}&start=2026-01-01T00:00:00Z&quantity=voltage", "quantity"),
        ("/readings?meter_id=nonsense&start=2026-01-01T00:00:00Z", "meter_id"),
        ("/readings?start=2026-01-01T00:00:00Z", "meter_id"),
        ("/readings?meter_id=iometer:{m}&start=2026-01-01T00:00:00Z&limit=0", "limit"),
        ("/meters?limit=1001", "limit"),
        ("/meters?backend=acme", "backend"),
        ("/consumption/daily?start=2026-01-01&end=2027-01-03", "end"),
        ("/consumption/daily?start=2026-01-02&end=2026-01-01", "end"),
        ("/consumption/daily?start=2026-1-1&end=2026-01-03", "start"),
        ("/consumption/daily?start=2026-01-01&end=2026-01-03&tz=Mars/Base", "tz"),
        ("/changes", "since"),
    ],
)
async def test_validation_problems_name_the_field(fakes, clock, url, field):
    app = fake_app({"iometer": fakes[0], "waltero": fakes[1]}, clock=clock)
    async with running(app) as c:
        r = await c.get(url.format(m=fakes[0].meter_ids[0]))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["status"] == 422
        assert body["type"]
        assert body["title"]
        assert body["detail"]
        assert field in [e["field"] for e in body["errors"]]


async def test_ids_are_checked_before_any_upstream_call(fakes, clock):
    io, wa = fakes
    app = fake_app({"iometer": io, "waltero": wa}, clock=clock)
    async with running(app) as c:
        for url in (
            "/meters/acme:123",
            "/meters/iometer:not-a-uuid",
            "/devices/waltero:1/status",
            "/meters/iometer:" + "a" * 36,
        ):
            r = await c.get(url)
            assert r.status_code == 404, url
            assert r.headers["content-type"] == "application/problem+json", url
        assert sum(io.calls.values()) + sum(wa.calls.values()) == 0
        missing = "iometer:00000000-0000-0000-0000-000000000000"
        assert (await c.get(f"/meters/{missing}")).status_code == 404
        assert (
            await c.get("/readings", params={"meter_id": missing, "start": "2026-01-01T00:00:00Z"})
        ).status_code == 404


async def test_changes_are_waltero_only(fakes, clock):
    io, wa = fakes
    app = fake_app({"iometer": io, "waltero": wa}, clock=clock)
    async with running(app) as c:
        r = await c.get("/changes", params={"since": "2026-01-01T00:00:00Z", "backend": "iometer"})
        assert r.status_code == 501
        assert r.json()["backend"] == "iometer"
        assert (await c.get("/changes", params={"since": "2026-01-01T00:00:00Z"})).status_code == 200
        backends = (await c.get("/backends")).json()["items"]
        caps = {b["name"]: b["capabilities"] for b in backends}
        assert "changes" in caps["waltero"]
        assert "changes" not in caps["iometer"]


async def test_daily_consumption_for_selected_meters_and_coalescing(fakes, clock):
    io, wa = fakes
    app = fake_app({"iometer": io, "waltero": wa}, clock=clock)
    async with running(app) as c:
        wa.gate = asyncio.Event()
        urls = [
            f"/consumption/daily?start=2026-03-28&end=2026-03-31&tz=Europe/Berlin&meter_id=waltero:{m}"
            for m in wa.meter_ids
        ]
        pending = [asyncio.create_task(c.get(u)) for u in urls * 5]
        await asyncio.sleep(0.05)
        wa.gate.set()
        answers = await asyncio.gather(*pending)
        assert all(a.status_code == 200 for a in answers)
        assert wa.calls["daily_consumption"] == 1  # 20 requests, 4 meters, one upstream call
        rows = answers[0].json()["items"]
        assert [r["date"] for r in rows] == ["2026-03-28", "2026-03-29", "2026-03-30"]
        assert [r["consumption"] for r in rows] == [12.0, 11.5, 12.0]  # the 23 h day
        unknown = await c.get(
            "/consumption/daily?start=2026-03-28&end=2026-03-29&meter_id=waltero:00000000-0000-0000-0000-000000000000"
        )
        assert unknown.status_code == 404


async def test_deadline_holds_and_metrics_use_templates(fakes, clock):
    io, wa = fakes
    app = fake_app({"iometer": io, "waltero": wa}, clock=clock, FACADE_REQUEST_DEADLINE=0.2)
    async with running(app) as c:
        wa.gate = asyncio.Event()  # never released: the vendor never answers
        r = await c.get(f"/devices/waltero:{wa.meter_ids[0]}/status")
        assert r.status_code == 504
        assert r.headers["content-type"] == "application/problem+json"
        await c.get(f"/devices/iometer:{io.meter_ids[0]}/status")
        text = (await c.get("/metrics")).text
        assert 'facade_http_requests_total{method="GET",route="/devices/{device_id}/status",status="504"} 1.0' in text
        assert io.meter_ids[0] not in text
        assert wa.meter_ids[0] not in text
        wa.gate.set()
