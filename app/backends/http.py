"""Shared plumbing for vendor HTTP clients: the operation label, retry policy, Retry-After.

Vendor clients own their policy (which statuses to retry); this module only supplies the pieces,
so both vendors back off the same way and report retries the same way.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import httpx

from app.infra.context import current_attempt, current_operation, upstream_operation
from app.infra.timeutil import Clock

__all__ = ["current_operation", "upstream_operation"]


Sleep = Callable[[float], Awaitable[None]]
RetryHook = Callable[[str], None]
"""Called with the reason (one of `app.infra.metrics.RETRY_REASONS`) before each retry; used for metrics."""


class Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


class Answer(Protocol):
    """What the retry loop and the auth flows read of an answer: an `httpx.Response`, or the hot path's
    `app.infra.upstream.HotAnswer` (a vendor GET sent on the aiohttp session without httpx's model)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    async def aclose(self) -> None: ...


A = TypeVar("A", bound=Answer)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date); None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries. `retries_per_status` caps retries for each retryable status; transport errors
    (connection refused/reset, connect timeout) are retried only for idempotent calls."""

    max_attempts: int = 4
    deadline: float = 8.0
    """Seconds of total waiting after which no further retry starts."""
    base_delay: float = 0.2
    max_delay: float = 4.0
    max_retry_after: float = 5.0
    """A `Retry-After` longer than this is not waited out: the caller gets a 503 with it at once."""
    retries_per_status: Mapping[int, int] = field(default_factory=lambda: {429: 3, 500: 1, 502: 2, 503: 2, 504: 2})
    retry_transport_errors: bool = True

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter for retry number `attempt` (1-based)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


RETRYABLE_TRANSPORT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)


@dataclass(frozen=True, slots=True)
class Retrier:
    """A retry policy bound to its clock, sleep, randomness and retry hook: what each vendor client
    holds, so a call site only says what to send and whether it is idempotent."""

    policy: RetryPolicy
    sleep: Sleep
    clock: Clock
    rng: random.Random
    on_retry: RetryHook | None = None

    async def send(self, send: Callable[[], Awaitable[A]], *, idempotent: bool = True) -> A:
        """`send_with_retries` with this retrier's parts."""
        return await send_with_retries(
            send,
            policy=self.policy,
            sleep=self.sleep,
            clock=self.clock,
            rng=self.rng,
            idempotent=idempotent,
            on_retry=self.on_retry,
        )


async def send_with_retries(
    send: Callable[[], Awaitable[A]],
    *,
    policy: RetryPolicy,
    sleep: Sleep,
    clock: Clock,
    rng: random.Random,
    idempotent: bool = True,
    on_retry: RetryHook | None = None,
) -> A:
    """Call `send` until it answers with a non-retryable status or the budget runs out.

    Returns the last response (which may still be a 429/5xx: the caller maps it) and re-raises the
    last transport error when every attempt failed at the transport. `send` must build a fresh
    request each time (so per-request auth such as a WSSE nonce is made anew)."""
    started = clock()
    per_status: dict[int, int] = {}
    attempt = 0
    while True:
        attempt += 1
        current_attempt.set(attempt)
        try:
            response = await send()
        except RETRYABLE_TRANSPORT_ERRORS:
            if not (idempotent and policy.retry_transport_errors) or attempt >= policy.max_attempts:
                raise
            delay = policy.backoff(attempt, rng)
            if clock() - started + delay > policy.deadline:
                raise
            if on_retry:
                on_retry("connect")
            await sleep(delay)
            continue
        status = response.status_code
        allowed = policy.retries_per_status.get(status, 0)
        if status != 429 and status >= 500 and not idempotent:
            allowed = 0
        used = per_status.get(status, 0)
        if allowed == 0 or used >= allowed or attempt >= policy.max_attempts:
            return response
        delay = policy.backoff(attempt, rng)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"), clock())
            if retry_after is not None:
                if retry_after > policy.max_retry_after:
                    return response
                delay = retry_after + rng.uniform(0, policy.base_delay)
        if clock() - started + delay > policy.deadline:
            return response
        per_status[status] = used + 1
        if on_retry:
            on_retry("429" if status == 429 else "5xx")
        await response.aclose()
        await sleep(delay)
