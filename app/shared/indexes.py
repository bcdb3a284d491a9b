"""`SharedIndexes`: the adapters' own indexes (IOmeter's installations, Waltero's organizations and
devices) loaded once for the fleet, whatever replica needs them first.

An index is a cache entry like the others (`app.shared.entries`): a schema-versioned key
`<prefix>:e:{<version>:index:<vendor index>:<digest of account and part>}`, its value as JSON, kept for
the index's refresh age (its TTL), and loaded through the fleet's single-flight (`FleetFlight`: the
entry and its lock in one hash slot, so it works in standalone, cluster and sentinel modes alike). A
replica that needs an index no older than `max_age` reads the shared copy, or takes the lock and loads
it while its peers wait for the result.

What is read back is checked as strictly as a vendor's answer: the envelope and the value's type
(`EntryKind.decode`), then the adapter's own `check` (ids in the vendor's format, no duplicates, ...).
A value that fails either is counted (`facade_shared_cache_operations_total{operation="lookup",
outcome="corrupt"}`), deleted and reloaded, never served.

Indexes carry no tags: a correction of readings changes no listing. Redis unavailable: `load` runs
`make` here (the replica's own single-flight in front of it stays), `publish` does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from app.infra.timeutil import Clock
from app.shared.entries import EntryKind, SharedEntry
from app.shared.flight import FleetFlight
from app.shared.tier import SharedUnavailable

V = TypeVar("V")


class IndexKind(EntryKind[V]):
    """An index's value type in Redis, with the adapter's check of a value read back."""

    def __init__(self, name: str, value_type: Any, check: Callable[[V], object] | None) -> None:
        super().__init__(f"index:{name}", value_type)
        self._check = check

    def decode(self, blob: bytes, now: float | None = None) -> SharedEntry[V]:
        entry = super().decode(blob, now)
        if self._check is not None:
            try:
                self._check(entry.value)
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError("not an index this code would load") from exc
        return entry


class FleetIndex(Generic[V]):
    """One index of one vendor account (`app.backends.base.SharedIndex`)."""

    def __init__(
        self, flight: FleetFlight, kind: IndexKind[V], account: str, *, ttl: float, budget: float, clock: Clock
    ) -> None:
        self._flight = flight
        self.kind = kind
        self._account = account
        self._ttl = ttl
        self._budget = budget
        self._clock = clock

    def key(self, part: str = "") -> tuple[str, str]:
        """The cache key of `part` (digested into the Redis key: the account never appears in clear)."""
        return (self._account, part)

    def _entry(self, value: V, loaded_at: float) -> SharedEntry[V]:
        return SharedEntry(value, loaded_at, loaded_at + self._ttl, loaded_at + self._ttl)

    async def load(self, make: Callable[[], Awaitable[V]], *, max_age: float, part: str = "") -> tuple[V, float]:
        async def made() -> SharedEntry[V]:
            value = await make()
            return self._entry(value, self._clock())

        entry, _outcome = await self._flight.load(
            self.kind, self.key(part), made, budget=self._budget, max_age=min(max_age, self._ttl)
        )
        return entry.value, entry.created

    async def publish(self, value: V, loaded_at: float, *, part: str = "") -> None:
        entries = self._flight.entries
        with contextlib.suppress(SharedUnavailable):
            if entries.tier.available:
                since = await entries.sequence()  # tagless: no correction can race it, but `put` asks
                await entries.put(self.kind, self.key(part), self._entry(value, loaded_at), since=since)


class AccountIndexes:
    """The shared indexes of one vendor account (`app.backends.base.IndexStore`)."""

    def __init__(self, flight: FleetFlight, account: str, *, budget: float, clock: Clock) -> None:
        self._flight = flight
        self._account = account
        self._budget = budget
        self._clock = clock

    def __call__(
        self, name: str, value_type: Any, *, ttl: float, check: Callable[[Any], object] | None = None
    ) -> FleetIndex[Any]:
        kind: IndexKind[Any] = IndexKind(name, value_type, check)
        return FleetIndex(self._flight, kind, self._account, ttl=ttl, budget=self._budget, clock=self._clock)


class SharedIndexes:
    """`BackendContext.index_store`: `SharedIndexes(flight, ...)(account)` is an account's `IndexStore`."""

    def __init__(self, flight: FleetFlight, *, budget: float, clock: Clock) -> None:
        self._flight = flight
        self._budget = budget
        self._clock = clock

    def __call__(self, account: str) -> AccountIndexes:
        return AccountIndexes(self._flight, account, budget=self._budget, clock=self._clock)
