"""Deterministic demo data of the IOmeter emulator: partners, installations, meters, devices, readings.

Everything derives from the seed and from the clock at creation ("today"), and readings are a pure
function of (meter, time) generated on demand for the asked window:

- Two partners: the demo partner (credentials in `SANDBOX_SETTINGS`) with four installations, six
  meters and four devices, and another partner whose installation the demo partner cannot see.
- Every device status enum value occurs among the demo partner's devices; one installation has no
  device (its meter's `device_id` is None); one has an `externalId`.
- 15-minute readings (UTC grid) of `1-0:1.8.0` (import total), `1-0:1.8.1`/`1-0:1.8.2` (tariffs T1/T2,
  T1 + T2 = total exactly), `1-0:2.8.0` (export: solar on two meters, constant zero on one, absent
  on the rest) and `1-0:16.7.0` (power in W, import minus export); one meter also sends voltage
  `1-0:32.7.0` in V. Energy registers are integers in Wh (sent as floats). The load has a daily shape
  in Europe/Berlin local time (night base, morning and evening peaks, more in winter and at weekends).
- Readings exist from `window_start` (local midnight, at least 90 days back and far enough back that
  a Europe/Berlin DST change lies inside) up to the clock's *current* time, except: an 8-hour gap on
  the first meter (20:00 → 04:00 local, across a midnight), a 2-hour gap on the second meter
  (23:00 → 01:00 local), a meter swap on the fifth meter (its register drops to a few Wh and rises
  again, same meter id), and the sixth meter starts reading 30 days before "today".

Accessors for tests: `installations`, `meters`, `devices` (the demo partner's), `foreign_*` (the other
partner's), `installation(id)`, `meter(id)`, `device(id)`, `readings(meter_id, start, end)`,
`gaps`, `swaps`, `window_start`, `dst_changes`.
"""

from __future__ import annotations

import math
import random
import uuid
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from app.infra.timeutil import Clock, local_midnight

BERLIN = ZoneInfo("Europe/Berlin")
SLOT = 900
"""Seconds between readings."""

DEMO_PARTNER_ID = "5a0c2e35-3f4b-4f7e-9d55-2b0b8f6f1a10"
DEMO_PARTNER_SECRET = "sandbox-iometer-demo-secret-4711"  # noqa: S105 - public sandbox credential
OTHER_PARTNER_ID = "9e3b8c41-7d2a-4c6f-8b1e-5f4a3d2c1b00"
OTHER_PARTNER_SECRET = "sandbox-iometer-other-secret-0815"  # noqa: S105 - public sandbox credential

IMPORT, IMPORT_T1, IMPORT_T2, EXPORT, POWER, VOLTAGE = (
    (1, 0, 1, 8, 0),
    (1, 0, 1, 8, 1),
    (1, 0, 1, 8, 2),
    (1, 0, 2, 8, 0),
    (1, 0, 16, 7, 0),
    (1, 0, 32, 7, 0),
)
"""OBIS value groups A, B, C, D, E (F is always 255)."""

Obis = tuple[int, int, int, int, int]


def obis_decimal(code: Obis) -> str:
    a, b, c, d, e = code
    return f"{a}-{b}:{c}.{d}.{e}"


def format_obis(code: Obis, fmt: str) -> str:
    """The OBIS code in one of the `ObisFormat` forms (`decimal` when unknown)."""
    a, b, c, d, e = code
    if fmt == "hex":
        return f"{a:02x}-{b:02x}:{c:02x}.{d:02x}.{e:02x}*ff"
    if fmt == "short":
        return f"{c}.{d}.{e}"
    if fmt == "full":
        return f"{a}-{b}:{c}.{d}.{e}*255"
    return obis_decimal(code)


@dataclass(frozen=True, slots=True)
class PartnerRecord:
    id: str
    name: str
    secret: str


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: str
    installation_id: str
    bridge_connection: str
    core_connection: str
    attachment: str
    battery_level: int
    power: str
    pin: str


@dataclass(frozen=True, slots=True)
class LoadProfile:
    """What shapes one meter's energy; hashable so day arrays can be cached across emulators."""

    salt: int
    daily_wh: float
    solar_peak_wh: float
    """Wh per 15 min at a clear summer noon; 0 = no solar."""


