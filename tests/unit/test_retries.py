import random

import httpx
import pytest

from app.backends.http import RetryPolicy, parse_retry_after, send_with_retries
from tests.support.clock import FakeClock


def test_parse_retry_after():
    assert parse_retry_after("3", 0) == 3
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480) == 10
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None


async def run(statuses, policy=None, idempotent=True, raise_first=0):
    clock = FakeClock()
    sent = []
    reasons = []

    async def send():
        sent.append(1)
        if len(sent) <= raise_first:
            raise httpx.ConnectError("refused")
        status = statuses[min(len(sent) - raise_first, len(statuses)) - 1]
        return httpx.Response(status, headers={"Retry-After": "2"} if status == 429 else {})

    response = await send_with_retries(
        send,
        policy=policy or RetryPolicy(),
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(1),
        idempotent=idempotent,
        on_retry=reasons.append,
    )
    return response.status_code, len(sent), clock.slept, reasons


async def test_429_waits_retry_after_then_succeeds():
    status, sent, slept, reasons = await run([429, 429, 200])
    assert (status, sent, reasons) == (200, 3, ["429", "429"])
    assert all(2 <= s <= 2.2 for s in slept)


async def test_persistent_429_gives_up_bounded():
    status, sent, _, _ = await run([429] * 20)
    assert status == 429
    assert sent == 4


async def test_500_retried_once_and_400_never():
    assert (await run([500, 500, 200]))[:2] == (500, 2)
    assert (await run([404, 200]))[:2] == (404, 1)
    assert (await run([503, 503, 200]))[:2] == (200, 3)
    assert (await run([503, 200], idempotent=False))[:2] == (503, 1)


async def test_connection_errors_retried_with_backoff():
    status, sent, _slept, reasons = await run([200], raise_first=2)
    assert (status, sent, reasons) == (200, 3, ["connect", "connect"])
    with pytest.raises(httpx.ConnectError):
        await run([200], raise_first=10)


async def test_long_retry_after_is_not_waited_out():
    policy = RetryPolicy(max_retry_after=1)
    status, sent, slept, _ = await run([429, 200], policy=policy)
    assert (status, sent, slept) == (429, 1, [])
