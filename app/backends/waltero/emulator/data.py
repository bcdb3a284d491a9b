"""Deterministic demo data for the Waltero sandbox, relative to the clock at creation.

Nothing is stored per point: a device's register at hour `i` (hours since `origin`, the UTC midnight
90 days before creation) is a pure function of (seed, device, hour), plus an overlay of corrections
made through the sandbox. Points exist on whole UTC hours from `origin` up to the clock's now.

Register model (raw units): each UTC day `k` consumes `daily_raw x (0.6 + 0.8 u(seed, device, k))`,
spread over the day's hours by a fixed load profile, so the raw register only rises; `raw` is rounded
to 3 decimals and `processed = round(raw x multiplier, 6)` (display unit).

Daily consumption of a bucket `[b0, b1)` (pinned here): null when the device has no point with
`b0 <= t < b1`; otherwise the sum of the non-negative steps between consecutive points with
`b0 <= t <= b1` (a point exactly at `b1` closes the bucket), i.e. `P(b1) - P(b0)` for a device
reporting every hour. A correction that breaks or restores monotony changes that sum.

Demo shape: organizations NORTH and SOUTH (the demo user can read both) and OTHER (exists, not
readable: 403). Devices cover every meter type and unit, with multipliers other than 1, one empty name
(`name: ""`, `external_id` set), a device silent for the last 60 hours (`SILENT_DEVICE`), and devices
with 48 h gaps starting on days 20, 50 and 84 after `origin` (`GAPPY_DEVICES`).
"""

from __future__ import annotations

import bisect
import calendar
import itertools
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.backends.waltero.emulator import wire
from app.infra.timeutil import from_epoch

HOUR = 3600
DAY = 86400
HISTORY_DAYS = 90
GAP_HOURS = 48
SILENT_HOURS = 60
MAX_BUCKETS = 1000
"""More buckets than this in one daily-consumption call is a 400 (the emulator's own bound)."""

ORG_NORTH = "00000000-0000-0000-0000-000000000001"
ORG_SOUTH = "00000000-0000-0000-0000-000000000002"
ORG_OTHER = "00000000-0000-0000-0000-000000000003"

DEMO_USER_ID = "5b0c6f7e-2d4a-4f3b-9c1e-7a8d9e0f1a2b"
DEMO_EMAIL = "demo@waltero.example"

SILENT_DEVICE = "11111111-1111-1111-1111-111111111111"
EMPTY_NAME_DEVICE = "11111111-1111-1111-1111-111111111109"
GAPPY_DEVICES = ("11111111-1111-1111-1111-111111111112", "22222222-2222-2222-2222-222222222203")
GAP_DAYS = (20, 50, 84)

# Relative load over the 24 UTC hours of a day (night low, morning and evening peaks).
_PROFILE = (1, 1, 1, 1, 1, 2, 4, 6, 5, 3, 3, 3, 3, 3, 3, 3, 4, 5, 6, 6, 5, 4, 2, 1)
_CUMULATIVE = tuple(sum(_PROFILE[:j]) / sum(_PROFILE) for j in range(24))

_MASK = (1 << 64) - 1


def unit_hash(*values: int) -> float:
    """A uniform number in [0, 1) that depends only on `values` (splitmix64 rounds)."""
    x = 0x9E3779B97F4A7C15
    for value in values:
        x = ((x ^ (value & _MASK)) * 0xBF58476D1CE4E5B9) & _MASK
        x ^= x >> 31
        x = (x * 0x94D049BB133111EB) & _MASK
        x ^= x >> 29
    return (x >> 11) / float(1 << 53)


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    accessible: bool
    role: str | None


@dataclass(frozen=True, slots=True)
class DemoDevice:
    index: int
    record: wire.Device
    daily_raw: float
    """Mean raw increase per day."""
    base_raw: float
    battery: bool
    """Battery sensor variant (battery.*, meta.temperature) or wired (connection.last_seen)."""

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def multiplier(self) -> float:
        return self.record.multiplier if self.record.multiplier is not None else 1.0


