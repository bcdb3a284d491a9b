"""`Fleet`: everything a replica shares through Redis, wired for the app (`FACADE_REDIS_URL`).

The factory builds one `Fleet` per process, before the backends (they take `token_store`), hands
`cache_tier` to the in-process caches, `attach`es the service and the cursor codec, then `start`s it.
What each piece does when Redis is unavailable is the in-process default: the caches load on their
own, the token manager logs in on its own, every replica polls corrections on its own (with its own
watermark), and cursors are signed with the replica's own key until the shared one can be read.

Sandbox mode keeps vendor tokens per replica: each replica then has its own in-process emulators,
whose tokens mean nothing to another replica's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

from app.core.caches import CACHE_SPECS
from app.core.corrections import Watermark, decode_mark, encode_mark
from app.domain.cursors import CursorCodec
from app.domain.models import Change
from app.guard.cache import CacheEntry, approx_size
from app.infra.errors import NotFound, UpstreamError
from app.infra.metrics import Metrics
from app.infra.timeutil import Clock
from app.shared.bus import Broadcast
from app.shared.cursor_key import shared_cursor_secret
from app.shared.entries import EntryKind, SharedEntries, SharedEntry, key_digest
from app.shared.evictions import EvictionBroadcast
from app.shared.flight import FleetFlight
from app.shared.lease import LeaderLease, SharedWatermark
from app.shared.tier import Health, Mode, RedisTier, SharedUnavailable
from app.shared.tokens import SharedTokenStore

log = logging.getLogger("app.shared")
T = TypeVar("T")

CACHE_KINDS: dict[str, EntryKind[Any]] = {spec.name: EntryKind(spec.name, spec.value) for spec in CACHE_SPECS}
"""The value type of each in-process cache, as stored in Redis (a cache not listed stays local)."""


class RedisCacheTier:
    """`app.guard.cache.SharedTier` on Redis: the in-process cache's misses go through the fleet flight."""

    def __init__(self, flight: FleetFlight, *, budget: float, kinds: Mapping[str, EntryKind[Any]] = CACHE_KINDS):
        self._flight = flight
        self._budget = budget
        self._kinds = kinds

    async def load_through(
        self, cache: str, key: Hashable, make_entry: Callable[[], Awaitable[CacheEntry[Any]]]
    ) -> CacheEntry[Any]:
        kind = self._kinds.get(cache)
        try:
            key_digest(key)
        except TypeError:
            kind = None  # a key with no canonical form cannot be named across processes
        if kind is None:
            return await make_entry()
        made: list[CacheEntry[Any]] = []

        async def make() -> SharedEntry[Any]:
            entry = await make_entry()
            made.append(entry)
            missing = (entry.missing.detail, entry.missing.backend) if entry.missing is not None else None
            return SharedEntry(
                entry.value, entry.created, entry.fresh_until, entry.stale_until, entry.tags, missing=missing
            )

        try:
            shared, _outcome = await self._flight.load(kind, key, make, budget=self._budget)
        except UpstreamError:
            # Fleet stale-if-error: a copy inside its stale window, whoever loaded it, is served
            # (`X-Cache: STALE`) by any replica, as the in-process cache serves its own.
            stale = await self._stale_copy(kind, key)
            if stale is None:
                raise
            return stale
        if made:
            return made[0]  # loaded here: keep the entry the cache made (with its size)
        value = shared.value
        if shared.missing is not None:  # another replica's not-found answer: 404 here too, no vendor call
            detail, backend = shared.missing
            return CacheEntry(
                None,
                shared.created,
                shared.fresh_until,
                shared.stale_until,
                frozenset(),
                256,
                NotFound(detail, backend=backend),
                from_tier=True,
            )
        return CacheEntry(
            value,
            shared.created,
            shared.fresh_until,
            shared.stale_until,
            shared.tags,
            approx_size(value),
            from_tier=True,
        )

    async def _stale_copy(self, kind: EntryKind[Any], key: Hashable) -> CacheEntry[Any] | None:
        entries = self._flight.entries
        try:
            found = await entries.get(kind, key)  # None when a correction invalidated it
        except SharedUnavailable:
            return None
        if found is None or found.missing is not None or entries.clock() >= found.stale_until:
            return None
        return CacheEntry(
            found.value,
            found.created,
            found.fresh_until,
            found.stale_until,
            found.tags,
            approx_size(found.value),
            from_tier=True,
            stale=True,
        )

    def evicted(self, cache: str, keys: list[Hashable], tags: set[str]) -> None:
        """Nothing to do here: the replica that polled the corrections evicts fleet-wide
        (`Fleet.evict_everywhere`), even when its own cache held none of the entries."""


