"""The IOmeter backend: Partner GraphQL payloads → the facade's normalized models.

Meters come from the partner's installations (offset pages until an empty page); a meter's medium and
unit from the OBIS medium group (A) of its first reading, its `device_id` only where the installation
says which device it has (`meter_device`). Readings come from a meter's cursor chain
(`partner.meter(id).readings`), sorted and de-duplicated whatever order the vendor sends them in;
daily consumption is derived from the medium's cumulative register (`app.domain.intervals.derive`). Device status is
found through the device's installation, located with a small device → installation index refreshed
from the installations listing (single-flight: concurrent lookups wait for the listing in flight).
Ids are lower-cased on arrival. IOmeter has no audit feed: `changes` raises `NotSupported`.
"""

from __future__ import annotations

import asyncio
import itertools
import operator
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

from app.backends.base import (
    DAILY_CONSUMPTION,
    DEVICE_STATUS,
    METERS,
    READINGS,
    AuthState,
    ChangesPage,
    IndexStore,
    SharedIndex,
)
from app.backends.concurrency import both, gather_first_error
from app.backends.http import upstream_operation
from app.backends.iometer import documents as docs
from app.backends.iometer.client import IometerClient
from app.backends.iometer.payloads import (
    UNIT_BY_MEDIUM,
    EpochParser,
    ReadingsPage,
    RegisterPage,
    TimeParser,
    WireReading,
    bad,
    int_field,
    list_field,
    medium_of,
    normalize,
    obj_field,
    readings_page,
    register_of_reading,
    register_page,
    req_obj,
    req_str,
)
from app.domain.intervals import derive
from app.domain.models import DailyConsumption, DeviceStatus, Medium, Meter, Reading
from app.infra import tolerance
from app.infra.errors import NotFound, NotSupported, UpstreamBadResponse
from app.infra.timeutil import Clock, days, format_rfc3339_seconds, local_midnight

NAME = "iometer"
# Canonical lower-case only: the facade hands out ids exactly as the vendor sends them, and one
# spelling per meter keeps cache keys, row filters and eviction tags in agreement.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
INSTALLATIONS_PAGE = 100


def prefixed(upstream_id: str) -> str:
    return f"{NAME}:{upstream_id}"


def upstream_time(value: datetime) -> str:
    """`startTime` for the vendor: UTC to the second, rounded down (readings before it are dropped here)."""
    return format_rfc3339_seconds(value)


def _id(raw: Any, key: str = "id") -> str:
    """An id as the facade keys it: lower case (UUIDs are case-insensitive; an upper-case id from the
    vendor would otherwise never match the facade's own lower-case ids)."""
    value = req_str(raw, key)
    lowered = value.lower()
    if lowered != value:
        tolerance.record(NAME, "id_case", "upper", pinned=False)
    return lowered


def _optional_id(raw: Any, key: str) -> str | None:
    found = obj_field(raw, key, nullable=True)
    return _id(found) if found is not None else None


def _medium(meter: Any) -> Medium:
    """What a meter measures, from the OBIS group A of its first reading (`MEDIUM_PROBE`)."""
    rows = list_field(req_obj(meter, "readings"), "readings")
    codes = [req_str(v, "obisCode") for row in rows[:1] for v in list_field(row, "values")]
    return medium_of(codes)


def meter_device(
    meter_id: str, meter_ids: list[str], device_ids: list[str], current_meter: str | None, current_device: str | None
) -> str | None:
    """The device attached to `meter_id`, only where the installation says so.

    An installation may have devices on several meters at once (the vendor's page), and the schema
    links devices to installations, not meters. So: the only meter of an installation has its
    `currentDevice` (or its only device); of several meters, the `currentMeter` (the one data came
    from last) has the `currentDevice`; any other meter's device is unknown (None), not guessed."""
    if len(meter_ids) == 1:
        if current_device is not None:
            return current_device
        return device_ids[0] if len(device_ids) == 1 else None
    return current_device if meter_id == current_meter else None


@dataclass(frozen=True, slots=True)
class InstallationMeter:
    id: str
    number: str
    medium: Medium
    device_id: str | None


