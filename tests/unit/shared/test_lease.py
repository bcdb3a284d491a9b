import asyncio
from datetime import UTC, datetime

import pytest

from app.core.corrections import encode_mark
from app.core.fleet import SharedWatermarks
from app.shared.lease import LeaderLease, SharedWatermark
from tests.support.clock import FakeClock


async def test_one_leader_and_a_takeover_when_it_dies(make_tier):
    clock = FakeClock()
    a = LeaderLease(await make_tier(), "corrections", ttl=0.3, clock=clock)
    b = LeaderLease(await make_tier(), "corrections", ttl=0.3, clock=clock)
    assert (await a.acquire_or_renew(), await b.acquire_or_renew()) == (True, False)
    assert (a.is_leader, b.is_leader) == (True, False)
    wa, wb = SharedWatermark(a, "corrections"), SharedWatermark(b, "corrections")
    assert await wa.set("2026-05-19T06:00:00Z|id-1") is True
    assert await wb.set("1999-01-01T00:00:00Z|x") is False  # only the holder moves it
    assert await wb.get() == "2026-05-19T06:00:00Z|id-1"

    # a renews within its ttl and keeps it ...
    await asyncio.sleep(0.15)
    assert await a.acquire_or_renew() is True
    await asyncio.sleep(0.2)
    assert await b.acquire_or_renew() is False
    # ... then a dies (stops renewing): its lease expires in Redis and b takes over.
    await asyncio.sleep(0.35)
    assert await b.acquire_or_renew() is True
    assert b.is_leader is True
    assert await wa.set("fenced") is False  # a stale leader cannot move the watermark
    assert await wb.get() == "2026-05-19T06:00:00Z|id-1"  # the watermark survived the change of leader


async def test_release_hands_over_at_once(make_tier):
    clock = FakeClock()
    a = LeaderLease(await make_tier(), "p", ttl=30, clock=clock)
    b = LeaderLease(await make_tier(), "p", ttl=30, clock=clock)
    assert await a.acquire_or_renew() is True
    await a.release()
    assert await b.acquire_or_renew() is True


async def test_keep_runs_in_the_background(make_tier):
    clock = FakeClock()
    a = LeaderLease(await make_tier(), "k", ttl=0.3, clock=clock)
    task = asyncio.create_task(a.keep())
    try:
        await asyncio.sleep(0.5)
        assert a.is_leader is True
        assert await a.tier.client.get(a.key) == a.holder.encode()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it kills or pauses the server
async def test_nobody_knows_when_redis_is_down(make_tier, redis_server):
    clock = FakeClock()
    a = LeaderLease(await make_tier(), "d", ttl=30, clock=clock)
    assert await a.acquire_or_renew() is True
    redis_server.kill()
    assert await a.acquire_or_renew() is None
    assert a.is_leader is None  # the poller then polls on its own


async def test_the_shared_watermark_moves_only_once_the_evictions_are_written(make_tier):
    clock = FakeClock()
    lease = LeaderLease(await make_tier(), "corrections", ttl=5, clock=clock)
    assert await lease.acquire_or_renew() is True
    written = [False]

    async def evictions_written() -> bool:
        return written[0]

    marks = SharedWatermarks(lease, evictions_written)
    shared = SharedWatermark(lease, "corrections:waltero")
    first = (datetime(2026, 5, 19, 6, 0, tzinfo=UTC), "waltero:c1")
    await marks.set("waltero", first)
    # the fleet-wide eviction failed: the next poll (here or on another leader) must read it again
    assert await shared.get() is None
    assert await marks.get("waltero") == first  # this replica evicted locally, it goes on from there
    written[0] = True
    await marks.set("waltero", first)
    assert await shared.get() == encode_mark(first)