# (org, id, name, meter_type, unit, multiplier, mean raw per day, battery variant)
_DEVICES: tuple[tuple[str, str, str, str, str, float, float, bool], ...] = (
    (ORG_NORTH, "11111111-1111-1111-1111-111111111101", "Kitchen cold water", "water_cold", "m3", 1.0, 0.35, True),
    (ORG_NORTH, "11111111-1111-1111-1111-111111111102", "Bathroom hot water", "water_hot", "m3", 0.001, 180.0, True),
    (ORG_NORTH, "11111111-1111-1111-1111-111111111103", "Garden tap", "water_cold", "L", 1.0, 120.0, True),
    (ORG_NORTH, "11111111-1111-1111-1111-111111111104", "Boiler gas", "gas", "m3", 0.01, 300.0, True),
    (ORG_NORTH, "11111111-1111-1111-1111-111111111105", "Main electricity", "electricity", "kWh", 1.0, 8.0, False),
    (ORG_NORTH, "11111111-1111-1111-1111-111111111106", "Heat pump", "electricity", "Wh", 1.0, 6000.0, False),
    (ORG_NORTH, "11111111-1111-1111-1111-111111111107", "Floor heating", "heat", "kWh", 1.0, 40.0, True),
    (ORG_NORTH, "11111111-1111-1111-1111-111111111108", "District heating", "heat", "MWh", 0.001, 60.0, True),
    (ORG_NORTH, EMPTY_NAME_DEVICE, "", "water_cold", "m3", 1.0, 0.25, True),
    (ORG_NORTH, "11111111-1111-1111-1111-111111111110", "Shower hot water", "water_hot", "L", 10.0, 9.0, True),
    (ORG_NORTH, SILENT_DEVICE, "Cellar gas", "gas", "m3", 1.0, 2.5, True),
    (ORG_NORTH, GAPPY_DEVICES[0], "Workshop electricity", "electricity", "kWh", 0.1, 80.0, False),
    (ORG_SOUTH, "22222222-2222-2222-2222-222222222201", "South cold water", "water_cold", "m3", 1.0, 0.5, True),
    (ORG_SOUTH, "22222222-2222-2222-2222-222222222202", "South hot water", "water_hot", "m3", 1.0, 0.2, True),
    (ORG_SOUTH, GAPPY_DEVICES[1], "South gas", "gas", "m3", 1.0, 3.0, True),
    (ORG_SOUTH, "22222222-2222-2222-2222-222222222204", "South electricity", "electricity", "kWh", 1.0, 11.0, False),
    (ORG_SOUTH, "22222222-2222-2222-2222-222222222205", "South heat", "heat", "MWh", 0.001, 45.0, True),
    (ORG_OTHER, "33333333-3333-3333-3333-333333333301", "Other tenant water", "water_cold", "m3", 1.0, 0.3, True),
    (ORG_OTHER, "33333333-3333-3333-3333-333333333302", "Other tenant power", "electricity", "kWh", 1.0, 5.0, False),
)

_FIELDS_BATTERY = wire.DeviceFields(
    meter=[wire.PROCESSED, wire.RAW],
    battery=[wire.BATTERY_VOLTAGE, wire.BATTERY_PERCENT],
    connection=[wire.RSSI],
    meta=[wire.TEMPERATURE],
)
_FIELDS_WIRED = wire.DeviceFields(
    meter=[wire.PROCESSED, wire.RAW], battery=[], connection=[wire.RSSI, wire.LAST_SEEN], meta=[]
)

_OPEN = 1 << 40
"""An hour index beyond any real one: the open end of an availability range."""


def add_months(start: datetime, months: int) -> datetime:
    """`start` moved by calendar months, the day clamped to the target month's length."""
    year, month0 = divmod(start.month - 1 + months, 12)
    year += start.year
    day = min(start.day, calendar.monthrange(year, month0 + 1)[1])
    return start.replace(year=year, month=month0 + 1, day=day)


