"""Waltero live readings: Waltero has no push, so one shared telemetry poll per watched device.

Every `interval` seconds, whatever the number of clients, the device's readings from the last point
sent up to now are fetched through `fetch` (the adapter's own `readings`, so units and quantities are
exactly those of `/readings`), and only points newer than the last one sent are yielded. The poller
resumes from the `since` the hub hands it, so a reconnect needs no separate catch-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from app.backends.live import CONNECTED, Connected, LiveTarget
from app.domain.models import Reading
from app.infra.timeutil import Clock, from_epoch

NAME = "waltero"
AHEAD = timedelta(minutes=1)
"""Each poll's window ends this far past now (`endDate` is exclusive): a point stamped now is in."""

Fetch = Callable[[str, datetime, datetime], Awaitable[list[Reading]]]
"""`(upstream device id, start, end)` → normalized readings with `start <= time < end`."""
Sleep = Callable[[float], Awaitable[None]]


class WalteroLiveSource:
    """`LiveSource` for Waltero: one poll per device per `interval` seconds."""

    name = NAME
    resumable = True

    def __init__(self, fetch: Fetch, *, interval: float, clock: Clock, sleep: Sleep = asyncio.sleep) -> None:
        self._fetch = fetch
        self.interval = interval
        self._clock = clock
        self._sleep = sleep

    def channel_key(self, target: LiveTarget) -> str:
        return target.upstream_id

    async def stream(self, key: str, since: datetime | None) -> AsyncIterator[Connected | Sequence[Reading]]:
        """Points of device `key` newer than `since` (default: from now on), polled every `interval` s."""
        last = since or from_epoch(self._clock())
        connected = False
        while True:
            readings = await self._fetch(key, last, from_epoch(self._clock()) + AHEAD)
            fresh = [r for r in readings if r.time > last]
            if fresh:
                last = max(r.time for r in fresh)
                yield fresh
            if not connected:  # after the first poll's points: what a reconnect missed comes before `live`
                connected = True
                yield CONNECTED
            await self._sleep(self.interval)
