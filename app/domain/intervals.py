"""Interval consumption at any resolution from a cumulative register (pure functions; no I/O).

`GET /consumption?resolution=15min|hour|day|month` cuts `[local midnight of start, local midnight of
end)` in `tz` into real local intervals (`boundaries`) and derives each interval's consumption from
register pairs (`derive`) with the daily rule of docs/api-guide.md, generalized from days to any interval
`[t0, t1)`. The register is first `clean`ed: a reading that leaves the track and comes back within
`GLITCH_READINGS` readings is a glitch and is ignored; a drop that persists is a reset (a register reset
or a meter swap), counted from the new base. Then, for each pair of consecutive kept readings `(a, b)`:
- a pair inside the interval adds `max(0, b.v - a.v)` (the step into a reset adds zero, never negative);
- a pair that straddles `t0` or `t1` adds the same increase times the share of `[a.t, b.t]` inside the
  interval (linear interpolation), but only when `b.t - a.t <= max_gap`.
A boundary is *bracketed* when such a pair straddles it or a reading falls exactly on it. An interval
is `complete` when both of its boundaries are and no pair it used needed the glitch or the reset rule.
Its `quality`: `suspect` when a reading in it was ignored, else `reset` when it holds a reset, else
`estimated` when a boundary was interpolated, else `measured` (readings exactly on both boundaries).
With no pair contributing, the consumption (and the quality) is None.

Because interpolation is linear and the register is cleaned once for the whole window, complete hourly
and quarter-hourly intervals of a local day add up to the day (up to float rounding). Months are not
derived from the register: they are the null-aware sums of their local days (`group_sums`), so a month
always equals the sum of its days.

A physical plausibility bound (`Plausibility`, settings `FACADE_PLAUSIBLE_*`) marks a figure above the
most a meter of its medium can use in the interval `suspect` and incomplete (`plausible`).

Local intervals are real: a spring-forward day in Europe/Berlin has 23 hours and 92 quarter-hours, a
fall-back day 25 and 100. Boundaries are aware datetimes carrying the local UTC offset of `tz` (a fixed
offset per value, see `_local`), so `isoformat()` shows it.

Pure and fast: one pass cleans the register and builds prefix sums of the positive steps and of the
flagged steps, then each interval costs a few bisections, so 31 days of quarter-hours over 3,000
readings is about a millisecond.
"""

from __future__ import annotations

import sys
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import accumulate, islice, pairwise
from operator import le, sub
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from app.domain.models import Quality
from app.infra.timeutil import local_midnight

Resolution = Literal["15min", "hour", "day", "month"]
RESOLUTIONS: tuple[str, ...] = get_args(Resolution)

MAX_DAYS: dict[str, int] = {"15min": 31, "hour": 31, "day": 366}
MAX_YEARS_MONTH = 10

_QUARTER = timedelta(minutes=15)


QUALITIES: tuple[str, ...] = get_args(Quality)
"""How a figure was obtained, best first (see `derive`); a row's quality is the worst of its parts."""


def worst(qualities: Iterable[Quality | None]) -> Quality | None:
    """The worst quality among the known ones (`suspect` > `reset` > `estimated` > `measured`), None
    when none is known."""
    known = [q for q in qualities if q is not None]
    return max(known, key=QUALITIES.index) if known else None


@dataclass(frozen=True, slots=True)
class DerivedConsumption:
    """One interval's figure derived from the register (the rows of the API, `models.DerivedConsumption`,
    are built from it)."""

    consumption: float | None
    """Register increase over the interval, in the unit of the values; None when no pair contributed."""
    complete: bool
    """Both interval boundaries are bracketed by the readings and the arithmetic needed neither a glitch
    nor a reset rule (for sums: every part is complete)."""
    quality: Quality | None = None
    """`measured`, `estimated`, `reset` or `suspect` (see `derive`); None when `consumption` is None."""


# --- windows ------------------------------------------------------------------------------------


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year + years, day=28)


def window_error(start: date, end: date, resolution: str) -> str | None:
    """Why `[start, end)` is too wide for `resolution` (the text of a 422), or None when it is fine.

    At most 31 days for `15min` and `hour`, 366 days for `day`, 10 years for `month`."""
    if resolution == "month":
        if start.year + MAX_YEARS_MONTH <= 9999 and end > _add_years(start, MAX_YEARS_MONTH):
            return f"at most {MAX_YEARS_MONTH} years per request at resolution=month"
        return None
    limit = MAX_DAYS[resolution]
    if (end - start).days > limit:
        return f"at most {limit} days per request at resolution={resolution}"
    return None