class SharedWatermarks:
    """`app.core.corrections.WatermarkStore`: in Redis (moved only by the lease holder, and only once the
    evictions of the corrections it covers are written fleet-wide: `written()`), mirrored locally for
    when Redis is unavailable."""

    def __init__(self, lease: LeaderLease, written: Callable[[], Awaitable[bool]] | None = None) -> None:
        self._lease = lease
        self._written = written
        self._local: dict[str, Watermark] = {}

    async def get(self, backend: str) -> Watermark | None:
        with contextlib.suppress(SharedUnavailable):
            text = await SharedWatermark(self._lease, f"corrections:{backend}").get()
            if text is not None:
                with contextlib.suppress(ValueError):
                    return decode_mark(text)
        return self._local.get(backend)

    async def set(self, backend: str, mark: Watermark) -> None:
        self._local[backend] = mark  # evicted here already: this replica's own polls go on from there
        if self._written is not None and not await self._written():
            log.info("corrections watermark kept: their evictions are not written fleet-wide yet")
            return  # the next poll (here or on the next leader) reads and evicts them again
        with contextlib.suppress(SharedUnavailable):
            await SharedWatermark(self._lease, f"corrections:{backend}").set(encode_mark(mark))


class LeaseLeadership:
    """`app.core.corrections.Leadership`: poll while holding the lease, or when nobody can know (Redis
    unavailable: duplicate polls beat missed corrections)."""

    def __init__(self, lease: LeaderLease) -> None:
        self._lease = lease

    async def is_leader(self) -> bool:
        held = await self._lease.acquire_or_renew()
        return held is not False


