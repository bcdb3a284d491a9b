"""The service layer: route by id prefix, cache and coalesce, guard with circuit breakers, merge lists
across backends, paginate with signed cursors.

Routes call `MeterService`; it calls `Backend`s. Each operation returns an `Answer`: the normalized
value plus the cache entries it was built from, so the HTTP layer can set `X-Cache`, `Age` and
`max-age`, and can keep the serialized response exactly as long as those entries stay current.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from app.backends.base import CHANGES, DAILY_CONSUMPTION, DEVICE_STATUS, METERS, READINGS, Backend, ChangesPage
from app.cache import CacheEntry, CacheResult, SingleFlightCache
from app.circuit import CircuitBreaker
from app.config import Settings
from app.cursors import CursorCodec
from app.errors import FacadeError, InvalidRequest, NotFound, NotSupported, UpstreamTimeout
from app.ids import FacadeId, split_id
from app.metrics import Metrics
from app.models import BackendError, Change, DailyConsumption, DeviceStatus, Meter, Reading
from app.timeutil import Clock, format_rfc3339, from_epoch, local_midnight, parse_rfc3339

log = logging.getLogger("app.service")

T = TypeVar("T")
CACHE_NAMES = ("meters", "meter", "readings", "daily", "device_status", "changes")


@dataclass(slots=True)
class _Served(Generic[T]):
    """One cached load's value with its provenance."""

    value: T
    cache: SingleFlightCache
    key: Hashable
    entry: CacheEntry[Any]
    result: CacheResult


@dataclass(slots=True)
class Answer(Generic[T]):
    """An operation's value and the cache entries it was built from."""

    value: T
    errors: list[BackendError] = field(default_factory=list)
    sources: list[tuple[SingleFlightCache, Hashable, CacheEntry[Any]]] = field(default_factory=list)
    results: list[CacheResult] = field(default_factory=list)

    @property
    def cache_result(self) -> CacheResult:
        """STALE if any part was stale, else MISS if any part went upstream, else HIT."""
        return "STALE" if "STALE" in self.results else "MISS" if "MISS" in self.results else "HIT"

    def add(self, served: _Served[Any]) -> None:
        self.sources.append((served.cache, served.key, served.entry))
        self.results.append(served.result)