@dataclass(frozen=True, slots=True)
class MeterRecord:
    id: str
    number: str
    installation_id: str
    profile: LoadProfile
    first_time: float
    """Epoch seconds of the first reading."""
    initial_wh: int
    initial_t1_wh: int
    initial_export_wh: int
    export_register: bool
    """Sends `1-0:2.8.0` (solar meters, and one meter that always sends 0)."""
    voltage: bool
    gaps: tuple[tuple[float, float], ...] = ()
    """Open intervals (a, b) of epoch seconds without readings (readings at a and b exist)."""
    swap_at: float | None = None
    """From this time on the registers count again from `SWAP_*` (a replaced meter)."""


SWAP_TOTAL_WH, SWAP_T1_WH = 12, 7


@dataclass(frozen=True, slots=True)
class InstallationRecord:
    id: str
    partner_id: str
    external_id: str | None
    meter_ids: tuple[str, ...]
    device_ids: tuple[str, ...]
    current_meter_id: str | None
    current_device_id: str | None


@dataclass(frozen=True, slots=True)
class ValueRecord:
    obis: Obis
    value: float
    unit: str

    @property
    def code(self) -> str:
        return obis_decimal(self.obis)


@dataclass(frozen=True, slots=True)
class ReadingRecord:
    meter_id: str
    time: float
    """Epoch seconds (on the 15-minute grid)."""
    values: tuple[ValueRecord, ...]

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.time, UTC)

    def value(self, code: str) -> float | None:
        """The value of a decimal OBIS code, e.g. `reading.value("1-0:1.8.0")`."""
        for v in self.values:
            if v.code == code:
                return v.value
        return None


# --- the load model ------------------------------------------------------------------------------


def _shape() -> list[float]:
    def weight(hour: float) -> float:
        return (
            0.35
            + 0.6 * math.exp(-(((hour - 7.5) / 1.2) ** 2))
            + 0.3 * math.exp(-(((hour - 12.5) / 1.5) ** 2))
            + 1.0 * math.exp(-(((hour - 19.5) / 1.8) ** 2))
        )

    raw = [weight((i + 0.5) / 4) for i in range(96)]
    total = sum(raw)
    return [w / total for w in raw]


LOAD_SHAPE = _shape()
"""Share of a day's load per local quarter hour (sums to 1)."""


def _unit_hash(*parts: int) -> float:
    """A deterministic number in [0, 1) from integers (no `hash()`: that is salted per process)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = ((x ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 29
    return (x >> 11) / float(1 << 53)


@dataclass(frozen=True, slots=True)
class DayArrays:
    """One local day of one profile: cumulative Wh from the day's start, one entry per slot boundary."""

    start: float
    """Epoch seconds of local midnight."""
    slots: int
    """92, 96 or 100 quarter hours (DST days are 23 h or 25 h)."""
    imp: array[int]
    t1: array[int]
    exp: array[int]


