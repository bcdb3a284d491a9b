import asyncio
import time

import pytest

from app.core.fleet import RedisCacheTier
from app.guard.cache import SingleFlightCache
from app.infra.errors import NotFound, UpstreamBadResponse
from app.infra.metrics import Metrics
from app.shared.bus import Broadcast
from app.shared.entries import EntryKind, SharedEntries, SharedEntry
from app.shared.flight import FleetFlight
from app.shared.locks import FleetLock
from tests.support.clock import FakeClock
from tests.unit.shared.conftest import Recorder

KIND = EntryKind("meter", dict[str, int])


def made(clock, load, *, ttl=60.0, stale=0.0, tags=()):
    """What the in-process cache hands the flight: a coroutine making the entry of one vendor call."""

    async def make():
        value = await load()
        now = clock()
        return SharedEntry(value, now, now + ttl, now + ttl + stale, frozenset(tags))

    return make


async def replica(make_tier, clock, *, broadcast=True, record=None, **kw):
    tier = await make_tier(record=record) if record else await make_tier()
    bus = Broadcast(tier) if broadcast else None
    flight = FleetFlight(SharedEntries(tier, clock), bus, clock=clock, **kw)
    if bus is not None:
        bus.start()
        async with asyncio.timeout(5):
            await bus.wait_subscribed()
    return flight, bus


class Vendor:
    def __init__(self, delay: float = 0.05) -> None:
        self.calls = 0
        self.delay = delay

    async def load(self) -> dict[str, int]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return {"n": self.calls}


async def test_concurrent_misses_on_three_replicas_make_one_vendor_call(make_tier):
    clock = FakeClock()
    replicas = [await replica(make_tier, clock) for _ in range(3)]
    vendor = Vendor(delay=0.2)
    try:
        results = await asyncio.gather(
            *(
                replicas[i % 3][0].load(KIND, "k", made(clock, vendor.load, ttl=60, tags={"t"}), budget=5)
                for i in range(30)
            )
        )
    finally:
        for _, bus in replicas:
            await bus.aclose()
    assert vendor.calls == 1
    assert {e.value["n"] for e, _ in results} == {1}
    outcomes = sorted(o for _, o in results)
    assert outcomes.count("loaded") == 1
    assert outcomes.count("shared") == 29


async def test_waiters_are_woken_by_the_broadcast_not_by_polling(make_tier):
    clock = FakeClock()
    (holder, hb), (waiter, wb) = (
        await replica(make_tier, clock),
        await replica(make_tier, clock, first_poll=5, max_poll=5),
    )
    vendor = Vendor(delay=0.3)
    try:
        first = asyncio.create_task(holder.load(KIND, "k", made(clock, vendor.load, ttl=60), budget=20))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        _entry, outcome = await waiter.load(KIND, "k", made(clock, vendor.load, ttl=60), budget=20)
        waited = time.monotonic() - started
        await first
    finally:
        await hb.aclose()
        await wb.aclose()
    assert (outcome, vendor.calls) == ("shared", 1)
    assert waited < 4.0  # a 5 s poll would have made it 5 s (generous for a loaded machine)


async def test_a_dead_holders_lock_expires_and_a_waiter_takes_over_within_budget(make_tier):
    clock = FakeClock()
    flight, bus = await replica(make_tier, clock, lock_ttl=0.3)
    # A replica died holding the lock: nobody renews it, nobody publishes.
    await flight.tier.client.set(flight.lock_key(KIND, "k"), b"dead-replica", px=300)
    vendor = Vendor()
    started = time.monotonic()
    try:
        _entry, outcome = await flight.load(KIND, "k", made(clock, vendor.load, ttl=60), budget=4)
    finally:
        await bus.aclose()
    assert (outcome, vendor.calls) == ("loaded", 1)
    assert 0.2 < time.monotonic() - started < 4.0  # waited for the lock to expire, within the 4 s budget


async def test_a_slow_holder_keeps_its_lock_past_its_ttl(make_tier):
    clock = FakeClock()
    (a, ab), (b, bb) = await replica(make_tier, clock, lock_ttl=0.3), await replica(make_tier, clock, lock_ttl=0.3)
    vendor = Vendor(delay=1.0)  # three lock lifetimes
    try:
        first = asyncio.create_task(a.load(KIND, "k", made(clock, vendor.load, ttl=60), budget=10))
        await asyncio.sleep(0.05)
        _entry, outcome = await b.load(KIND, "k", made(clock, vendor.load, ttl=60), budget=10)
        await first
    finally:
        await ab.aclose()
        await bb.aclose()
    assert (outcome, vendor.calls) == ("shared", 1)


