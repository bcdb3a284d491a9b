import asyncio

import pytest

from app.domain.cursors import CursorCodec
from app.domain.models import Reading
from app.shared.cursor_key import shared_cursor_secret
from app.shared.entries import EntryKind, SharedEntries, SharedEntry
from app.shared.evictions import EvictionBroadcast
from app.shared.tier import SharedUnavailable
from tests.support.clock import FakeClock


class Replica:
    """One replica's eviction reader: what it dropped locally and the gaps it noticed."""

    def __init__(self, tier, clock, **kw):
        self.evicted: list[frozenset[str]] = []
        self.gaps: list[int] = []
        self.entries = SharedEntries(tier, clock)
        self.ev = EvictionBroadcast(self.entries, self.evicted.append, on_gap=lambda: self.gaps.append(1), **kw)
        self.task: asyncio.Task[None] | None = None

    async def start(self):
        self.ev.caught_up.clear()
        self.task = asyncio.create_task(self.ev.run())
        async with asyncio.timeout(5):
            await self.ev.caught_up.wait()

    async def stop(self):
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None


async def make_replica(make_tier, clock, **kw):
    replica = Replica(await make_tier(), clock, poll_every=0.02, **kw)
    await replica.start()
    return replica


async def until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_an_eviction_reaches_every_replica_and_invalidates_shared_entries_once(make_tier):
    clock = FakeClock()
    replicas = [await make_replica(make_tier, clock) for _ in range(3)]
    kind = EntryKind("readings", list[Reading])
    a = replicas[0]
    now = clock()
    since = await a.entries.sequence()
    await a.entries.put(kind, "r", SharedEntry([], now, now + 60, now + 60, frozenset({"waltero:m1"})), since=since)
    try:
        written = await a.ev.evict({"waltero:m1", "waltero:m2"})
        await until(lambda: all(r.evicted for r in replicas))
        await asyncio.sleep(0.1)  # a few more reads: nobody applies it twice
    finally:
        for r in replicas:
            await r.stop()
    assert written is True
    assert await a.entries.get(kind, "r") is None
    tags = frozenset({"waltero:m1", "waltero:m2"})
    # the origin at once, and again once the bump is written (what it read back meanwhile goes too)
    assert replicas[0].evicted == [tags, tags]
    for r in replicas[1:]:
        assert r.evicted == [tags]  # once each, from the stream


async def test_a_replica_that_was_away_catches_up_from_its_last_event(make_tier):
    clock = FakeClock()
    a, b = await make_replica(make_tier, clock), await make_replica(make_tier, clock)
    try:
        await b.stop()  # b reads nothing for a while (a long GC pause, a slow event loop)
        assert await a.ev.evict({"iometer:x"})
        assert await a.ev.evict({"iometer:y"})
        assert b.evicted == []
        await b.start()
        assert b.evicted == [frozenset({"iometer:x"}), frozenset({"iometer:y"})]  # in order, none lost
        assert b.gaps == []
    finally:
        await a.stop()
        await b.stop()


async def test_events_trimmed_before_a_replica_read_them_are_a_gap(make_tier):
    clock = FakeClock()
    a, b = await make_replica(make_tier, clock), await make_replica(make_tier, clock)
    try:
        await b.stop()
        for n in range(3):
            assert await a.ev.evict({f"iometer:{n}"})
        await a.ev.tier.client.xtrim(a.ev.key, maxlen=1, approximate=False)  # what MAXLEN does to a slow reader
        b.ev._on_status("up")  # as after an outage: b checks what it may have missed
        await b.start()
        assert b.gaps == [1]
        assert b.evicted == [frozenset({"iometer:2"})]  # and reads what is still there
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it kills or pauses the server
async def test_a_redis_restart_losing_the_stream_is_a_gap(make_tier, redis_server):
    clock = FakeClock()
    a, b = await make_replica(make_tier, clock), await make_replica(make_tier, clock)
    try:
        assert await a.ev.evict({"iometer:x"})
        await until(lambda: b.evicted)
        redis_server.kill()
        # Redis down: the origin still evicts locally, says it could not reach the fleet, nobody waits.
        assert await a.ev.evict({"iometer:y"}) is False
        assert a.evicted[-1] == frozenset({"iometer:y"})
        redis_server.start()
        # b may meet the new server before any outage shows (a command retried on a new connection):
        # the server's run_id tells it to look for a gap all the same.
        await until(lambda: b.gaps == [1] and a.ev.tier.available)
        assert await a.ev.evict({"iometer:z"})
        await until(lambda: frozenset({"iometer:z"}) in b.evicted)
    finally:
        await a.stop()
        await b.stop()


async def test_a_malformed_event_is_ignored(make_tier):
    clock = FakeClock()
    r = await make_replica(make_tier, clock)
    other = await make_tier()
    try:
        await other.client.xadd(r.ev.key, {"junk": "1"})
        await other.client.xadd(r.ev.key, {"o": "someone", "t": '["iometer:x"]'})
        await until(lambda: r.evicted)
    finally:
        await r.stop()
    assert r.evicted == [frozenset({"iometer:x"})]


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it kills or pauses the server
async def test_one_cursor_key_for_the_fleet(make_tier, redis_server):
    a, b = await make_tier(), await make_tier()
    found_a, found_b = await asyncio.gather(shared_cursor_secret(a), shared_cursor_secret(b))
    assert found_a is not None
    assert len(found_a[0]) == 32
    assert found_b == found_a
    redis_server.kill()
    assert await shared_cursor_secret(a) is None


async def reconnected(tier):
    async with asyncio.timeout(5):
        while True:
            try:
                await tier.call("ping", lambda r: r.ping())
                return
            except SharedUnavailable:
                await asyncio.sleep(0.02)


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it kills or pauses the server
async def test_a_redis_that_lost_the_cursor_key_gets_it_back_and_late_keys_stay_valid(make_tier, redis_server):
    a, b = await make_tier(), await make_tier()
    first = await shared_cursor_secret(a)
    assert first is not None
    fleet_key = first[0]
    redis_server.restart()  # no persistence: the key is gone
    late_key = bytes(range(32))  # a replica that started while Redis was down signed with its own
    for tier in (a, b):  # each tier notices the restart (its pooled connections died) and recovers
        await reconnected(tier)
    # the first replica back writes the fleet's key back (SET NX): no new key, no split
    assert await shared_cursor_secret(a, fleet_key) == (fleet_key, [])
    # the late replica adopted it, and its own key is kept valid for the cursors it already signed
    assert await shared_cursor_secret(b, late_key) == (fleet_key, [late_key])
    assert await shared_cursor_secret(a, fleet_key) == (fleet_key, [late_key])


async def test_cursors_signed_with_a_recent_key_are_accepted(make_tier):
    late = CursorCodec(bytes(range(32)))
    cursor = late.encode("meters", {"after": "x"})
    codec = CursorCodec()
    codec.adopt(b"F" * 32, [bytes(range(32))])
    assert codec.decode("meters", cursor) == {"after": "x"}
    assert codec.key == b"F" * 32
