"""A circuit breaker per backend.

closed → (N consecutive upstream failures) → open for `reset_after` seconds, answering at once with
`UpstreamUnavailable` and a `Retry-After` → half-open: one probe call goes through, the others still
fail fast → closed on success, open again on failure. Only `UpstreamError`s that say the vendor is
unwell count (`counts_as_failure`); a vendor 404 is an answer, not a failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from app.errors import UpstreamError, UpstreamUnavailable
from app.timeutil import Clock

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]
_GAUGE = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    def __init__(
        self,
        backend: str,
        *,
        failure_threshold: int,
        reset_after: float,
        clock: Clock,
        on_change: Callable[[int], None] = lambda value: None,
    ) -> None:
        self.backend = backend
        self._threshold = failure_threshold
        self._reset_after = reset_after
        self._clock = clock
        self._on_change = on_change
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.last_error: str | None = None

    @property
    def state(self) -> State:
        if self._state == "open" and self._clock() - self._opened_at >= self._reset_after:
            return "half_open"
        return self._state

    def retry_after(self) -> float | None:
        if self._state != "open":
            return None
        return max(0.0, self._reset_after - (self._clock() - self._opened_at))

    def _set(self, state: State) -> None:
        self._state = state
        self._on_change(_GAUGE[state])

    def _reject(self) -> UpstreamUnavailable:
        wait = self.retry_after()
        return UpstreamUnavailable(
            f"{self.backend} is failing ({self.last_error or 'repeated errors'}); calls are paused for a while.",
            backend=self.backend,
            retry_after=max(1.0, wait if wait is not None else 1.0),
        )

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` unless the circuit is open; record how it went."""
        state = self.state
        probe = False
        if state == "open" or (state == "half_open" and self._probing):
            raise self._reject()
        if state == "half_open":
            self._probing = probe = True
            self._set("half_open")
        try:
            result = await operation()
        except UpstreamError as exc:
            if exc.counts_as_failure:
                self._record_failure(exc, probe)
            elif probe:
                self._record_success()
            raise
        except BaseException:
            if probe:
                self._probing = False
            raise
        self._record_success()
        return result

    def _record_failure(self, exc: UpstreamError, probe: bool) -> None:
        self.last_error = exc.title
        self._failures += 1
        if probe or self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._probing = False
            self._set("open")

    def _record_success(self) -> None:
        self._failures = 0
        self._probing = False
        if self._state != "closed":
            self._set("closed")
