"""A circuit breaker per backend.

closed → (N consecutive upstream failures) → open for `reset_after` seconds, answering at once with
`UpstreamUnavailable` and a `Retry-After` → half-open: up to `half_open_probes` calls go through at
once, the others still fail fast → closed on the first success, open again on a failure.

A call admitted while the vendor was still down may sit in retry backoff for seconds and fail after
the vendor has recovered. So every transition starts a new epoch, and the outcome of a call admitted
in an earlier epoch is ignored: it neither reopens a recovered vendor nor holds a probe's place.
Within one half-open epoch, a probe unanswered after `reset_after` no longer holds its place either.

Only `UpstreamError`s that say the vendor is unwell count (`counts_as_failure`); a vendor 404 is an
answer, not a failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from app.infra.errors import UpstreamError, UpstreamUnavailable
from app.infra.timeutil import Clock

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
        half_open_probes: int = 1,
    ) -> None:
        self.backend = backend
        self._threshold = failure_threshold
        self._reset_after = reset_after
        self._clock = clock
        self._on_change = on_change
        self._max_probes = half_open_probes
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_starts: list[float] = []
        self._epoch = 0
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
        if state != self._state:
            self._epoch += 1
            self._probe_starts = []  # probes admitted in an earlier state hold no place now
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
        """Run `operation` unless the circuit is open; record how it went, unless the circuit has
        changed state since the call was admitted."""
        state = self.state
        now = self._clock()
        if state == "open" or (state == "half_open" and self._live_probes(now) >= self._max_probes):
            raise self._reject()
        probe = state == "half_open"
        if probe and self._state != "half_open":
            self._set("half_open")
        epoch, probes = self._epoch, self._probe_starts
        if probe:
            probes.append(now)
        try:
            result = await operation()
        except UpstreamError as exc:
            if epoch == self._epoch:
                if exc.counts_as_failure:
                    self._record_failure(exc, probe)
                elif probe:
                    self._record_success()
            raise
        finally:
            if probe:
                probes.remove(now)
        if epoch == self._epoch:
            self._record_success()
        return result

    def _live_probes(self, now: float) -> int:
        """Probes still answering within `reset_after`; older ones no longer count."""
        return sum(1 for started in self._probe_starts if now - started < self._reset_after)

    def _record_failure(self, exc: UpstreamError, probe: bool) -> None:
        self.last_error = exc.title
        self._failures += 1
        if probe or self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._set("open")

    def _record_success(self) -> None:
        self._failures = 0
        if self._state != "closed":
            self._set("closed")
