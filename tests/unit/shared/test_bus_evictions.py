import asyncio

import pytest

from app.models import Reading
from app.shared.bus import Broadcast
from app.shared.cursor_key import shared_cursor_secret
from app.shared.entries import EntryKind, SharedEntries, SharedEntry
from app.shared.evictions import EvictionBroadcast
from tests.support.clock import FakeClock


async def make_replica(make_tier, clock, **kw):
    tier = await make_tier()
    evicted: list[frozenset[str]] = []
    gaps: list[int] = []
    bus = Broadcast(tier, retry_every=0.05)
    entries = SharedEntries(tier, clock)
    ev = EvictionBroadcast(entries, bus, evicted.append, on_gap=lambda: gaps.append(1))
    bus.start()
    async with asyncio.timeout(5):
        await bus.wait_subscribed()
    return ev, evicted, gaps


async def until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_an_eviction_reaches_every_replica_and_invalidates_shared_entries_once(make_tier):
    clock = FakeClock()
    replicas = [await make_replica(make_tier, clock) for _ in range(3)]
    kind = EntryKind("readings", list[Reading])
    a = replicas[0][0]
    now = clock()
    since = await a.entries.sequence()
    await a.entries.put(kind, "r", SharedEntry([], now, now + 60, now + 60, frozenset({"waltero:m1"})), since=since)
    try:
        deleted = await a.evict({"waltero:m1", "waltero:m2"})
        await until(lambda: all(evicted for _, evicted, _ in replicas))
    finally:
        for ev, _, _ in replicas:
            await ev.broadcast.aclose()
    assert deleted == 2  # both meters' generations moved
    assert await a.entries.get(kind, "r") is None
    for _, evicted, _ in replicas:
        assert evicted == [frozenset({"waltero:m1", "waltero:m2"})]  # once each, the origin included


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it kills or pauses the server
async def test_a_lost_subscription_reports_a_gap_when_it_is_back(make_tier, redis_server):
    clock = FakeClock()
    ev, evicted, gaps = await make_replica(make_tier, clock)
    try:
        redis_server.kill()
        await until(lambda: not ev.broadcast.subscribed)
        # Redis down: the origin still evicts locally, and nobody waits.
        assert await ev.evict({"waltero:m1"}) == 0
        assert evicted == [frozenset({"waltero:m1"})]
        redis_server.start()
        await until(lambda: ev.broadcast.subscribed)
        await until(lambda: gaps == [1])
    finally:
        await ev.broadcast.aclose()


async def test_a_malformed_broadcast_is_ignored(make_tier):
    clock = FakeClock()
    ev, evicted, _ = await make_replica(make_tier, clock)
    other = await make_tier()
    try:
        await other.client.publish(ev.broadcast.channel("evict"), b"not json")
        await other.client.publish(ev.broadcast.channel("evict"), b'{"o":"someone","t":["iometer:x"]}')
        await until(lambda: evicted)
    finally:
        await ev.broadcast.aclose()
    assert evicted == [frozenset({"iometer:x"})]


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it kills or pauses the server
async def test_one_cursor_key_for_the_fleet(make_tier, redis_server):
    a, b = await make_tier(), await make_tier()
    key_a, key_b = await asyncio.gather(shared_cursor_secret(a), shared_cursor_secret(b))
    assert key_a is not None
    assert len(key_a) == 32
    assert key_b == key_a
    redis_server.kill()
    assert await shared_cursor_secret(a) is None
