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
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from app.backends.base import (
    CHANGES,
    DEVICE_STATUS,
    METERS,
    READINGS,
    AuthState,
    ChangesPage,
    LateReadings,
    SerialLookup,
    settled_at,
)
from app.core.caches import Caches
from app.core.chunks import ReadingChunks
from app.core.consumption import ConsumptionService
from app.core.fanout import fan_out, gather_rows
from app.core.pagers import (
    FeedPosition,
    Pager,
    after_id,
    feed_position,
    merge_feeds,
    page_size,
    time_and_count,
    time_position,
)
from app.core.routing import BackendRouter
from app.domain.cursors import CursorCodec
from app.domain.ids import FacadeId
from app.domain.models import Change, DailyConsumption, DeviceStatus, IntervalConsumption, Meter, Reading
from app.guard.guarded import GuardedBackend
from app.guard.provenance import Answer, Provenance
from app.infra.config import Settings
from app.infra.errors import InvalidRequest
from app.infra.metrics import Metrics
from app.infra.timeutil import Clock, format_rfc3339, from_epoch, parse_rfc3339

T = TypeVar("T")

log = logging.getLogger("app.core.service")

ItemsAndCursor = tuple[list[Any], str | None]
"""One page of a list as the routes get it: the items and the next page's cursor (None on the last)."""
SETTLED_WITH_FEED = 365 * 86400.0
"""Lifetime of a settled readings chunk of a backend whose correction feed is polled: until a correction
evicts it, in practice (or the byte budget pushes it out first)."""


