"""`SingleFlightCache`: a TTL cache bounded in entries and bytes, whose misses are coalesced.

- Bounded: a `cachetools.TLRUCache` whose size is counted in (estimated) bytes, each entry weighing
  at least `max_bytes / max_entries`, so both limits hold. Each entry lives until its own
  `stale_until` (fresh TTL + the stale-if-error window), on an injected timer. A value heavier than
  `max_entry_bytes` is returned but not kept.
- Single-flight: concurrent lookups of a missing key share one load, run in its own task, so one
  caller going away does not cancel it for the others. When every caller has gone, the load is
  cancelled: nobody is left to answer, and its retries would only add to a struggling vendor.
- Stale-if-error: when a load fails with an `UpstreamError` and an expired entry is still inside its
  stale window, that entry is served and marked stale.
- Negative entries: a `NotFound` is kept for `negative_ttl` seconds, so an unknown id asked again and
  again costs one vendor call, not one per request.
- Tags: each entry carries tags (meter ids, `<backend>:*`) so corrections can evict what they touch.
- A second tier: a `SharedTier` (e.g. Redis, shared by every replica) can sit behind the in-process
  cache. A miss then goes through `tier.load_through`, which may answer from the shared tier or wait
  for another replica's load before calling `load` itself.

cachetools itself is not asyncio-aware; everything here runs on the event loop thread, and the only
await points are the shared load, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from cachetools import TLRUCache
from pydantic import BaseModel

from app.infra.errors import NotFound, UpstreamError
from app.infra.metrics import Metrics
from app.infra.timeutil import Clock

V = TypeVar("V")
CacheResult = Literal["HIT", "MISS", "STALE"]


@dataclass(slots=True, eq=False)
class CacheEntry(Generic[V]):
    value: V
    created: float
    fresh_until: float
    stale_until: float
    tags: frozenset[str]
    size: int = 0
    missing: NotFound | None = None
    """A negative entry: the load said "not found"; `value` is None and lookups raise this."""
    current: bool = True
    """False once the entry was replaced by a newer load, evicted by a correction, or cleared."""
    from_tier: bool = False
    """Loaded from the shared tier (another replica's load): no vendor call was made for it here."""
    stale: bool = False
    """The load failed with an `UpstreamError` and this is the fleet's copy inside its stale window."""


@dataclass(slots=True, eq=False)
class _Flight:
    """One load in flight and the futures of the callers waiting for it."""

    task: asyncio.Task[None] | None = None
    waiters: list[asyncio.Future[CacheEntry[Any]]] = field(default_factory=list)

    def end(self, entry: CacheEntry[Any] | None, error: BaseException | None) -> None:
        """Hand every waiter the load's entry, or its error (both None: the load was cancelled)."""
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if waiter.done():
                continue
            if error is not None:
                waiter.set_exception(error)
                waiter.exception()  # mark retrieved: a waiter cancelled meanwhile must not warn
            elif entry is not None:
                waiter.set_result(entry)
            else:
                waiter.cancel()


class SharedTier(Protocol):
    """A cache tier shared by every replica, behind the in-process one. Best effort: it never raises
    for its own trouble (it loads locally instead), and never makes a caller wait past its deadline."""

    async def load_through(
        self, cache: str, key: Hashable, make_entry: Callable[[], Awaitable[CacheEntry[Any]]]
    ) -> CacheEntry[Any]:
        """The shared entry under (`cache`, `key`) if there is a fresh one; else `make_entry()` run
        once across the fleet (waiting for another replica's run when one is in flight), published."""
        ...

    def evicted(self, cache: str, keys: list[Hashable], tags: set[str]) -> None:
        """Entries were dropped here because of `tags` (a correction): drop them fleet-wide."""
        ...


def _stale_until(_key: Hashable, entry: CacheEntry[Any], _now: float) -> float:
    return entry.stale_until


_MODEL_BASE = 160  # a frozen pydantic model's own overhead with its shared fields-set (measured)
_SAMPLE = 3
"""Rows of a long homogeneous list that are walked to size it (first, middle, last): the rows of one
cached value (readings of a chunk, days of a month) differ only in a few short strings."""
_KINDS: dict[type, str] = {}


def _kind(cls: type) -> str:
    """How to size an instance of `cls`, decided once per type (an `isinstance(_, BaseModel)` goes
    through pydantic's metaclass and cost more than the rest of the walk)."""
    kind = _KINDS.get(cls)
    if kind is None:
        if issubclass(cls, BaseModel):
            kind = "model"
        elif issubclass(cls, (str, bytes)):
            kind = "str"
        elif issubclass(cls, (list, tuple)):
            kind = "seq"
        elif issubclass(cls, (set, frozenset)):
            kind = "set"
        elif issubclass(cls, dict):
            kind = "dict"
        elif issubclass(cls, (date, datetime)):
            kind = "time"
        elif issubclass(cls, (int, float, bool, type(None))):
            kind = "scalar"
        elif getattr(cls, "__slots__", None):
            kind = "slots"
        else:
            kind = "other"
        _KINDS[cls] = kind
    return kind


def approx_size(value: object) -> int:
    """Rough bytes held by a cached value: pydantic models, containers, strings, numbers. Runs once per
    stored entry, in a few microseconds whatever the entry's length: a long list of rows of one type is
    sized from `_SAMPLE` of them; errs on the generous side."""
    kind = _kind(type(value))
    if kind == "scalar":
        return 32
    if kind == "time":
        return 48
    if kind == "str":
        return sys.getsizeof(value)
    if kind == "model":
        return _MODEL_BASE + sum(approx_size(v) + 8 for v in value.__dict__.values())
    if kind in ("seq", "set"):
        items: Any = value if kind == "seq" else list(value)  # type: ignore[call-overload]
        n = len(items)
        if not n:
            return 64
        if n > 2 * _SAMPLE and type(items[0]) is type(items[-1]):  # homogeneous rows: sample
            sample = [items[0], items[n // 2], items[-1]]
            per = sum(approx_size(v) for v in sample) / len(sample)
            return 64 + 8 * n + int(per * n)
        return 64 + sum(approx_size(v) + 8 for v in items)
    if kind == "dict":
        mapping: dict[Any, Any] = value  # type: ignore[assignment]
        return 232 + sum(approx_size(k) + approx_size(v) for k, v in mapping.items())
    if kind == "slots":
        slots: tuple[str, ...] = type(value).__slots__  # type: ignore[attr-defined]
        return 64 + sum(approx_size(getattr(value, s, None)) + 8 for s in slots)
    return sys.getsizeof(value)


class SingleFlightCache:
    def __init__(
        self,
        name: str,
        *,
        maxsize: int,
        timer: Clock,
        stale_if_error: float,
        metrics: Metrics,
        max_bytes: int = 64 * 1024 * 1024,
        max_entry_bytes: int | None = None,
        negative_ttl: float = 0.0,
        tier: SharedTier | None = None,
    ) -> None:
        self.name = name
        self._timer = timer
        self._stale_if_error = stale_if_error
        self._floor = max(1, max_bytes // maxsize)
        self._max_entry = max_entry_bytes if max_entry_bytes is not None else max(self._floor, max_bytes // 2)
        self._negative_ttl = negative_ttl
        self._entries: TLRUCache[Hashable, CacheEntry[Any]] = TLRUCache(
            max_bytes, ttu=_stale_until, timer=timer, getsizeof=self._weight
        )
        self._inflight: dict[Hashable, _Flight] = {}
        self._lookups = {r: metrics.cache_lookups.labels(name, r) for r in ("hit", "miss", "stale", "coalesced")}
        self._coalesced = metrics.coalesced.labels(name)
        self.tier = tier

    def _weight(self, entry: CacheEntry[Any]) -> int:
        return max(entry.size, self._floor)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Estimated bytes held now (each entry counted at least `max_bytes / max_entries`)."""
        return int(self._entries.currsize)

    @property
    def max_bytes(self) -> int:
        return int(self._entries.maxsize)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def count_backend(self, backend: str) -> int:
        """Entries whose key starts with `backend` (the service keys every entry `(backend, ...)`)."""
        return sum(1 for key in list(self._entries) if isinstance(key, tuple) and key and key[0] == backend)

    def note_stale(self) -> None:
        """Count a stale entry served by the caller after its own deadline ran out."""
        self._lookups["stale"].inc()

    def note_hit(self) -> None:
        """Count a hit served from this cache's data by another path (e.g. one meter out of the list)."""
        self._lookups["hit"].inc()

    def peek(self, key: Hashable) -> CacheEntry[Any] | None:
        """The entry under `key` if it has not outlived its stale window; no metrics, no load."""
        entry = self._entries.get(key)
        return None if entry is None or entry.missing is not None else entry

    def is_current(self, key: Hashable, entry: CacheEntry[Any]) -> bool:
        """Whether `entry` is still fresh and was neither replaced nor evicted by a correction (used to
        validate responses built from it, on every hit: a flag and a clock read, no cache lookup). An
        entry dropped only to make room still holds true data until it expires."""
        return entry.current and self._timer() < entry.fresh_until

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
        entry can serve (then the result is `STALE`), and `NotFound` again for a negative entry."""
        entry = self._entries.get(key)
        if entry is not None and self._timer() < entry.fresh_until:
            self._lookups["hit"].inc()
            if entry.missing is not None:
                raise entry.missing
            return entry, "HIT"
        loop = asyncio.get_running_loop()
        flight = self._inflight.get(key)
        if flight is None:
            self._lookups["miss"].inc()
            flight = self._inflight[key] = _Flight()
            flight.task = loop.create_task(self._load(key, load, ttl, tags, flight))
            outcome: CacheResult = "MISS"
        else:
            self._lookups["coalesced"].inc()
            self._coalesced.inc()
            outcome = "HIT"
        # Each caller waits on a future of its own, resolved by the load: a caller cancelled while it
        # waits cancels only its own future, never the load (what `asyncio.shield` did, for less).
        waiter: asyncio.Future[CacheEntry[Any]] = loop.create_future()
        flight.waiters.append(waiter)
        try:
            entry = await waiter
            if entry.stale:  # the fleet's stale copy, served because the vendor failed
                self._lookups["stale"].inc()
                return entry, "STALE"
            return entry, "HIT" if entry.from_tier else outcome
        except UpstreamError:
            stale = self.peek(key)
            if stale is not None:
                self._lookups["stale"].inc()
                return stale, "STALE"
            raise
        finally:
            if not waiter.done() or waiter.cancelled():  # this caller left before the load ended
                waiters = flight.waiters
                if waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters and flight.task is not None:
                        flight.task.cancel()  # every caller has gone: stop calling the vendor for nobody

    async def _make_entry(
        self,
        load: Callable[[], Awaitable[V]],
        ttl: float | Callable[[V], float],
        tags: Iterable[str] | Callable[[V], Iterable[str]],
    ) -> CacheEntry[Any]:
        try:
            value = await load()
        except NotFound as exc:
            if self._negative_ttl <= 0:
                raise
            now = self._timer()
            return CacheEntry(None, now, now + self._negative_ttl, now + self._negative_ttl, frozenset(), 256, exc)
        now = self._timer()
        seconds = ttl(value) if callable(ttl) else ttl
        labels = frozenset(tags(value) if callable(tags) else tags)
        return CacheEntry(value, now, now + seconds, now + seconds + self._stale_if_error, labels, approx_size(value))

    async def _load(
        self,
        key: Hashable,
        load: Callable[[], Awaitable[V]],
        ttl: float | Callable[[V], float],
        tags: Iterable[str] | Callable[[V], Iterable[str]],
        flight: _Flight,
    ) -> None:
        try:
            make = functools.partial(self._make_entry, load, ttl, tags)
            entry = await (self.tier.load_through(self.name, key, make) if self.tier is not None else make())
        except asyncio.CancelledError:  # every caller left, or shutdown: waiters see the cancellation
            flight.end(None, None)
            raise
        except Exception as exc:  # delivered to every waiter; nothing is cached
            flight.end(None, exc)
        else:
            if entry.fresh_until > entry.created and entry.size <= self._max_entry:
                previous = self._entries.get(key)
                if previous is not None:
                    previous.current = False
                self._entries[key] = entry
            flight.end(entry, entry.missing)
        finally:
            if self._inflight.get(key) is flight:
                del self._inflight[key]

    def evict_tagged(self, tags: set[str]) -> int:
        """Drop every entry carrying any of `tags` (including its stale copy). Returns how many."""
        doomed = [k for k, e in list(self._entries.items()) if e.tags & tags]
        for k in doomed:
            entry = self._entries.pop(k, None)
            if entry is not None:
                entry.current = False
        if self.tier is not None and doomed:
            self.tier.evicted(self.name, doomed, tags)
        return len(doomed)

    def clear(self) -> None:
        for entry in list(self._entries.values()):
            entry.current = False
        self._entries.clear()

    async def aclose(self) -> None:
        tasks = [flight.task for flight in self._inflight.values() if flight.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
