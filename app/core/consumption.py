"""Consumption at every resolution: daily (the vendor's own figure or derived from registers), months
as sums of local days, 15-minute and hourly intervals derived from the cached register readings."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.backends.base import DAILY_CONSUMPTION, READINGS, DailyBySite, settled_at
from app.core.chunks import ReadingChunks
from app.core.fanout import gather_rows
from app.core.routing import BackendRouter
from app.domain.intervals import DerivedConsumption as Derived
from app.domain.intervals import Plausibility, boundaries, derive, epoch, group_sums, plausible
from app.domain.models import DailyConsumption, IntervalConsumption, Meter
from app.guard.guarded import GuardedBackend
from app.guard.provenance import Answer, Provenance
from app.infra.config import Settings
from app.infra.errors import FacadeError, InvalidRequest, NotFound, UpstreamBadResponse, UpstreamTimeout
from app.infra.timeutil import from_epoch, local_midnight

log = logging.getLogger(__name__)

METERS_AT_ONCE = 3
"""Meters whose finer consumption is derived concurrently (3 x 4 chunk loads at most)."""
MAX_DAILY_PIECE = 366


@functools.lru_cache(maxsize=256)
def _bounds(start: date, end: date, tz: ZoneInfo, resolution: str) -> tuple[datetime, ...]:
    """`intervals.boundaries`, remembered: a dashboard asks for the same year of months again and again,
    and a year of local midnights costs about 2 ms to compute (README "Performance", long windows)."""
    return tuple(boundaries(start, end, tz, resolution))


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
        self.plausibility = Plausibility(
            {
                "electricity": settings.plausible_kw_electricity,
                "heat": settings.plausible_kw_heat,
                "gas": settings.plausible_m3h_gas,
                "water": settings.plausible_m3h_water,
            }
        )

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
        window_end = local_midnight(end, tz)

        async def fetch(b: GuardedBackend) -> tuple[list[DailyConsumption], Provenance]:
            ttl = self._ttl(settled_at(b.backend, window_end))
            ids = wanted.get(b.name)
            if isinstance(b.backend, DailyBySite):
                rows, provenance = await self._by_site(b, b.backend, frozenset(ids) if ids else None, start, end, tz)
            else:
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
            return await self._plausible_days(b, rows, tz), provenance

        return await gather_rows(chosen, fetch, lambda r: (r.meter_id, r.date))

    async def _by_site(
        self,
        b: GuardedBackend,
        backend: DailyBySite,
        ids: frozenset[str] | None,
        start: date,
        end: date,
        tz: ZoneInfo,
    ) -> tuple[list[DailyConsumption], Provenance]:
        """Daily rows of the sites holding `ids` (every site for None), one cache entry per site and
        window: any subset of a site's meters is answered from the one entry (issue 21)."""
        # Not through `b.call`: it mostly answers from the backend's directory without a vendor call, and
        # as a circuit probe that "success" would close the circuit (and while the circuit is open it
        # would refuse a request the cached site entries can still serve).
        try:
            async with asyncio.timeout(b.deadline):
                sites = await backend.daily_sites(ids)
        except TimeoutError:
            raise UpstreamTimeout(f"{b.name} did not answer within {b.deadline:g} s.", backend=b.name) from None
        except FacadeError:
            raise
        except Exception as exc:  # a bug in an adapter, not a vendor failure: 502, as `GuardedBackend.call` does
            log.error("unexpected error in a backend", exc_info=True, extra={"fields": {"backend": b.name}})
            raise UpstreamBadResponse(f"{b.name} failed unexpectedly.", backend=b.name) from exc
        ttl = self._ttl(local_midnight(end, tz))

        async def one_site(site: str) -> tuple[list[DailyConsumption], Provenance]:
            return await b.cached(
                "daily",
                ("site", site, start, end, tz.key),
                functools.partial(backend.site_daily_consumption, site, start, end, tz),
                ttl=ttl,
                tags=lambda rows: {r.meter_id for r in rows} | {f"{b.name}:*"},
            )

        rows: list[DailyConsumption] = []
        provenance = Provenance()
        for part, found in await asyncio.gather(*(one_site(site) for site in sorted(sites))):
            rows.extend(part)
            provenance.extend(found)
        rows.sort(key=lambda r: (r.meter_id, r.date))
        return rows, provenance

    async def _plausible_days(
        self, b: GuardedBackend, rows: list[DailyConsumption], tz: ZoneInfo
    ) -> list[DailyConsumption]:
        """The rows after the plausibility bound (applied here, after the cache, so a changed bound needs
        no flush). The meter's medium is looked up (the cached listing) only for a figure above the
        bound of some medium of its unit; when the listing fails, the loosest bound of the unit serves."""
        media: dict[str, str] | None = None
        hours: dict[date, float] = {}
        out: list[DailyConsumption] = []
        for row in rows:
            bound = None
            if row.consumption is not None:
                seconds = hours.get(row.date)
                if seconds is None:
                    first = local_midnight(row.date, tz)
                    seconds = hours[row.date] = (
                        local_midnight(row.date + timedelta(days=1), tz) - first
                    ).total_seconds()
                if not self.plausibility.surely_plausible(row.consumption, row.unit, seconds):
                    if media is None:
                        try:
                            meters, _ = await self._all_meters(b)
                            media = {m.id: m.medium for m in meters}
                        except FacadeError:  # a vendor failure; the figure is still bounded by its unit
                            media = {}
                    bound = self.plausibility.bound(media.get(row.meter_id), row.unit, seconds)
            complete, quality = plausible(row.consumption, row.complete, row.quality, bound)
            if complete != row.complete or quality != row.quality:
                row = DailyConsumption(
                    meter_id=row.meter_id,
                    date=row.date,
                    consumption=row.consumption,
                    unit=row.unit,
                    complete=complete,
                    source=row.source,
                    quality=quality,
                )
            out.append(row)
        return out

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
                    quality=row.quality,
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
        day_bounds = _bounds(start, end, tz, "day")
        month_bounds = _bounds(start, end, tz, "month")
        all_days = [start + timedelta(days=i) for i in range((end - start).days)]
        rows: list[IntervalConsumption] = []
        for meter_id in sorted(per_meter):
            if meter_id.split(":", 1)[0] in failed:
                continue
            days_of = per_meter[meter_id]
            parts = [
                Derived(d.consumption, d.complete, d.quality) if (d := days_of.get(day)) else Derived(None, False)
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
                        quality=total.quality,
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
            rows = []
            for k, result in enumerate(derive(times, values, edges, gap)):
                bound = self.plausibility.bound(meter.medium, meter.unit, edges[k + 1] - edges[k])
                complete, quality = plausible(result.consumption, result.complete, result.quality, bound)
                rows.append(
                    IntervalConsumption(
                        meter_id=meter_id,
                        start=bounds[k],
                        end=bounds[k + 1],
                        consumption=_kwh6(result.consumption),
                        unit=meter.unit,
                        complete=complete,
                        source="derived",
                        quality=quality,
                    )
                )
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
