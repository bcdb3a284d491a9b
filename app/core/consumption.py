"""Consumption at every resolution: daily (the vendor's own figure or derived from registers), months
as sums of local days, 15-minute and hourly intervals derived from the cached register readings."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.backends.base import DAILY_CONSUMPTION, READINGS
from app.core.chunks import ReadingChunks
from app.core.fanout import gather_rows
from app.core.routing import BackendRouter
from app.domain.intervals import IntervalConsumption as Derived
from app.domain.intervals import boundaries, derive, epoch, group_sums
from app.domain.models import DailyConsumption, IntervalConsumption, Meter
from app.guard.guarded import GuardedBackend
from app.guard.provenance import Answer, Provenance
from app.infra.config import Settings
from app.infra.errors import InvalidRequest, NotFound
from app.infra.timeutil import from_epoch, local_midnight

METERS_AT_ONCE = 3
"""Meters whose finer consumption is derived concurrently (3 x 4 chunk loads at most)."""
MAX_DAILY_PIECE = 366


def _kwh6(value: float | None) -> float | None:
    # Prefix-sum differences carry float noise in the 12th digit; a millionth of the unit is plenty.
    return None if value is None else round(value, 6)


class ConsumptionService:
    def __init__(
        self,
        router: BackendRouter,
        chunks: ReadingChunks,
        *,
        settings: Settings,
        ttl: Callable[[datetime | None], float],
        all_meters: Callable[[GuardedBackend], Awaitable[tuple[list[Meter], Provenance]]],
    ) -> None:
        self._router = router
        self._chunks = chunks
        self.settings = settings
        self._ttl = ttl
        self._all_meters = all_meters

    async def daily_consumption(
        self, meter_ids: list[str], backend: str | None, start: date, end: date, tz: ZoneInfo
    ) -> Answer[list[DailyConsumption]]:
        """Every requested day of every meter, ordered by (meter_id, date)."""
        wanted: dict[str, set[str]] = {}
        for raw in meter_ids:
            b, fid = self._router.resolve(raw, field="meter_id", in_path=False, capability=DAILY_CONSUMPTION)
            if backend is not None and b.name != backend:
                raise InvalidRequest(f"meter_id {raw!r} is not a {backend} meter", field="meter_id")
            wanted.setdefault(b.name, set()).add(fid.upstream)
        chosen = (
            [self._router.backends[n] for n in wanted] if wanted else self._router.selected(backend, DAILY_CONSUMPTION)
        )
        ttl = self._ttl(local_midnight(end, tz))

        async def fetch(b: GuardedBackend) -> tuple[list[DailyConsumption], Provenance]:
            ids = wanted.get(b.name)
            ask = None if (b.backend.daily_grain == "backend" or not ids) else frozenset(ids)
            rows, provenance = await b.cached(
                "daily",
                (ask, start, end, tz.key),
                lambda: b.backend.daily_consumption(ask, start, end, tz),
                ttl=ttl,
                tags=lambda rows: {r.meter_id for r in rows} | {f"{b.name}:*"},
            )
            if ids:
                prefixed = {f"{b.name}:{i}" for i in ids}
                rows = [r for r in rows if r.meter_id in prefixed]
                missing = prefixed - {r.meter_id for r in rows}
                if missing:
                    raise NotFound(f"No meter {sorted(missing)[0]!r} exists.", backend=b.name)
            return rows, provenance

        return await gather_rows(chosen, fetch, lambda r: (r.meter_id, r.date))

    # --- consumption at any resolution --------------------------------------------------------------

    async def consumption(
        self, meter_ids: list[str], backend: str | None, start: date, end: date, tz: ZoneInfo, resolution: str
    ) -> Answer[list[IntervalConsumption]]:
        """Every interval of `[start, end)` in `tz` at `resolution` for every requested meter, ordered by
        (meter_id, start). `day` is `/consumption/daily`; `month` sums its local days; `15min` and `hour`
        derive from the register readings (cached chunks) with the daily pair rule."""
        if resolution == "day":
            return self._as_intervals(await self.daily_consumption(meter_ids, backend, start, end, tz), tz)
        if resolution == "month":
            return await self._monthly(meter_ids, backend, start, end, tz)
        return await self._finer(meter_ids, backend, start, end, tz, resolution)

    @staticmethod
    def _as_intervals(daily: Answer[list[DailyConsumption]], tz: ZoneInfo) -> Answer[list[IntervalConsumption]]:
        rows = []
        bounds: dict[date, tuple[datetime, datetime]] = {}
        for row in daily.value:
            if row.date not in bounds:
                b = boundaries(row.date, row.date + timedelta(days=1), tz, "day")
                bounds[row.date] = (b[0], b[-1])
            first, last = bounds[row.date]
            rows.append(
                IntervalConsumption(
                    meter_id=row.meter_id,
                    start=first,
                    end=last,
                    consumption=row.consumption,
                    unit=row.unit,
                    complete=row.complete,
                    source=row.source,
                )
            )
        return Answer(rows, errors=daily.errors, provenance=daily.provenance)

    async def _monthly(
        self, meter_ids: list[str], backend: str | None, start: date, end: date, tz: ZoneInfo
    ) -> Answer[list[IntervalConsumption]]:
        """Months as null-aware sums of local days, read in pieces of at most 366 days (each piece the
        cached `/consumption/daily` answer). A backend that fails in any piece is left out whole."""
        answer: Answer[list[IntervalConsumption]] = Answer([])
        per_meter: dict[str, dict[date, DailyConsumption]] = {}
        failed: dict[str, Any] = {}
        piece = start
        while piece < end:
            stop = min(end, piece + timedelta(days=MAX_DAILY_PIECE))
            daily = await self.daily_consumption(meter_ids, backend, piece, stop, tz)
            answer.provenance.extend(daily.provenance)
            for error in daily.errors:
                failed.setdefault(error.backend, error)
            for row in daily.value:
                per_meter.setdefault(row.meter_id, {})[row.date] = row
            piece = stop
        day_bounds = boundaries(start, end, tz, "day")
        month_bounds = boundaries(start, end, tz, "month")
        all_days = [start + timedelta(days=i) for i in range((end - start).days)]
        rows: list[IntervalConsumption] = []
        for meter_id in sorted(per_meter):
            if meter_id.split(":", 1)[0] in failed:
                continue
            days_of = per_meter[meter_id]
            parts = [
                Derived(d.consumption, d.complete) if (d := days_of.get(day)) else Derived(None, False)
                for day in all_days
            ]
            known = next(iter(days_of.values()))
            for k, total in enumerate(group_sums(parts, day_bounds, month_bounds)):
                rows.append(
                    IntervalConsumption(
                        meter_id=meter_id,
                        start=month_bounds[k],
                        end=month_bounds[k + 1],
                        consumption=_kwh6(total.consumption),
                        unit=known.unit,
                        complete=total.complete,
                        source=known.source,
                    )
                )
        answer.value = rows
        answer.errors = list(failed.values())
        return answer

    async def _finer(
        self, meter_ids: list[str], backend: str | None, start: date, end: date, tz: ZoneInfo, resolution: str
    ) -> Answer[list[IntervalConsumption]]:
        wanted: dict[str, set[str]] = {}
        for raw in meter_ids:
            b, fid = self._router.resolve(raw, field="meter_id", in_path=False, capability=READINGS)
            if backend is not None and b.name != backend:
                raise InvalidRequest(f"meter_id {raw!r} is not a {backend} meter", field="meter_id")
            wanted.setdefault(b.name, set()).add(f"{b.name}:{fid.upstream}")
        chosen = [self._router.backends[n] for n in wanted] if wanted else self._router.selected(backend, READINGS)
        bounds = boundaries(start, end, tz, resolution)
        edges = epoch(bounds)
        gap = float(self.settings.max_gap)
        fetch_from, fetch_to = from_epoch(edges[0] - gap), from_epoch(edges[-1] + gap)

        async def one_meter(
            b: GuardedBackend, meter_id: str, listed: Meter | None
        ) -> tuple[list[IntervalConsumption], Provenance]:
            provenance = Provenance()
            if listed is not None:
                meter = listed
            else:  # not (yet) in the cached listing: ask for it alone (404 when unknown)
                upstream = meter_id.split(":", 1)[1]
                meter, found = await b.cached(
                    "meter", upstream, functools.partial(b.backend.get_meter, upstream), ttl=self.settings.ttl_meters
                )
                provenance.extend(found)
            times, values, part = await self._chunks.register(b, meter, fetch_from, fetch_to)
            provenance.extend(part)
            rows = [
                IntervalConsumption(
                    meter_id=meter_id,
                    start=bounds[k],
                    end=bounds[k + 1],
                    consumption=_kwh6(result.consumption),
                    unit=meter.unit,
                    complete=result.complete,
                    source="derived",
                )
                for k, result in enumerate(derive(times, values, edges, gap))
            ]
            return rows, provenance

        async def fetch(b: GuardedBackend) -> tuple[list[IntervalConsumption], Provenance]:
            meters, provenance = await self._all_meters(b)
            by_id = {m.id: m for m in meters}
            ids = sorted(wanted.get(b.name) or by_id)
            rows: list[IntervalConsumption] = []
            # a few meters at once (each reads up to CHUNKS_AT_ONCE chunks at once), well inside the load cap
            for i in range(0, len(ids), METERS_AT_ONCE):
                group = ids[i : i + METERS_AT_ONCE]
                for part, found in await asyncio.gather(*(one_meter(b, m, by_id.get(m)) for m in group)):
                    rows.extend(part)
                    provenance.extend(found)
            return rows, provenance

        return await gather_rows(chosen, fetch, lambda r: (r.meter_id, r.start))