@dataclass(frozen=True, slots=True)
class Installation:
    id: str
    meters: list[InstallationMeter]
    device_ids: list[str]


def _installation(raw: Any) -> Installation:
    current_device = _optional_id(raw, "currentDevice")
    current_meter = _optional_id(raw, "currentMeter")
    raw_meters = list_field(raw, "meters")
    meter_ids = [_id(m) for m in raw_meters]
    device_ids = [_id(d) for d in list_field(raw, "devices")]
    return Installation(
        id=_id(raw),
        meters=[
            InstallationMeter(
                meter_id,
                req_str(m, "number"),
                _medium(m),
                meter_device(meter_id, meter_ids, device_ids, current_meter, current_device),
            )
            for meter_id, m in zip(meter_ids, raw_meters, strict=True)
        ],
        device_ids=device_ids,
    )


def _meter(meter_id: str, number: str, installation_id: str, device_id: str | None, medium: Medium) -> Meter:
    return Meter(
        id=prefixed(meter_id),
        backend=NAME,
        serial_number=number,
        name=None,
        medium=medium,
        unit=UNIT_BY_MEDIUM.get(medium),
        site_id=prefixed(installation_id),
        device_id=prefixed(device_id) if device_id else None,
    )


def _device_status(device_id: str, device: dict[str, Any]) -> DeviceStatus:
    bridge = req_obj(device, "bridge")
    core = req_obj(device, "core")
    bridge_connection = req_str(bridge, "connectionStatus")
    core_connection = req_str(core, "connectionStatus")
    attachment = req_str(core, "attachmentStatus")
    battery = int_field(core, "batteryLevel")
    power = req_str(core, "powerStatus")
    pin = req_str(core, "pinStatus")
    power_source: Literal["battery", "wired"] | None = (
        "battery" if power == "battery" else "wired" if power == "wired" else None
    )
    return DeviceStatus(
        device_id=prefixed(device_id),
        backend=NAME,
        online=bridge_connection == "connected" and core_connection == "connected" and attachment == "attached",
        last_seen=None,
        battery_percent=battery,
        battery_voltage=None,
        power_source=power_source,
        rssi_dbm=None,
        details={
            "bridge": {"connectionStatus": bridge_connection},
            "core": {
                "connectionStatus": core_connection,
                "attachmentStatus": attachment,
                "batteryLevel": battery,
                "powerStatus": power,
                "pinStatus": pin,
            },
        },
    )


class _Page(Protocol):
    @property
    def cursor(self) -> str | None: ...


_P = TypeVar("_P", bound=_Page)
_T = TypeVar("_T", datetime, float)
"""A reading time: parsed (`TimeParser`) or epoch seconds (`EpochParser`); both order the same."""

PARTNER_WIDE_FROM = 8
"""Daily consumption of this many meters or more reads the partner-wide feed once instead of each meter."""


