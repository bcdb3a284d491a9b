"""Acme live readings: Acme has no push, so one shared poll per watched meter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

from app.backends.live import CONNECTED, Connected, LiveContext, LiveTarget
from app.domain.models import Reading
from app.infra.timeutil import from_epoch


class AcmeLiveSource:
    name = "acme"
    resumable = True

    def __init__(self, ctx: LiveContext) -> None:
        self._ctx = ctx

    def channel_key(self, target: LiveTarget) -> str:
        return target.upstream_id

    async def stream(self, key: str, since: datetime | None) -> AsyncIterator[Connected | Sequence[Reading]]:
        last = since or from_epoch(self._ctx.clock())
        yield CONNECTED
        while True:
            fresh = [
                r
                for r in await self._ctx.fetch(key, last, from_epoch(self._ctx.clock()) + timedelta(minutes=1))
                if r.time > last
            ]
            if fresh:
                last = max(r.time for r in fresh)
                yield fresh
            await asyncio.sleep(self._ctx.settings.live_poll)