class Fleet:
    def __init__(
        self,
        url: str,
        *,
        mode: Mode = "standalone",
        sentinels: str = "",
        service: str = "mymaster",
        prefix: str,
        timeout: float,
        connect_timeout: float | None = None,
        max_connections: int = 64,
        clock: Clock,
        metrics: Metrics,
        budget: float,
        share_tokens: bool = True,
        lease_ttl: float = 15.0,
        lock_ttl: float = 3.0,
        max_entry_bytes: int = 1024 * 1024,
        cursor_refresh: float = 30.0,
    ) -> None:
        counters: dict[tuple[str, str], Any] = {}

        def record(operation: str, outcome: str) -> None:
            counter = counters.get((operation, outcome))
            if counter is None:
                counter = counters[(operation, outcome)] = metrics.shared_cache_operations.labels(operation, outcome)
            counter.inc()

        self.tier = RedisTier(
            url,
            mode=mode,
            sentinels=sentinels,
            service=service,
            prefix=prefix,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            record=record,
        )
        self.clock = clock
        self.broadcast = Broadcast(self.tier)
        self.entries = SharedEntries(self.tier, clock, max_entry_bytes=max_entry_bytes)
        self.flight = FleetFlight(self.entries, self.broadcast, clock=clock, lock_ttl=lock_ttl)
        self.cache_tier = RedisCacheTier(self.flight, budget=budget)
        self.lease = LeaderLease(self.tier, "corrections", ttl=lease_ttl, clock=clock)
        self.watermarks = SharedWatermarks(self.lease, self._evictions_written)
        self.leadership = LeaseLeadership(self.lease)
        self._budget = budget
        self._share_tokens = share_tokens
        self._evictions: EvictionBroadcast | None = None
        self._pending_evictions: list[asyncio.Task[bool]] = []
        self._cursors: CursorCodec | None = None
        self._cursor_key_shared = False
        self._cursor_refresh = cursor_refresh
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def status(self) -> Health:
        return self.tier.status

    def token_store(self, account: str, credential: str | None) -> SharedTokenStore | None:
        """The fleet's vendor token store for `account` (see `app.shared.tokens.account_name`), its
        tokens sealed with a key derived from `credential` (no credential: not shared)."""
        if not self._share_tokens or not credential:
            return None
        return SharedTokenStore(self.tier, account, credential=credential, clock=self.clock)

    def attach(
        self,
        *,
        evict_local: Callable[[set[str]], object],
        drop_local: Callable[[], None],
        cursors: CursorCodec | None,
    ) -> None:
        """Wire the service before `start`: `evict_local(meter_ids)` drops what another replica's
        corrections touched; `drop_local()` drops everything a correction could touch (after a gap in
        the subscription); `cursors` adopts the fleet's key (None when FACADE_CURSOR_SECRET is set)."""
        self._evictions = EvictionBroadcast(self.entries, lambda tags: evict_local(set(tags)), on_gap=drop_local)
        self._cursors = cursors

    async def start(self, *, lead: bool = True) -> None:
        """Connect, adopt the fleet's cursor key, subscribe; with `lead`, run for the poller's lease."""
        await self.tier.start()
        self.tier.on_status(self._on_status)
        await self._adopt_cursor_key(starting=True)
        if self._cursors is not None:
            self._spawn(self._keep_cursor_key())
        self.broadcast.start()
        if self._evictions is not None:
            self._spawn(self._evictions.run())
        if lead:
            self._spawn(self.lease.keep())

    def evict_everywhere(self, changes: Iterable[Change]) -> None:
        """After this replica evicted locally for `changes`: delete the shared entries of those meters
        once and tell every other replica (in the background; a poll never waits on Redis)."""
        meters = {c.meter_id for c in changes}
        if meters and self._evictions is not None:
            self._pending_evictions.append(self._spawn(self._evictions.evict(meters, local=False)))

    async def _evictions_written(self) -> bool:
        """Whether every eviction started since the last call was written fleet-wide (awaits them)."""
        pending, self._pending_evictions = self._pending_evictions, []
        results = await asyncio.gather(*pending, return_exceptions=True)
        return all(r is True for r in results)

    def _on_status(self, health: Health) -> None:
        if health == "up" and self._cursors is not None:
            self._spawn(self._adopt_cursor_key())  # written back if Redis lost it, or adopted

    async def _adopt_cursor_key(self, *, starting: bool = False) -> None:
        """At start-up nothing is signed yet: no key of ours to keep. Later, ours is the fleet's (written
        back if Redis lost it) or one this replica signed with alone (kept valid as a recent key)."""
        if self._cursors is None:
            return
        found = await shared_cursor_secret(self.tier, None if starting else self._cursors.key)
        if found is not None:
            secret, recent = found
            self._cursors.adopt(secret, recent)
            self._cursor_key_shared = True
        elif not self._cursor_key_shared:
            # info, not warning: the outage itself already logged its one warning
            log.info("no shared cursor key yet: this replica signs cursors with its own key until Redis is back")

    async def _keep_cursor_key(self) -> None:
        """Every `cursor_refresh` seconds: the key back into Redis if it was lost (evicted, a restart
        without persistence), and the recent keys of replicas that joined meanwhile."""
        while True:
            await asyncio.sleep(self._cursor_refresh)
            if self.tier.available:
                await self._adopt_cursor_key()

    def _spawn(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.lease.release()
        await self.broadcast.aclose()
        await self.tier.aclose()