def bucket_bounds(
    start: datetime, end: datetime, resolution: str, *, utc_calendar: bool = False
) -> list[tuple[datetime, datetime]]:
    """Buckets of `[start, end)`: consecutive 24 h (`day`) or 7-day (`week`) windows from `start`, or
    calendar-month / calendar-year steps from `start` (day of month clamped); the last one cut at `end`.
    With `utc_calendar` (the `utc_calendar` variant), `day` buckets are UTC calendar days cut to the range.
    Raises `ValueError` for an unknown resolution or more than `MAX_BUCKETS` buckets."""
    first_midnight = datetime.combine(start.astimezone(UTC).date() + timedelta(days=1), datetime.min.time(), UTC)

    def nth(k: int) -> datetime:
        if resolution == "day" and utc_calendar:
            return start if k == 0 else first_midnight + timedelta(days=k - 1)
        if resolution == "day":
            return start + timedelta(days=k)
        if resolution == "week":
            return start + timedelta(days=7 * k)
        if resolution == "month":
            return add_months(start, k)
        if resolution == "year":
            return add_months(start, 12 * k)
        raise ValueError(f"unsupported resolution {resolution!r}")

    bounds: list[tuple[datetime, datetime]] = []
    k = 0
    while (first := nth(k)) < end:
        if k >= MAX_BUCKETS:
            raise ValueError(f"more than {MAX_BUCKETS} buckets")
        bounds.append((first, min(end, nth(k + 1))))
        k += 1
    return bounds


