"""Where an answer came from: the cache entries it was built from, opaque to the HTTP layer.

The HTTP layer keeps a serialized response only as long as `is_current()` holds, that is while every
entry it was built from is still the fresh entry under its key. A correction that evicts data, or data
expiring, thereby invalidates every response built from it, with no bookkeeping anywhere else.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from app.domain.models import BackendError
from app.guard.cache import CacheEntry, CacheResult, SingleFlightCache

T = TypeVar("T")


@dataclass(slots=True)
class Provenance:
    _sources: list[tuple[SingleFlightCache, Hashable, CacheEntry[Any]]] = field(default_factory=list)
    _results: list[CacheResult] = field(default_factory=list)

    def add(self, cache: SingleFlightCache, key: Hashable, entry: CacheEntry[Any], result: CacheResult) -> None:
        self._sources.append((cache, key, entry))
        self._results.append(result)

    def extend(self, other: Provenance) -> None:
        self._sources.extend(other._sources)
        self._results.extend(other._results)

    @property
    def cache_result(self) -> CacheResult:
        """STALE if any part was stale, else MISS if any part went upstream, else HIT."""
        return "STALE" if "STALE" in self._results else "MISS" if "MISS" in self._results else "HIT"

    @property
    def cached(self) -> bool:
        return bool(self._sources)

    def created(self, now: float) -> float:
        return min((e.created for _, _, e in self._sources), default=now)

    def fresh_until(self, now: float) -> float:
        return min((e.fresh_until for _, _, e in self._sources), default=now)

    def is_current(self) -> bool:
        """Whether every entry behind the answer is still the fresh entry under its key."""
        return all(cache.is_current(key, entry) for cache, key, entry in self._sources)


@dataclass(slots=True)
class Answer(Generic[T]):
    """An operation's value, the failures of backends that did not answer, and where it came from."""

    value: T
    errors: list[BackendError] = field(default_factory=list)
    provenance: Provenance = field(default_factory=Provenance)
