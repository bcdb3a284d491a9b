"""`MeterService`: the facade's operations, composed from small parts.

Routes call the service; the service picks the backend(s) behind an id or a filter, asks each through
its `GuardedBackend` (cache, load cap, breaker, deadline), merges with `fan_out`, and pages with the
`pagers`. Each operation returns an `Answer`: the value, the failures of backends that did not answer,
and its `Provenance`, which the HTTP layer asks whether a stored response is still current.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.backends.base import CHANGES, DAILY_CONSUMPTION, DEVICE_STATUS, METERS, READINGS, AuthState, ChangesPage
from app.cache import SingleFlightCache
from app.config import Settings
from app.cursors import CursorCodec
from app.errors import InvalidRequest, NotFound, NotSupported
from app.fanout import fan_out
from app.guard import GuardedBackend
from app.ids import FacadeId, split_id
from app.intervals import IntervalConsumption as Derived
from app.intervals import boundaries, derive, epoch, group_sums
from app.metrics import Metrics
from app.models import Change, DailyConsumption, DeviceStatus, IntervalConsumption, Meter, Reading
from app.pagers import FeedPosition, Pager, after_id, feed_position, merge_feeds, time_and_count, time_position
from app.provenance import Answer, Provenance
from app.timeutil import Clock, format_rfc3339, from_epoch, local_midnight, parse_rfc3339

log = logging.getLogger("app.service")

Page = tuple[list[Any], str | None]
CHUNK_LIMIT = 1_000_000
"""`limit` of one chunk's vendor read: the whole chunk (a chunk is a day or a week of one meter)."""
CHUNKS_AT_ONCE = 4
"""Chunks of one meter loaded concurrently (well inside `FACADE_MAX_LOADS`)."""
METERS_AT_ONCE = 3
"""Meters whose finer consumption is derived concurrently (3 x 4 chunk loads at most)."""
REGISTER = {"water": "volume", "gas": "volume"}
"""The cumulative register interval consumption is derived from, by medium (default `energy_import`)."""
MAX_DAILY_PIECE = 366


@dataclass(frozen=True, slots=True)
class Chunk:
    """One cached chunk of one meter's readings (every register), ascending."""

    rows: list[Reading]
    next_time: float | None = None
    """Epoch of the first reading at or after the chunk's end, when the vendor showed it: every chunk
    that ends by then is known to be empty and is not asked for."""


def _kwh6(value: float | None) -> float | None:
    # Prefix-sum differences carry float noise in the 12th digit; a millionth of the unit is plenty.
    return None if value is None else round(value, 6)


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """What `/backends`, `/readyz` and `/metrics` may know of a backend (never a secret)."""

    name: str
    mode: str
    capabilities: frozenset[str]
    circuit: str
    circuit_retry_after: float | None
    auth: AuthState
    cache_entries: dict[str, int]


