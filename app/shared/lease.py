"""`LeaderLease` and `SharedWatermark`: the corrections poller runs on one replica at a time.

The lease is a Redis key holding its holder's id with a TTL. `keep()` (a background task per
replica) takes the lease when it is free and renews it every `ttl / 3` while it holds it, so a holder
that dies loses it within `ttl` and another replica takes over at its next attempt.

`is_leader` answers for the poller:
- `True`: this replica holds the lease (renewed within `ttl`);
- `False`: another replica holds it;
- `None`: Redis is unavailable, so nobody can know; the poller then polls on its own (duplicate polls
  beat missed corrections).

The watermark lives in Redis beside the lease and is written only by the lease holder (a
compare-and-set script checks the lease in the same step), so a replica that lost the lease while
polling cannot move it back.
"""

from __future__ import annotations

import asyncio
import contextlib

from app.infra.timeutil import Clock
from app.shared.tier import RedisTier, SharedUnavailable

_ACQUIRE_OR_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_FENCED_SET = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[2], ARGV[2]) return 1 end return 0"


class LeaderLease:
    def __init__(self, tier: RedisTier, name: str, *, ttl: float = 15.0, clock: Clock) -> None:
        self.tier = tier
        self.name = name
        self.key = tier.slot_key("lease", name)
        self.holder = tier.replica_id
        self._ttl = ttl
        self._clock = clock
        self._held_until = 0.0
        self._known = False
        """Whether the last attempt reached Redis."""

    @property
    def is_leader(self) -> bool | None:
        if not self._known or self.tier.status == "down":
            return None
        return self._clock() < self._held_until

    async def acquire_or_renew(self) -> bool | None:
        """Take the lease if free or renew it if ours; `is_leader` after the attempt."""
        started = self._clock()
        try:
            held = await self.tier.call(
                "lease",
                lambda r: self.tier.script(_ACQUIRE_OR_RENEW)(
                    keys=[self.key], args=[self.holder, max(1, int(self._ttl * 1000))]
                ),
                classify=lambda n: "held" if n else "other",
            )
        except SharedUnavailable:
            self._known = False
            self._held_until = 0.0
            return None
        self._known = True
        # Count the lease from before the request: Redis may have started its TTL that early.
        self._held_until = started + self._ttl if held else 0.0
        return bool(held)

    async def keep(self) -> None:
        """Run forever: hold the lease whenever it is free, renew it while held (a background task)."""
        while True:
            await self.acquire_or_renew()
            await asyncio.sleep(self._ttl / 3)

    async def release(self) -> None:
        """Give the lease up (at shutdown) so another replica takes over at once. Never raises."""
        self._held_until = 0.0
        with contextlib.suppress(SharedUnavailable):
            await self.tier.call(
                "lease_release", lambda r: self.tier.script(_RELEASE)(keys=[self.key], args=[self.holder])
            )


class SharedWatermark:
    """An opaque string (the poller's serialized watermark) that only the lease holder may move."""

    def __init__(self, lease: LeaderLease, name: str) -> None:
        self.lease = lease
        self.tier = lease.tier
        # The lease's hash tag: the fenced write touches both keys, in one Redis Cluster slot.
        self.key = lease.tier.slot_key("watermark", lease.name, name)

    async def get(self) -> str | None:
        """The stored watermark, None if none; raises `SharedUnavailable`."""
        value: bytes | str | None = await self.tier.call(
            "watermark_get", lambda r: r.get(self.key), classify=lambda v: "hit" if v is not None else "miss"
        )
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, value: str) -> bool:
        """Store `value` if this replica still holds the lease; whether it did. Raises `SharedUnavailable`."""
        stored = await self.tier.call(
            "watermark_set",
            lambda r: self.tier.script(_FENCED_SET)(keys=[self.lease.key, self.key], args=[self.lease.holder, value]),
            classify=lambda n: "ok" if n else "fenced",
        )
        return bool(stored)