class MeterService:
    def __init__(
        self,
        backends: dict[str, Backend],
        *,
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        cursors: CursorCodec,
    ) -> None:
        self.backends = backends
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.cursors = cursors
        self.default_tz = settings.timezone
        self.backend_deadline = max(0.05, settings.request_deadline * 0.9)
        self.caches = {
            name: SingleFlightCache(
                name,
                maxsize=settings.cache_size(name),
                timer=clock,
                stale_if_error=settings.stale_if_error,
                metrics=metrics,
            )
            for name in CACHE_NAMES
        }
        self.breakers = {
            name: CircuitBreaker(
                name,
                failure_threshold=settings.circuit_failures,
                reset_after=settings.circuit_reset,
                clock=clock,
                on_change=metrics.circuit_state.labels(name).set,
            )
            for name in backends
        }
        for name in backends:
            metrics.circuit_state.labels(name).set(0)

    # --- plumbing ---------------------------------------------------------------------------------

    def resolve(self, raw_id: str, *, field: str, in_path: bool, capability: str) -> tuple[Backend, FacadeId]:
        """The backend behind an id, after checking the id fully; nothing goes upstream for junk."""
        fid = split_id(raw_id, field=field, in_path=in_path)
        backend = self.backends.get(fid.backend)
        if backend is None or not backend.is_valid_id(fid.upstream):
            raise NotFound(f"No {field.removesuffix('_id')} {raw_id!r} exists.")
        if capability not in backend.capabilities:
            raise NotSupported(f"{backend.name} has no {capability}.", backend=backend.name)
        return backend, fid

    def selected(self, backend: str | None, capability: str) -> list[Backend]:
        """Backends a list spans: the one named, or every configured one that can do `capability`."""
        if backend is not None:
            chosen = self.backends.get(backend)
            if chosen is None:
                raise InvalidRequest(f"backend {backend!r} is not configured in this service", field="backend")
            if capability not in chosen.capabilities:
                raise NotSupported(f"{backend} has no {capability}.", backend=backend)
            return [chosen]
        found = [b for b in self.backends.values() if capability in b.capabilities]
        if not found:
            raise NotSupported(f"No configured backend offers {capability}.")
        return found

    async def _cached(
        self,
        cache_name: str,
        key: Hashable,
        backend: Backend,
        load: Callable[[], Awaitable[T]],
        *,
        ttl: float | Callable[[T], float],
        tags: Iterable[str] | Callable[[T], Iterable[str]] = (),
    ) -> _Served[T]:
        cache = self.caches[cache_name]
        guarded = functools.partial(self.breakers[backend.name].call, load)
        try:
            # Each backend answers within its own deadline, a little inside the request's, so a slow
            # vendor becomes its own `errors` entry (or a stale answer), not a 504 for the whole list.
            async with asyncio.timeout(self.backend_deadline):
                entry, result = await cache.get_or_load((backend.name, key), guarded, ttl=ttl, tags=tags)
        except TimeoutError:
            stale = cache.peek((backend.name, key))
            if stale is None:
                raise UpstreamTimeout(
                    f"{backend.name} did not answer within {self.backend_deadline:g} s.", backend=backend.name
                ) from None
            cache.note_stale()
            entry, result = stale, "STALE"
        value: T = entry.value
        return _Served(value, cache, (backend.name, key), entry, result)

    def _ttl_for_window(self, end: datetime | None) -> float:
        """Past data changes only by correction (evicted on notice), so it may live long."""
        if end is not None and end.timestamp() <= self.clock():
            return self.settings.ttl_past
        return self.settings.ttl_recent

    async def _spanning(
        self, backends: Sequence[Backend], fetch: Callable[[Backend], Awaitable[T]]
    ) -> tuple[list[tuple[Backend, T]], list[BackendError]]:
        """Run `fetch` on every backend at once. One failing → its error entry, the rest kept;
        every one failing → the (most severe) error is raised."""
        results = await asyncio.gather(*(fetch(b) for b in backends), return_exceptions=True)
        good: list[tuple[Backend, T]] = []
        failures: list[tuple[Backend, FacadeError]] = []
        for backend, result in zip(backends, results, strict=True):
            if isinstance(result, FacadeError):
                failures.append((backend, result))
            elif isinstance(result, BaseException):
                raise result
            else:
                good.append((backend, result))
        if not good and failures:
            raise max((f for _, f in failures), key=lambda e: (e.status == 503, e.status))
        errors = [
            BackendError(backend=b.name, status=e.status, title=e.title, detail=e.detail)  # type: ignore[arg-type]
            for b, e in failures
        ]
        return good, errors

    # --- meters -----------------------------------------------------------------------------------

    async def _all_meters(self, backend: Backend) -> _Served[list[Meter]]:
        return await self._cached("meters", "all", backend, backend.list_meters, ttl=self.settings.ttl_meters)

    async def list_meters(
        self, backend: str | None, limit: int, cursor: str | None
    ) -> Answer[tuple[list[Meter], str | None]]:
        scope = f"meters|{backend or '*'}"
        after = str(self.cursors.decode(scope, cursor).get("after", "")) if cursor else ""
        good, errors = await self._spanning(self.selected(backend, METERS), self._all_meters)
        answer: Answer[tuple[list[Meter], str | None]] = Answer(([], None), errors=errors)
        merged: list[Meter] = []
        for _, served in good:
            answer.add(served)
            merged.extend(served.value)
        merged.sort(key=lambda m: m.id)
        ids = [m.id for m in merged]
        first = bisect.bisect_right(ids, after) if after else 0
        page = merged[first : first + limit]
        more = first + limit < len(merged)
        next_cursor = self.cursors.encode(scope, {"after": page[-1].id}) if more and page else None
        answer.value = (page, next_cursor)
        return answer

    async def get_meter(self, meter_id: str) -> Answer[Meter]:
        backend, fid = self.resolve(meter_id, field="meter_id", in_path=True, capability=METERS)
        listing = self.caches["meters"].peek((backend.name, "all"))
        if listing is not None and self.clock() < listing.fresh_until:
            for meter in listing.value:
                if meter.id == meter_id:
                    answer: Answer[Meter] = Answer(meter)
                    answer.add(_Served(listing.value, self.caches["meters"], (backend.name, "all"), listing, "HIT"))
                    self.caches["meters"].note_hit()
                    return answer
        served = await self._cached(
            "meter", fid.upstream, backend, lambda: backend.get_meter(fid.upstream), ttl=self.settings.ttl_meters
        )
        answer = Answer(served.value)
        answer.add(served)
        return answer

    # --- readings ---------------------------------------------------------------------------------

    async def readings(
        self,
        meter_id: str,
        start: datetime,
        end: datetime | None,
        quantities: frozenset[str] | None,
        limit: int,
        cursor: str | None,
    ) -> Answer[tuple[list[Reading], str | None]]:
        """Readings in `[start, end)` (end None = up to now), ascending by (time, quantity).

        The cursor keeps the last time served and how many readings at that time were served, so a
        page boundary inside one timestamp's group of registers loses nothing and repeats nothing."""
        backend, fid = self.resolve(meter_id, field="meter_id", in_path=False, capability=READINGS)
        qkey = tuple(sorted(quantities)) if quantities else None
        scope = f"readings|{meter_id}|{format_rfc3339(start)}|{format_rfc3339(end) if end else ''}|{qkey}"
        from_time, skip = start, 0
        if cursor:
            state = self.cursors.decode(scope, cursor)
            try:
                from_time, skip = parse_rfc3339(str(state["t"])), int(state["n"])
            except (KeyError, ValueError, TypeError):
                raise InvalidRequest("cursor is not valid for this query", field="cursor") from None
        want = skip + limit + 1

        async def load() -> list[Reading]:
            window_end = end or from_epoch(self.clock())
            if from_time >= window_end:
                return []
            rows = await backend.readings(fid.upstream, from_time, window_end, quantities, want)
            return sorted(rows, key=lambda r: (r.time, r.quantity, r.obis or ""))

        served = await self._cached(
            "readings",
            (fid.upstream, from_time, end, qkey, want),
            backend,
            load,
            ttl=self._ttl_for_window(end),
            tags=(meter_id,),
        )
        rows = served.value
        dropped = 0
        while dropped < skip and dropped < len(rows) and rows[dropped].time == from_time:
            dropped += 1
        page = rows[dropped : dropped + limit]
        next_cursor = None
        if len(rows) > dropped + limit and page:
            last = page[-1].time
            at_last = sum(1 for r in rows[: dropped + limit] if r.time == last)
            next_cursor = self.cursors.encode(scope, {"t": format_rfc3339(last), "n": at_last})
        answer: Answer[tuple[list[Reading], str | None]] = Answer((page, next_cursor))
        answer.add(served)
        return answer

    # --- daily consumption ----------------------------------------------------------------------

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

        async def fetch(b: Backend) -> _Served[list[DailyConsumption]]:
            ids = wanted.get(b.name)
            ask = None if (b.daily_grain == "backend" or not ids) else frozenset(ids)
            served = await self._cached(
                "daily",
                (ask, start, end, tz.key),
                b,
                lambda: b.daily_consumption(ask, start, end, tz),
                ttl=ttl,
                tags=lambda rows: {r.meter_id for r in rows} | {f"{b.name}:*"},
            )
            if ids:
                prefixed = {f"{b.name}:{i}" for i in ids}
                rows = [r for r in served.value if r.meter_id in prefixed]
                missing = prefixed - {r.meter_id for r in rows}
                if missing:
                    raise NotFound(f"No meter {sorted(missing)[0]!r} exists.", backend=b.name)
                served = _Served(rows, served.cache, served.key, served.entry, served.result)
            return served

        good, errors = await self._spanning(chosen, fetch)
        answer: Answer[list[DailyConsumption]] = Answer([], errors=errors)
        rows: list[DailyConsumption] = []
        for _, served in good:
            answer.add(served)
            rows.extend(served.value)
        rows.sort(key=lambda r: (r.meter_id, r.date))
        answer.value = rows
        return answer

    # --- device status ----------------------------------------------------------------------------

    async def device_status(self, device_id: str) -> Answer[DeviceStatus]:
        backend, fid = self.resolve(device_id, field="device_id", in_path=True, capability=DEVICE_STATUS)
        served = await self._cached(
            "device_status",
            fid.upstream,
            backend,
            lambda: backend.device_status(fid.upstream),
            ttl=self.settings.ttl_device_status,
        )
        answer = Answer(served.value)
        answer.add(served)
        return answer

    # --- changes ----------------------------------------------------------------------------------

    async def changes(
        self, since: datetime, backend: str | None, limit: int, cursor: str | None
    ) -> Answer[tuple[list[Change], str | None]]:
        """The corrections feed. Only Waltero has one, so the feed is the first backend offering
        `changes` (CONTRACT.md); its own resume token rides inside the facade's signed cursor."""
        source = self.selected(backend, CHANGES)[0]
        scope = f"changes|{source.name}|{format_rfc3339(since)}"
        upstream_cursor: str | None = None
        if cursor:
            value = self.cursors.decode(scope, cursor).get("c")
            if not isinstance(value, str):
                raise InvalidRequest("cursor is not valid for this query", field="cursor")
            upstream_cursor = value
        served = await self._cached(
            "changes",
            (since, limit, upstream_cursor),
            source,
            lambda: source.changes(since, limit, upstream_cursor),
            ttl=self.settings.ttl_changes,
        )
        page: ChangesPage = served.value
        if served.result == "MISS":
            self.evict_for_changes(page.items)
        next_cursor = self.cursors.encode(scope, {"c": page.next_cursor}) if page.next_cursor else None
        answer: Answer[tuple[list[Change], str | None]] = Answer((page.items, next_cursor))
        answer.add(served)
        return answer

    def evict_for_changes(self, changes: Iterable[Change]) -> int:
        """Evict cached readings and daily consumption of every meter a correction touched."""
        meters = {c.meter_id for c in changes}
        if not meters:
            return 0
        evicted = self.caches["readings"].evict_tagged(meters) + self.caches["daily"].evict_tagged(meters)
        for backend in {m.split(":", 1)[0] for m in meters}:
            self.metrics.corrections_evicted.labels(backend).inc(evicted)
        if evicted:
            log.info("evicted %d cache entries after corrections to %d meters", evicted, len(meters))
        return evicted

    async def poll_changes_once(self, since: datetime) -> datetime:
        """Read every correction made since `since` from each backend's feed and evict what they touch.
        Returns the newest `changed_at` seen (the next watermark)."""
        watermark = since
        for backend in self.backends.values():
            if CHANGES not in backend.capabilities:
                continue
            cursor: str | None = None
            for _ in range(100):  # bounded: 100 pages of 1000 per poll
                page = await self.breakers[backend.name].call(functools.partial(backend.changes, since, 1000, cursor))
                self.evict_for_changes(page.items)
                for change in page.items:
                    watermark = max(watermark, change.changed_at)
                if not page.next_cursor:
                    break
                cursor = page.next_cursor
        return watermark

    async def aclose(self) -> None:
        for cache in self.caches.values():
            await cache.aclose()
