"""`EvictionBroadcast`: a correction evicts what it touches on every replica, and in Redis once.

`evict(tags)` (called by the one replica that polled the corrections feed) drops the affected
in-process entries here at once, bumps those tags' generations (so every shared entry carrying one
is invalid for the fleet, whatever Redis evicted), and publishes the tags; every other replica's
`on_evict(tags)` drops its own in-process entries and stored responses. A replica whose subscription was lost calls `on_gap()` when it is
back: it may have missed evictions, so it drops what a correction could have touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable

from app.shared.bus import Broadcast
from app.shared.entries import SharedEntries
from app.shared.tier import SharedUnavailable

log = logging.getLogger("app.shared")

EVICT = "evict"
"""Broadcast topic: `{"o": origin replica, "t": [tags]}`."""


class EvictionBroadcast:
    def __init__(
        self,
        entries: SharedEntries,
        broadcast: Broadcast,
        on_evict: Callable[[frozenset[str]], object],
        on_gap: Callable[[], None] | None = None,
    ) -> None:
        self.entries = entries
        self.broadcast = broadcast
        self._on_evict = on_evict
        self._origin = entries.tier.replica_id
        broadcast.on(EVICT, self._received)
        if on_gap is not None:
            broadcast.on_gap(on_gap)

    async def evict(self, tags: Iterable[str], *, local: bool = True) -> int:
        """Evict `tags` everywhere (here too unless `local=False`: the caller already did); how many tags
        were bumped in Redis (0 when Redis is unavailable: then every replica polls on its own and
        evicts locally, and nothing is stored in Redis while it is down)."""
        chosen = frozenset(tags)
        if not chosen:
            return 0
        if local:
            self._on_evict(chosen)
        deleted = 0
        with contextlib.suppress(SharedUnavailable):
            deleted = await self.entries.bump(chosen)
            message = json.dumps({"o": self._origin, "t": sorted(chosen)}, separators=(",", ":")).encode()
            await self.broadcast.publish(EVICT, message)
        return deleted

    def _received(self, message: bytes) -> None:
        try:
            data = json.loads(message)
            origin, tags = data["o"], frozenset(str(t) for t in data["t"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed eviction broadcast")
            return
        if origin != self._origin and tags:
            self._on_evict(tags)