@dataclass(frozen=True, slots=True)
class MeterFilters:
    """The filters of `/meters`: each one set must hold."""

    serial_number: str | None = None
    medium: str | None = None
    site_id: str | None = None

    def admits(self, meter: Meter) -> bool:
        return (
            (self.serial_number is None or meter.serial_number == self.serial_number)
            and (self.medium is None or meter.medium == self.medium)
            and (self.site_id is None or meter.site_id == self.site_id)
        )

    def query(self) -> dict[str, str | None]:
        """As a cursor carries them."""
        return {"serial_number": self.serial_number, "medium": self.medium, "site_id": self.site_id}

    @classmethod
    def from_query(cls, query: Mapping[str, Any]) -> MeterFilters:
        def text(name: str) -> str | None:
            value = query.get(name)
            return value if isinstance(value, str) else None

        return cls(serial_number=text("serial_number"), medium=text("medium"), site_id=text("site_id"))


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
        caches: Caches,
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        cursors: CursorCodec,
    ) -> None:
        self.router = BackendRouter(backends)
        self.backends = self.router.backends
        self.chunks = ReadingChunks(clock, self._ttl_for_window, settled=self._ttl_settled)
        self.caches = caches
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.default_tz = settings.timezone
        self._meters_pager = Pager(cursors, "meters")
        self._readings_pager = Pager(cursors, "readings")
        self._changes_pager = Pager(cursors, "changes")
        for guarded in self.backends.values():  # issue 21: no corrections feed, but late readings seen
            if isinstance(guarded.backend, LateReadings):
                guarded.backend.on_late_readings = self.evict_meters
        self.consumptions = ConsumptionService(
            self.router,
            self.chunks,
            settings=settings,
            ttl=self._ttl_for_window,
            all_meters=self._all_meters,
            pager=Pager(cursors, "consumption"),
            past_window=self._past_window,
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

    def _past_window(self, answer: Answer[T], end: datetime | None, backends: Iterable[str]) -> Answer[T]:
        """A window whose data has settled (it ended, and for a vendor that uploads late its late window
        passed too: `settled_at`) is fresh `ttl_past` from its oldest part's fetch, whatever the TTL of the
        chunks it was read from (a chunk reaching now lives `ttl_recent`): the guide's "Caching headers"."""
        if end is None:
            return answer
        now = self.clock()
        provenance = answer.provenance
        settled = max((settled_at(self.backends[n].backend, end) for n in backends if n in self.backends), default=end)
        if settled.timestamp() <= now and provenance.cached and provenance.cache_result != "STALE":
            answer.fresh_until = provenance.created(now) + self.settings.ttl_past
        return answer

    def _ttl_settled(self, b: GuardedBackend, end: float) -> float | None:
        """A readings chunk that ended `FACADE_SETTLE_AGE` ago is settled: it changes only by correction.
        With a correction feed being polled (Waltero) it lives until a correction evicts it (or the
        byte budget pushes it out); without one (IOmeter), `FACADE_TTL_SETTLED`. None: not settled, or
        `FACADE_TTL_PAST=0`."""
        if self.settings.ttl_past <= 0 or end > self.clock() - self.settings.settle_age:
            return None  # past data is not to be cached at all, or the chunk is not settled yet
        if CHANGES in b.capabilities and self.settings.changes_poll > 0:
            return SETTLED_WITH_FEED
        return max(self.settings.ttl_settled, self.settings.ttl_past)

    # --- meters -------------------------------------------------------------------------------------

    async def _all_meters(self, b: GuardedBackend) -> tuple[list[Meter], Provenance]:
        return await b.cached("meters", "all", b.backend.list_meters, ttl=self.settings.ttl_meters)

    async def _meters_by_serial(self, b: GuardedBackend, serial_number: str) -> tuple[list[Meter], Provenance]:
        """Exact matches of the printed number: the backend's own lookup when it has one, else its
        cached listing filtered."""
        backend = b.backend
        if not isinstance(backend, SerialLookup):
            meters, provenance = await self._all_meters(b)
            return [m for m in meters if m.serial_number == serial_number], provenance
        return await b.cached(
            "meters",
            ("serial_number", serial_number),
            lambda: backend.meters_by_serial(serial_number),
            ttl=self.settings.ttl_meters,
        )

    async def list_meters(
        self, backend: str | None, limit: int | None, cursor: str | None, filters: MeterFilters | None = None
    ) -> Answer[ItemsAndCursor]:
        """Meters of every selected backend, sorted by id, with `filters` applied (all must hold); `limit`
        None = the cursor's page size (else the default)."""
        filters = filters or MeterFilters()
        after = ""
        state: dict[str, Any] | None = None
        if cursor:
            given = {"backend": backend, **filters.query()}
            query, state = self._meters_pager.decode(cursor, given if any(given.values()) else None)
            backend, after = query.get("backend"), str(state.get("after", ""))
            filters = MeterFilters.from_query(query)
        site_backend = filters.site_id.partition(":")[0] if filters.site_id is not None else None
        if site_backend is not None and (
            site_backend not in self.router.backends or backend not in (None, site_backend)
        ):
            return Answer(([], None))  # a site no configured backend holds: nothing to ask anyone
        selected = self.selected(backend or site_backend, METERS)
        if filters.serial_number is not None:
            number = filters.serial_number
            found = await gather_rows(selected, lambda b: self._meters_by_serial(b, number), lambda m: m.id)
        else:
            found = await gather_rows(selected, self._all_meters, lambda m: m.id)
        answer: Answer[ItemsAndCursor] = Answer(([], None), errors=found.errors, provenance=found.provenance)
        meters = [m for m in found.value if filters.admits(m)]
        size = page_size(limit, state)
        page, last = after_id(meters, lambda m: m.id, after, size)
        continues: dict[str, Any] = {"backend": backend, **{k: v for k, v in filters.query().items() if v is not None}}
        next_cursor = self._meters_pager.encode(continues, {"after": last}, size) if last else None
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
        limit: int | None,
        cursor: str | None,
    ) -> Answer[ItemsAndCursor]:
        """Readings in `[start, end)` (end None = up to now), ascending by (time, quantity).

        With a cursor, `meter_id`, `start`, `end`, `quantities` and `limit` may be left out (the cursor
        holds them)."""
        qkey = sorted(quantities) if quantities else None
        query: dict[str, Any] = {
            "meter_id": meter_id,
            "start": format_rfc3339(start) if start else None,
            "end": format_rfc3339(end) if end else None,
            "quantity": qkey,
        }
        skip = 0
        from_time = start
        state: dict[str, Any] | None = None
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
        size = page_size(limit, state)
        want = skip + size + 1
        rows: list[Reading] = []
        provenance = Provenance()
        window_end = end or from_epoch(self.clock())
        async for batch, part in self.chunks.chunked(b, fid.upstream, meter_id, from_time, window_end, quantities):
            rows.extend(batch)
            provenance.extend(part)
            if len(rows) >= want:
                break
        page, position = time_and_count(rows, lambda r: r.time, from_time, skip, size)
        next_cursor = self._readings_pager.encode(query, position, size) if position else None
        return self._past_window(Answer((page, next_cursor), provenance=provenance), end, [b.name])

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
    ) -> Answer[ItemsAndCursor]:
        """A page of the intervals of `[start, end)` in `tz` at `resolution`, ordered by (meter_id, start),
        and the next page's cursor. With a cursor, the parameters left None are the cursor's."""
        return await self.consumptions.page(meter_ids, backend, start, end, tz, resolution, limit=limit, cursor=cursor)

    async def stream_consumption(
        self, meter_ids: list[str], backend: str | None, start: date, end: date, tz: ZoneInfo, resolution: str
    ) -> Answer[AsyncIterator[list[IntervalConsumption]]]:
        """The whole window in batches, for exports (a 422 over the window budget comes now)."""
        return await self.consumptions.stream(meter_ids, backend, start, end, tz, resolution)

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
        self, since: datetime | None, backend: str | None, limit: int | None, cursor: str | None
    ) -> Answer[ItemsAndCursor]:
        """The corrections feeds of every backend that has one (or the one named), merged ascending by
        (changed_at, id). Each feed's own resume token, and how far into that page we are, ride inside
        the facade's signed cursor."""
        positions: dict[str, list[Any] | None] = {}
        state: dict[str, Any] | None = None
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
        size = page_size(limit, state)
        sources = self.selected(backend, CHANGES)
        if cursor:
            sources = [b for b in sources if positions.get(b.name) is not None]
        feed_since = since

        async def fetch(b: GuardedBackend) -> tuple[str, FeedPosition, ChangesPage, Provenance]:
            token, skip = feed_position(positions.get(b.name))
            page, provenance = await b.cached(
                "changes",
                (feed_since, size, token),
                lambda: b.backend.changes(feed_since, size, token),
                ttl=self.settings.ttl_changes,
            )
            if provenance.cache_result == "MISS":
                self.evict_for_changes(page.items)
            return b.name, (token, skip), page, provenance

        good, errors = await fan_out(sources, fetch)
        answer: Answer[ItemsAndCursor] = Answer(([], None), errors=errors)
        for *_, provenance in good:
            answer.provenance.extend(provenance)
        merged, moved = merge_feeds([(name, position, page) for name, position, page, _ in good], size)
        positions.update(moved)
        more = any(p is not None for p in positions.values())
        query = {"since": format_rfc3339(since), "backend": backend}
        next_cursor = self._changes_pager.encode(query, {"p": positions}, size) if more else None
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
            count = sum(cache.evict_tagged(theirs) for cache in self.caches.correctable())
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