class MeterService:
    def __init__(
        self,
        backends: Mapping[str, GuardedBackend],
        *,
        caches: Mapping[str, SingleFlightCache],
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        cursors: CursorCodec,
    ) -> None:
        self.backends = dict(backends)
        self.caches = caches
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.default_tz = settings.timezone
        self._meters_pager = Pager(cursors, "meters")
        self._readings_pager = Pager(cursors, "readings")
        self._changes_pager = Pager(cursors, "changes")

    # --- choosing backends -------------------------------------------------------------------------

    def resolve(self, raw_id: str, *, field: str, in_path: bool, capability: str) -> tuple[GuardedBackend, FacadeId]:
        """The backend behind an id, after checking the id fully; nothing goes upstream for junk."""
        fid = split_id(raw_id, field=field, in_path=in_path)
        guarded = self.backends.get(fid.backend)
        if guarded is None or not guarded.backend.is_valid_id(fid.upstream):
            raise NotFound(f"No {field.removesuffix('_id')} {raw_id!r} exists.")
        if capability not in guarded.capabilities:
            raise NotSupported(f"{guarded.name} has no {capability}.", backend=guarded.name)
        return guarded, fid

    def selected(self, backend: str | None, capability: str) -> list[GuardedBackend]:
        """Backends a list spans: the one named, or every configured one that can do `capability`."""
        if backend is not None:
            chosen = self.backends.get(backend)
            if chosen is None:
                configured = ", ".join(sorted(self.backends))
                raise InvalidRequest(f"backend {backend[:40]!r} is not one of: {configured}", field="backend")
            if capability not in chosen.capabilities:
                raise NotSupported(f"{backend} has no {capability}.", backend=backend)
            return [chosen]
        found = [b for b in self.backends.values() if capability in b.capabilities]
        if not found:
            raise NotSupported(f"No configured backend offers {capability}.")
        return found

    def _ttl_for_window(self, end: datetime | None) -> float:
        """Past data changes only by correction (evicted on notice), so it may live long."""
        if end is not None and end.timestamp() <= self.clock():
            return self.settings.ttl_past
        return self.settings.ttl_recent

    # --- meters -------------------------------------------------------------------------------------

    async def _all_meters(self, b: GuardedBackend) -> tuple[list[Meter], Provenance]:
        return await b.cached("meters", "all", b.backend.list_meters, ttl=self.settings.ttl_meters)

    async def _meters_by_serial(self, b: GuardedBackend, serial_number: str) -> tuple[list[Meter], Provenance]:
        """Exact matches of the printed number: the backend's own lookup when it has one, else its
        cached listing filtered."""
        find = getattr(b.backend, "meters_by_serial", None)
        if find is None:
            meters, provenance = await self._all_meters(b)
            return [m for m in meters if m.serial_number == serial_number], provenance
        return await b.cached(
            "meters", ("serial_number", serial_number), lambda: find(serial_number), ttl=self.settings.ttl_meters
        )

    async def list_meters(
        self, backend: str | None, limit: int, cursor: str | None, serial_number: str | None = None
    ) -> Answer[Page]:
        after = ""
        if cursor:
            given = {"backend": backend, "serial_number": serial_number}
            query, state = self._meters_pager.decode(cursor, given if backend or serial_number else None)
            backend, after = query.get("backend"), str(state.get("after", ""))
            serial_number = query.get("serial_number")
        if serial_number is not None:
            number = serial_number
            good, errors = await fan_out(self.selected(backend, METERS), lambda b: self._meters_by_serial(b, number))
        else:
            good, errors = await fan_out(self.selected(backend, METERS), self._all_meters)
        answer: Answer[Page] = Answer(([], None), errors=errors)
        merged: list[Meter] = []
        for meters, provenance in good:
            answer.provenance.extend(provenance)
            merged.extend(meters)
        merged.sort(key=lambda m: m.id)
        page, last = after_id(merged, lambda m: m.id, after, limit)
        continues: dict[str, Any] = {"backend": backend}
        if serial_number is not None:
            continues["serial_number"] = serial_number
        next_cursor = self._meters_pager.encode(continues, {"after": last}) if last else None
        answer.value = (page, next_cursor)
        return answer

    async def get_meter(self, meter_id: str) -> Answer[Meter]:
        b, fid = self.resolve(meter_id, field="meter_id", in_path=True, capability=METERS)
        listed = b.peek_fresh("meters", "all", self.clock())
        if listed is not None:
            meters, provenance = listed
            for meter in meters:
                if meter.id == meter_id:
                    return Answer(meter, provenance=provenance)
        meter, provenance = await b.cached(
            "meter", fid.upstream, lambda: b.backend.get_meter(fid.upstream), ttl=self.settings.ttl_meters
        )
        return Answer(meter, provenance=provenance)

    # --- readings -----------------------------------------------------------------------------------

    async def readings(
        self,
        meter_id: str | None,
        start: datetime | None,
        end: datetime | None,
        quantities: frozenset[str] | None,
        limit: int,
        cursor: str | None,
    ) -> Answer[Page]:
        """Readings in `[start, end)` (end None = up to now), ascending by (time, quantity).

        With a cursor, `meter_id`, `start`, `end` and `quantities` may be left out (the cursor holds them)."""
        qkey = sorted(quantities) if quantities else None
        query: dict[str, Any] = {
            "meter_id": meter_id,
            "start": format_rfc3339(start) if start else None,
            "end": format_rfc3339(end) if end else None,
            "quantity": qkey,
        }
        skip = 0
        from_time = start
        if cursor:
            query, state = self._readings_pager.decode(cursor, query if meter_id else None)
            from_time, skip = time_position(state)
            try:
                meter_id = str(query["meter_id"])
                start = parse_rfc3339(str(query["start"]))
                end = parse_rfc3339(str(query["end"])) if query.get("end") else None
                qkey = [str(q) for q in query["quantity"]] if query.get("quantity") else None
            except (KeyError, ValueError, TypeError):
                raise InvalidRequest("cursor is not valid", field="cursor") from None
            quantities = frozenset(qkey) if qkey else None
        if meter_id is None or start is None or from_time is None:
            raise InvalidRequest("meter_id and start are required (or a cursor)", field="meter_id")
        b, fid = self.resolve(meter_id, field="meter_id", in_path=False, capability=READINGS)
        want = skip + limit + 1
        rows: list[Reading] = []
        provenance = Provenance()
        window_end = end or from_epoch(self.clock())
        async for batch, part in self._chunked(b, fid.upstream, meter_id, from_time, window_end, quantities):
            rows.extend(batch)
            provenance.extend(part)
            if len(rows) >= want:
                break
        page, position = time_and_count(rows, lambda r: r.time, from_time, skip, limit)
        next_cursor = self._readings_pager.encode(query, position) if position else None
        return Answer((page, next_cursor), provenance=provenance)

    # --- readings in chunks ---------------------------------------------------------------------------
    #
    # Readings are read from the vendor and cached in aligned chunks of one meter (a UTC day; a week
    # for backends with a `readings_chunk_days` attribute saying so), every quantity at once. `/readings`
    # pages, `/consumption` at 15min/hour and the NDJSON export all read the same chunks, so one
    # of them never repeats a vendor call another already made; a correction evicts the meter's chunks.

    def _chunk_seconds(self, b: GuardedBackend) -> int:
        return 86400 * max(1, int(getattr(b.backend, "readings_chunk_days", 1)))

    def _chunk_starts(self, b: GuardedBackend, start: datetime, end: datetime) -> list[float]:
        size = self._chunk_seconds(b)
        first = math.floor(start.timestamp() / size) * size
        return [float(c) for c in range(int(first), math.ceil(end.timestamp()), size)]

    def _chunk_loader(self, b: GuardedBackend, upstream: str, c0: float) -> Callable[[], Awaitable[Chunk]]:
        c1 = c0 + self._chunk_seconds(b)
        window = getattr(b.backend, "readings_window", None)  # a backend's cheaper whole-window read

        async def load() -> Chunk:
            next_time: datetime | None = None
            if window is not None:
                rows, next_time = await window(upstream, from_epoch(c0), from_epoch(c1))
            else:
                rows = await b.backend.readings(upstream, from_epoch(c0), from_epoch(c1), None, CHUNK_LIMIT)
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
        c1 = from_epoch(c0 + self._chunk_seconds(b))
        return await b.cached("readings", ("chunk", upstream, c0), load, ttl=self._ttl_for_window(c1), tags=(meter_id,))

    async def _chunked(
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
            for chunk, provenance in loaded:
                if chunk.next_time is not None:
                    empty_until = max(empty_until, chunk.next_time)
                yield (
                    [
                        r
                        for r in chunk.rows
                        if start <= r.time < end and (quantities is None or r.quantity in quantities)
                    ],
                    provenance,
                )

    async def stream_readings(
        self, meter_id: str, start: datetime, end: datetime | None, quantities: frozenset[str] | None
    ) -> AsyncIterator[list[Reading]]:
        """Every reading of `[start, end)` in batches (a chunk each), for exports: nothing is paged and
        nothing new is cached, so memory stays at a few chunks however long the window."""
        b, fid = self.resolve(meter_id, field="meter_id", in_path=False, capability=READINGS)
        window_end = end or from_epoch(self.clock())

        async def batches() -> AsyncIterator[list[Reading]]:
            chunks = self._chunked(b, fid.upstream, meter_id, start, window_end, quantities, store=False)
            async for rows, _ in chunks:
                if rows:
                    yield rows

        return batches()

    async def _register(
        self, b: GuardedBackend, meter: Meter, start: datetime, end: datetime
    ) -> tuple[list[float], list[float], Provenance]:
        """The meter's cumulative register over `[start, end)` as strictly ascending (epoch, value),
        from the cached chunks. The register is what the backend's `register_value(meter, reading)`
        picks, if it has one (IOmeter: the register its daily derivation uses), else the readings of
        quantity `volume` (water, gas) or `energy_import` (the rest)."""
        pick = getattr(b.backend, "register_value", None)
        quantity = REGISTER.get(meter.medium, "energy_import")
        wanted = None if pick is not None else frozenset({quantity})
        upstream = meter.id.split(":", 1)[1]
        times: list[float] = []
        values: list[float] = []
        provenance = Provenance()
        async for rows, part in self._chunked(b, upstream, meter.id, start, end, wanted):
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

    # --- daily consumption -------------------------------------------------------------------------

    async def daily_consumption(
        self, meter_ids: list[str], backend: str | None, start: date, end: date, tz: ZoneInfo
    ) -> Answer[list[DailyConsumption]]:
        """Every requested day of every meter, ordered by (meter_id, date)."""
        wanted: dict[str, set[str]] = {}
        for raw in meter_ids:
            b, fid = self.resolve(raw, field="meter_id", in_path=False, capability=DAILY_CONSUMPTION)
            if backend is not None and b.name != backend:
                raise InvalidRequest(f"meter_id {raw!r} is not a {backend} meter", field="meter_id")
            wanted.setdefault(b.name, set()).add(fid.upstream)
        chosen = [self.backends[n] for n in wanted] if wanted else self.selected(backend, DAILY_CONSUMPTION)
        ttl = self._ttl_for_window(local_midnight(end, tz))

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

        good, errors = await fan_out(chosen, fetch)
        answer: Answer[list[DailyConsumption]] = Answer([], errors=errors)
        rows: list[DailyConsumption] = []
        for part, provenance in good:
            answer.provenance.extend(provenance)
            rows.extend(part)
        rows.sort(key=lambda r: (r.meter_id, r.date))
        answer.value = rows
        return answer

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
            b, fid = self.resolve(raw, field="meter_id", in_path=False, capability=READINGS)
            if backend is not None and b.name != backend:
                raise InvalidRequest(f"meter_id {raw!r} is not a {backend} meter", field="meter_id")
            wanted.setdefault(b.name, set()).add(f"{b.name}:{fid.upstream}")
        chosen = [self.backends[n] for n in wanted] if wanted else self.selected(backend, READINGS)
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
            times, values, part = await self._register(b, meter, fetch_from, fetch_to)
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

        good, errors = await fan_out(chosen, fetch)
        answer: Answer[list[IntervalConsumption]] = Answer([], errors=errors)
        rows: list[IntervalConsumption] = []
        for part, provenance in good:
            answer.provenance.extend(provenance)
            rows.extend(part)
        rows.sort(key=lambda r: (r.meter_id, r.start))
        answer.value = rows
        return answer

    # --- device status ------------------------------------------------------------------------------

    async def device_status(self, device_id: str) -> Answer[DeviceStatus]:
        b, fid = self.resolve(device_id, field="device_id", in_path=True, capability=DEVICE_STATUS)
        status, provenance = await b.cached(
            "device_status",
            fid.upstream,
            lambda: b.backend.device_status(fid.upstream),
            ttl=self.settings.ttl_device_status,
        )
        return Answer(status, provenance=provenance)

    # --- changes ------------------------------------------------------------------------------------

    async def changes(
        self, since: datetime | None, backend: str | None, limit: int, cursor: str | None
    ) -> Answer[Page]:
        """The corrections feeds of every backend that has one (or the one named), merged ascending by
        (changed_at, id). Each feed's own resume token, and how far into that page we are, ride inside
        the facade's signed cursor."""
        positions: dict[str, list[Any] | None] = {}
        if cursor:
            given = {"since": format_rfc3339(since) if since else None, "backend": backend}
            query, state = self._changes_pager.decode(cursor, given if since else None)
            try:
                since, backend = parse_rfc3339(str(query["since"])), query["backend"]
                positions = dict(state["p"])
            except (KeyError, ValueError, TypeError):
                raise InvalidRequest("cursor is not valid", field="cursor") from None
        if since is None:
            raise InvalidRequest("since is required (or a cursor)", field="since")
        sources = self.selected(backend, CHANGES)
        if cursor:
            sources = [b for b in sources if positions.get(b.name) is not None]
        feed_since = since

        async def fetch(b: GuardedBackend) -> tuple[str, FeedPosition, ChangesPage, Provenance]:
            token, skip = feed_position(positions.get(b.name))
            page, provenance = await b.cached(
                "changes",
                (feed_since, limit, token),
                lambda: b.backend.changes(feed_since, limit, token),
                ttl=self.settings.ttl_changes,
            )
            if provenance.cache_result == "MISS":
                self.evict_for_changes(page.items)
            return b.name, (token, skip), page, provenance

        good, errors = await fan_out(sources, fetch)
        answer: Answer[Page] = Answer(([], None), errors=errors)
        for *_, provenance in good:
            answer.provenance.extend(provenance)
        merged, moved = merge_feeds([(name, position, page) for name, position, page, _ in good], limit)
        positions.update(moved)
        more = any(p is not None for p in positions.values())
        query = {"since": format_rfc3339(since), "backend": backend}
        next_cursor = self._changes_pager.encode(query, {"p": positions}) if more else None
        answer.value = (merged, next_cursor)
        return answer

    async def stream_changes(self, since: datetime, backend: str | None) -> AsyncIterator[list[Change]]:
        """Every correction since `since`, page after page (1000 at a time), for exports. The first
        page is read before returning, so a failure up front is raised here."""
        first = await self.changes(since, backend, 1000, None)

        async def pages() -> AsyncIterator[list[Change]]:
            answer = first
            for _ in range(10_000):
                items, cursor = answer.value
                yield items
                if not cursor:
                    return
                answer = await self.changes(None, None, 1000, cursor)

        return pages()

    def evict_for_changes(self, changes: Iterable[Change]) -> dict[str, int]:
        """Evict cached readings and daily consumption of every meter a correction touched; entries
        evicted per backend (also counted in `facade_correction_evictions_total{backend}`)."""
        return self.evict_meters({c.meter_id for c in changes})

    def evict_meters(self, meters: set[str]) -> dict[str, int]:
        """Evict cached readings and daily consumption of `meters` (facade ids); entries evicted per
        backend. Also what a replica does when another one broadcasts the corrections it polled."""
        evicted: dict[str, int] = {}
        for backend in sorted({m.split(":", 1)[0] for m in meters}):
            theirs = {m for m in meters if m.startswith(backend + ":")}
            count = self.caches["readings"].evict_tagged(theirs) + self.caches["daily"].evict_tagged(theirs)
            evicted[backend] = count
            if count:
                self.metrics.corrections_evicted.labels(backend).inc(count)
                log.info(
                    "evicted cache entries after corrections",
                    extra={"fields": {"backend": backend, "entries": count, "meters": len(theirs)}},
                )
        return evicted

    # --- health -------------------------------------------------------------------------------------

    async def health(self) -> list[BackendHealth]:
        out = []
        for name, b in self.backends.items():
            out.append(
                BackendHealth(
                    name=name,
                    mode=b.backend.mode,
                    capabilities=b.capabilities,
                    circuit=b.breaker.state,
                    circuit_retry_after=b.breaker.retry_after(),
                    auth=await b.backend.auth_state(),
                    cache_entries={n: c.count_backend(name) for n, c in self.caches.items()},
                )
            )
        return out

    async def check_ready(self, name: str) -> None:
        """Prove backend `name` can authenticate now; raises an `UpstreamError` if not."""
        await self.backends[name].backend.check_ready()

    def cache_sizes(self) -> dict[str, tuple[int, int]]:
        """(entries, estimated bytes) per data cache."""
        return {n: (len(c), c.bytes) for n, c in self.caches.items()}

    async def aclose(self) -> None:
        for cache in self.caches.values():
            await cache.aclose()
