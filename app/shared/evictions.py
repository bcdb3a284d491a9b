"""`EvictionBroadcast`: a correction evicts what it touches on every replica, durably.

`evict(tags)` (called by the one replica that polled the corrections feed) drops the affected
in-process entries here at once, bumps those tags' generations (so every shared entry carrying one
is invalid for the fleet, whatever Redis evicted), and appends the tags to a Redis Stream
`<prefix>:evictions` (`XADD ... MAXLEN ~ max_events`). It says whether both were written: the
poller's shared watermark moves only then (`Fleet`), so a correction whose eviction was not written
is polled and evicted again.

Every replica reads the stream from its own last id (`run`, a background task polling every
`poll_every` seconds with a plain `XREAD`, so no long-lived connection can silently go half-open)
and drops its in-process entries for every other replica's events. After an outage it goes on from
its last id; when the events since then may be gone (the stream was trimmed past that id, or lost
with a Redis restart), it calls `on_gap()`: the replica drops what a correction could have touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio import Redis

from app.shared.entries import SharedEntries
from app.shared.tier import Health, SharedUnavailable

log = logging.getLogger("app.shared")

ORIGIN = b"o"
TAGS = b"t"
START = "0-0"


def _id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def _read(streams: Any, r: Redis) -> Any:
    return await r.xread(streams, count=100)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class EvictionBroadcast:
    def __init__(
        self,
        entries: SharedEntries,
        on_evict: Callable[[frozenset[str]], object],
        on_gap: Callable[[], None] | None = None,
        *,
        poll_every: float = 0.2,
        max_events: int = 10_000,
    ) -> None:
        self.entries = entries
        self.tier = entries.tier
        self.key = self.tier.key("evictions")
        self._on_evict = on_evict
        self._on_gap = on_gap
        self._origin = self.tier.replica_id
        self._poll_every = poll_every
        self._max_events = max_events
        self._last: str | None = None
        """The id of the last event read (`START` when the stream did not exist); None before `run`."""
        self._resumed = False
        self.caught_up = asyncio.Event()
        """Set once `run` has read the stream up to its end (tests wait on it)."""
        self.tier.on_status(self._on_status)

    async def evict(self, tags: Iterable[str], *, local: bool = True) -> bool:
        """Evict `tags` everywhere (here too unless `local=False`: the caller already did); whether
        the fleet-wide part (generations bumped, event appended) was written. False when Redis is
        unavailable: every replica then polls on its own and evicts locally."""
        chosen = frozenset(tags)
        if not chosen:
            return True
        if local:
            self._on_evict(chosen)
        fields: Any = {ORIGIN: self._origin, TAGS: json.dumps(sorted(chosen), separators=(",", ":"))}
        try:
            await self.entries.bump(chosen)
            await self.tier.call(
                "evict_event", lambda r: r.xadd(self.key, fields, maxlen=self._max_events, approximate=True)
            )
        except SharedUnavailable:
            return False
        # Once more here: a request between the local eviction and the bump could have read the shared
        # copy (still valid then) back into this replica's cache. Other replicas drop theirs when they
        # read the event, which is written after the bump.
        self._on_evict(chosen)
        return True

    def _on_status(self, health: Health) -> None:
        if health == "up":
            self._resumed = True  # events may have been trimmed or lost meanwhile: check before reading

    async def run(self) -> None:
        """Read every other replica's events until cancelled (a background task per replica)."""
        task = asyncio.current_task()
        while True:
            with contextlib.suppress(SharedUnavailable):
                await self.read_once()
            # A cancellation that raced a command's own timeout can be lost inside the Redis client;
            # the request stays on the task, so honour it here rather than read forever.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(self._poll_every)

    async def read_once(self) -> int:
        """Apply the events since the last read; how many. Raises `SharedUnavailable`."""
        if self._last is None:
            newest: Any = await self.tier.call("evict_read", lambda r: r.xrevrange(self.key, count=1))
            self._last = _text(newest[0][0]) if newest else START  # what came before this start is in nobody's cache
        if self._resumed:
            self._resumed = False
            if await self._missed_some():
                log.info("eviction events may have been missed: dropping what a correction could have touched")
                if self._on_gap is not None:
                    self._on_gap()
        applied = 0
        for _ in range(100):  # bounded: at most 100 batches of 100 events per read
            batches: Any = await self.tier.call("evict_read", functools.partial(_read, {self.key: self._last}))
            events = batches[0][1] if batches else []
            for event_id, fields in events:
                self._last = _text(event_id)
                applied += self._apply(fields)
            if len(events) < 100:
                break
        self.caught_up.set()
        return applied

    async def _missed_some(self) -> bool:
        """Whether events after our last id may be gone: trimmed, or the stream itself lost."""
        last = self._last or START
        exists = await self.tier.call("evict_read", lambda r: r.exists(self.key))
        if not exists:
            self._last = START
            return last != START
        info: dict[str, Any] = await self.tier.call("evict_read", lambda r: r.xinfo_stream(self.key))
        newest = info.get("last-generated-id")
        if newest is not None and _id(newest) < _id(last):  # a new stream (Redis restarted, flushed)
            self._last = START
            return True
        trimmed = int(info.get("entries-added", 0)) > int(info.get("length", 0))
        first = info.get("recorded-first-entry-id")
        if first is None or _id(first) == (0, 0):
            entry = info.get("first-entry")
            first = entry[0] if entry else newest
        # Trimming drops the oldest first: events after ours are gone only if the oldest one left is
        # newer than ours and some were trimmed (conservative: those trimmed may all predate ours).
        return bool(trimmed and first is not None and _id(first) > _id(last))

    def _apply(self, fields: dict[bytes, bytes]) -> int:
        try:
            origin = _text(fields[ORIGIN])
            tags = frozenset(str(t) for t in json.loads(fields[TAGS]))
        except (KeyError, ValueError, TypeError):
            log.warning("ignored a malformed eviction event")
            return 0
        if origin == self._origin or not tags:
            return 0
        try:
            self._on_evict(tags)
        except Exception:  # one replica's bug must not stop it reading the events after
            log.exception("eviction handler failed")
        return 1
