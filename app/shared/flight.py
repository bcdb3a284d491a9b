"""`FleetFlight`: one vendor call per key for the whole fleet, whatever replica is asked.

On an in-process miss, `load(kind, key, make, budget=...)`:
1. one script reads the shared entry and, if there is none (or only a stale one), takes the key's lock
   (`SET NX PX lock_ttl`) in the same round trip (entry and lock share a hash tag: one Cluster slot);
2. a fresh shared entry whose tags no correction bumped since (`SharedEntries.valid`) is returned as
   is (`shared`);
3. the lock holder reads the generation sequence, runs `make()` (the vendor call), stores the entry
   (TTL = fresh + stale window) unless a correction landed meanwhile, releases the lock and publishes
   "filled" (`loaded`). While it loads, it renews the lock every
   `lock_ttl / 3`, so a slow vendor keeps its lock and a holder that died loses it within `lock_ttl`;
4. a replica that finds the lock taken waits: woken by the "filled" broadcast, polling as a fallback
   (20 ms doubling to 200 ms), trying the lock again each time (so a dead holder's expired lock is
   taken over). It waits at most `wait_share` of the caller's budget, then calls the vendor itself
   (`local`): nobody waits past the deadline for a peer;
5. Redis unavailable at any point → `make()` runs locally (`local`), stored if Redis takes it.

An entry whose `fresh_until` is not after its `created` (ttl 0: not cacheable) is still shared with
the replicas that asked while it loaded, as the in-process single-flight shares it with its waiters:
it is kept for `lock_ttl` seconds and served only to a caller that asked before it was made.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Literal, TypeVar

from app.infra.timeutil import Clock
from app.shared.bus import Broadcast
from app.shared.entries import EntryKind, SharedEntries, SharedEntry
from app.shared.locks import FleetLock
from app.shared.tier import SharedUnavailable

V = TypeVar("V")
FlightOutcome = Literal["shared", "loaded", "local"]
FILLED = "filled"
"""Broadcast topic: a lock holder finished (the message is the entry's Redis key)."""

_LOOKUP = """
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
if redis.call('GET', KEYS[2]) == ARGV[1] then return {2, ''} end
return {0, ''}
"""
# The second GET: the lock already holds this lookup's own token when the lookup ran twice (sent again
# on a new connection after its first answer was lost, see `tier.ONCE_ON_A_NEW_CONNECTION`).
_LOOKUP_OUTCOMES = {0: "busy", 1: "hit", 2: "acquired"}


class FleetFlight:
    def __init__(
        self,
        entries: SharedEntries,
        broadcast: Broadcast | None,
        *,
        clock: Clock,
        lock_ttl: float = 3.0,
        wait_share: float = 0.5,
        first_poll: float = 0.02,
        max_poll: float = 0.2,
    ) -> None:
        self.entries = entries
        self.tier = entries.tier
        self._broadcast = broadcast
        self._clock = clock
        self._lock_ttl = lock_ttl
        self._wait_share = wait_share
        self._first_poll = first_poll
        self._max_poll = max_poll
        self._wakeups: dict[str, asyncio.Event] = {}
        if broadcast is not None:
            broadcast.on(FILLED, self._on_filled)

    def lock_key(self, kind: EntryKind[Any], key: Hashable) -> str:
        return self.tier.slot_key("lock", self.entries.group(kind, key))

    def _on_filled(self, message: bytes) -> None:
        event = self._wakeups.pop(message.decode(errors="replace"), None)
        if event is not None:
            event.set()

    async def load(
        self,
        kind: EntryKind[V],
        key: Hashable,
        make: Callable[[], Awaitable[SharedEntry[V]]],
        *,
        budget: float,
        max_age: float | None = None,
    ) -> tuple[SharedEntry[V], FlightOutcome]:
        """The entry for `key`, made by at most one replica at a time.

        `budget` is how many seconds the caller may spend (its deadline); waiting for a peer uses at
        most `wait_share` of it. `max_age`: a fresh entry created longer ago than that is refreshed as a
        stale one is (an adapter's index re-listed on a miss). Raises what `make` raised."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + max(0.0, budget * self._wait_share)
        asked_at = self._clock()
        name = self.entries.key(kind, key)
        lock = FleetLock(self.tier, self.lock_key(kind, key), ttl=self._lock_ttl)
        poll = self._first_poll
        while True:
            try:
                state, blob = await self._lookup(name, lock)
                if state == 1:
                    try:
                        entry = kind.decode(blob, self._clock())
                    except ValueError:
                        await self.entries.drop_invalid(kind, key, "lookup")
                    else:
                        now = self._clock()
                        young = max_age is None or now - entry.created <= max_age
                        usable = (now < entry.fresh_until and young) or entry.created >= asked_at
                        # fresh (or the result of the load we waited for), and not invalidated since
                        if usable and await self.entries.valid(entry):
                            return entry, "shared"
                    # Present but stale (or unreadable): whoever takes the lock refreshes it.
                    state = 2 if await lock.acquire() else 0
            except SharedUnavailable:
                return await self._local(kind, key, make), "local"
            if state == 2:
                lock.adopt()  # a no-op when `acquire()` took it; the lookup script's taking otherwise
                return await self._hold(kind, key, make, lock), "loaded"
            remaining = give_up - loop.time()
            if remaining <= 0:
                self.tier.note("flight_wait", "deadline")
                return await self._local(kind, key, make), "local"
            # No await since the lookup but the lock attempt: a "filled" missed there costs one poll.
            event = self._wakeups.setdefault(name, asyncio.Event())
            try:
                async with asyncio.timeout(min(poll, remaining)):
                    await event.wait()
            except TimeoutError:
                if self._wakeups.get(name) is event:  # nobody published (e.g. the holder died): no leftovers
                    del self._wakeups[name]
            poll = min(poll * 2, self._max_poll)

    async def _lookup(self, name: str, lock: FleetLock) -> tuple[int, bytes]:
        """One round trip: the entry if present, else an attempt at the lock."""
        result = await self.tier.call(
            "lookup",
            lambda r: self.tier.script(_LOOKUP)(keys=[name, lock.key], args=[lock.token, lock.ttl_ms]),
            classify=lambda res: _LOOKUP_OUTCOMES.get(int(res[0]), "error"),
        )
        return int(result[0]), bytes(result[1])

    async def _sequence(self) -> str | None:
        """The generation sequence before a load (None when Redis cannot say: the load is then not shared)."""
        with contextlib.suppress(SharedUnavailable):
            return await self.entries.sequence()
        return None

    async def _store(self, kind: EntryKind[V], key: Hashable, entry: SharedEntry[V], since: str | None) -> None:
        if entry.fresh_until <= entry.created:  # not cacheable: kept only for the replicas waiting now
            entry = SharedEntry(
                entry.value, entry.created, entry.fresh_until, entry.created + self._lock_ttl, entry.tags
            )
        with contextlib.suppress(SharedUnavailable):
            await self.entries.put(kind, key, entry, since=since)

    async def _local(
        self, kind: EntryKind[V], key: Hashable, make: Callable[[], Awaitable[SharedEntry[V]]]
    ) -> SharedEntry[V]:
        since = await self._sequence() if self.tier.available else None
        entry = await make()
        await self._store(kind, key, entry, since)
        return entry

    async def _hold(
        self, kind: EntryKind[V], key: Hashable, make: Callable[[], Awaitable[SharedEntry[V]]], lock: FleetLock
    ) -> SharedEntry[V]:
        try:
            async with lock.renewed():
                since = await self._sequence()
                entry = await make()
                await self._store(kind, key, entry, since)
                return entry
        finally:
            # Success or failure, wake the waiters: they read the entry, or one of them takes the lock.
            if self._broadcast is not None:
                with contextlib.suppress(SharedUnavailable):
                    await self._broadcast.publish(FILLED, self.entries.key(kind, key).encode())
