"""`FleetLock`: a Redis lock (`SET NX PX`) that its holder renews while it works.

The value is a token unique to this acquisition, so renewing and releasing only ever touch a lock
this holder still owns (compare-and-set scripts). A holder that dies stops renewing, and its lock
expires within `ttl`; a holder that lives but loses Redis keeps working and its lock just expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from app.shared.tier import RedisTier, SharedUnavailable

TAKE = "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end return 0"
RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class FleetLock:
    def __init__(self, tier: RedisTier, key: str, *, ttl: float, operation: str = "lock") -> None:
        self.tier = tier
        self.key = key
        self.ttl_ms = max(1, int(ttl * 1000))
        self.token = f"{tier.replica_id}:{os.urandom(6).hex()}"
        self._operation = operation

    async def acquire(self) -> bool:
        """Whether this holder got the lock; raises `SharedUnavailable`."""
        taken = await self.tier.call(
            self._operation,
            lambda r: self.tier.script(TAKE)(keys=[self.key], args=[self.token, self.ttl_ms]),
            classify=lambda n: "acquired" if n else "busy",
        )
        return bool(taken)

    async def release(self) -> None:
        """Release if still ours; never raises (an unreleased lock expires by itself)."""
        with contextlib.suppress(SharedUnavailable):
            await self.tier.call(
                f"{self._operation}_release", lambda r: self.tier.script(RELEASE)(keys=[self.key], args=[self.token])
            )

    @contextlib.asynccontextmanager
    async def renewed(self) -> AsyncIterator[None]:
        """While the body runs, renew the (acquired) lock every `ttl / 3`; release it after."""
        keeper = asyncio.get_running_loop().create_task(self._keep())
        try:
            yield
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self.release()

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                still = await self.tier.call(
                    f"{self._operation}_renew",
                    lambda r: self.tier.script(RENEW)(keys=[self.key], args=[self.token, self.ttl_ms]),
                )
            except SharedUnavailable:
                continue
            if not still:
                return
