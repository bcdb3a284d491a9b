import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from app.guard.cache import SingleFlightCache
from app.infra.errors import NotFound, UpstreamBadResponse
from app.infra.metrics import Metrics
from tests.support.clock import FakeClock


def make(clock, **kw):
    return SingleFlightCache(
        "t", maxsize=kw.pop("maxsize", 100), timer=clock, stale_if_error=kw.pop("stale", 600), metrics=Metrics()
    )


async def test_concurrent_identical_misses_share_one_load():
    clock = FakeClock()
    cache = make(clock)
    calls = 0
    release = asyncio.Event()

    async def load():
        nonlocal calls
        calls += 1
        await release.wait()
        return "v"

    tasks = [asyncio.create_task(cache.get_or_load("k", load, ttl=10)) for _ in range(100)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert {e.value for e, _ in results} == {"v"}
    assert sorted(r for _, r in results).count("MISS") == 1
    entry, result = await cache.get_or_load("k", load, ttl=10)
    assert (entry.value, result, calls) == ("v", "HIT", 1)


async def test_ttl_expiry_on_injected_timer():
    clock = FakeClock()
    cache = make(clock)
    n = 0

    async def load():
        nonlocal n
        n += 1
        return n

    assert (await cache.get_or_load("k", load, ttl=30))[0].value == 1
    clock.advance(29.9)
    assert (await cache.get_or_load("k", load, ttl=30))[0].value == 1
    clock.advance(0.2)
    assert (await cache.get_or_load("k", load, ttl=30))[0].value == 2
    assert (await cache.get_or_load("x", load, ttl=lambda v: 5))[0].fresh_until == clock.now + 5


async def test_a_caller_going_away_does_not_cancel_the_shared_load():
    cache = make(FakeClock())
    release = asyncio.Event()
    finished = []

    async def load():
        await release.wait()
        finished.append(True)
        return "v"

    first = asyncio.create_task(cache.get_or_load("k", load, ttl=10))
    second = asyncio.create_task(cache.get_or_load("k", load, ttl=10))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    entry, _ = await second
    assert entry.value == "v"
    assert finished == [True]
    with pytest.raises(asyncio.CancelledError):
        await first
    assert cache.peek("k") is entry  # the result landed for later callers too


async def test_the_load_is_cancelled_once_every_caller_has_gone():
    cache = make(FakeClock())
    started = asyncio.Event()
    outcome = []
    loads = 0

    async def load():
        nonlocal loads
        loads += 1
        started.set()
        try:
            await asyncio.Event().wait()  # a vendor that never answers
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        return "v"

    callers = [asyncio.create_task(cache.get_or_load("k", load, ttl=10)) for _ in range(3)]
    await asyncio.wait_for(started.wait(), 5)
    for caller in callers[:2]:
        caller.cancel()
    for _ in range(3):
        await asyncio.sleep(0)
    assert outcome == []  # one caller still waits: the load goes on
    assert cache.inflight == 1
    callers[2].cancel()
    for _ in range(3):
        await asyncio.sleep(0)
    assert outcome == ["cancelled"]
    assert cache.inflight == 0
    for caller in callers:
        with pytest.raises(asyncio.CancelledError):
            await caller

    async def quick():
        return "w"

    entry, result = await cache.get_or_load("k", quick, ttl=10)  # a later caller loads afresh
    assert (entry.value, result, loads) == ("w", "MISS", 1)


async def test_stale_if_error_serves_expired_entry_then_gives_up():
    clock = FakeClock()
    cache = make(clock, stale=600)
    fail = False

    async def load():
        if fail:
            raise UpstreamBadResponse("down", backend="b")
        return "v1"

    await cache.get_or_load("k", load, ttl=10)
    clock.advance(11)
    fail = True
    entry, result = await cache.get_or_load("k", load, ttl=10)
    assert (entry.value, result) == ("v1", "STALE")
    clock.advance(600)
    with pytest.raises(UpstreamBadResponse):
        await cache.get_or_load("k", load, ttl=10)


async def test_not_found_is_not_papered_over_with_stale_data():
    clock = FakeClock()
    cache = make(clock)
    gone = False

    async def load():
        if gone:
            raise NotFound("gone")
        return "v"

    await cache.get_or_load("k", load, ttl=1)
    clock.advance(2)
    gone = True
    with pytest.raises(NotFound):
        await cache.get_or_load("k", load, ttl=1)


async def test_failures_are_shared_but_not_cached():
    cache = make(FakeClock())
    calls = 0

    async def load():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise UpstreamBadResponse("x")

    results = await asyncio.gather(*(cache.get_or_load("k", load, ttl=5) for _ in range(5)), return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, UpstreamBadResponse) for r in results)
    with pytest.raises(UpstreamBadResponse):
        await cache.get_or_load("k", load, ttl=5)
    assert calls == 2


async def test_bounded_and_tag_eviction():
    cache = make(FakeClock(), maxsize=10)

    async def value():
        return 1

    for i in range(50):
        await cache.get_or_load(i, value, ttl=100, tags={f"m{i % 3}"})
    assert len(cache) == 10
    tagged = sum(1 for k in range(40, 50) if k % 3 == 0)
    assert cache.evict_tagged({"m0"}) == tagged
    assert len(cache) == 10 - tagged


def test_approx_size_of_long_homogeneous_rows_matches_walking_every_row():
    from app.core.chunks import Chunk
    from app.domain.models import Reading
    from app.guard.cache import approx_size

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        Reading(
            meter_id="iometer:578936dc-8020-4022-a560-2f59d2dca9ee",
            time=t0 + timedelta(minutes=15 * (i // 5)),
            quantity=("energy_import", "energy_export", "power", "energy_import_t1", "obis:1-0:96.1.0")[i % 5],
            obis="1-0:1.8.0" if i % 5 else None,
            value=1.5 * i,
            unit="kWh",
        )
        for i in range(480)
    ]
    walked = 64 + sum(approx_size(r) + 8 for r in rows)  # every row, one by one
    sampled = approx_size(rows)
    assert abs(sampled - walked) / walked < 0.05
    assert approx_size(Chunk(rows)) >= sampled  # the chunk holds its rows
    assert approx_size(rows[:100]) < sampled / 4  # proportional to the row count
    mixed = [*rows[:10], "x" * 100_000]  # short or mixed lists are walked whole
    assert approx_size(mixed) > 100_000
