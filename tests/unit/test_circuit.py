import pytest

from app.circuit import CircuitBreaker
from app.errors import NotFound, UpstreamBadResponse, UpstreamUnavailable
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
    assert calls == 3 and 29 <= info.value.retry_after <= 30  # no upstream call while open
    clock.advance(30)
    assert breaker.state == "half_open"
    with pytest.raises(UpstreamBadResponse):  # the probe fails: open again
        await breaker.call(failing)
    assert breaker.state == "open"
    clock.advance(30)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed" and states[-1] == 0 and 2 in states


async def test_answers_like_404_do_not_count():
    breaker = CircuitBreaker("w", failure_threshold=1, reset_after=30, clock=FakeClock())

    async def missing():
        raise NotFound("no")

    for _ in range(5):
        with pytest.raises(NotFound):
            await breaker.call(missing)
    assert breaker.state == "closed"
