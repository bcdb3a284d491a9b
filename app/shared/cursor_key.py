"""One cursor signing key for the fleet when `FACADE_CURSOR_SECRET` is unset.

The first replica to start creates a random 32-byte key with `SET NX`; every replica then reads the
one that won, so a cursor made by one replica pages on any other. The key lives in Redis without a
TTL (cursors signed with it must keep working across restarts of the replicas).
"""

from __future__ import annotations

import os

from redis.asyncio import Redis

from app.shared.tier import RedisTier, SharedUnavailable

KEY_BYTES = 32


async def shared_cursor_secret(tier: RedisTier) -> bytes | None:
    """The fleet's cursor key, created if missing; None when Redis is unavailable (the caller keeps a
    per-process key and may ask again when Redis is back)."""
    key = tier.key("cursor-key")
    candidate = os.urandom(KEY_BYTES)

    async def create_or_read(r: Redis) -> list[object]:
        pipe = r.pipeline(transaction=True)
        pipe.set(key, candidate, nx=True)
        pipe.get(key)
        result: list[object] = await pipe.execute()
        return result

    try:
        _created, stored = await tier.call(
            "cursor_key", create_or_read, classify=lambda res: "created" if res[0] else "hit"
        )
    except SharedUnavailable:
        return None
    if not isinstance(stored, bytes) or len(stored) < 16:
        return None
    return stored
