"""The Waltero backend: Waltero payloads -> the facade's normalized models.

- Organizations: `WALTERO_ORGANIZATIONS`, or else every organization in `accessible_organizations` of
  `/api/auth/me` (cached `ORGANIZATIONS_TTL` seconds).
- Meters: one device is one meter (`mapping.meter_from_device`); `list_meters` pages every
  organization's devices (`limit=100`, `offset` until `total`). A small device directory (metadata
  only: unit, meter type, organization) is kept for unit scaling and refreshed after
  `DIRECTORY_TTL` seconds or on a miss.
- Readings: telemetry `meter.value.processed` in `[start, end)`, asked in `READINGS_CHUNK` windows,
  stopping once `limit` readings are in hand; values scaled to kWh / m3; `obis` null.
- Daily consumption (`source: upstream`): metering v3 with `resolution=day` from local midnight of
  `start` to local midnight of `end` in `tz` (UTC, milliseconds), one call per organization of the
  asked meters (`daily_grain = "meter"`: one meter asks its own organization only, found in the device
  directory or with one device lookup; all meters ask every organization once), each bucket
  labelled with the *local* date of its start. DST: Waltero's buckets are 24 h windows, which match
  local days only while the UTC offset does not change; a range crossing a transition is split into
  offset-stable segments at the local midnights around it, the transition day alone as its own segment
  (one call per segment per organization); buckets that start on the same local date (the 25 h day's
  24 h + 1 h) are summed null-aware. See `daily.py`. A null bucket -> `consumption: null`,
  `quality: null`, `complete: false`; any other figure is the vendor's own, `quality: measured` (the
  service then applies the plausibility bound); a day that has not ended yet is `complete: false` too.
  `WALTERO_DAILY_BUCKETS` picks the bucket rule (`rolling`, pinned, or `utc-calendar`; see `daily.py`).
  Since one call answers for a whole organization, the backend is `DailyBySite`: the service asks
  `daily_sites` which organizations hold the asked meters and caches `site_daily_consumption` once per
  organization and window, answering any subset of its meters from that entry.
- Device status: telemetry of the last 7 days (`battery.voltage`, `battery.percent`,
  `connection.rssi`); `online` = a point in the last 24 h. A device with no point in 7 days is
  `online: false` with `last_seen: null` (it exists but has been silent for a week; older history is
  not fetched, so "never reported" and "silent for over a week" are not told apart).
- Changes: every organization's data-audit feed merged into one (`feed.py`), with one opaque cursor.
  Waltero's own paging is followed by `next_cursor` (pinned); a full page without one advances `since`
  to its newest `changed_at` (rows already taken are skipped), so a vendor that pages by `since` alone
  does not end the feed after one page.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo

from app.backends.base import (
    CHANGES,
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
from app.backends.waltero import shapes
from app.backends.waltero.client import WalteroClient
from app.backends.waltero.daily import BucketRule, LocalDay, local_days_of_call, segments_for
from app.backends.waltero.feed import ChangesCursor, OrgBatch, feed_key, merge_feeds
from app.backends.waltero.mapping import (
    change_from_audit,
    meter_from_device,
    prefixed,
    quantity,
    readings_from_telemetry,
    unit_scale,
)
from app.domain.models import Change, DailyConsumption, DeviceStatus, Meter, Reading
from app.infra import tolerance
from app.infra.errors import NotFound
from app.infra.timeutil import Clock, days, from_epoch, local_midnight

T = TypeVar("T")

ORGANIZATIONS_TTL = 300.0
DIRECTORY_TTL = 300.0
DIRECTORY_MISS_INTERVAL = 10.0
"""A miss refreshes the directory at most this often (an unknown id must not trigger a listing per call)."""
DIRECT_LOOKUPS = 4
"""Daily consumption of at most this many meters missing from the directory looks each one up."""
READINGS_CHUNK = timedelta(days=31)
STATUS_WINDOW = timedelta(days=7)
ONLINE_WITHIN = timedelta(hours=24)
STATUS_FIELDS = (shapes.BATTERY_VOLTAGE, shapes.BATTERY_PERCENT, shapes.RSSI)
MAX_FEED_PAGES = 50
"""Per organization and call, a bound on following Waltero's `next_cursor` through rows already seen."""


