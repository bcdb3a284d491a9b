"""Readings cached in aligned chunks of one meter, shared by every reader of readings.

Readings are read from the vendor and cached in aligned chunks of one meter (a UTC day; a week for
backends with a `readings_chunk_days` attribute saying so), every quantity at once. `/readings` pages,
`/consumption` at 15min/hour and the NDJSON export all read the same chunks, so one of them never
repeats a vendor call another already made; a correction evicts the meter's chunks (they are tagged
with its id).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from app.backends.base import ChunkedReadings, RegisterValues, WindowedReadings, settled_at
from app.domain.models import Meter, Reading
from app.guard.guarded import GuardedBackend
from app.guard.provenance import Provenance
from app.infra.timeutil import Clock, from_epoch

CHUNK_LIMIT = 1_000_000
"""`limit` of one chunk's vendor read: the whole chunk (a chunk is a day or a week of one meter)."""
CHUNKS_AT_ONCE = 4
"""Chunks of one meter loaded concurrently (well inside `FACADE_MAX_LOADS`)."""
REGISTER = {"water": "volume", "gas": "volume"}
"""The cumulative register interval consumption is derived from, by medium (default `energy_import`)."""


def _time(row: Reading) -> datetime:
    return row.time


@dataclass(frozen=True, slots=True)
class Chunk:
    """One cached chunk of one meter's readings (every register), ascending."""

    rows: list[Reading]
    next_time: float | None = None
    """Epoch of the first reading at or after the chunk's end, when the vendor showed it: every chunk
    that ends by then is known to be empty and is not asked for."""


class ReadingChunks:
    def __init__(
        self,
        clock: Clock,
        ttl: Callable[[datetime | None], float],
        *,
        settled: Callable[[GuardedBackend, float], float | None] | None = None,
    ) -> None:
        """`ttl(end)`: how long a chunk ending at `end` stays fresh; `settled(backend, end)`, when given
        and not None, wins: a settled chunk's longer lifetime (README "Performance", long windows)."""
        self.clock = clock
        self._ttl = ttl
        self._settled = settled

    def _chunk_seconds(self, b: GuardedBackend) -> int:
        days = b.backend.readings_chunk_days if isinstance(b.backend, ChunkedReadings) else 1
        return 86400 * max(1, int(days))

    def _chunk_starts(self, b: GuardedBackend, start: datetime, end: datetime) -> list[float]:
        size = self._chunk_seconds(b)
        first = math.floor(start.timestamp() / size) * size
        return [float(c) for c in range(int(first), math.ceil(end.timestamp()), size)]

    def _chunk_loader(self, b: GuardedBackend, upstream: str, c0: float) -> Callable[[], Awaitable[Chunk]]:
        c1 = c0 + self._chunk_seconds(b)
        backend = b.backend

        async def load() -> Chunk:
            next_time: datetime | None = None
            if isinstance(backend, WindowedReadings):  # a backend's cheaper whole-window read
                rows, next_time = await backend.readings_window(upstream, from_epoch(c0), from_epoch(c1))
            else:
                rows = await b.backend.readings(upstream, from_epoch(c0), from_epoch(c1), None, CHUNK_LIMIT)
            if any(y.time <= x.time for x, y in itertools.pairwise(rows)):  # vendors mostly send them ascending
                rows = sorted(rows, key=lambda r: (r.time, r.quantity, r.obis or ""))
            return Chunk(rows, next_time.timestamp() if next_time is not None else None)

        return load

    async def _chunk(
        self, b: GuardedBackend, upstream: str, meter_id: str, c0: float, *, store: bool = True
    ) -> tuple[Chunk, Provenance]:
        """One chunk, from the cache (loading it on a miss). With `store=False` (exports) a chunk not
        cached is read from the vendor but not kept, so a long export does not flood the cache."""
        load = self._chunk_loader(b, upstream, c0)
        if not store:
            fresh = b.peek_fresh("readings", ("chunk", upstream, c0), self.clock())
            if fresh is not None:
                chunk, provenance = fresh
                return chunk, provenance
            async with asyncio.timeout(b.deadline):
                return await b.call(load), Provenance()
        end = c0 + self._chunk_seconds(b)
        settled = self._settled(b, end) if self._settled is not None else None
        ttl = settled if settled is not None else self._ttl(settled_at(b.backend, from_epoch(end)))
        return await b.cached("readings", ("chunk", upstream, c0), load, ttl=ttl, tags=(meter_id,))

    async def chunked(
        self,
        b: GuardedBackend,
        upstream: str,
        meter_id: str,
        start: datetime,
        end: datetime,
        quantities: frozenset[str] | None,
        *,
        store: bool = True,
    ) -> AsyncIterator[tuple[list[Reading], Provenance]]:
        """The readings of `[start, end)` chunk by chunk, ascending, filtered by `quantities`; up to
        `CHUNKS_AT_ONCE` chunks are read concurrently, the next group only when the caller asks.
        Chunks that a loaded chunk's `next_time` shows to be empty are skipped without a vendor call,
        so a long window over a meter with a short history costs a few calls, not one per day."""
        size = self._chunk_seconds(b)
        starts = self._chunk_starts(b, start, end) if start < end else []
        empty_until = -math.inf
        i = 0
        while i < len(starts):
            if starts[i] + size <= empty_until:
                i += 1
                continue
            group = [c for c in starts[i : i + CHUNKS_AT_ONCE] if c + size > empty_until]
            i += CHUNKS_AT_ONCE
            loaded = await asyncio.gather(*(self._chunk(b, upstream, meter_id, c, store=store) for c in group))
            for n, (chunk, provenance) in enumerate(loaded):
                if n:
                    await asyncio.sleep(0)  # one chunk's rows per loop turn: hits waiting on the loop go between
                if chunk.next_time is not None:
                    empty_until = max(empty_until, chunk.next_time)
                rows = chunk.rows  # ascending by time: the window is a slice
                lo = bisect.bisect_left(rows, start, key=_time) if rows and rows[0].time < start else 0
                hi = bisect.bisect_left(rows, end, key=_time) if rows and rows[-1].time >= end else len(rows)
                window = rows[lo:hi]
                yield window if quantities is None else [r for r in window if r.quantity in quantities], provenance

    async def register(
        self, b: GuardedBackend, meter: Meter, start: datetime, end: datetime
    ) -> tuple[list[float], list[float], Provenance]:
        """The meter's cumulative register over `[start, end)` as strictly ascending (epoch, value),
        from the cached chunks. The register is what the backend's `register_value(meter, reading)`
        picks, if it has one (IOmeter: the register its daily derivation uses), else the readings of
        quantity `volume` (water, gas) or `energy_import` (the rest)."""
        pick = b.backend.register_value if isinstance(b.backend, RegisterValues) else None
        quantity = REGISTER.get(meter.medium, "energy_import")
        wanted = None if pick is not None else frozenset({quantity})
        upstream = meter.id.split(":", 1)[1]
        times: list[float] = []
        values: list[float] = []
        provenance = Provenance()
        async for rows, part in self.chunked(b, upstream, meter.id, start, end, wanted):
            provenance.extend(part)
            for r in rows:
                value = pick(meter, r) if pick is not None else r.value
                if value is None:
                    continue
                t = r.time.timestamp()
                if times and t <= times[-1]:
                    if t == times[-1]:
                        values[-1] = value
                    continue
                times.append(t)
                values.append(value)
        return times, values, provenance