# --- boundaries ---------------------------------------------------------------------------------


def _local(instant: datetime, tz: ZoneInfo) -> datetime:
    """`instant` on the wall clock of `tz`, with a fixed-offset tzinfo.

    Python compares, subtracts and hashes two datetimes that share a tzinfo object on the wall clock,
    ignoring `fold`: in the repeated hour of a fall-back day 02:00+02:00 and 02:00+01:00 would be
    equal. With the offset fixed on each value they stay distinct instants, and `isoformat()` still
    shows the local offset."""
    wall = instant.astimezone(tz)
    offset = wall.utcoffset()
    return wall.replace(tzinfo=timezone(offset) if offset is not None else UTC, fold=0)


class MidnightTable:
    """Local midnights (as `_local` gives them) of whole years, per zone, within `limit` bytes.

    A year of monthly or daily rows needs the local midnight of each of its days, and computing one
    (`local_midnight`, then `_local`) costs a few microseconds: about 2 ms a year, per request. The
    table remembers whole years, least recently used first out, so what it holds is bounded in bytes
    however many zones and years clients ask for (zones are IANA names, years 1970-9998, but their
    product is not small). Years outside that range are computed, not remembered."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bytes = 0
        self._years: OrderedDict[tuple[ZoneInfo, int], list[datetime]] = OrderedDict()
        self._sizes: dict[tuple[ZoneInfo, int], int] = {}
        self._lock = threading.Lock()

    def year(self, year: int, tz: ZoneInfo) -> list[datetime] | None:
        """Local midnights of 1 January of `year` .. 1 January of the next, or None outside 1970-9998."""
        if not 1970 <= year <= 9998:
            return None
        key = (tz, year)
        with self._lock:
            found = self._years.get(key)
            if found is not None:
                self._years.move_to_end(key)
                return found
        first = date(year, 1, 1)
        offsets: dict[timedelta | None, timezone] = {}
        table = []
        for i in range((date(year + 1, 1, 1) - first).days + 1):
            wall = _local(local_midnight(first + timedelta(days=i), tz), tz)
            # one fixed-offset tzinfo per offset: equal values, a fraction of the bytes
            table.append(wall.replace(tzinfo=offsets.setdefault(wall.utcoffset(), wall.tzinfo)))  # type: ignore[arg-type]
        size = sys.getsizeof(table) + sum(map(sys.getsizeof, table)) + sum(map(sys.getsizeof, offsets.values()))
        with self._lock:
            if key not in self._years:
                self._years[key] = table
                self.bytes += size
                self._sizes[key] = size
            while self.bytes > self.limit and len(self._years) > 1:
                old, _ = self._years.popitem(last=False)
                self.bytes -= self._sizes.pop(old)
        return table

    def day(self, day: date, tz: ZoneInfo) -> datetime:
        """The local midnight starting `day` in `tz`, as `_local(local_midnight(day, tz), tz)`."""
        table = self.year(day.year, tz)
        if table is None:
            return _local(local_midnight(day, tz), tz)
        return table[day.timetuple().tm_yday - 1]

    def days(self, start: date, end: date, tz: ZoneInfo) -> list[datetime]:
        """Local midnights of every day in `[start, end]`."""
        out: list[datetime] = []
        day = start
        while day <= end:  # one pass per calendar year of the window
            table = self.year(day.year, tz)
            last = min(end, date(day.year, 12, 31))
            if table is None:
                out.extend(
                    _local(local_midnight(day + timedelta(days=i), tz), tz) for i in range((last - day).days + 1)
                )
            else:
                first = day.timetuple().tm_yday - 1
                out.extend(table[first : first + (last - day).days + 1])
            if last == date.max:
                break
            day = last + timedelta(days=1)
        return out


MIDNIGHTS = MidnightTable(limit=4 * 1024 * 1024)
"""The process's local-midnight table: 4 MiB is about a hundred zone-years."""


def day_seconds(start: date, end: date, tz: ZoneInfo) -> dict[date, float]:
    """How long each local day of `[start, end)` lasts in `tz`, in seconds (82,800 on a spring-forward
    day in Europe/Berlin)."""
    return {
        start + timedelta(days=i): (b - a).total_seconds()
        for i, (a, b) in enumerate(pairwise(MIDNIGHTS.days(start, end, tz)))
    }


