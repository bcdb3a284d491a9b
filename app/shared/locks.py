"""`FleetLock`: redis-py's asyncio `Lock`, run through the tier and renewed by its holder while it works.

redis-py's `Lock` does the lock's job: `SET NX PX` with a token unique to this acquisition, and
compare-and-set scripts to extend and release it, so a holder only ever touches a lock it still owns.
What this adds is what the tier needs around every command (its timeout, error accounting and health)
and renewal while the holder works (`renewed()`: every `ttl / 3`), so a slow holder keeps its lock and
a dead one stops renewing and loses it within `ttl`; a holder that lives but loses Redis keeps working
and its lock just expires.

One acquisition is not redis-py's: the fleet's single-flight reads the shared entry and takes the key's
lock in the same round trip (`FleetFlight`'s lookup script, with this lock's `token`), then `adopt()`s
the lock so that renewing and releasing are redis-py's again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from app.shared.tier import RedisTier, SharedUnavailable


class FleetLock:
    def __init__(self, tier: RedisTier, key: str, *, ttl: float, operation: str = "lock") -> None:
        self.tier = tier
        self.key = key
        self.ttl_ms = max(1, int(ttl * 1000))
        self.token = f"{tier.replica_id}:{os.urandom(6).hex()}"
        self._operation = operation
        self._lock = Lock(
            tier.client,
            key,
            timeout=self.ttl_ms / 1000,
            blocking=False,
            thread_local=False,  # one event loop: the token belongs to this object, not to a thread
            raise_on_release_error=False,
        )

    async def acquire(self) -> bool:
        """Whether this holder got the lock; raises `SharedUnavailable`."""
        taken = await self.tier.call(
            self._operation,
            lambda r: self._lock.acquire(token=self.token),
            classify=lambda n: "acquired" if n else "busy",
        )
        return bool(taken)

    def adopt(self) -> None:
        """The lock was taken with `token` by a script of the caller's (`SET NX PX` with the same value):
        from now on it is renewed and released as if `acquire()` had taken it."""
        self._lock.local.token = self.token.encode()

    async def release(self) -> None:
        """Release if still ours; never raises (an unreleased lock expires by itself)."""
        if self._lock.local.token is None:
            return
        with contextlib.suppress(SharedUnavailable, LockError):
            await self.tier.call(f"{self._operation}_release", lambda r: self._lock.release())

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
                await self.tier.call(f"{self._operation}_renew", lambda r: self._lock.reacquire())
            except SharedUnavailable:
                continue
            except LockError:  # expired and taken by another holder (or gone): ours no longer
                return
