"""`SingleFlightCache`: a bounded TTL cache whose misses are coalesced.

- Bounded: a `cachetools.TLRUCache` of at most `maxsize` entries, each living until its own
  `stale_until` (fresh TTL + the stale-if-error window), on an injected timer.
- Single-flight: concurrent lookups of a missing key share one load. The load runs in its own task,
  so a caller that goes away (disconnect, deadline) does not cancel it for the others, and its result
  still lands in the cache.
- Stale-if-error: when a load fails with an `UpstreamError` and an expired entry is still inside its
  stale window, that entry is served and marked stale.
- Tags: each entry carries tags (meter ids, `<backend>:*`) so corrections can evict what they touch.

cachetools itself is not asyncio-aware; everything here runs on the event loop thread, and the only
await points are the shared load, so no lock is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from cachetools import TLRUCache

from app.errors import UpstreamError
from app.metrics import Metrics
from app.timeutil import Clock

V = TypeVar("V")
CacheResult = Literal["HIT", "MISS", "STALE"]


@dataclass(slots=True, eq=False)
class CacheEntry(Generic[V]):
    value: V
    created: float
    fresh_until: float
    stale_until: float
    tags: frozenset[str]


def _stale_until(_key: Hashable, entry: CacheEntry[Any], _now: float) -> float:
    return entry.stale_until


class SingleFlightCache:
    def __init__(self, name: str, *, maxsize: int, timer: Clock, stale_if_error: float, metrics: Metrics) -> None:
        self.name = name
        self._timer = timer
        self._stale_if_error = stale_if_error
        self._entries: TLRUCache[Hashable, CacheEntry[Any]] = TLRUCache(maxsize, ttu=_stale_until, timer=timer)
        self._inflight: dict[Hashable, asyncio.Future[CacheEntry[Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lookups = {r: metrics.cache_lookups.labels(name, r) for r in ("hit", "miss", "stale", "coalesced")}
        self._coalesced = metrics.coalesced.labels(name)

    def __len__(self) -> int:
        return len(self._entries)

    def count_backend(self, backend: str) -> int:
        """Entries whose key starts with `backend` (the service keys every entry `(backend, ...)`)."""
        return sum(1 for key in list(self._entries) if isinstance(key, tuple) and key and key[0] == backend)

    @property
    def maxsize(self) -> int:
        return int(self._entries.maxsize)

    def note_stale(self) -> None:
        """Count a stale entry served by the caller after its own deadline ran out."""
        self._lookups["stale"].inc()

    def note_hit(self) -> None:
        """Count a hit served from this cache's data by another path (e.g. one meter out of the list)."""
        self._lookups["hit"].inc()

    def peek(self, key: Hashable) -> CacheEntry[Any] | None:
        """The entry under `key` if it has not outlived its stale window; no metrics, no load."""
        return self._entries.get(key)

    def is_current(self, key: Hashable, entry: CacheEntry[Any]) -> bool:
        """Whether `entry` is still the fresh entry under `key` (used to validate derived responses)."""
        return self._entries.get(key) is entry and self._timer() < entry.fresh_until

    async def get_or_load(
        self,
        key: Hashable,
        load: Callable[[], Awaitable[V]],
        *,
        ttl: float | Callable[[V], float],
        tags: Iterable[str] | Callable[[V], Iterable[str]] = (),
    ) -> tuple[CacheEntry[V], CacheResult]:
        """The fresh entry for `key`, loading it once however many callers ask at the same time.

        `ttl` and `tags` may be functions of the loaded value (a window in the past lives longer; a
        daily answer is tagged with every meter it holds). Raises what `load` raised, unless a stale
        entry can serve (then the result is `STALE`)."""
        entry = self._entries.get(key)
        if entry is not None and self._timer() < entry.fresh_until:
            self._lookups["hit"].inc()
            return entry, "HIT"
        future = self._inflight.get(key)
        if future is None:
            self._lookups["miss"].inc()
            future = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            task = asyncio.create_task(self._load(key, load, ttl, tags, future))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            outcome: CacheResult = "MISS"
        else:
            self._lookups["coalesced"].inc()
            self._coalesced.inc()
            outcome = "HIT"
        try:
            return await asyncio.shield(future), outcome
        except UpstreamError:
            stale = self._entries.get(key)
            if stale is not None:
                self._lookups["stale"].inc()
                return stale, "STALE"
            raise

    async def _load(
        self,
        key: Hashable,
        load: Callable[[], Awaitable[V]],
        ttl: float | Callable[[V], float],
        tags: Iterable[str] | Callable[[V], Iterable[str]],
        future: asyncio.Future[CacheEntry[Any]],
    ) -> None:
        try:
            value = await load()
        except asyncio.CancelledError:  # only at shutdown: waiters see the cancellation
            future.cancel()
            raise
        except Exception as exc:  # delivered to every waiter; nothing is cached
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: a load nobody awaits any more must not warn
        else:
            now = self._timer()
            seconds = ttl(value) if callable(ttl) else ttl
            labels = frozenset(tags(value) if callable(tags) else tags)
            entry = CacheEntry(value, now, now + seconds, now + seconds + self._stale_if_error, labels)
            if seconds > 0:
                self._entries[key] = entry
            if not future.done():
                future.set_result(entry)
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    def evict_tagged(self, tags: set[str]) -> int:
        """Drop every entry carrying any of `tags` (including its stale copy). Returns how many."""
        doomed = [k for k, e in list(self._entries.items()) if e.tags & tags]
        for k in doomed:
            self._entries.pop(k, None)
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
