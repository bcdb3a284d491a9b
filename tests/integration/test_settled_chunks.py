"""Settled readings chunks live long: a chunk that ended `FACADE_SETTLE_AGE` ago is kept for
`FACADE_TTL_SETTLED` when its vendor has no correction feed, and until a correction evicts it when the
feed is polled; a recent chunk keeps the short lifetimes. Driven over HTTP with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.apps import fake_app, running
from tests.support.clock import FakeClock
from tests.support.fake_backend import FakeBackend

HOUR = 3600.0
DAY = 86400.0


def _window(clock: FakeClock, days_ago: float) -> str:
    end = datetime.fromtimestamp(clock() - days_ago * DAY, UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=2)
    return f"start={start:%Y-%m-%dT%H:%M:%SZ}&end={end:%Y-%m-%dT%H:%M:%SZ}"


async def test_a_settled_chunk_outlives_the_past_ttl_and_a_recent_one_does_not():
    clock = FakeClock()
    io = FakeBackend("iometer")
    app = fake_app(
        {"iometer": io},
        clock=clock,
        FACADE_TTL_PAST=HOUR,
        FACADE_SETTLE_AGE=3 * DAY,
        FACADE_TTL_SETTLED=7 * DAY,
    )
    meter = f"iometer:{io.meter_ids[0]}"
    async with running(app) as c:
        old, recent = _window(clock, 10), _window(clock, 1.5)
        for query in (old, recent):
            assert (await c.get(f"/readings?meter_id={meter}&{query}")).status_code == 200
        assert io.calls["readings"] == 2

        clock.advance(2 * HOUR)  # past FACADE_TTL_PAST: the recent chunk is read again, the settled one not
        for query in (old, recent):
            assert (await c.get(f"/readings?meter_id={meter}&{query}")).status_code == 200
        assert io.calls["readings"] == 3

        clock.advance(7 * DAY)  # past FACADE_TTL_SETTLED (no correction feed): read again
        assert (await c.get(f"/readings?meter_id={meter}&{old}")).status_code == 200
        assert io.calls["readings"] == 4


async def test_with_a_correction_feed_a_settled_chunk_lives_until_a_correction_evicts_it():
    clock = FakeClock()
    wa = FakeBackend("waltero", changes=True)
    app = fake_app(
        {"waltero": wa},
        clock=clock,
        FACADE_TTL_PAST=HOUR,
        FACADE_TTL_SETTLED=7 * DAY,
        FACADE_CHANGES_POLL=3600,
    )
    meter = f"waltero:{wa.meter_ids[0]}"
    async with running(app) as c:
        old = _window(clock, 10)
        assert (await c.get(f"/readings?meter_id={meter}&{old}")).status_code == 200
        clock.advance(30 * DAY)  # far past FACADE_TTL_SETTLED: still the cached chunk
        assert (await c.get(f"/readings?meter_id={meter}&{old}")).status_code == 200
        assert wa.calls["readings"] == 1
        assert app.service.caches["readings"].evict_tagged({meter}) == 1  # what a correction of the meter does
        assert (await c.get(f"/readings?meter_id={meter}&{old}")).status_code == 200
        assert wa.calls["readings"] == 2


async def test_ttl_past_zero_still_caches_nothing_however_old():
    clock = FakeClock()
    io = FakeBackend("iometer")
    app = fake_app({"iometer": io}, clock=clock, FACADE_TTL_PAST=0, FACADE_TTL_RECENT=0)
    meter = f"iometer:{io.meter_ids[0]}"
    async with running(app) as c:
        old = _window(clock, 30)
        for _ in range(2):
            assert (await c.get(f"/readings?meter_id={meter}&{old}")).status_code == 200
    assert io.calls["readings"] == 2
