"""Caching headers say exactly what happened (docs/api-guide.md "Caching headers"): `Vary: Accept`
wherever the body depends on `Accept` (hits and 304s included), `Age` 0 on every `MISS`, and a window
entirely in the past fresh for `FACADE_TTL_PAST` at every resolution."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from app.factory import create_app
from app.infra.config import Settings
from tests.support.apps import fake_app, running
from tests.support.clock import FakeClock
from tests.support.fake_backend import FakeBackend

BERLIN = ZoneInfo("Europe/Berlin")


def max_age(response) -> int:  # type: ignore[no-untyped-def]
    found = re.fullmatch(r"private, max-age=(\d+)", response.headers["cache-control"])
    assert found, response.headers["cache-control"]
    return int(found.group(1))


async def test_every_negotiated_answer_varies_on_accept_hits_and_304s_included():
    clock = FakeClock()
    app = fake_app({"iometer": FakeBackend("iometer", meters=3), "waltero": FakeBackend("waltero", meters=2)}, clock)
    async with running(app) as c:
        miss = await c.get("/meters")
        assert miss.headers["x-cache"] == "MISS"
        assert miss.headers["vary"] == "Accept"
        hit = await c.get("/meters")
        assert hit.headers["x-cache"] == "HIT"  # answered by the hit path from stored bytes
        assert hit.headers["vary"] == "Accept"
        revalidated = await c.get("/meters", headers={"If-None-Match": hit.headers["etag"]})
        assert revalidated.status_code == 304
        assert revalidated.headers["vary"] == "Accept"
        as_csv = await c.get("/meters", headers={"Accept": "text/csv"})
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert as_csv.headers["vary"] == "Accept"
        csv_304 = await c.get("/meters", headers={"Accept": "text/csv", "If-None-Match": as_csv.headers["etag"]})
        assert csv_304.status_code == 304
        assert csv_304.headers["vary"] == "Accept"
        as_ndjson = await c.get("/meters", headers={"Accept": "application/x-ndjson"})
        assert as_ndjson.headers["vary"] == "Accept"
        assert len(as_ndjson.text.splitlines()) == 5
        meter = miss.json()["items"][0]["id"]
        readings = await c.get("/readings", params={"meter_id": meter, "start": "2026-05-10T00:00:00Z"})
        assert readings.headers["vary"] == "Accept"
        daily = await c.get("/consumption/daily", params={"start": "2026-05-10", "end": "2026-05-12"})
        assert daily.status_code == 200, daily.text
        assert daily.headers["vary"] == "Accept"
        # one meter's body never depends on Accept: no Vary
        one = await c.get(f"/meters/{meter}")
        assert one.status_code == 200
        assert "vary" not in one.headers


async def test_a_miss_is_zero_seconds_old_and_a_partly_cached_answer_is_a_hit_with_its_oldest_age():
    clock = FakeClock()
    app = fake_app({"iometer": FakeBackend("iometer", meters=3), "waltero": FakeBackend("waltero", meters=2)}, clock)
    async with running(app) as c:
        first = await c.get("/meters", params={"backend": "iometer"})
        assert (first.headers["x-cache"], first.headers["age"]) == ("MISS", "0")
        clock.advance(200)
        both = await c.get("/meters")  # waltero fetched now, iometer from its 200 s old cache entry
        assert (both.headers["x-cache"], both.headers["age"]) == ("HIT", "200")
        assert max_age(both) == 100  # the older part's freshness (meters: 300 s)
        clock.advance(301)  # both parts' entries expired: everything fetched again
        again = await c.get("/meters")
        assert (again.headers["x-cache"], again.headers["age"]) == ("MISS", "0")
        assert max_age(again) == 300


def last_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(BERLIN).date(), datetime.min.time(), BERLIN)


async def test_a_window_that_ended_is_fresh_an_hour_at_every_resolution_and_one_reaching_now_a_minute():
    # a fixed instant mid-afternoon in Berlin: last local midnight lies inside the chunks that reach now
    # (IOmeter: the UTC day; Waltero: the week), which live one minute. IOmeter uploads late, so its
    # windows settle `IOMETER_LATE_WINDOW` (48 h) after their end: its "past" window ends 3 days ago,
    # and one that ended at last midnight is still fresh only a minute.
    clock = FakeClock(datetime(2026, 11, 18, 15, 30, tzinfo=BERLIN))
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0), clock=clock)
    midnight = last_midnight(datetime.fromtimestamp(clock(), BERLIN))
    today = midnight.date()
    async with running(app, key=None) as c:
        meters = (await c.get("/meters")).json()["items"]
        for meter in (meters[0]["id"], meters[-1]["id"]):  # one of each vendor (ids sort by vendor)
            settle = timedelta(days=3) if meter.startswith("iometer:") else timedelta(0)
            ended = midnight - settle
            past = {
                "meter_id": meter,
                "start": (ended.date() - timedelta(days=1)).isoformat(),
                "end": ended.date().isoformat(),
            }
            for resolution in ("15min", "hour", "day", "month"):
                r = await c.get("/consumption", params={**past, "resolution": resolution, "tz": "Europe/Berlin"})
                assert r.status_code == 200, r.text
                assert r.json()["items"], (meter, resolution)
                assert max_age(r) == 3600, (meter, resolution, r.headers["cache-control"])
                ongoing = {**past, "end": (today + timedelta(days=1)).isoformat()}
                r = await c.get("/consumption", params={**ongoing, "resolution": resolution, "tz": "Europe/Berlin"})
                assert r.status_code == 200, r.text
                assert max_age(r) <= 60, (meter, resolution)
            daily = await c.get("/consumption/daily", params={**past, "tz": "Europe/Berlin"})
            assert max_age(daily) == 3600
            window = {
                "meter_id": meter,
                "start": (ended - timedelta(hours=3)).isoformat(),
                "end": ended.isoformat(),
            }
            r = await c.get("/readings", params=window)
            assert r.status_code == 200, r.text
            assert r.json()["items"]
            assert max_age(r) == 3600, (meter, r.headers["cache-control"])
            recent = (midnight - timedelta(hours=3)).isoformat()
            r = await c.get("/readings", params={"meter_id": meter, "start": recent})  # one page, up to now
            assert max_age(r) <= 60
        # IOmeter's yesterday has not settled: a late upload may still change it
        iometer = meters[0]["id"]
        yesterday = {"meter_id": iometer, "start": (today - timedelta(days=1)).isoformat(), "end": today.isoformat()}
        r = await c.get("/consumption", params={**yesterday, "resolution": "hour", "tz": "Europe/Berlin"})
        assert max_age(r) <= 60
        r = await c.get("/consumption/daily", params={**yesterday, "tz": "Europe/Berlin"})
        assert max_age(r) <= 60
