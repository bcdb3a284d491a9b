"""`CorrectionsPoller`: read each vendor's corrections feed and evict what the corrections touch.

The watermark is exclusive: `(changed_at, id)` of the newest correction already acted on. The feeds
filter `changed_at >= since` (inclusive), so each poll asks from the watermark's `changed_at` and skips
what it has already seen: a poll with nothing new evicts nothing.

Where the watermark lives and who polls are injected (`WatermarkStore`, `Leadership`): in one process,
a dict and "always"; with a shared tier, a key and a lease, so one replica polls for the fleet.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from app.backends.base import CHANGES
from app.backends.http import Sleep
from app.domain.models import Change
from app.guard.guarded import GuardedBackend
from app.infra.timeutil import Clock, format_rfc3339, from_epoch, parse_rfc3339

log = logging.getLogger("app.core.corrections")

Watermark = tuple[datetime, str]
PAGES_PER_POLL = 100  # bounded: 100 pages of 1000 per backend per poll


class WatermarkStore(Protocol):
    async def get(self, backend: str) -> Watermark | None: ...
    async def set(self, backend: str, mark: Watermark) -> None: ...


class Leadership(Protocol):
    async def is_leader(self) -> bool:
        """Whether this process should poll now (takes or renews a lease where there is one)."""
        ...


class LocalWatermarks:
    def __init__(self) -> None:
        self._marks: dict[str, Watermark] = {}

    async def get(self, backend: str) -> Watermark | None:
        return self._marks.get(backend)

    async def set(self, backend: str, mark: Watermark) -> None:
        self._marks[backend] = mark


class AlwaysLeader:
    async def is_leader(self) -> bool:
        return True


def encode_mark(mark: Watermark) -> str:
    return f"{format_rfc3339(mark[0])} {mark[1]}"


def decode_mark(text: str) -> Watermark:
    when, _, ident = text.partition(" ")
    return parse_rfc3339(when), ident


class CorrectionsPoller:
    def __init__(
        self,
        backends: Sequence[GuardedBackend],
        evict: Callable[[Iterable[Change]], dict[str, int]],
        *,
        every: float,
        clock: Clock,
        sleep: Sleep,
        watermarks: WatermarkStore | None = None,
        leadership: Leadership | None = None,
        lookback: float = 0.0,
    ) -> None:
        """`lookback`: with no watermark yet (a fresh fleet), the first poll starts that many seconds
        before start-up: vendor clocks differ from ours and stamps may be whole seconds, so a
        correction stamped in the second the service started would otherwise never be seen."""
        self._backends = [b for b in backends if CHANGES in b.capabilities]
        self._evict = evict
        self._every = every
        self._clock = clock
        self._sleep = sleep
        self._watermarks = watermarks or LocalWatermarks()
        self._leadership = leadership or AlwaysLeader()
        self._started = from_epoch(clock() - lookback)

    @property
    def active(self) -> bool:
        return bool(self._backends) and self._every > 0

    async def poll_once(self) -> dict[str, int]:
        """One pass over every feed: entries evicted per backend."""
        evicted: dict[str, int] = {}
        for backend in self._backends:
            mark = await self._watermarks.get(backend.name) or (self._started, "")
            fresh, mark = await self._read_since(backend, mark)
            for name, count in self._evict(fresh).items():
                evicted[name] = evicted.get(name, 0) + count
            await self._watermarks.set(backend.name, mark)
        return evicted

    async def _read_since(self, backend: GuardedBackend, mark: Watermark) -> tuple[list[Change], Watermark]:
        fresh: list[Change] = []
        cursor: str | None = None
        since = mark[0]
        for _ in range(PAGES_PER_POLL):
            page = await backend.call(functools.partial(backend.backend.changes, since, 1000, cursor))
            for change in page.items:
                position = (change.changed_at, change.id)
                if position > mark:
                    fresh.append(change)
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        if fresh:
            mark = max(mark, *((c.changed_at, c.id) for c in fresh))
        return fresh, mark

    async def run(self, on_error: Callable[[Exception], Awaitable[None]] | None = None) -> None:
        """Poll every `every` seconds until cancelled; an outage never ends invalidation for good."""
        while True:
            await self._sleep(self._every)
            with contextlib.suppress(Exception):
                if not await self._leadership.is_leader():
                    continue
            try:
                await self.poll_once()
            except Exception as exc:
                log.warning("corrections poll failed", extra={"fields": {"error": type(exc).__name__}})
                if on_error is not None:
                    await on_error(exc)