def day_boundaries(start: date, end: date, tz: ZoneInfo) -> list[datetime]:
    """Local midnights of every day in `[start, end]`, aware in `tz` (so 23 h and 25 h days are real)."""
    return MIDNIGHTS.days(start, end, tz)


def _within_day(day_start: datetime, day_end: datetime, tz: ZoneInfo, resolution: str) -> list[datetime]:
    """Starts of the local quarter-hours or hours of one local day, the day start first.

    Steps through the day in absolute 15-minute steps from its first instant and keeps the instants
    whose local wall clock is on a quarter-hour (or full hour). That is right across any DST change,
    whatever the size of the step (1 h in Europe, 30 min on Lord Howe Island)."""
    out = [day_start]
    t, stop = day_start.astimezone(UTC) + _QUARTER, day_end.astimezone(UTC)  # arithmetic in UTC: real time
    while t < stop:
        wall = _local(t, tz)
        if (
            wall.second == 0
            and wall.microsecond == 0
            and (wall.minute % 15 == 0 if resolution == "15min" else wall.minute == 0)
        ):
            out.append(wall)
        t += _QUARTER
    return out


def boundaries(start: date, end: date, tz: ZoneInfo, resolution: str) -> list[datetime]:
    """Ascending interval boundaries covering local days `[start, end)` in `tz` at `resolution`.

    The first is local midnight of `start`, the last local midnight of `end`; interval `k` is
    `[b[k], b[k+1])`. Months are calendar months, the first and last cut at `start` and `end` when
    those are not the first of a month. Every boundary is an aware datetime in `tz`. Empty when
    `end <= start`."""
    if end <= start:
        return []
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}")
    if resolution == "month":
        firsts = [start]
        cursor = date(start.year, start.month, 1)
        while True:
            cursor = date(cursor.year + (cursor.month == 12), cursor.month % 12 + 1, 1)
            if cursor >= end:
                break
            firsts.append(cursor)
        firsts.append(end)
        return [MIDNIGHTS.day(d, tz) for d in firsts]
    days = day_boundaries(start, end, tz)
    if resolution == "day":
        return days
    out: list[datetime] = []
    for d0, d1 in pairwise(days):
        out.extend(_within_day(d0, d1, tz, resolution))
    out.append(days[-1])
    return out


# --- register arithmetic: glitches and resets -----------------------------------------------------

GLITCH_READINGS = 3
"""At most this many consecutive readings off the register's track are a glitch (ignored); a drop that
lasts longer, or lands below the track it left, is a reset (counted from the new base)."""

_IGNORED, _RESET = 1, 2
"""Flags of a step between two kept readings: readings inside it were ignored; it is a reset."""


@dataclass(frozen=True, slots=True)
class Register:
    """A cumulative register with its glitches taken out (see `clean`).

    `times`/`values` are the readings kept; `flags[k]` says what happened between kept readings `k` and
    `k + 1` (`_IGNORED`, `_RESET`); `ignored` are the times of every reading left out."""

    times: list[float]
    values: list[float]
    flags: list[int]
    ignored: list[float]


