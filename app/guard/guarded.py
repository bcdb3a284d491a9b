"""`GuardedBackend`: one `Backend` wrapped with what protects it and us, in the way httpx stacks its
policies around a transport:

    cache (single-flight, stale-if-error, negative entries)
      → load cap (backpressure: past it, 503 `overloaded` at once)
        → connection slot (bounded by the caller's deadline)
          → circuit breaker (an open circuit fails fast, even for loads that queued before it opened)
            → the backend

all inside the backend deadline, a little shorter than the request's, so one slow vendor becomes its own
`errors` entry (or a stale answer) in a list that spans vendors, not a 504 for the whole list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

from app.backends.base import Backend
from app.guard.cache import SharedTier, SingleFlightCache
from app.guard.circuit import CircuitBreaker
from app.guard.provenance import Provenance
from app.infra.config import Settings
from app.infra.errors import FacadeError, Overloaded, UpstreamBadResponse, UpstreamTimeout
from app.infra.metrics import Metrics
from app.infra.timeutil import Clock

T = TypeVar("T")
log = logging.getLogger("app.guard.guarded")

CACHE_NAMES = ("meters", "meter", "readings", "daily", "device_status", "changes")


def build_caches(
    settings: Settings, clock: Clock, metrics: Metrics, tier: SharedTier | None = None
) -> dict[str, SingleFlightCache]:
    """The data caches, shared by every backend (keys start with the backend's name)."""
    return {
        name: SingleFlightCache(
            name,
            maxsize=settings.cache_size(name),
            max_bytes=settings.cache_bytes(name),
            timer=clock,
            stale_if_error=settings.stale_if_error,
            negative_ttl=settings.negative_ttl if name in ("meter", "device_status", "readings") else 0.0,
            metrics=metrics,
            tier=tier,
        )
        for name in CACHE_NAMES
    }


class GuardedBackend:
    def __init__(
        self,
        backend: Backend,
        *,
        caches: Mapping[str, SingleFlightCache],
        breaker: CircuitBreaker,
        deadline: float,
        max_loads: int,
        slots: int,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.breaker = breaker
        self.deadline = deadline
        self._caches = caches
        self._max_loads = max_loads
        self._loads = 0
        self._slots = asyncio.Semaphore(slots)

    @property
    def capabilities(self) -> frozenset[str]:
        return self.backend.capabilities

    @property
    def loads_in_flight(self) -> int:
        return self._loads

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """`operation` (a call of the backend) under the load cap, a connection slot and the breaker,
        uncached. Raises `Overloaded` past the cap, `UpstreamUnavailable` while the circuit is open."""
        if self._loads >= self._max_loads:
            raise Overloaded(
                f"{self.name}: {self._loads} vendor calls are already in flight; try again shortly.",
                backend=self.name,
                retry_after=1.0,
            )
        self._loads += 1
        try:
            async with self._slots:
                return await self.breaker.call(operation)
        except FacadeError:
            raise
        except Exception as exc:  # a bug in an adapter, not a vendor failure: say so once, answer 502
            log.error("unexpected error in a backend", exc_info=True, extra={"fields": {"backend": self.name}})
            raise UpstreamBadResponse(f"{self.name} failed unexpectedly.", backend=self.name) from exc
        finally:
            self._loads -= 1

    async def cached(
        self,
        cache_name: str,
        key: Hashable,
        load: Callable[[], Awaitable[T]],
        *,
        ttl: float | Callable[[T], float],
        tags: Iterable[str] | Callable[[T], Iterable[str]] = (),
    ) -> tuple[T, Provenance]:
        """The value under (`cache_name`, this backend, `key`), loaded through `call` on a miss, within
        the backend deadline. On that deadline a stale copy is served if there is one."""
        cache = self._caches[cache_name]
        full_key = (self.name, key)
        provenance = Provenance()
        try:
            async with asyncio.timeout(self.deadline):
                entry, result = await cache.get_or_load(full_key, lambda: self.call(load), ttl=ttl, tags=tags)
        except TimeoutError:
            stale = cache.peek(full_key)
            if stale is None:
                raise UpstreamTimeout(
                    f"{self.name} did not answer within {self.deadline:g} s.", backend=self.name
                ) from None
            cache.note_stale()
            entry, result = stale, "STALE"
        provenance.add(cache, full_key, entry, result)
        value: T = entry.value
        return value, provenance

    def peek_fresh(self, cache_name: str, key: Hashable, now: float) -> tuple[Any, Provenance] | None:
        """A fresh cached value without loading (and its provenance), or None."""
        cache = self._caches[cache_name]
        entry = cache.peek((self.name, key))
        if entry is None or now >= entry.fresh_until:
            return None
        cache.note_hit()
        provenance = Provenance()
        provenance.add(cache, (self.name, key), entry, "HIT")
        return entry.value, provenance
