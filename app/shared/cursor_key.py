"""One cursor signing key for the fleet when `FACADE_CURSOR_SECRET` is unset, that cannot split.

`<prefix>:cursor-key` holds the fleet's key (32 random bytes, no TTL: cursors must keep working
across restarts of the replicas); `<prefix>:cursor-key:{<prefix>:cursor-key}:recent` (the same hash slot) the last few
keys replicas signed with before they could adopt it. One script, run at start-up, whenever Redis
comes back and every `refresh_every` seconds (`Fleet`):
- writes this replica's key as the fleet's if there is none (`SET NX`): a Redis that restarted
  without persistence, or evicted the key, gets the fleet's key back from the replicas that hold it,
  instead of a new one that would split them;
- adds this replica's key to the recent ones if it signed with another (started while Redis was
  down), so its cursors keep working on every replica;
- answers the fleet's key and the recent ones: a replica signs with the first and accepts all.
"""

from __future__ import annotations

import os
from typing import Any

from app.shared.tier import RedisTier, SharedUnavailable

KEY_BYTES = 32
RECENT = 4
"""Keys kept valid beside the fleet's own."""

_SYNC = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1])
  current = ARGV[1]
end
local recent = redis.call('GET', KEYS[2]) or ''
if current ~= ARGV[1] and ARGV[3] == '1' then
  local known = false
  for i = 1, #recent, 32 do
    if string.sub(recent, i, i + 31) == ARGV[1] then known = true end
  end
  if not known then
    recent = string.sub(ARGV[1] .. recent, 1, tonumber(ARGV[2]))
    redis.call('SET', KEYS[2], recent)
  end
end
return {current, recent}
"""


async def shared_cursor_secret(tier: RedisTier, mine: bytes | None = None) -> tuple[bytes, list[bytes]] | None:
    """The fleet's cursor key (this replica's `mine`, or a random one, written back if missing) and
    the recent keys still valid; None when Redis is unavailable (the caller keeps its own key and
    asks again when Redis is back)."""
    candidate = mine if mine is not None and len(mine) == KEY_BYTES else os.urandom(KEY_BYTES)
    key = tier.key("cursor-key")
    keys = [key, key + ":{" + key + "}:recent"]  # one slot: the hash tag of the second is the first whole
    try:
        answer: Any = await tier.call(
            "cursor_key",
            lambda r: tier.script(_SYNC)(
                keys=keys, args=[candidate, KEY_BYTES * RECENT, "1" if mine is not None else "0"]
            ),
        )
    except SharedUnavailable:
        return None
    current, recent = bytes(answer[0]), bytes(answer[1])
    if len(current) < 16:
        return None
    return current, [recent[i : i + KEY_BYTES] for i in range(0, len(recent), KEY_BYTES) if len(recent[i:]) >= 16]