@lru_cache(maxsize=4096)  # ~2.4 KB each: at most ~10 MB, shared by every emulator in the process
def day_arrays(profile: LoadProfile, day: date) -> DayArrays:
    start = local_midnight(day, BERLIN).timestamp()
    end = local_midnight(day + timedelta(days=1), BERLIN).timestamp()
    slots = round((end - start) / SLOT)
    ordinal = day.toordinal()
    weekday = day.weekday()
    season = math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)  # 1 in January, -1 in July
    day_scale = (
        (1.0 + 0.25 * season) * (1.12 if weekday >= 5 else 1.0) * (0.85 + 0.3 * _unit_hash(profile.salt, ordinal))
    )
    daily_wh = profile.daily_wh * day_scale
    sun = (0.65 - 0.35 * season) * (0.25 + 0.75 * _unit_hash(profile.salt, ordinal, 7))
    daylight = 4.0 - 2.0 * season  # half-width of the solar bell in hours
    imp, t1, exp = [0], [0], [0]
    for j in range(slots):
        t = start + j * SLOT
        if slots == 96:
            quarter = j
        else:  # DST day: the local quarter hour is not the slot index
            local = datetime.fromtimestamp(t, BERLIN)
            quarter = local.hour * 4 + local.minute // 15
        hour = (quarter + 0.5) / 4
        load = round(daily_wh * LOAD_SHAPE[quarter] * (0.7 + 0.6 * _unit_hash(profile.salt, int(t) // SLOT)))
        solar = 0
        if profile.solar_peak_wh and abs(hour - 13.0) < daylight:
            solar = round(profile.solar_peak_wh * sun * math.cos((hour - 13.0) / daylight * math.pi / 2) ** 2)
        imported, exported = max(0, load - solar), max(0, solar - load)
        high_tariff = weekday < 5 and 6 <= hour < 22
        imp.append(imp[-1] + imported)
        t1.append(t1[-1] + (imported if high_tariff else 0))
        exp.append(exp[-1] + exported)
    return DayArrays(start, slots, array("q", imp), array("q", t1), array("q", exp))


# --- the data set --------------------------------------------------------------------------------


@dataclass
class _MeterState:
    """Cumulative registers at the start of each local day since `window_start` (lazily extended)."""

    day_starts: list[tuple[int, int, int]] = field(default_factory=list)
    at_swap: tuple[int, int, int] | None = None


def _dst_changes(first: date, last: date) -> list[date]:
    """Local dates in [first, last] that are 23 h or 25 h long in Europe/Berlin."""
    found = []
    day = first
    while day <= last:
        nxt = day + timedelta(days=1)
        if (local_midnight(nxt, BERLIN) - local_midnight(day, BERLIN)) != timedelta(days=1):
            found.append(day)
        day = nxt
    return found


class DemoData:
    """The emulator's data set for one seed and one creation time. See the module docstring."""

    def __init__(self, seed: int, clock: Clock, *, window_days: int = 90) -> None:
        self.clock = clock
        rng = random.Random(seed)
        created = datetime.fromtimestamp(clock(), BERLIN)
        today = created.date()
        self.today = today
        # Reach back to the last DST change before today, so one always lies inside the window.
        recent = _dst_changes(today - timedelta(days=400), today - timedelta(days=1))
        first_day = min(today - timedelta(days=window_days), recent[-1] - timedelta(days=1))
        self.first_day = first_day
        self.window_start = local_midnight(first_day, BERLIN)
        self.dst_changes = _dst_changes(first_day, today)

        def new_id() -> str:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))

        def at(day_offset: int, hour: int) -> float:
            day = today - timedelta(days=day_offset)
            return local_midnight(day, BERLIN).timestamp() + hour * 3600  # hours chosen clear of DST shifts

        self.partner = PartnerRecord(DEMO_PARTNER_ID, "Sandbox Energy Partner", DEMO_PARTNER_SECRET)
        self.other_partner = PartnerRecord(OTHER_PARTNER_ID, "Another Partner", OTHER_PARTNER_SECRET)
        self.partners = {p.id: p for p in (self.partner, self.other_partner)}

        inst_ids = [new_id() for _ in range(5)]
        meter_ids = [new_id() for _ in range(7)]
        device_ids = [new_id() for _ in range(5)]
        start = self.window_start.timestamp()

        def meter(
            i: int,
            inst: int,
            daily_kwh: float,
            solar_kwp: float = 0.0,
            *,
            export: bool = False,
            voltage: bool = False,
            gaps: tuple[tuple[float, float], ...] = (),
            swap_at: float | None = None,
            first_time: float = start,
        ) -> MeterRecord:
            initial = rng.randrange(2_000_000, 30_000_000)
            return MeterRecord(
                id=meter_ids[i],
                number=f"1EMH00{rng.randrange(10**7, 10**8)}",
                installation_id=inst_ids[inst],
                profile=LoadProfile(salt=rng.getrandbits(48), daily_wh=daily_kwh * 1000, solar_peak_wh=solar_kwp * 250),
                first_time=first_time,
                initial_wh=initial,
                initial_t1_wh=int(initial * rng.uniform(0.55, 0.7)),
                initial_export_wh=rng.randrange(500_000, 5_000_000) if solar_kwp else 0,
                export_register=export or solar_kwp > 0,
                voltage=voltage,
                gaps=gaps,
                swap_at=swap_at,
            )

        all_meters = [
            meter(0, 0, 9.5, 6.0, gaps=((at(12, 20), at(11, 4)),)),
            meter(1, 1, 7.0, gaps=((at(8, 23), at(7, 1)),), voltage=True),
            meter(2, 1, 3.2, 4.0),
            meter(3, 2, 11.0, export=True),
            meter(4, 2, 5.5, swap_at=at(5, 10)),
            meter(5, 3, 4.0, first_time=at(30, 0)),
            meter(6, 4, 6.0),
        ]
        d = device_ids
        all_devices = [
            DeviceRecord(d[0], inst_ids[0], "connected", "connected", "attached", 100, "wired", "entered"),
            DeviceRecord(d[1], inst_ids[1], "connected", "connected", "attached", 74, "battery", "entered"),
            DeviceRecord(d[2], inst_ids[1], "connected", "connected", "detached", 55, "battery", "entering"),
            DeviceRecord(d[3], inst_ids[2], "disconnected", "disconnected", "attached", 12, "battery", "missing"),
            DeviceRecord(d[4], inst_ids[4], "connected", "connected", "attached", 90, "wired", "entered"),
        ]
        m = meter_ids
        all_installations = [
            InstallationRecord(inst_ids[0], DEMO_PARTNER_ID, "crm-4711", (m[0],), (d[0],), m[0], d[0]),
            InstallationRecord(inst_ids[1], DEMO_PARTNER_ID, None, (m[1], m[2]), (d[1], d[2]), m[1], d[1]),
            InstallationRecord(inst_ids[2], DEMO_PARTNER_ID, None, (m[3], m[4]), (d[3],), m[4], d[3]),
            InstallationRecord(inst_ids[3], DEMO_PARTNER_ID, None, (m[5],), (), m[5], None),
            InstallationRecord(inst_ids[4], OTHER_PARTNER_ID, "other-1", (m[6],), (d[4],), m[6], d[4]),
        ]
        self._installations = {i.id: i for i in all_installations}
        self._meters = {x.id: x for x in all_meters}
        self._devices = {x.id: x for x in all_devices}
        self._meter_order = {x.id: n for n, x in enumerate(all_meters)}
        self._state = {x.id: _MeterState() for x in all_meters}
        self._midnights = [start]

        self.installations = [i for i in all_installations if i.partner_id == DEMO_PARTNER_ID]
        self.meters = [self._meters[mid] for i in self.installations for mid in i.meter_ids]
        self.devices = [self._devices[did] for i in self.installations for did in i.device_ids]
        self.foreign_installations = [i for i in all_installations if i.partner_id != DEMO_PARTNER_ID]
        self.foreign_meters = [self._meters[mid] for i in self.foreign_installations for mid in i.meter_ids]
        self.foreign_devices = [self._devices[did] for i in self.foreign_installations for did in i.device_ids]
        self.gaps = {
            x.id: [(datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC)) for a, b in x.gaps]
            for x in all_meters
            if x.gaps
        }
        self.swaps = {x.id: datetime.fromtimestamp(x.swap_at, UTC) for x in all_meters if x.swap_at is not None}

    # --- lookups ---------------------------------------------------------------------------------

    def installation(self, installation_id: str) -> InstallationRecord | None:
        return self._installations.get(installation_id)

    def meter(self, meter_id: str) -> MeterRecord | None:
        return self._meters.get(meter_id)

    def device(self, device_id: str) -> DeviceRecord | None:
        return self._devices.get(device_id)

    def meter_order(self, meter_id: str) -> int:
        """Ties at one time are ordered by this (stable across the emulator's life)."""
        return self._meter_order[meter_id]

    def partner_installations(self, partner_id: str) -> list[InstallationRecord]:
        return [i for i in self._installations.values() if i.partner_id == partner_id]

    # --- readings --------------------------------------------------------------------------------

    def _day_start(self, meter: MeterRecord, index: int) -> tuple[int, int, int]:
        """Cumulative (import, T1, export) Wh from `window_start` to the start of local day `index`."""
        starts = self._state[meter.id].day_starts
        if not starts:
            starts.append((0, 0, 0))
        while len(starts) <= index:
            day = day_arrays(meter.profile, self.first_day + timedelta(days=len(starts) - 1))
            imp, t1, exp = starts[-1]
            starts.append((imp + day.imp[-1], t1 + day.t1[-1], exp + day.exp[-1]))
        return starts[index]

    def _cumulative(self, meter: MeterRecord, day_index: int, slot: int) -> tuple[int, int, int, DayArrays]:
        day = day_arrays(meter.profile, self.first_day + timedelta(days=day_index))
        imp, t1, exp = self._day_start(meter, day_index)
        return imp + day.imp[slot], t1 + day.t1[slot], exp + day.exp[slot], day

    def _locate(self, t: float) -> tuple[int, int]:
        """(local day index since `first_day`, slot within that day) of a grid time `t`."""
        midnights = self._midnights
        while midnights[-1] <= t:
            day = self.first_day + timedelta(days=len(midnights))
            midnights.append(local_midnight(day, BERLIN).timestamp())
        index = bisect_right(midnights, t) - 1
        return index, int((t - midnights[index]) // SLOT)

    def _swap_base(self, meter: MeterRecord, swap_at: float) -> tuple[int, int, int]:
        state = self._state[meter.id]
        if state.at_swap is None:
            s_index, s_slot = self._locate(swap_at)
            imp, t1, exp, _ = self._cumulative(meter, s_index, s_slot)
            state.at_swap = (imp, t1, exp)
        return state.at_swap

    def has_reading(self, meter: MeterRecord, t: float, now: float) -> bool:
        if t < meter.first_time or t > now or t < self.window_start.timestamp():
            return False
        return not any(a < t < b for a, b in meter.gaps)

    def reading_at(self, meter: MeterRecord, t: float) -> ReadingRecord:
        """The reading of `meter` at grid time `t` (whether or not the meter sent one then)."""
        index, slot = self._locate(t)
        imp, t1, exp, day = self._cumulative(meter, index, slot)
        total = meter.initial_wh + imp
        tariff1 = meter.initial_t1_wh + t1
        export = meter.initial_export_wh + exp
        if meter.swap_at is not None and t >= meter.swap_at:
            s_imp, s_t1, s_exp = self._swap_base(meter, meter.swap_at)
            total, tariff1, export = SWAP_TOTAL_WH + imp - s_imp, SWAP_T1_WH + t1 - s_t1, exp - s_exp
        # Power: the average over the coming quarter hour, import minus export, in W.
        next_imp, next_exp = day.imp[slot + 1] - day.imp[slot], day.exp[slot + 1] - day.exp[slot]
        values = [
            ValueRecord(IMPORT, float(total), "Wh"),
            ValueRecord(IMPORT_T1, float(tariff1), "Wh"),
            ValueRecord(IMPORT_T2, float(total - tariff1), "Wh"),
        ]
        if meter.export_register:
            values.append(ValueRecord(EXPORT, float(export), "Wh"))
        values.append(ValueRecord(POWER, float(4 * (next_imp - next_exp)), "W"))
        if meter.voltage:
            values.append(ValueRecord(VOLTAGE, round(227.0 + 6.0 * _unit_hash(meter.profile.salt, int(t)), 1), "V"))
        return ReadingRecord(meter.id, t, tuple(values))

    def iter_readings(
        self, meters: list[MeterRecord], start: float, after: tuple[float, int] | None = None
    ) -> Iterator[ReadingRecord]:
        """Readings of `meters` with `time >= start`, ascending by (time, meter order), up to now.

        `after` = (time, meter order) of the last reading already returned (a cursor position)."""
        now = self.clock()
        ordered = sorted(meters, key=lambda m: self._meter_order[m.id])
        t = float(max(math.ceil(start / SLOT) * SLOT, math.ceil(self.window_start.timestamp() / SLOT) * SLOT))
        if after is not None:
            t = max(t, after[0])
        while t <= now:
            for m in ordered:
                if after is not None and t == after[0] and self._meter_order[m.id] <= after[1]:
                    continue
                if self.has_reading(m, t, now):
                    yield self.reading_at(m, t)
            t += SLOT

    def readings(self, meter_id: str, start: datetime, end: datetime) -> list[ReadingRecord]:
        """One meter's readings with `start <= time < end` (and time <= now), ascending."""
        meter = self._meters[meter_id]
        stop = end.timestamp()
        out = []
        for reading in self.iter_readings([meter], start.timestamp()):
            if reading.time >= stop:
                break
            out.append(reading)
        return out
