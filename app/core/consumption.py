"""Consumption at every resolution: daily (the vendor's own figure or derived from registers), months
as sums of local days, 15-minute and hourly intervals derived from the cached register readings.

`/consumption` is planned, then read page by page. The `Plan` lists the window's meters (answer order)
and intervals; every meter has one row per interval, so a page (`limit` rows from a cursor's position)
is a list of `Slice`s of meters known before any vendor call, and a window wider than
`FACADE_CONSUMPTION_WINDOW_BUDGET` (meters x intervals) is refused before any. A page, or an export's
batch, is read meter by meter: `METERS_AT_ONCE` meters of a backend at once, each reading at most
`CHUNKS_AT_ONCE` readings chunks (or one meter's daily answer) at a time, so what one request holds
is bounded by its page, not by its window.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.backends.base import DAILY_CONSUMPTION, READINGS, DailyBySite, settled_at
from app.backends.concurrency import gather_first_error
from app.core.chunks import ReadingChunks
from app.core.fanout import fan_out, gather_rows
from app.core.pagers import Pager
from app.core.routing import BackendRouter
from app.domain.intervals import (
    RESOLUTIONS,
    Plausibility,
    boundaries,
    day_seconds,
    derive,
    epoch,
    group_sums,
    plausible,
)
from app.domain.intervals import DerivedConsumption as Derived
from app.domain.models import BackendError, DailyConsumption, IntervalConsumption, Meter
from app.guard.guarded import GuardedBackend
from app.guard.provenance import Answer, Provenance
from app.infra.config import Settings
from app.infra.errors import FacadeError, InvalidRequest, NotFound, UpstreamBadResponse, UpstreamTimeout
from app.infra.timeutil import from_epoch, local_midnight

log = logging.getLogger(__name__)

METERS_AT_ONCE = 3
"""Meters of one backend read concurrently for a page (3 x 4 chunk loads at most)."""
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
        pager: Pager,
        past_window: Callable[[Answer[Any], datetime | None, Iterable[str]], Answer[Any]] = lambda a, e, n: a,
    ) -> None:
        """`past_window(answer, end, backends)`: the freshness of a window whose data has settled."""
        self._router = router
        self._pager = pager
        self._past_window = past_window
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
        dates = [row.date for row in rows if row.consumption is not None]
        hours = day_seconds(min(dates), max(dates) + timedelta(days=1), tz) if dates else {}
        limits: dict[tuple[str | None, float], float | None] = {}  # `sure_limit` of each unit and day length
        out: list[DailyConsumption] = []
        for row in rows:
            bound = None
            if row.consumption is not None:
                seconds = hours[row.date]
                key = (row.unit, seconds)
                limit = limits[key] if key in limits else limits.setdefault(key, self.plausibility.sure_limit(*key))
                if limit is not None and not row.consumption <= limit:  # not `surely_plausible`
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

    # --- consumption at any resolution: planned once, then read page by page ---------------------------

    async def plan(
        self, meter_ids: list[str], backend: str | None, start: date, end: date, tz: ZoneInfo, resolution: str
    ) -> Plan:
        """The meters and intervals of a `/consumption` window, in answer order, checked against
        `FACADE_CONSUMPTION_WINDOW_BUDGET` (a 422 naming it). Reads no consumption yet: only the cached
        meter listings (a backend whose listing fails becomes an `errors` entry)."""
        finer = resolution in FINER
        capability = READINGS if finer else DAILY_CONSUMPTION
        wanted: dict[str, set[str]] = {}
        for raw in meter_ids:
            b, fid = self._router.resolve(raw, field="meter_id", in_path=False, capability=capability)
            if backend is not None and b.name != backend:
                raise InvalidRequest(f"meter_id {raw!r} is not a {backend} meter", field="meter_id")
            wanted.setdefault(b.name, set()).add(f"{b.name}:{fid.upstream}")
        chosen = [self._router.backends[n] for n in wanted] if wanted else self._router.selected(backend, capability)

        async def listed(b: GuardedBackend) -> tuple[GuardedBackend, list[tuple[str, Meter | None]], Provenance]:
            ids = wanted.get(b.name)
            if ids and not finer:  # days and months need no meter record
                return b, [(m, None) for m in sorted(ids)], Provenance()
            meters, provenance = await self._all_meters(b)
            by_id = {m.id: m for m in meters}
            return b, [(m, by_id.get(m)) for m in sorted(ids or by_id)], provenance

        good, errors = await fan_out(chosen, listed)
        plan = Plan(start, end, tz, resolution, boundaries(start, end, tz, resolution), [], errors)
        for b, meters, provenance in good:
            plan.provenance.extend(provenance)
            plan.meters.extend((b, meter_id, meter) for meter_id, meter in meters)
        plan.meters.sort(key=lambda m: m[1])
        per_meter = (end - start).days if resolution == "month" else plan.intervals
        budget = self.settings.consumption_window_budget
        if len(plan.meters) * per_meter > budget:
            unit = "days" if resolution == "month" else "intervals"
            raise InvalidRequest(
                f"the window spans {len(plan.meters)} meters x {per_meter} {unit} = {len(plan.meters) * per_meter} "
                f"rows, over the budget of {budget} per request (FACADE_CONSUMPTION_WINDOW_BUDGET; a month counts "
                "its days): ask for fewer meters (meter_id, backend) or a shorter window",
                field="end",
            )
        return plan

    async def page(
        self,
        meter_ids: list[str],
        backend: str | None,
        start: date | None,
        end: date | None,
        tz: ZoneInfo | None,
        resolution: str | None,
        *,
        limit: int,
        cursor: str | None,
    ) -> Answer[tuple[list[Interval], str | None]]:
        """One page of `/consumption`: at most `limit` rows ordered by (meter_id, start), and the cursor of
        the next page (None on the last). Without a cursor, `start`, `end`, `tz` and `resolution` are
        required. A cursor carries its query, so it may come alone, and paging goes on over the same
        window (its `end` included) whatever day it is now; a parameter sent with it that differs from
        the cursor's own is a 422."""
        most = self.settings.consumption_max_page
        if limit > most:
            raise InvalidRequest(f"limit is at most {most} (FACADE_CONSUMPTION_MAX_PAGE)", field="limit")
        query: dict[str, Any] = {
            "meter_id": sorted(set(meter_ids)) or None,
            "backend": backend,
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
            "tz": tz.key if tz else None,
            "resolution": resolution,
        }
        after_meter, first = "", 0
        if cursor:
            query, state = self._pager.decode(cursor, query)
            try:
                meter_ids = [str(m) for m in query["meter_id"] or []]
                backend = None if query["backend"] is None else str(query["backend"])
                start, end = date.fromisoformat(query["start"]), date.fromisoformat(query["end"])
                tz, resolution = ZoneInfo(query["tz"]), str(query["resolution"])
                after_meter, first = str(state["m"]), int(state["k"])
                if resolution not in RESOLUTIONS or first < 0:
                    raise ValueError(resolution)
            except (KeyError, TypeError, ValueError, ZoneInfoNotFoundError):
                raise InvalidRequest("cursor is not valid: pass back next_cursor unchanged", field="cursor") from None
        if start is None or end is None or tz is None or resolution is None:
            raise InvalidRequest("start and resolution are required (or a cursor from a previous page)", field="start")
        plan = await self.plan(meter_ids, backend, start, end, tz, resolution)
        ids = [m[1] for m in plan.meters]
        meter = bisect.bisect_left(ids, after_meter)
        if meter < len(ids) and ids[meter] != after_meter:  # that meter has left the listing: go on with the next
            first = 0
        slices = plan.slices(meter, first, limit)
        answer = await self.read(plan, slices) if slices else Answer([])
        position = plan.after(slices[-1]) if slices else None
        next_cursor = self._pager.encode(query, {"m": ids[position[0]], "k": position[1]}) if position else None
        provenance = Provenance()
        provenance.extend(plan.provenance)
        provenance.extend(answer.provenance)
        page = Answer((answer.value, next_cursor), errors=[*plan.errors, *answer.errors], provenance=provenance)
        return self._past_window(page, local_midnight(plan.end, plan.tz), {b.name for b, _, _ in plan.meters})

    async def stream(
        self, meter_ids: list[str], backend: str | None, start: date, end: date, tz: ZoneInfo, resolution: str
    ) -> Answer[AsyncIterator[list[Interval]]]:
        """The whole window for exports, in batches of at most `FACADE_CONSUMPTION_MAX_PAGE` rows read one
        after the other (so memory holds one batch, however long the window). The plan (and its 422s) is
        made now; a vendor failure while streaming is raised from the iterator."""
        plan = await self.plan(meter_ids, backend, start, end, tz, resolution)
        batch = self.settings.consumption_max_page

        async def batches() -> AsyncIterator[list[Interval]]:
            position = (0, 0) if plan.meters else None
            while position is not None:
                slices = plan.slices(*position, batch)
                if not slices:
                    return
                yield (await self.read(plan, slices, strict=True)).value
                position = plan.after(slices[-1])

        return Answer(batches(), errors=plan.errors, provenance=plan.provenance)

    async def read(self, plan: Plan, slices: Sequence[Slice], *, strict: bool = False) -> Answer[list[Interval]]:
        """The rows of `slices`, ordered by (meter_id, start). A few meters of a backend at once, each
        reading at most `CHUNKS_AT_ONCE` readings chunks at a time, so a request holds a bounded number of
        chunks whatever its window. A backend that fails is left out of the answer with an `errors` entry;
        with `strict` (exports, already streaming) its error is raised instead."""
        by_backend: dict[str, list[Slice]] = {}
        for s in slices:
            by_backend.setdefault(plan.meters[s.meter][0].name, []).append(s)

        async def fetch(b: GuardedBackend) -> tuple[list[Interval], Provenance]:
            mine = by_backend[b.name]
            rows: list[Interval] = []
            provenance = Provenance()
            for i in range(0, len(mine), METERS_AT_ONCE):
                # the first failure cancels the other meters' reads: nobody would use them
                group = await gather_first_error([self._rows(plan, s) for s in mine[i : i + METERS_AT_ONCE]])
                for part, found in group:
                    rows.extend(part)
                    provenance.extend(found)
            return rows, provenance

        backends = [self._router.backends[name] for name in by_backend]
        if not strict:
            return await gather_rows(backends, fetch, lambda r: (r.meter_id, r.start))
        answer: Answer[list[Interval]] = Answer([])
        for b in backends:  # meter ids sort backend by backend, so the order holds
            rows, provenance = await fetch(b)
            answer.value.extend(rows)
            answer.provenance.extend(provenance)
        return answer

    async def _rows(self, plan: Plan, s: Slice) -> tuple[list[Interval], Provenance]:
        b, meter_id, listed = plan.meters[s.meter]
        if plan.resolution in FINER:
            return await self._finer_rows(plan, b, meter_id, listed, s)
        if plan.resolution == "day":
            return await self._day_rows(plan, b, meter_id, s)
        return await self._month_rows(plan, b, meter_id, s)

    async def _finer_rows(
        self, plan: Plan, b: GuardedBackend, meter_id: str, listed: Meter | None, s: Slice
    ) -> tuple[list[Interval], Provenance]:
        """Quarter-hours or hours `[s.first, s.stop)` of one meter from its cached register chunks: only
        the chunks of those intervals (and `FACADE_MAX_GAP` either side) are read."""
        provenance = Provenance()
        if listed is not None:
            meter = listed
        else:  # not (yet) in the cached listing: ask for it alone (404 when unknown)
            upstream = meter_id.split(":", 1)[1]
            meter, found = await b.cached(
                "meter", upstream, functools.partial(b.backend.get_meter, upstream), ttl=self.settings.ttl_meters
            )
            provenance.extend(found)
        bounds = plan.bounds[s.first : s.stop + 1]
        edges = epoch(bounds)
        gap = float(self.settings.max_gap)
        times, values, part = await self._chunks.register(
            b, meter, from_epoch(edges[0] - gap), from_epoch(edges[-1] + gap)
        )
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

    async def _day_rows(
        self, plan: Plan, b: GuardedBackend, meter_id: str, s: Slice
    ) -> tuple[list[Interval], Provenance]:
        """Days `[s.first, s.stop)` of one meter: its cached `/consumption/daily` answer for the window."""
        daily = await self.daily_consumption([meter_id], b.name, plan.start, plan.end, plan.tz)
        rows = []
        for row in daily.value:
            k = (row.date - plan.start).days
            if s.first <= k < s.stop:
                rows.append(
                    IntervalConsumption(
                        meter_id=row.meter_id,
                        start=plan.bounds[k],
                        end=plan.bounds[k + 1],
                        consumption=row.consumption,
                        unit=row.unit,
                        complete=row.complete,
                        source=row.source,
                        quality=row.quality,
                    )
                )
        return rows, daily.provenance

    async def _month_rows(
        self, plan: Plan, b: GuardedBackend, meter_id: str, s: Slice
    ) -> tuple[list[Interval], Provenance]:
        """Months `[s.first, s.stop)` of one meter as null-aware sums of its local days, read in pieces of
        at most 366 days (each the cached `/consumption/daily` answer of this meter alone)."""
        first_day, end_day = plan.bounds[s.first].date(), plan.bounds[s.stop].date()
        provenance = Provenance()
        days_of: dict[date, DailyConsumption] = {}
        piece = first_day
        while piece < end_day:
            stop = min(end_day, piece + timedelta(days=MAX_DAILY_PIECE))
            daily = await self.daily_consumption([meter_id], b.name, piece, stop, plan.tz)
            provenance.extend(daily.provenance)
            days_of.update((row.date, row) for row in daily.value)
            piece = stop
        if not days_of:
            return [], provenance
        all_days = [first_day + timedelta(days=i) for i in range((end_day - first_day).days)]
        parts = [
            Derived(d.consumption, d.complete, d.quality) if (d := days_of.get(day)) else Derived(None, False)
            for day in all_days
        ]
        month_bounds = plan.bounds[s.first : s.stop + 1]
        day_bounds = boundaries(first_day, end_day, plan.tz, "day")
        known = next(iter(days_of.values()))
        rows = [
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
            for k, total in enumerate(group_sums(parts, day_bounds, month_bounds))
        ]
        return rows, provenance