def ordered(points: Iterable[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """(time, value) points in any order, duplicates included, as strictly ascending times and their
    values (a repeated time keeps the value seen last: the same reading sent again, or its correction)."""
    latest = dict(points)
    times = sorted(latest)
    return times, [latest[t] for t in times]


def clean(times: Sequence[float], values: Sequence[float]) -> Register:
    """Tell a misread from a reset in a cumulative register that should only rise.

    Walking the readings in time order, a reading below the last kept one is a *drop*:
    - a **low glitch** when one of the next `GLITCH_READINGS` readings is back at or above the last
      kept value: the readings in between are ignored (`[5, 5.25, 0, 5.75, 6]` keeps 5, 5.25, 5.75, 6);
    - a **high glitch** when the drop lands back on the track below the last few kept readings (at most
      `GLITCH_READINGS`): those were too high and are ignored (`[5, 5.25, 9999, 5.75]` drops 9999);
      when both readings fit, the one that ignores fewer readings wins (a tie: the low glitch);
    - else a **reset** (a register reset or a meter swap) when the register goes on from the new level:
      the step into the drop counts zero and counting goes on from the new base;
    - the newest reading, when it is a drop, cannot be told yet: it is ignored until later readings
      decide.
    `times` strictly ascending (use `ordered` first)."""
    if len(times) != len(values):
        raise ValueError("times and values must have the same length")
    if all(map(le, values, islice(values, 1, None))):  # the usual register, only rising: every reading kept
        return Register(list(times), list(values), [0] * max(0, len(values) - 1), [])
    n = len(values)
    kept: list[int] = []
    flags: list[int] = []  # flags[k - 1] belongs to the step into kept[k]
    ignored: list[int] = []
    pending = 0  # flags for the step into the next kept reading
    i = 0
    while i < n:
        v = values[i]
        if not kept or v >= values[kept[-1]]:
            if kept:
                flags.append(pending)
            kept.append(i)
            pending = 0
            i += 1
            continue
        last = values[kept[-1]]
        back = next((j for j in range(i + 1, min(n, i + 1 + GLITCH_READINGS)) if values[j] >= last), None)
        high = next((m for m in range(1, min(GLITCH_READINGS, len(kept) - 1) + 1) if values[kept[-1 - m]] <= v), None)
        if back is not None and (high is None or back - i <= high):  # a low glitch: i .. back-1 are off the track
            ignored.extend(range(i, back))
            pending |= _IGNORED
            i = back
            continue
        if high is not None:  # a high glitch: the last `high` kept readings were above the track
            for _ in range(high):
                ignored.append(kept.pop())
                pending |= flags.pop()
            flags.append(pending | _IGNORED)
            kept.append(i)
            pending = 0
        elif i == n - 1:  # the newest reading: glitch or reset is not known yet
            ignored.append(i)
            pending |= _IGNORED
        else:  # a reset: count on from the new base
            flags.append(pending | _RESET)
            kept.append(i)
            pending = 0
        i += 1
    return Register([times[k] for k in kept], [values[k] for k in kept], flags, sorted(times[k] for k in ignored))


# --- derivation ---------------------------------------------------------------------------------


def derive(
    times: Sequence[float], values: Sequence[float], bounds: Sequence[float], max_gap: float
) -> list[DerivedConsumption]:
    """Consumption for each interval `[bounds[k], bounds[k+1])` from a cumulative register.

    `times` must be strictly ascending (epoch seconds) with `values` the register at those times;
    `bounds` ascending epoch seconds (see `boundaries`, `epoch`). `max_gap` is in seconds. The register
    is `clean`ed first. Returns `len(bounds) - 1` results in order."""
    register = clean(times, values)
    times, values = register.times, register.values
    n = len(times)
    steps = [d if d > 0 else 0.0 for d in map(sub, values[1:], values[:-1])]
    prefix = list(accumulate(steps, initial=0.0))  # prefix[i] = sum of steps[:i]
    ignored_steps = list(accumulate((f & _IGNORED for f in register.flags), initial=0))
    reset_steps = list(accumulate((f & _RESET for f in register.flags), initial=0))
    ignored_times = register.ignored

    results: list[DerivedConsumption] = []
    for k in range(len(bounds) - 1):
        t0 = bounds[k]
        t1 = bounds[k + 1]
        lo = bisect_left(times, t0)  # first reading at or after t0
        hi = bisect_right(times, t1) - 1  # last reading at or before t1

        total = 0.0
        contributing = False
        first_step, last_step = lo, hi  # steps [first_step, last_step) contribute
        if hi > lo:  # pairs lo..hi-1 lie wholly inside the interval
            total = prefix[hi] - prefix[lo]
            contributing = True

        interpolated = False
        start_bracketed = lo < n and times[lo] == t0
        if not start_bracketed and 0 < lo < n:
            a_t, b_t = times[lo - 1], times[lo]
            span = b_t - a_t
            if span <= max_gap:
                total += steps[lo - 1] * (min(b_t, t1) - t0) / span
                contributing = True
                start_bracketed = interpolated = True
                first_step = lo - 1

        end_bracketed = hi >= 0 and times[hi] == t1
        if not end_bracketed and 0 <= hi < n - 1:
            a_t, b_t = times[hi], times[hi + 1]
            span = b_t - a_t
            if span <= max_gap:
                if hi != lo - 1:  # else the same pair straddles t0 too and was counted above
                    total += steps[hi] * (t1 - a_t) / span
                contributing = True
                end_bracketed = interpolated = True
                last_step = hi + 1

        if not contributing:
            results.append(DerivedConsumption(None, False))
            continue
        first_step = min(first_step, last_step)
        # a reading ignored on a boundary would have bracketed it: the rows on both sides are suspect
        glitch = ignored_steps[last_step] > ignored_steps[first_step] or bisect_left(ignored_times, t0) < bisect_right(
            ignored_times, t1
        )
        reset = reset_steps[last_step] > reset_steps[first_step]
        quality: Quality = "suspect" if glitch else "reset" if reset else "estimated" if interpolated else "measured"
        complete = start_bracketed and end_bracketed and not glitch and not reset
        results.append(DerivedConsumption(total, complete, quality))
    return results


def epoch(bounds: Sequence[datetime]) -> list[float]:
    return [b.timestamp() for b in bounds]


def group_sums(
    parts: Sequence[DerivedConsumption], part_bounds: Sequence[datetime], group_bounds: Sequence[datetime]
) -> list[DerivedConsumption]:
    """Null-aware sums of consecutive parts (e.g. local days) into groups (e.g. months).

    Every group boundary must also be a part boundary. A group is complete only when every part is;
    its consumption is None only when every part is None (else the sum of the known parts); its quality
    is the worst of its known parts."""
    if len(parts) != len(part_bounds) - 1:
        raise ValueError("one part per pair of part boundaries")
    index = {b: i for i, b in enumerate(part_bounds)}
    out: list[DerivedConsumption] = []
    for g0, g1 in pairwise(group_bounds):
        try:
            i0, i1 = index[g0], index[g1]
        except KeyError:
            raise ValueError("group boundaries must be part boundaries") from None
        chunk = parts[i0:i1]
        known = [p.consumption for p in chunk if p.consumption is not None]
        out.append(
            DerivedConsumption(
                sum(known) if known else None,
                bool(chunk) and all(p.complete for p in chunk),
                worst(p.quality for p in chunk if p.consumption is not None),
            )
        )
    return out


# --- plausibility -------------------------------------------------------------------------------

PER_HOUR_UNIT: dict[str, str] = {"electricity": "kW", "heat": "kW", "gas": "m3/h", "water": "m3/h"}
"""What a bound of `Plausibility.per_hour` is in, per medium (figures are kWh or m3)."""
MEDIA_OF_UNIT: dict[str, tuple[str, ...]] = {"kWh": ("electricity", "heat"), "m3": ("water", "gas")}


@dataclass(frozen=True, slots=True)
class Plausibility:
    """The most a meter of each medium can use per hour (kW for electricity and heat, m3/h for water and
    gas). A figure above `per_hour x hours of the interval` cannot be physical: it is a misread the
    glitch rule could not see (a first or newest reading off the track, or a vendor's own figure)."""

    per_hour: dict[str, float]

    def bound(self, medium: str | None, unit: str | None, seconds: float) -> float | None:
        """The largest plausible figure over `seconds` for `medium` (kWh or m3); without a known medium,
        the loosest bound of the media measured in `unit`; None when nothing bounds it (a unit that is
        neither kWh nor m3, passed through as the vendor sent it, is never bounded)."""
        media = MEDIA_OF_UNIT.get(unit or "", ())
        if medium in media and medium in self.per_hour:
            return self.per_hour[medium] * seconds / 3600
        rates = [self.per_hour[m] for m in media if m in self.per_hour]
        return max(rates) * seconds / 3600 if rates else None

    def surely_plausible(self, consumption: float, unit: str | None, seconds: float) -> bool:
        """True when `consumption` is within the bound of every medium measured in `unit` (so the meter's
        medium need not be looked up)."""
        limit = self.sure_limit(unit, seconds)
        return limit is None or consumption <= limit

    def sure_limit(self, unit: str | None, seconds: float) -> float | None:
        """The largest figure within the bound of every medium measured in `unit` over `seconds` (the
        tightest bound: `rate * seconds / 3600` rises with the rate), None when nothing bounds it."""
        rates = [r for m in MEDIA_OF_UNIT.get(unit or "", ()) if (r := self.per_hour.get(m)) is not None]
        return min(rates) * seconds / 3600 if rates else None


def plausible(
    consumption: float | None,
    complete: bool,
    quality: Quality | None,
    bound: float | None,
) -> tuple[bool, Quality | None]:
    """`(complete, quality)` of a figure after the plausibility bound: above it, `suspect` and never
    complete. A figure without a quality yet is `measured`."""
    if consumption is None:
        return complete, quality
    if bound is not None and consumption > bound:
        return False, "suspect"
    return complete, quality or "measured"