class DemoData:
    """The sandbox's organizations, devices, telemetry, daily consumption and data-audit feed."""

    def __init__(self, created_at: float, seed: int = 7, breaks: frozenset[str] = frozenset()) -> None:
        self.seed = seed
        self.breaks = breaks
        """Emulator variants (`emulator.BREAKS`) that change the data itself."""
        self.created_at = created_at
        self.origin = math.floor(created_at / DAY) * DAY - HISTORY_DAYS * DAY
        self._created_index = math.floor((created_at - self.origin) / HOUR)
        self.organizations: dict[str, Organization] = {
            ORG_NORTH: Organization(ORG_NORTH, "Demo Housing North", True, "admin"),
            ORG_SOUTH: Organization(ORG_SOUTH, "Demo Housing South", True, "viewer"),
            ORG_OTHER: Organization(ORG_OTHER, "Another Tenant", False, None),
        }
        rng = random.Random(seed)
        self.devices: dict[str, DemoDevice] = {}
        for index, (org, device_id, name, meter_type, unit, multiplier, daily_raw, battery) in enumerate(_DEVICES):
            record = wire.Device(
                id=device_id,
                name=name,
                serial_number=f"WS{rng.randrange(10**9, 10**10)}",
                external_id=f"EXT-{device_id[-4:]}",
                meter_type=meter_type,
                unit=unit,
                multiplier=multiplier,
                organization_id=org,
            )
            base = round(daily_raw * rng.uniform(200, 2000), 3)
            self.devices[device_id] = DemoDevice(index, record, daily_raw, base, battery)
        self._availability: dict[str, list[tuple[int, int]]] = {d: self._ranges_for(d) for d in self.devices}
        self._prefix: dict[str, list[float]] = {d: [0.0] for d in self.devices}
        self._corrections: dict[str, dict[int, float]] = {d: {} for d in self.devices}
        self._corrected: dict[str, list[int]] = {d: [] for d in self.devices}
        self._audit: dict[str, list[wire.AuditChange]] = {org: [] for org in self.organizations}
        self._corrections_made = 0
        self._build_audit(random.Random(seed * 7919 + 17))

    # --- time <-> hour index -------------------------------------------------------------------------
    def time_of(self, index: int) -> datetime:
        return from_epoch(self.origin + index * HOUR)

    def index_at(self, when: datetime) -> int | None:
        """The hour index of a whole-hour instant, None when `when` is not on a point's hour."""
        offset = when.timestamp() - self.origin
        if offset < 0 or offset % HOUR:
            return None
        return int(offset // HOUR)

    def _now_index(self, now: float) -> int:
        return math.floor((now - self.origin) / HOUR)

    # --- availability --------------------------------------------------------------------------------
    def _ranges_for(self, device_id: str) -> list[tuple[int, int]]:
        if device_id == SILENT_DEVICE:
            return [(0, self._created_index - SILENT_HOURS)]
        if device_id in GAPPY_DEVICES:
            ranges, start = [], 0
            for day in GAP_DAYS:
                ranges.append((start, day * 24 - 1))
                start = day * 24 + GAP_HOURS
            ranges.append((start, _OPEN))
            return ranges
        return [(0, _OPEN)]

    def _ranges(self, device_id: str, lo: int, hi: int, now: float) -> list[tuple[int, int]]:
        """Inclusive hour-index ranges within `[lo, hi]` where the device has points up to `now`."""
        hi = min(hi, self._now_index(now))
        lo = max(lo, 0)
        result = []
        for a, b in self._availability[device_id]:
            a, b = max(a, lo), min(b, hi)
            if a <= b:
                result.append((a, b))
        return result

    def gaps(self, device_id: str) -> list[tuple[datetime, datetime]]:
        """Periods `[from, to)` in which the device has no points (between its data ranges)."""
        ranges = self._availability[device_id]
        return [(self.time_of(b + 1), self.time_of(a)) for (_, b), (a, _) in itertools.pairwise(ranges)]

    def silent_since(self, device_id: str) -> datetime | None:
        """The first hour without points of a device that stopped reporting, else None."""
        last = self._availability[device_id][-1][1]
        return None if last >= _OPEN else self.time_of(last + 1)

    def _indices(self, device_id: str, lo: int, hi: int, now: float) -> Iterator[int]:
        for a, b in self._ranges(device_id, lo, hi, now):
            yield from range(a, b + 1)

    # --- registers -------------------------------------------------------------------------------------
    def _daily_raw(self, device: DemoDevice, day: int) -> float:
        return device.daily_raw * (0.6 + 0.8 * unit_hash(self.seed, device.index, day))

    def _day_start_raw(self, device: DemoDevice, day: int) -> float:
        prefix = self._prefix[device.id]
        while len(prefix) <= day:
            prefix.append(prefix[-1] + self._daily_raw(device, len(prefix) - 1))
        return device.base_raw + prefix[day]

    def _generated_raw(self, device: DemoDevice, index: int) -> float:
        day, hour = divmod(index, 24)
        return round(self._day_start_raw(device, day) + self._daily_raw(device, day) * _CUMULATIVE[hour], 3)

    def processed(self, device_id: str, index: int) -> float:
        """The display value stored at hour `index` (corrections applied); the point need not exist."""
        corrected = self._corrections[device_id].get(index)
        if corrected is not None:
            return corrected
        device = self.devices[device_id]
        if "processed_is_raw" in self.breaks:  # the page's intro: "apply the multiplier yourself"
            return self._generated_raw(device, index)
        return round(self._generated_raw(device, index) * device.multiplier, 6)

    def raw(self, device_id: str, index: int) -> float:
        """The unconverted value at hour `index` (display = raw x multiplier)."""
        device = self.devices[device_id]
        corrected = self._corrections[device_id].get(index)
        if corrected is not None:
            return round(corrected / device.multiplier, 6)
        return self._generated_raw(device, index)

    def has_point(self, device_id: str, index: int, now: float) -> bool:
        return bool(self._ranges(device_id, index, index, now))

    # --- telemetry ---------------------------------------------------------------------------------
    def fields(self, device_id: str) -> wire.DeviceFields:
        return _FIELDS_BATTERY if self.devices[device_id].battery else _FIELDS_WIRED

    def _point(self, device: DemoDevice, index: int, wanted: frozenset[str] | None) -> wire.TelemetryPoint | None:
        values: dict[str, object] = {
            wire.PROCESSED: self.processed(device.id, index),
            wire.RAW: self.raw(device.id, index),
            wire.RSSI: round(-50 - 45 * unit_hash(self.seed, device.index, index, 2), 1),
        }
        if device.battery:
            if index % 6 == 0:
                voltage = (
                    3.62 - 0.15 * index / (HISTORY_DAYS * 24) - 0.03 * unit_hash(self.seed, device.index, index, 1)
                )
                values[wire.BATTERY_VOLTAGE] = round(voltage, 3)
                values[wire.BATTERY_PERCENT] = max(0, min(100, round((voltage - 3.0) / 0.65 * 100)))
            if index % 3 == 0:
                values[wire.TEMPERATURE] = round(8 + 10 * unit_hash(self.seed, device.index, index, 3), 1)
        else:
            values[wire.LAST_SEEN] = wire.wire_time(self.time_of(index))
        if wanted is not None:
            values = {name: value for name, value in values.items() if name in wanted}
            if not values:
                return None
        return wire.TelemetryPoint(self.time_of(index), values)

    def telemetry(
        self, device_id: str, start: datetime, end: datetime, fields: frozenset[str] | None, now: float
    ) -> list[wire.TelemetryPoint]:
        """Points with `start <= timestamp < end`, ascending. With `fields`, only those fields, and only
        points that have at least one of them."""
        device = self.devices[device_id]
        lo = math.ceil((start.timestamp() - self.origin) / HOUR)
        hi = math.ceil((end.timestamp() - self.origin) / HOUR) - 1
        points = (self._point(device, i, fields) for i in self._indices(device_id, lo, hi, now))
        return [p for p in points if p is not None]

    # --- daily consumption ------------------------------------------------------------------------------
    def bucket_consumption(self, device_id: str, start: datetime, end: datetime, now: float) -> float | None:
        """Consumption over `[start, end)` in the display unit (see the module docstring); None without data."""
        lo = math.ceil((start.timestamp() - self.origin) / HOUR)
        b1 = (end.timestamp() - self.origin) / HOUR
        if not self._ranges(device_id, lo, math.ceil(b1) - 1, now):
            return None
        ranges = self._ranges(device_id, lo, math.floor(b1), now)
        first, last = ranges[0][0], ranges[-1][1]
        corrected = self._corrected[device_id]
        if bisect.bisect_left(corrected, first) == bisect.bisect_right(corrected, last):
            total = self.processed(device_id, last) - self.processed(device_id, first)
        else:
            total, previous = 0.0, None
            for index in self._indices(device_id, first, last, now):
                value = self.processed(device_id, index)
                if previous is not None and value > previous:
                    total += value - previous
                previous = value
        if "daily_raw_units" in self.breaks:
            total /= self.devices[device_id].multiplier
        return round(total, 6)

    def daily_rows(
        self, org_id: str, start: datetime, end: datetime, resolution: str, now: float
    ) -> list[wire.DailyRow]:
        """The metering v3 rows: per device (by id), per bucket; no-data rows have no `date`."""
        bounds = bucket_bounds(start, end, resolution, utc_calendar="utc_calendar" in self.breaks)
        rows = []
        for device in self.org_devices(org_id):
            record = device.record
            for first, stop in bounds:
                value = self.bucket_consumption(device.id, first, stop, now)
                rows.append(
                    wire.DailyRow(
                        device_id=record.id,
                        device_name=record.name or record.external_id,
                        serial_number=record.serial_number,
                        date=first.astimezone(UTC).date() if value is not None else None,
                        consumption=value,
                    )
                )
        return rows

    def org_devices(self, org_id: str) -> list[DemoDevice]:
        return sorted((d for d in self.devices.values() if d.record.organization_id == org_id), key=lambda d: d.id)

    # --- data audit --------------------------------------------------------------------------------------
    def _existing_at_or_before(self, device_id: str, index: int) -> int:
        for a, b in reversed(self._availability[device_id]):
            if a <= index:
                return min(index, b)
        return 0

    def _build_audit(self, rng: random.Random) -> None:
        """Past corrections: the stored (generated) value is the corrected one; `previous_value` is what
        was read before (system: a digit misaligned, x10; user: a manual fix of a bad reading)."""
        last_index = self._created_index - 96
        for device in self.devices.values():
            for n in range(2 if device.index % 2 == 0 else 1):
                index = self._existing_at_or_before(device.id, rng.randrange(48, last_index))
                system = (device.index + n) % 2 == 0
                delay = rng.randint(5, 180) * 60 if system else rng.randint(1, 3) * DAY + rng.randint(0, 600) * 60
                changed_at = min(self.origin + index * HOUR + delay, self.created_at - HOUR)
                self._add_past(device, index, changed_at, system, rng)
        # Two recent corrections per readable organization, sharing one changed_at (the tie orders by id).
        for org in (ORG_NORTH, ORG_SOUTH):
            changed_at = self.created_at - 2 * HOUR
            for device, back in zip(self.org_devices(org)[:2], (5, 30), strict=True):
                index = self._existing_at_or_before(device.id, self._created_index - back)
                self._add_past(device, index, changed_at, back == 5, rng)
        for entries in self._audit.values():
            entries.sort(key=lambda c: (c.changed_at, c.id))

    def _add_past(self, device: DemoDevice, index: int, changed_at: float, system: bool, rng: random.Random) -> None:
        new = self.processed(device.id, index)
        previous = round(new * 10, 6) if system else round(max(0.0, new - device.daily_raw * device.multiplier / 2), 6)
        self._audit[device.record.organization_id].append(
            wire.AuditChange(
                id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                device_id=device.id,
                timestamp=self.time_of(index),
                previous_value=previous,
                new_value=new,
                actor="system" if system else "user",
                changed_at=from_epoch(changed_at),
            )
        )

    def changes(
        self, org_id: str, since: datetime | None = None, after: tuple[datetime, str] | None = None
    ) -> list[wire.AuditChange]:
        """The organization's audit rows with `changed_at >= since` and key > `after`, ascending."""
        rows = self._audit[org_id]
        return [
            row
            for row in rows
            if (since is None or row.changed_at >= since) and (after is None or (row.changed_at, row.id) > after)
        ]

    def correct(
        self, device_id: str, timestamp: datetime, new_value: float, actor: str, now: float
    ) -> wire.AuditChange:
        """Replace the stored reading at `timestamp` (display unit) and append an audit row stamped `now`.

        Raises `KeyError` for an unknown device, `ValueError` when the device has no reading then."""
        device = self.devices[device_id]
        index = self.index_at(timestamp)
        if index is None or not self.has_point(device_id, index, now):
            raise ValueError("the device has no reading at that timestamp")
        if actor not in wire.ACTORS:
            raise ValueError("actor must be system or user")
        previous = self.processed(device_id, index)
        self._corrections[device_id][index] = float(new_value)
        corrected = self._corrected[device_id]
        position = bisect.bisect_left(corrected, index)
        if position == len(corrected) or corrected[position] != index:
            corrected.insert(position, index)
        self._corrections_made += 1
        # Sortable ids: corrections made at the same instant keep their order in the feed.
        change_id = f"c0{self._corrections_made:06x}-0000-4000-8000-{self.seed & 0xFFFFFFFFFFFF:012x}"
        change = wire.AuditChange(
            id=change_id,
            device_id=device_id,
            timestamp=self.time_of(index),
            previous_value=previous,
            new_value=float(new_value),
            actor=actor,
            changed_at=from_epoch(now),
        )
        entries = self._audit[device.record.organization_id]
        bisect.insort(entries, change, key=lambda c: (c.changed_at, c.id))
        return change