FINER = frozenset({"15min", "hour"})
Interval = IntervalConsumption


@dataclass(frozen=True, slots=True)
class Slice:
    """Intervals `[first, stop)` of the plan's meter number `meter`: one meter's share of a page."""

    meter: int
    first: int
    stop: int


@dataclass(slots=True)
class Plan:
    """One `/consumption` window: its interval boundaries and its meters in answer order (by id). Every
    meter has one row per interval, so a page is a list of `Slice`s known before any vendor call."""

    start: date
    end: date
    tz: ZoneInfo
    resolution: str
    bounds: list[datetime]
    meters: list[tuple[GuardedBackend, str, Meter | None]]
    errors: list[BackendError]
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def intervals(self) -> int:
        return max(0, len(self.bounds) - 1)

    def slices(self, meter: int, first: int, limit: int) -> list[Slice]:
        """At most `limit` rows from interval `first` of meter number `meter` on, meter after meter."""
        out: list[Slice] = []
        n = self.intervals
        while limit > 0 and n and meter < len(self.meters):
            stop = min(n, first + limit)
            if stop > first:
                out.append(Slice(meter, first, stop))
                limit -= stop - first
            meter, first = (meter, stop) if stop < n else (meter + 1, 0)
        return out

    def after(self, last: Slice) -> tuple[int, int] | None:
        """Where the rows continue after `last` (meter number, interval), or None at the end."""
        if last.stop < self.intervals:
            return last.meter, last.stop
        return (last.meter + 1, 0) if last.meter + 1 < len(self.meters) else None
