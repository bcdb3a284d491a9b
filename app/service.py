"""`MeterService`: the facade's operations, composed from small parts.

Routes call the service; the service picks the backend(s) behind an id or a filter, asks each through
its `GuardedBackend` (cache, load cap, breaker, deadline), merges with `fan_out`, and pages with the
`pagers`. Each operation returns an `Answer`: the value, the failures of backends that did not answer,
and its `Provenance`, which the HTTP layer asks whether a stored response is still current.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
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
from app.metrics import Metrics
from app.models import Change, DailyConsumption, DeviceStatus, Meter, Reading
from app.pagers import FeedPosition, Pager, after_id, feed_position, merge_feeds, time_and_count, time_position
from app.provenance import Answer, Provenance
from app.timeutil import Clock, format_rfc3339, from_epoch, local_midnight, parse_rfc3339

log = logging.getLogger("app.service")

Page = tuple[list[Any], str | None]


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

    async def list_meters(self, backend: str | None, limit: int, cursor: str | None) -> Answer[Page]:
        after = ""
        if cursor:
            query, state = self._meters_pager.decode(cursor, {"backend": backend} if backend else None)
            backend, after = query.get("backend"), str(state.get("after", ""))
        good, errors = await fan_out(self.selected(backend, METERS), self._all_meters)
        answer: Answer[Page] = Answer(([], None), errors=errors)
        merged: list[Meter] = []
        for meters, provenance in good:
            answer.provenance.extend(provenance)
            merged.extend(meters)
        merged.sort(key=lambda m: m.id)
        page, last = after_id(merged, lambda m: m.id, after, limit)
        next_cursor = self._meters_pager.encode({"backend": backend}, {"after": last}) if last else None
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
        window_from = from_time

        async def load() -> list[Reading]:
            window_end = end or from_epoch(self.clock())
            if window_from >= window_end:
                return []
            rows = await b.backend.readings(fid.upstream, window_from, window_end, quantities, want)
            return sorted(rows, key=lambda r: (r.time, r.quantity, r.obis or ""))

        rows, provenance = await b.cached(
            "readings",
            (fid.upstream, from_time, end, tuple(qkey) if qkey else None, want),
            load,
            ttl=self._ttl_for_window(end),
            tags=(meter_id,),
        )
        page, position = time_and_count(rows, lambda r: r.time, from_time, skip, limit)
        next_cursor = self._readings_pager.encode(query, position) if position else None
        return Answer((page, next_cursor), provenance=provenance)

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
