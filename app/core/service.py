"""`MeterService`: the facade's operations, composed from small parts.

Routes call the service; the service picks the backend(s) behind an id or a filter, asks each through
its `GuardedBackend` (cache, load cap, breaker, deadline), merges with `fan_out`, and pages with the
`pagers`. Each operation returns an `Answer`: the value, the failures of backends that did not answer,
and its `Provenance`, which the HTTP layer asks whether a stored response is still current.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from app.backends.base import CHANGES, DEVICE_STATUS, METERS, READINGS, AuthState, ChangesPage
from app.core.chunks import ReadingChunks
from app.core.consumption import ConsumptionService
from app.core.fanout import fan_out, gather_rows
from app.core.pagers import FeedPosition, Pager, after_id, feed_position, merge_feeds, time_and_count, time_position
from app.core.routing import BackendRouter
from app.domain.cursors import CursorCodec
from app.domain.ids import FacadeId
from app.domain.models import Change, DailyConsumption, DeviceStatus, IntervalConsumption, Meter, Reading
from app.guard.cache import SingleFlightCache
from app.guard.guarded import GuardedBackend
from app.guard.provenance import Answer, Provenance
from app.infra.config import Settings
from app.infra.errors import InvalidRequest
from app.infra.metrics import Metrics
from app.infra.timeutil import Clock, format_rfc3339, from_epoch, parse_rfc3339

log = logging.getLogger("app.core.service")

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
        self.router = BackendRouter(backends)
        self.backends = self.router.backends
        self.chunks = ReadingChunks(clock, self._ttl_for_window)
        self.caches = caches
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.default_tz = settings.timezone
        self._meters_pager = Pager(cursors, "meters")
        self._readings_pager = Pager(cursors, "readings")
        self._changes_pager = Pager(cursors, "changes")
        self.consumptions = ConsumptionService(
            self.router, self.chunks, settings=settings, ttl=self._ttl_for_window, all_meters=self._all_meters
        )

    # --- choosing backends -------------------------------------------------------------------------

    def resolve(self, raw_id: str, *, field: str, in_path: bool, capability: str) -> tuple[GuardedBackend, FacadeId]:
        """The backend behind an id, after checking the id fully; nothing goes upstream for junk."""
        return self.router.resolve(raw_id, field=field, in_path=in_path, capability=capability)

    def selected(self, backend: str | None, capability: str) -> list[GuardedBackend]:
        """Backends a list spans: the one named, or every configured one that can do `capability`."""
        return self.router.selected(backend, capability)

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
            found = await gather_rows(
                self.selected(backend, METERS), lambda b: self._meters_by_serial(b, number), lambda m: m.id
            )
        else:
            found = await gather_rows(self.selected(backend, METERS), self._all_meters, lambda m: m.id)
        answer: Answer[Page] = Answer(([], None), errors=found.errors, provenance=found.provenance)
        page, last = after_id(found.value, lambda m: m.id, after, limit)
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
        async for batch, part in self.chunks.chunked(b, fid.upstream, meter_id, from_time, window_end, quantities):
            rows.extend(batch)
            provenance.extend(part)
            if len(rows) >= want:
                break
        page, position = time_and_count(rows, lambda r: r.time, from_time, skip, limit)
        next_cursor = self._readings_pager.encode(query, position) if position else None
        return Answer((page, next_cursor), provenance=provenance)

    async def stream_readings(
        self, meter_id: str, start: datetime, end: datetime | None, quantities: frozenset[str] | None
    ) -> AsyncIterator[list[Reading]]:
        """Every reading of `[start, end)` in batches (a chunk each), for exports: nothing is paged and
        nothing new is cached, so memory stays at a few chunks however long the window."""
        b, fid = self.resolve(meter_id, field="meter_id", in_path=False, capability=READINGS)
        window_end = end or from_epoch(self.clock())

        async def batches() -> AsyncIterator[list[Reading]]:
            chunks = self.chunks.chunked(b, fid.upstream, meter_id, start, window_end, quantities, store=False)
            async for rows, _ in chunks:
                if rows:
                    yield rows

        return batches()

    # --- consumption -------------------------------------------------------------------------------

    async def daily_consumption(
        self, meter_ids: list[str], backend: str | None, start: date, end: date, tz: ZoneInfo
    ) -> Answer[list[DailyConsumption]]:
        """Every requested day of every meter, ordered by (meter_id, date)."""
        return await self.consumptions.daily_consumption(meter_ids, backend, start, end, tz)

    async def consumption(
        self, meter_ids: list[str], backend: str | None, start: date, end: date, tz: ZoneInfo, resolution: str
    ) -> Answer[list[IntervalConsumption]]:
        """Every interval of `[start, end)` in `tz` at `resolution`, ordered by (meter_id, start)."""
        return await self.consumptions.consumption(meter_ids, backend, start, end, tz, resolution)

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