async def test_a_waiter_never_waits_past_its_share_of_the_budget(make_tier):
    clock = FakeClock()
    rec = Recorder()
    flight, bus = await replica(make_tier, clock, record=rec)
    await flight.tier.client.set(flight.lock_key(KIND, "k"), b"live-but-stuck", px=60_000)
    vendor = Vendor()
    started = time.monotonic()
    try:
        _entry, outcome = await flight.load(KIND, "k", made(clock, vendor.load, ttl=60), budget=4.0)
    finally:
        await bus.aclose()
    assert (outcome, vendor.calls) == ("local", 1)
    # Waited its share (half of 4 s), then loaded itself. A budget this long leaves 2 s of slack on a loaded
    # machine between the share and the whole budget (the stuck lock lives 60 s).
    assert 1.9 < time.monotonic() - started < 4.0
    assert rec.value("flight_wait", "deadline") == 1.0


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it kills or pauses the server
async def test_redis_down_means_a_local_call_at_once(make_tier, redis_server):
    clock = FakeClock()
    flight, _ = await replica(make_tier, clock, broadcast=False)
    redis_server.kill()
    vendor = Vendor(delay=0)
    started = time.monotonic()
    for _ in range(5):
        _entry, outcome = await flight.load(KIND, "k", made(clock, vendor.load, ttl=60), budget=5)
        assert outcome == "local"
    assert vendor.calls == 5  # each replica is on its own now; the in-process cache coalesces
    assert time.monotonic() - started < 2.5  # generous: waiting a 1 s timeout on each of the 5 would be 5 s


async def test_a_fresh_shared_entry_is_served_with_its_own_times_and_an_expired_one_reloaded(make_tier):
    clock = FakeClock()
    flight, _ = await replica(make_tier, clock, broadcast=False)
    vendor = Vendor(delay=0)
    entry, outcome = await flight.load(KIND, "k", made(clock, vendor.load, ttl=10, stale=600), budget=5)
    assert outcome == "loaded"
    clock.advance(4)
    again, outcome = await flight.load(KIND, "k", made(clock, vendor.load, ttl=10), budget=5)
    assert (outcome, again, vendor.calls) == ("shared", entry, 1)  # created/fresh_until as the loader set them
    clock.advance(7)  # past fresh, inside the stale window: still in Redis, but refreshed under the lock
    refreshed, outcome = await flight.load(KIND, "k", made(clock, vendor.load, ttl=10), budget=5)
    assert (outcome, refreshed.value) == ("loaded", {"n": 2})


async def test_a_failed_load_raises_and_releases_the_lock(make_tier):
    clock = FakeClock()
    flight, _ = await replica(make_tier, clock, broadcast=False)

    async def failing():
        raise UpstreamBadResponse("vendor broke", backend="waltero")

    with pytest.raises(UpstreamBadResponse):
        await flight.load(KIND, "k", made(clock, failing, ttl=10), budget=5)
    assert await flight.tier.client.exists(flight.lock_key(KIND, "k")) == 0


async def test_an_uncacheable_value_is_shared_with_the_waiters_only(make_tier):
    """ttl 0 (nothing may be cached): replicas asking while it loads still share the one vendor call,
    as callers of one process do; a caller asking afterwards loads again."""
    clock = FakeClock()
    (a, ab), (b, bb) = await replica(make_tier, clock), await replica(make_tier, clock)
    vendor = Vendor(delay=0.3)
    try:
        first = asyncio.create_task(a.load(KIND, "k", made(clock, vendor.load, ttl=0), budget=10))
        await asyncio.sleep(0.05)
        waited, outcome = await b.load(KIND, "k", made(clock, vendor.load, ttl=0), budget=10)
        loaded, _ = await first
        assert (outcome, waited.value, loaded.value, vendor.calls) == ("shared", {"n": 1}, {"n": 1}, 1)
        clock.advance(0.001)
        later, outcome = await b.load(KIND, "k", made(clock, vendor.load, ttl=0), budget=10)
        assert (outcome, later.value, vendor.calls) == ("loaded", {"n": 2}, 2)
    finally:
        await ab.aclose()
        await bb.aclose()


async def test_a_not_found_answer_is_shared_with_the_fleet(make_tier):
    """One replica's vendor says "not found": the others answer 404 from Redis, without a call."""
    clock = FakeClock()
    calls = 0

    async def load():
        nonlocal calls
        calls += 1
        raise NotFound("no device waltero:x", backend="waltero")

    caches, buses = [], []
    for _ in range(3):
        flight, bus = await replica(make_tier, clock)
        buses.append(bus)
        tier = RedisCacheTier(flight, budget=5)
        caches.append(
            SingleFlightCache(
                "device_status",
                maxsize=16,
                timer=clock,
                stale_if_error=0,
                metrics=Metrics(),
                negative_ttl=30,
                tier=tier,
            )
        )
    try:
        for cache in caches:
            with pytest.raises(NotFound, match="no device waltero:x") as raised:
                await cache.get_or_load(("waltero", "x"), load, ttl=60)
            assert raised.value.backend == "waltero"
        assert calls == 1
        clock.advance(31)  # the negative answer expires everywhere at once
        with pytest.raises(NotFound):
            await caches[1].get_or_load(("waltero", "x"), load, ttl=60)
        assert calls == 2
    finally:
        for bus in buses:
            await bus.aclose()


async def test_a_lookup_sent_twice_knows_its_own_lock(make_tier):
    # A lookup whose answer was lost with its connection is sent again (see the tier): the lock it took
    # the first time is its own, not a peer's to wait for; another acquisition's lookup stays busy.
    clock = FakeClock()
    flight, _ = await replica(make_tier, clock, broadcast=False)
    name = flight.tier.slot_key("entry", "twice")
    mine = FleetLock(flight.tier, flight.tier.slot_key("lock", "twice"), ttl=5.0)
    other = FleetLock(flight.tier, mine.key, ttl=5.0)
    assert (await flight._lookup(name, mine))[0] == 2
    assert (await flight._lookup(name, mine))[0] == 2
    assert (await flight._lookup(name, other))[0] == 0