def _canonical_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, TypeError, AttributeError):
        return False


def _checked_organizations(orgs: list[str]) -> None:
    """Raises `ValueError` for organizations read back from the fleet's store that `/api/auth/me` could
    not have given (empty or over-long ids, or one twice)."""
    if len(set(orgs)) != len(orgs) or not all(0 < len(org) <= 200 and org == org.lower() for org in orgs):
        raise ValueError("not a list of organization ids")


def _checked_device(device: shapes.Device) -> None:
    """Raises `ValueError` for a device record read back that `_device` would not have kept: an id that
    is not a canonical UUID, no organization, a multiplier that is not finite."""
    if not _canonical_uuid(device.id) or device.organization_id is None:
        raise ValueError("not a device record of ours")
    if device.multiplier is not None and not math.isfinite(device.multiplier):
        raise ValueError("multiplier not finite")


def _checked_directory(devices: list[shapes.Device]) -> None:
    """As `_checked_device` for a listing, whose ids are the vendor's own (not asked by the facade)."""
    for device in devices:
        if not device.id or device.organization_id is None:
            raise ValueError("not a listed device of ours")
        if device.multiplier is not None and not math.isfinite(device.multiplier):
            raise ValueError("multiplier not finite")


class WalteroBackend:
    """`Backend` for Waltero. Takes upstream ids (canonical UUIDs), returns `waltero:`-prefixed ids."""

    name = "waltero"
    capabilities = frozenset({METERS, READINGS, DAILY_CONSUMPTION, DEVICE_STATUS, CHANGES})
    daily_grain: Literal["meter", "backend"] = "meter"
    """One call per organization of the asked meters. The service itself uses `DailyBySite` (one cache
    entry per organization and window), so this grain only matters to direct callers."""
    readings_chunk_days = 7
    """The facade caches readings in aligned chunks; hourly telemetry makes a week one small call."""

    def __init__(
        self,
        client: WalteroClient,
        *,
        clock: Clock,
        mode: Literal["live", "sandbox"] = "live",
        organizations: list[str] | None = None,
        daily_buckets: BucketRule = "rolling",
        indexes: IndexStore | None = None,
    ) -> None:
        self.client = client
        self.daily_buckets: BucketRule = daily_buckets
        self.mode = mode
        self._clock = clock
        self._configured_orgs = [org.lower() for org in organizations or []]
        self._orgs: list[str] | None = None
        self._orgs_at = 0.0
        self._directory: dict[str, shapes.Device] = {}
        self._directory_at: float | None = None
        self._metadata_at: dict[str, float] = {}
        self._directory_lock = asyncio.Lock()
        self._orgs_lock = asyncio.Lock()
        # With several replicas, the fleet's copies: organizations, the directory listing, and each
        # device's record (metadata), each loaded by one replica for all (`app.backends.base.SharedIndex`).
        self._shared_orgs: SharedIndex[list[str]] | None = None
        self._shared_directory: SharedIndex[list[shapes.Device]] | None = None
        self._shared_devices: SharedIndex[shapes.Device] | None = None
        if indexes is not None:
            self._shared_orgs = indexes(
                "waltero.organizations", list[str], ttl=ORGANIZATIONS_TTL, check=_checked_organizations
            )
            self._shared_directory = indexes(
                "waltero.directory", list[shapes.Device], ttl=DIRECTORY_TTL, check=_checked_directory
            )
            self._shared_devices = indexes("waltero.device", shapes.Device, ttl=DIRECTORY_TTL, check=_checked_device)

    def __repr__(self) -> str:
        return f"WalteroBackend(mode={self.mode!r}, tokens={self.client.tokens!r})"

    def is_valid_id(self, upstream_id: str) -> bool:
        """A canonical UUID: lower-case hex, 8-4-4-4-12 (ids from Waltero are lower-cased on arrival)."""
        try:
            return str(uuid.UUID(upstream_id)) == upstream_id
        except (ValueError, TypeError, AttributeError):
            return False

    # --- organizations and the device directory ------------------------------------------------------
    async def organizations(self) -> list[str]:
        """The organizations this backend serves (configured, or every accessible one)."""
        if self._configured_orgs:
            return self._configured_orgs
        if self._orgs is not None and self._clock() - self._orgs_at <= ORGANIZATIONS_TTL:
            return self._orgs
        async with self._orgs_lock:  # single-flight: concurrent cold callers share one /api/auth/me
            if self._orgs is None or self._clock() - self._orgs_at > ORGANIZATIONS_TTL:
                if self._shared_orgs is None:
                    self._orgs, self._orgs_at = await self._accessible_organizations(), self._clock()
                else:  # the fleet's copy, or one /api/auth/me for the fleet
                    self._orgs, self._orgs_at = await self._shared_orgs.load(
                        self._accessible_organizations, max_age=ORGANIZATIONS_TTL
                    )
            return self._orgs

    async def _accessible_organizations(self) -> list[str]:
        me = await self.client.me()
        return [org.organization_id for org in me.accessible_organizations]

    async def _list_devices(self) -> list[shapes.Device]:
        """Every device of every organization, fresh; refreshes the directory (and the fleet's copy)."""
        devices = await self._fetch_devices()
        now = self._clock()
        self._adopt_directory(devices, now)
        if self._shared_directory is not None:
            await self._shared_directory.publish(devices, now)
        return devices

    async def _fetch_devices(self) -> list[shapes.Device]:
        """Every device of every organization, asked of Waltero."""
        orgs = await self.organizations()
        pages = await gather_first_error([self.client.all_devices(org) for org in orgs])
        return [device for page in pages for device in page]

    def _adopt_directory(self, devices: list[shapes.Device], listed_at: float) -> None:
        self._directory = {device.id: device for device in devices}
        self._directory_at = listed_at
        self._metadata_at = dict.fromkeys(self._directory, listed_at)

    async def _refresh_directory(self, *, max_age: float) -> dict[str, shapes.Device]:
        """The directory, re-listed when older than `max_age` seconds. Single-flight: concurrent callers
        wait for the listing in flight and then read the directory it built (they never conclude "not
        found" from a listing they only waited for)."""
        async with self._directory_lock:
            if self._directory_at is None or self._clock() - self._directory_at > max_age:
                if self._shared_directory is None:
                    await self._list_devices()
                else:  # the fleet's listing no older than `max_age`, or one listing for the fleet
                    devices, listed_at = await self._shared_directory.load(self._fetch_devices, max_age=max_age)
                    self._adopt_directory(devices, listed_at)
        return self._directory

    async def _known_device(self, device_id: str) -> shapes.Device | None:
        """A device from the directory, re-listing on a miss (at most every `DIRECTORY_MISS_INTERVAL`)."""
        if device_id in self._directory:
            return self._directory[device_id]
        directory = await self._refresh_directory(max_age=DIRECTORY_MISS_INTERVAL)
        return directory.get(device_id)

    async def _device(self, device_id: str) -> shapes.Device:
        """One device of our organizations, asked of Waltero; raises `NotFound`."""
        device = await self.client.device(device_id)
        if device.organization_id is None:
            org = await self._organization_of(device_id)
            if org is None:
                raise NotFound(f"Waltero has no device {device_id}", backend=self.name)
            device = device.in_organization(org)
        if device.organization_id not in await self.organizations():
            raise NotFound(f"Waltero has no device {device_id}", backend=self.name)
        self._directory[device.id] = device
        self._metadata_at[device.id] = self._clock()
        return device

    async def _organization_of(self, device_id: str) -> str | None:
        """The organization of a device whose record names none (issue 21): the login's only
        organization, or of several the one whose device listing holds it."""
        orgs = await self.organizations()
        if len(orgs) == 1:
            return orgs[0]
        listed = (await self._refresh_directory(max_age=DIRECTORY_MISS_INTERVAL)).get(device_id)
        return listed.organization_id if listed is not None else None

    async def _device_metadata(self, device_id: str) -> shapes.Device:
        """A device's type, unit and organization: static, so a record younger than `DIRECTORY_TTL`
        serves, and a data call costs one upstream request, not two; raises `NotFound`."""
        seen = self._metadata_at.get(device_id)
        if seen is not None and self._clock() - seen <= DIRECTORY_TTL:
            return self._directory[device_id]
        if self._shared_devices is None:
            return await self._device(device_id)
        # the record another replica looked up, or one lookup for the fleet (not-found is not shared
        # here: the service shares its not-found answers)
        device, seen = await self._shared_devices.load(
            lambda: self._device(device_id), max_age=DIRECTORY_TTL, part=device_id
        )
        if device.id != device_id:  # not the record asked for (a forged entry): never served
            return await self._device(device_id)
        self._directory[device.id] = device
        self._metadata_at[device.id] = seen
        return device

    # --- meters ----------------------------------------------------------------------------------------
    async def list_meters(self) -> list[Meter]:
        with upstream_operation("meters"):
            devices = await self._list_devices()
        return [meter_from_device(device) for device in devices]

    async def get_meter(self, upstream_id: str) -> Meter:
        with upstream_operation("meter"):
            return meter_from_device(await self._device(upstream_id))

    async def meters_by_serial(self, serial_number: str) -> list[Meter]:
        """Devices with this serial number, exact match, from the cached device directory (re-listed
        when older than `DIRECTORY_TTL`); empty when there is none."""
        with upstream_operation("meters"):
            directory = await self._refresh_directory(max_age=DIRECTORY_TTL)
        found = [d for d in directory.values() if d.serial_number == serial_number]
        return [meter_from_device(d) for d in sorted(found, key=lambda d: d.id)]

    # --- readings --------------------------------------------------------------------------------------
    async def readings(
        self, upstream_meter_id: str, start: datetime, end: datetime, quantities: frozenset[str] | None, limit: int
    ) -> list[Reading]:
        """`meter.value.processed` as `volume` (water, gas) or `energy_import` (electricity, heat) in m3/kWh."""
        with upstream_operation("readings"):
            device = await self._device_metadata(upstream_meter_id)
            kind = quantity(device.meter_type, device.unit)
            if kind is None or (quantities is not None and kind not in quantities):
                return []
            scale = unit_scale(device.unit)
            meter_id = prefixed(device.id)
            readings: list[Reading] = []
            chunk_start = start
            while chunk_start < end and len(readings) < limit:
                chunk_end = min(end, chunk_start + READINGS_CHUNK)
                values = await self.client.telemetry_values(device.id, chunk_start, chunk_end, shapes.PROCESSED)
                readings += readings_from_telemetry(
                    values, meter_id=meter_id, quantity=kind, scale=scale, start=chunk_start, end=chunk_end
                )
                chunk_start = chunk_end
            return readings

    # --- daily consumption -----------------------------------------------------------------------------
    async def daily_consumption(
        self, upstream_meter_ids: frozenset[str] | None, start: date, end: date, tz: ZoneInfo
    ) -> list[DailyConsumption]:
        """Every local day of `[start, end)` in `tz` for every asked meter, ordered by meter_id, date."""
        if end <= start:
            return []
        with upstream_operation("daily_consumption"):
            wanted = await self._daily_devices(upstream_meter_ids)
            orgs = sorted({device.organization_id for device in wanted if device.organization_id})
            folded: dict[str, dict[date, LocalDay]] = {}
            for result in await gather_first_error([self._org_days(org, start, end, tz) for org in orgs]):
                folded.update(result)
        return self._daily_rows(wanted, folded, start, end, tz)

    async def daily_sites(self, upstream_meter_ids: frozenset[str] | None) -> dict[str, frozenset[str] | None]:
        """The organizations that answer for these meters, each with its asked meters (None: all of it).
        Raises `NotFound` for a device outside our organizations."""
        with upstream_operation("daily_consumption"):
            if upstream_meter_ids is None:
                return dict.fromkeys(await self.organizations())
            sites: dict[str, set[str]] = {}
            for device in await self._daily_devices(upstream_meter_ids):
                if device.organization_id:
                    sites.setdefault(device.organization_id, set()).add(device.id)
        return {org: frozenset(ids) for org, ids in sites.items()}

    async def site_daily_consumption(self, site: str, start: date, end: date, tz: ZoneInfo) -> list[DailyConsumption]:
        """Every device of organization `site`, every local day of `[start, end)` in `tz`, from one call
        per offset-stable segment (`daily.py`): the service caches it once for any subset of its meters."""
        if end <= start:
            return []
        with upstream_operation("daily_consumption"):
            devices, folded = await both(self._org_devices(site), self._org_days(site, start, end, tz))
            known = {device.id for device in devices}
            extra = [i for i in folded if i not in known]  # answered but not listed: added since the listing
            devices += await gather_first_error([self._device_metadata(i) for i in sorted(extra)])
        devices.sort(key=lambda device: device.id)
        return self._daily_rows(devices, folded, start, end, tz)

    async def _daily_devices(self, upstream_meter_ids: frozenset[str] | None) -> list[shapes.Device]:
        """The asked devices (every one for None), sorted by id. Known devices come from the directory; a
        few unknown ones cost one device lookup each (which names its organization), many of them one
        listing of the directory."""
        if upstream_meter_ids is None:
            wanted = list((await self._refresh_directory(max_age=DIRECTORY_TTL)).values())
        else:
            unknown = [i for i in upstream_meter_ids if i not in self._metadata_at]
            if len(unknown) > DIRECT_LOOKUPS:
                await self._refresh_directory(max_age=DIRECTORY_MISS_INTERVAL)
            wanted = list(await gather_first_error([self._device_metadata(i) for i in sorted(upstream_meter_ids)]))
        wanted.sort(key=lambda device: device.id)
        return wanted

    async def _org_devices(self, org: str) -> list[shapes.Device]:
        """Every device of `org`: from the directory while it is younger than `DIRECTORY_TTL`, else one
        listing of that organization (which refreshes those devices' metadata)."""
        if self._directory_at is not None and self._clock() - self._directory_at <= DIRECTORY_TTL:
            return [d for d in self._directory.values() if d.organization_id == org]
        devices = await self.client.all_devices(org)
        now = self._clock()
        for device in devices:
            self._directory[device.id] = device
            self._metadata_at[device.id] = now
        return list(devices)

    async def _org_days(self, org: str, start: date, end: date, tz: ZoneInfo) -> dict[str, dict[date, LocalDay]]:
        """`{device_id: {local date: LocalDay}}` of one organization: one call per segment."""

        async def one_call(first: datetime, stop: datetime) -> dict[str, dict[date, LocalDay]]:
            answer = await self.client.daily_consumption(org, first, stop, "day")
            return local_days_of_call(answer.data, first, stop, tz, self.daily_buckets)

        segments = segments_for(self.daily_buckets, start, end, tz)
        folded: dict[str, dict[date, LocalDay]] = {}
        for result in await gather_first_error([one_call(*segment.utc_range(tz)) for segment in segments]):
            for device_id, per_day in result.items():
                folded.setdefault(device_id, {}).update(per_day)
        return folded

    def _daily_rows(
        self,
        devices: list[shapes.Device],
        folded: dict[str, dict[date, LocalDay]],
        start: date,
        end: date,
        tz: ZoneInfo,
    ) -> list[DailyConsumption]:
        now = from_epoch(self._clock())
        ended = {day: local_midnight(day + timedelta(days=1), tz) <= now for day in days(start, end)}
        rows: list[DailyConsumption] = []
        for device in devices:
            scale = unit_scale(device.unit)
            per_day = folded.get(device.id, {})
            for day in days(start, end):
                local = per_day.get(day)
                value = scale.apply(local.consumption) if local else None
                rows.append(
                    DailyConsumption(
                        meter_id=prefixed(device.id),
                        date=day,
                        consumption=value,
                        unit=scale.unit,
                        complete=bool(local and local.complete and value is not None and ended[day]),
                        source="upstream",
                        quality=None if value is None else "measured",  # the vendor's own figure
                    )
                )
        return rows

    # --- device status ---------------------------------------------------------------------------------
    async def device_status(self, upstream_device_id: str) -> DeviceStatus:
        with upstream_operation("device_status"):
            device = await self._device_metadata(upstream_device_id)
            now = from_epoch(self._clock())
            # endDate is exclusive: a minute ahead so a point stamped "now" is not cut off.
            answer = await self.client.telemetry(
                device.id, now - STATUS_WINDOW, now + timedelta(minutes=1), STATUS_FIELDS
            )
        points = sorted(answer.data, key=lambda p: p.timestamp)

        def newest(field: str) -> float | None:
            for point in reversed(points):
                value = point.number(field)
                if value is not None:
                    return value
            return None

        last_seen = points[-1].timestamp if points else None
        voltage = newest(shapes.BATTERY_VOLTAGE)
        percent = newest(shapes.BATTERY_PERCENT)
        seen_fields = sorted({name for point in points for name in point.field_names()})
        has_battery = any(name.startswith("battery.") for name in seen_fields)
        return DeviceStatus(
            device_id=prefixed(device.id),
            backend="waltero",
            online=last_seen is not None and now - last_seen <= ONLINE_WITHIN,
            last_seen=last_seen,
            battery_percent=round(percent) if percent is not None else None,
            battery_voltage=voltage,
            power_source="battery" if has_battery else None,
            rssi_dbm=newest(shapes.RSSI),
            details={
                "points_7d": len(points),
                "fields": seen_fields,
                "meter_type": device.meter_type,
                "organization_id": device.organization_id,
            },
        )

    # --- changes ---------------------------------------------------------------------------------------
    async def changes(self, since: datetime, limit: int, cursor: str | None) -> ChangesPage:
        """Every organization's data-audit feed, merged ascending by (changed_at, id). Raises
        `InvalidRequest` for a garbled cursor. A cursor carries its own `since`."""
        position = ChangesCursor.decode(cursor) if cursor else ChangesCursor(since=since.astimezone(UTC))
        limit = max(1, limit)
        with upstream_operation("changes"):
            orgs = await self.organizations()
            batches = await gather_first_error([self._org_feed(org, position, limit) for org in orgs])
            rows, next_position = merge_feeds(batches, limit, position)
            items: list[Change] = []
            for row in rows:
                device = await self._known_device(row.device_id)
                items.append(change_from_audit(row, device.unit if device else None))
        return ChangesPage(items=items, next_cursor=next_position.encode() if next_position else None)

    async def _org_feed(self, org: str, position: ChangesCursor, want: int) -> OrgBatch:
        """At least `want` rows of one organization past its position (fewer when its feed ends)."""
        after = position.after.get(org)
        since = after[0] if after else position.since
        items: list[shapes.AuditChange] = []
        taken: set[tuple[datetime, str]] = set()
        vendor_cursor: str | None = None
        page_limit = min(want, shapes.CHANGES_MAX_LIMIT)
        advanced_by_since = False
        for _ in range(MAX_FEED_PAGES):
            page = await self.client.changes(org, since=since, limit=page_limit, cursor=vendor_cursor)
            fresh = 0
            for row in page.data:
                key = feed_key(row)
                if row.changed_at < position.since or (after is not None and key <= after) or key in taken:
                    continue
                taken.add(key)
                items.append(row)
                fresh += 1
            if advanced_by_since and fresh:
                tolerance.record(self.name, "audit_paging", "since", pinned=False)
            if not page.data or (advanced_by_since and not fresh):
                return OrgBatch(org, sorted(items, key=feed_key), more=False)
            if page.next_cursor is not None:
                tolerance.record(self.name, "audit_paging", "cursor", pinned=True)
                vendor_cursor, advanced_by_since = page.next_cursor, False
            elif len(page.data) >= page_limit:
                # A full page and no cursor: the vendor may page by `since` alone. Ask again from the
                # newest `changed_at` seen (inclusive); rows already taken are skipped above.
                since = max(row.changed_at for row in page.data)
                vendor_cursor, advanced_by_since = None, True
            else:
                return OrgBatch(org, sorted(items, key=feed_key), more=False)
            if len(items) >= want:
                break
        return OrgBatch(org, sorted(items, key=feed_key), more=True)

    # --- auth ------------------------------------------------------------------------------------------
    async def auth_state(self) -> AuthState:
        tokens = self.client.tokens
        return AuthState(authenticated=tokens.authenticated, token_expires_at=tokens.expires_at)

    async def check_ready(self) -> None:
        with upstream_operation("ready"):
            await self.client.tokens.ensure_token()

    async def aclose(self) -> None:
        """Nothing of its own to release: the httpx client belongs to the app."""