class IometerBackend:
    """`Backend` over the IOmeter Partner API. Takes and checks upstream ids (UUIDs)."""

    name = NAME
    capabilities = frozenset({METERS, READINGS, DAILY_CONSUMPTION, DEVICE_STATUS})
    daily_grain: Literal["meter", "backend"] = "meter"

    def __init__(
        self,
        client: IometerClient,
        *,
        mode: Literal["live", "sandbox"],
        clock: Clock,
        max_gap: float,
        concurrency: int = 4,
        index_refresh: float = 5.0,
        late_window: float = 0.0,
        indexes: IndexStore | None = None,
    ) -> None:
        self.mode = mode
        self.late_window = late_window
        """Seconds past a window's end (`IOMETER_LATE_WINDOW`) a read follows the vendor's listing, for
        readings received late; also how long after its end a window is not yet settled."""
        self._late = timedelta(seconds=late_window)
        self.on_late_readings: Callable[[set[str]], object] | None = None
        """Set by the service (`LateReadings`): told which meters had readings listed late beyond a
        read's window, so that their cached windows are evicted."""
        self._client = client
        self._clock = clock
        self._max_gap = max_gap
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._index_refresh = index_refresh
        self._device_index: dict[str, str] = {}
        self._index_built_at: float | None = None
        self._index_lock = asyncio.Lock()
        self._shared_installations: SharedIndex[list[Installation]] | None = (
            indexes("iometer.installations", list[Installation], ttl=index_refresh, check=_checked_installations)
            if indexes is not None
            else None
        )
        """With several replicas: the installations listing the device index is built from, loaded once
        for the fleet (`_refresh_index`) and published by every full listing (`_installations`)."""

    def is_valid_id(self, upstream_id: str) -> bool:
        return _UUID.fullmatch(upstream_id) is not None

    # --- meters ---------------------------------------------------------------------------------

    async def _installations(self) -> list[Installation]:
        """Every installation, listed now. Refreshes the device index (and the fleet's copy of it)."""
        installations = await self._list_installations()
        built_at = self._clock()
        self._adopt_index(installations, built_at)
        if self._shared_installations is not None:
            await self._shared_installations.publish(installations, built_at)
        return installations

    def _adopt_index(self, installations: list[Installation], built_at: float) -> None:
        self._device_index = {d: i.id for i in installations for d in i.device_ids}
        self._index_built_at = built_at

    async def _list_installations(self) -> list[Installation]:
        """Every installation, offset page by offset page until an empty page (a short page is not
        the end: the server may cap a page below the asked limit)."""
        installations: list[Installation] = []
        seen: set[str] = set()
        offset = 0
        while True:
            data = await self._client.query(
                docs.INSTALLATIONS, {"pagination": {"limit": INSTALLATIONS_PAGE, "offset": offset}}
            )
            page = [_installation(raw) for raw in list_field(data, "installations")]
            if not page:
                break
            fresh = [i for i in page if i.id not in seen]
            if not fresh:  # a server ignoring `offset` would otherwise page forever
                raise UpstreamBadResponse("IOmeter repeated a page of installations", backend=NAME)
            seen.update(i.id for i in fresh)
            installations.extend(fresh)
            offset += len(page)
        return installations

    async def list_meters(self) -> list[Meter]:
        with upstream_operation("meters"):
            installations = await self._installations()
        return [_meter(m.id, m.number, inst.id, m.device_id, m.medium) for inst in installations for m in inst.meters]

    async def get_meter(self, upstream_id: str) -> Meter:
        upstream_id = upstream_id.lower()  # UUIDs are case-insensitive; the vendor answers in lower case
        with upstream_operation("meter"):
            data = await self._client.query(docs.METER, {"id": upstream_id})
        meter = obj_field(req_obj(data, "partner"), "meter", nullable=True)
        if meter is None:
            raise NotFound(f"IOmeter meter {upstream_id} not found", backend=NAME)
        return _meter_of(meter)

    async def meters_by_serial(self, serial_number: str) -> list[Meter]:
        """The meter with this printed number, through `meter(number:)`; empty when there is none."""
        with upstream_operation("meter_by_number"):
            data = await self._client.query(docs.METER_BY_NUMBER, {"number": serial_number})
        meter = obj_field(req_obj(data, "partner"), "meter", nullable=True)
        if meter is None or req_str(meter, "number") != serial_number:
            return []
        return [_meter_of(meter)]

    # --- readings -------------------------------------------------------------------------------

    async def _reading_pages(
        self,
        fetch: Callable[[str | None, int], Awaitable[_P]],
        stop_at: _T,
        times_of: Callable[[_P], Sequence[_T]],
        first_limit: int = docs.PAGE_LIMIT_MAX,
    ) -> AsyncGenerator[_P, None]:
        """Follow one cursor chain until the cursor is null or the readings have passed `stop_at` (the
        window's end plus the late window, `_stop`); `times_of` gives a page's reading times.

        A short page is never taken as the end: only the cursor says whether more remain. The vendor
        may list readings in the order it received them (its page: reading time "is based on when
        readings were received"), so a reading uploaded late comes after readings taken later, even on a
        page after one that looked ascending and ended past `stop_at`. The chain is therefore followed
        `IOMETER_LATE_WINDOW` further: while it is ascending, a page ending at or after `stop_at` + that
        window is the last one; once readings are seen out of order, only a page lying wholly at or
        after it. A reading received later than that after `stop_at` is not read (docs: README)."""
        cursor: str | None = None
        limit = first_limit
        ascending = True
        previous: _T | None = None
        while True:
            page = await fetch(cursor, limit)
            times = times_of(page)
            in_order = all(map(operator.le, times, itertools.islice(times, 1, None)))
            if in_order and previous is not None and times:
                in_order = previous <= times[0]
            if times:
                tolerance.record(NAME, "readings_order", "ascending" if in_order else "unordered", pinned=in_order)
                previous = times[-1]
            ascending = ascending and in_order
            yield page
            if page.cursor is None:
                return
            if times and (times[-1] if ascending else min(times)) >= stop_at:
                return
            if page.cursor == cursor:
                raise UpstreamBadResponse("IOmeter repeated a readings cursor", backend=NAME)
            cursor = page.cursor
            limit = min(docs.PAGE_LIMIT_MAX, limit * 4)

    def _stop(self, end: datetime) -> datetime:
        return end + self._late

    def _meter_chain(
        self, meter_id: str, start: datetime, decode: Callable[[Any, bool], _P]
    ) -> Callable[[str | None, int], Awaitable[_P]]:
        async def fetch(cursor: str | None, limit: int) -> _P:
            data = await self._client.query(
                docs.METER_READINGS,
                {"meterId": meter_id, "startTime": upstream_time(start), "limit": limit, "cursor": cursor},
            )
            meter = obj_field(req_obj(data, "partner"), "meter", nullable=True)
            if meter is None:
                raise NotFound(f"IOmeter meter {meter_id} not found", backend=NAME)
            return decode(req_obj(meter, "readings"), False)

        return fetch

    def _partner_chain(
        self, start: datetime, decode: Callable[[Any, bool], _P]
    ) -> Callable[[str | None, int], Awaitable[_P]]:
        async def fetch(cursor: str | None, limit: int) -> _P:
            data = await self._client.query(
                docs.PARTNER_READINGS, {"startTime": upstream_time(start), "limit": limit, "cursor": cursor}
            )
            return decode(req_obj(data, "readings"), True)

        return fetch

    async def readings(
        self, upstream_meter_id: str, start: datetime, end: datetime, quantities: frozenset[str] | None, limit: int
    ) -> list[Reading]:
        upstream_meter_id = upstream_meter_id.lower()
        meter_id = prefixed(upstream_meter_id)
        parse_time = TimeParser()
        items: list[Reading] = []
        first_limit = min(docs.PAGE_LIMIT_MAX, max(1, limit))
        chain = self._reading_pages(
            self._meter_chain(upstream_meter_id, start, _wire), self._stop(end), _times(parse_time), first_limit
        )
        with upstream_operation("readings"):
            async with aclosing(chain) as pages:
                async for page in pages:
                    for row in page.readings:
                        time = parse_time(row.time)
                        if start <= time < end:
                            items.extend(_readings(meter_id, time, row, quantities))
                    # pages hold whole readings, so every timestamp is complete. A reading received late
                    # may still sort before the `limit`-th one: the facade reads whole windows through
                    # `readings_window`, which follows the late window; this limited read does not.
                    if len(items) >= limit:
                        break
        return _sorted_unique(items)

    async def readings_window(
        self, upstream_meter_id: str, start: datetime, end: datetime
    ) -> tuple[list[Reading], datetime | None]:
        """Every reading of `[start, end)` (all registers), and the time of the first reading at or
        after `end` when the vendor's last page showed one (so a caller knows nothing lies between).

        The first page is sized for the window at the usual 15-minute cadence instead of 1000 readings
        (the facade reads a meter a day at a time, so the vendor need not build ten days to serve one)."""
        upstream_meter_id = upstream_meter_id.lower()
        meter_id = prefixed(upstream_meter_id)
        parse_time = TimeParser()
        span = (end - start + self._late).total_seconds()
        first_limit = max(8, min(docs.PAGE_LIMIT_MAX, int(span // 900) + 8))
        items: list[Reading] = []
        next_time: datetime | None = None
        latest: datetime | None = None
        late_beyond = False
        chain = self._reading_pages(
            self._meter_chain(upstream_meter_id, start, _wire), self._stop(end), _times(parse_time), first_limit
        )
        with upstream_operation("readings"):
            async with aclosing(chain) as pages:
                async for page in pages:
                    for row in page.readings:
                        time = parse_time(row.time)
                        if start <= time < end:
                            items.extend(_readings(meter_id, time, row, None))
                        elif time >= end and (next_time is None or time < next_time):
                            next_time = time
                        late_beyond = late_beyond or (time >= end and latest is not None and time < latest)
                        latest = time if latest is None else max(latest, time)
        if late_beyond:
            self._late_readings({meter_id})
        items.sort(key=lambda r: (r.time, r.quantity))
        return items, next_time

    def _late_readings(self, meter_ids: set[str]) -> None:
        """Readings listed late that belong after the window just read: a later window of these meters
        may be cached without them (IOmeter has no corrections feed to say so)."""
        tolerance.record(NAME, "late_readings", "beyond_window", pinned=False)
        if self.on_late_readings is not None:
            self.on_late_readings(meter_ids)

    def register_value(self, meter: Meter, reading: Reading) -> float | None:
        """The reading's value when it is the meter's cumulative register (the one daily consumption is
        derived from: 1-0:1.8.0 for electricity, 6-0:1.0.0 heat, 7-0:3.0.0 gas, 8-0:1.0.0 water), in
        kWh or m3; else None. `/consumption` at 15min/hour derives from exactly these values."""
        return register_of_reading(meter.medium, reading.obis, reading.value, reading.unit)

    # --- daily consumption ----------------------------------------------------------------------

    async def daily_consumption(
        self, upstream_meter_ids: frozenset[str] | None, start: date, end: date, tz: ZoneInfo
    ) -> list[DailyConsumption]:
        day_list = days(start, end)
        boundaries_dt = [local_midnight(d, tz) for d in day_list] + [local_midnight(end, tz)]
        gap = timedelta(seconds=self._max_gap)
        fetch_start, fetch_end = boundaries_dt[0] - gap, boundaries_dt[-1] + gap

        with upstream_operation("daily_consumption"):
            series: dict[str, tuple[list[float], list[float], str]]
            if upstream_meter_ids is None or len(upstream_meter_ids) >= PARTNER_WIDE_FROM:
                # every meter, or so many that one partner-wide read costs less than one read per meter
                installations, series = await both(self._installations(), self._partner_series(fetch_start, fetch_end))
                known = {m.id for inst in installations for m in inst.meters} | set(series)
                units = {m.id: UNIT_BY_MEDIUM.get(m.medium, "kWh") for inst in installations for m in inst.meters}
                meter_ids = known
                if upstream_meter_ids is not None:
                    meter_ids = {m.lower() for m in upstream_meter_ids}
                    unknown = meter_ids - known
                    if unknown:
                        raise NotFound(f"No meter {prefixed(min(unknown))!r} exists.", backend=self.name)
            else:
                meter_ids = {m.lower() for m in upstream_meter_ids}
                units = {}
                chains = await gather_first_error(
                    [self._meter_series(m, fetch_start, fetch_end) for m in sorted(meter_ids)], self._limit
                )
                series = dict(zip(sorted(meter_ids), chains, strict=True))

        boundaries = [b.timestamp() for b in boundaries_dt]
        rows: list[DailyConsumption] = []
        for meter_id in sorted(meter_ids):
            times, values, unit = series.get(meter_id, ([], [], units.get(meter_id, "kWh")))
            for day, result in zip(day_list, derive(times, values, boundaries, self._max_gap), strict=True):
                rows.append(
                    DailyConsumption(
                        meter_id=prefixed(meter_id),
                        date=day,
                        consumption=_kwh(result.consumption),
                        unit=unit,
                        complete=result.complete,
                        source="derived",
                        quality=result.quality,
                    )
                )
        return rows

    async def _meter_series(
        self, meter_id: str, start: datetime, end: datetime
    ) -> tuple[list[float], list[float], str]:
        """One meter's cumulative register over `[start, end]`, as ascending (epoch seconds, value, unit)."""
        decode = _registers(EpochParser())
        series: dict[str, _Series] = {}
        chain = self._reading_pages(self._meter_chain(meter_id, start, decode), self._stop(end).timestamp(), _epochs)
        async with aclosing(chain) as pages:
            async for page in pages:
                _collect(series, page, start, end, meter_id)
        found = series.get(meter_id)
        return found.done() if found else ([], [], "kWh")

    async def _partner_series(self, start: datetime, end: datetime) -> dict[str, tuple[list[float], list[float], str]]:
        """Every partner meter's cumulative register over `[start, end]` from ONE partner-wide chain."""
        decode = _registers(EpochParser())
        series: dict[str, _Series] = {}
        chain = self._reading_pages(self._partner_chain(start, decode), self._stop(end).timestamp(), _epochs)
        async with aclosing(chain) as pages:
            async for page in pages:
                _collect(series, page, start, end, None)
        return {meter_id: s.done() for meter_id, s in series.items()}

    # --- device status --------------------------------------------------------------------------

    async def _refresh_index(self) -> None:
        """Rebuild the device index unless a rebuild finished within `index_refresh` seconds.

        Single-flight: concurrent callers wait for the one listing in flight and then read the index
        it built. (Returning "not rebuilt" to a waiter used to make it conclude "not found" although
        the listing it waited for had just added its device.) With several replicas, the fleet's copy
        listed within `index_refresh` seconds serves, and one replica lists for all."""
        async with self._index_lock:
            if self._index_built_at is not None and self._clock() - self._index_built_at < self._index_refresh:
                return
            if self._shared_installations is None:
                await self._installations()
                return
            installations, built_at = await self._shared_installations.load(
                self._list_installations, max_age=self._index_refresh
            )
            self._adopt_index(installations, built_at)

    async def _device(self, installation_id: str, device_id: str) -> dict[str, Any] | None:
        data = await self._client.query(docs.DEVICE_STATUS, {"installationId": installation_id, "deviceId": device_id})
        installation = obj_field(data, "installation", nullable=True)
        if installation is None:
            return None
        return obj_field(installation, "device", nullable=True)

    async def device_status(self, upstream_device_id: str) -> DeviceStatus:
        upstream_device_id = upstream_device_id.lower()
        with upstream_operation("device_status"):
            installation_id = self._device_index.get(upstream_device_id)
            if installation_id is None:
                await self._refresh_index()
                installation_id = self._device_index.get(upstream_device_id)
            device = await self._device(installation_id, upstream_device_id) if installation_id else None
            if device is None and installation_id is not None:
                # The device may have moved to another installation since the index was built.
                await self._refresh_index()
                moved_to = self._device_index.get(upstream_device_id)
                if moved_to is not None and moved_to != installation_id:
                    device = await self._device(moved_to, upstream_device_id)
        if device is None:
            raise NotFound(f"IOmeter device {upstream_device_id} not found", backend=NAME)
        return _device_status(upstream_device_id, device)

    # --- the rest of the protocol ---------------------------------------------------------------

    async def changes(self, since: datetime, limit: int, cursor: str | None) -> ChangesPage:
        raise NotSupported("IOmeter has no change feed", backend=NAME)

    async def auth_state(self) -> AuthState:
        return AuthState(authenticated=self._client.authenticated, token_expires_at=None)

    async def check_ready(self) -> None:
        with upstream_operation("ready"):
            data = await self._client.query(docs.PARTNER_ID)
        req_str(req_obj(data, "partner"), "id")

    async def aclose(self) -> None:
        await self._client.aclose()


def _checked_installations(installations: list[Installation]) -> None:
    """Raises `ValueError` for a listing read back from the fleet's store that `_list_installations`
    would not have built: ids not canonical lower-case UUIDs, an installation listed twice."""
    ids = [i.id for i in installations]
    if len(set(ids)) != len(ids):
        raise ValueError("an installation listed twice")
    for inst in installations:
        every = [inst.id, *inst.device_ids, *(m.id for m in inst.meters)]
        every += [m.device_id for m in inst.meters if m.device_id is not None]
        if not all(_UUID.fullmatch(i) for i in every):
            raise ValueError("an id that is not a lower-case UUID")


def _meter_of(meter: Any) -> Meter:
    """A `Meter` from a `meter { id number <medium probe> installation { ... } }` selection (`METER`,
    `METER_BY_NUMBER`)."""
    installation = req_obj(meter, "installation")
    meter_id = _id(meter)
    device_id = meter_device(
        meter_id,
        [_id(m) for m in list_field(installation, "meters")],
        [_id(d) for d in list_field(installation, "devices")],
        _optional_id(installation, "currentMeter"),
        _optional_id(installation, "currentDevice"),
    )
    return _meter(meter_id, req_str(meter, "number"), _id(installation), device_id, _medium(meter))


def _readings(meter_id: str, time: datetime, row: WireReading, quantities: frozenset[str] | None) -> list[Reading]:
    """One vendor reading → a facade `Reading` per value (in facade units), filtered by quantity."""
    out = []
    for value in row.values:
        quantity, obis, number, unit = normalize(value)
        if quantities is None or quantity in quantities:
            out.append(Reading(meter_id=meter_id, time=time, quantity=quantity, obis=obis, value=number, unit=unit))
    return out


def _kwh(value: float | None) -> float | None:
    # A mWh-fine result: prefix-sum differences carry float noise in the 12th digit (6.2069999999985).
    return None if value is None else round(value, 6)


def _sorted_unique(items: list[Reading]) -> list[Reading]:
    """Readings ascending by (time, quantity), one per (time, quantity): a reading the vendor sent twice
    (its page allows it) is kept once, the later copy winning."""
    unique = {(r.time, r.quantity): r for r in items}
    if len(unique) != len(items):
        tolerance.record(NAME, "readings_duplicates", "duplicated", pinned=False)
    return [unique[key] for key in sorted(unique)]


class _Series:
    """(time, value) of one meter's cumulative register, in any order; `done` sorts and de-duplicates."""

    __slots__ = ("points", "unit")

    def __init__(self, unit: str) -> None:
        self.points: dict[float, float] = {}
        self.unit = unit

    def add(self, t: float, v: float) -> None:
        self.points[t] = v  # a repeated time is the same reading sent twice: keep one

    def done(self) -> tuple[list[float], list[float], str]:
        times = sorted(self.points)
        return times, [self.points[t] for t in times], self.unit


def _wire(response: Any, with_meter: bool) -> ReadingsPage:
    return readings_page(response, with_meter=with_meter)


def _times(parse_time: TimeParser) -> Callable[[ReadingsPage], list[datetime]]:
    return lambda page: [parse_time(row.time) for row in page.readings]


def _registers(times: EpochParser) -> Callable[[Any, bool], RegisterPage]:
    return lambda response, with_meter: register_page(response, with_meter=with_meter, times=times)


def _epochs(page: RegisterPage) -> list[float]:
    return page.times


def _collect(
    series: dict[str, _Series], page: RegisterPage, start: datetime, end: datetime, meter_id: str | None
) -> None:
    lo, hi = start.timestamp(), end.timestamp()
    times, values, units = page.times, page.values, page.units
    if meter_id is not None and times and lo <= min(times) and max(times) <= hi and None not in values:
        first = units[0]
        if first is not None and units.count(first) == len(units):  # the usual page: one meter, one unit
            s = series.get(meter_id)
            if s is None:
                s = series[meter_id] = _Series(first)
            s.points.update(zip(times, values, strict=True))  # type: ignore[arg-type]
            return
    for k, t in enumerate(times):
        value, unit = values[k], units[k]
        if not lo <= t <= hi or value is None or unit is None:
            continue
        key = meter_id if meter_id is not None else page.meter_ids[k] if page.meter_ids is not None else None
        if key is None:
            raise bad("a reading lacks its meter")
        s = series.get(key)
        if s is None:
            s = series[key] = _Series(unit)
        s.add(t, value)
