import pytest

from app.guard.circuit import CircuitBreaker
from app.infra.errors import NotFound, UpstreamBadResponse, UpstreamUnavailable
from tests.support.clock import FakeClock


async def test_opens_fails_fast_probes_and_closes():
    clock = FakeClock()
    states = []
    breaker = CircuitBreaker("w", failure_threshold=3, reset_after=30, clock=clock, on_change=states.append)
    calls = 0

    async def failing():
        nonlocal calls
        calls += 1
        raise UpstreamBadResponse("boom", backend="w")

    async def ok():
        nonlocal calls
        calls += 1
        return "ok"

    for _ in range(3):
        with pytest.raises(UpstreamBadResponse):
            await breaker.call(failing)
    assert breaker.state == "open"
    with pytest.raises(UpstreamUnavailable) as info:
        await breaker.call(ok)
    assert calls == 3
    assert 29 <= info.value.retry_after <= 30  # no upstream call while open
    clock.advance(30)
    assert breaker.state == "half_open"
    with pytest.raises(UpstreamBadResponse):  # the probe fails: open again
        await breaker.call(failing)
    assert breaker.state == "open"
    clock.advance(30)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    assert states[-1] == 0
    assert 2 in states


async def test_answers_like_404_do_not_count():
    breaker = CircuitBreaker("w", failure_threshold=1, reset_after=30, clock=FakeClock())

    async def missing():
        raise NotFound("no")

    for _ in range(5):
        with pytest.raises(NotFound):
            await breaker.call(missing)
    assert breaker.state == "closed"


async def test_half_open_lets_a_few_probes_through_and_the_first_success_closes():
    import asyncio

    clock = FakeClock()
    breaker = CircuitBreaker("w", failure_threshold=1, reset_after=30, clock=clock, half_open_probes=2)

    async def failing():
        raise UpstreamBadResponse("boom", backend="w")

    with pytest.raises(UpstreamBadResponse):
        await breaker.call(failing)
    clock.advance(30)
    stuck, release = asyncio.Event(), asyncio.Event()

    async def slow_ok():
        stuck.set()
        await release.wait()
        return "ok"

    async def ok():
        return "ok"

    first = asyncio.create_task(breaker.call(slow_ok))  # a probe stuck (say, waiting out a 429)
    await stuck.wait()
    assert await breaker.call(ok) == "ok"  # a second probe gets through and closes the circuit
    assert breaker.state == "closed"
    release.set()
    assert await first == "ok"

    with pytest.raises(UpstreamBadResponse):
        await breaker.call(failing)
    clock.advance(30)
    stuck.clear()
    release.clear()
    probes = [asyncio.create_task(breaker.call(slow_ok)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(UpstreamUnavailable):  # a third call while two probes are out fails fast
        await breaker.call(ok)
    release.set()
    assert await asyncio.gather(*probes) == ["ok", "ok"]
    assert breaker.state == "closed"


async def test_a_probe_stuck_past_the_reset_interval_no_longer_blocks_recovery():
    import asyncio

    clock = FakeClock()
    breaker = CircuitBreaker("w", failure_threshold=2, reset_after=30, clock=clock, half_open_probes=1)

    async def failing():
        raise UpstreamBadResponse("boom", backend="w")

    async def ok():
        return "ok"

    for _ in range(2):
        with pytest.raises(UpstreamBadResponse):
            await breaker.call(failing)
    clock.advance(30)
    release = asyncio.Event()

    async def stuck():  # admitted while the vendor was down, now in retry backoff
        await release.wait()
        raise UpstreamBadResponse("still down when it started", backend="w")

    old = asyncio.create_task(breaker.call(stuck))
    await asyncio.sleep(0)
    with pytest.raises(UpstreamUnavailable):  # its one place is taken
        await breaker.call(ok)
    clock.advance(30)  # unanswered for a whole reset interval: it no longer holds the place
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    release.set()
    with pytest.raises(UpstreamBadResponse):
        await old
    assert breaker.state == "closed"  # its late failure does not reopen a recovered vendor
