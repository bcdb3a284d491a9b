"""Local calendar days from Waltero's 24-hour buckets (pure functions; no I/O).

Waltero's metering v3 `device-daily-consumption` cuts `[startDate, endDate)` into consecutive **24 h**
windows starting at `startDate` (the last one cut at `endDate`) and labels each with the UTC day of its
start. The facade asks from local midnight of `start` to local midnight of `end` (in `tz`, converted
to UTC) and labels each bucket with the *local* date of its start.

DST: 24 h buckets line up with local days only while the zone's UTC offset stays put. So a range that
crosses a DST transition is split into offset-stable segments at the local midnights around each
transition, the transition day alone as its own segment (`offset_stable_segments`), with one call per
segment per organization:
- an ordinary segment: every bucket starts at a local midnight, one bucket per local day;
- a 23 h day (spring forward): one bucket, cut at the next local midnight;
- a 25 h day (fall back): a 24 h bucket and a 1 h bucket, both starting on that local date, which are
  summed null-aware (all null -> null and incomplete; some null -> the sum of the rest, incomplete).
Without a transition in range (always in UTC) it is exactly one call per organization.

Rows are placed by their `date` (the UTC day of a bucket start is unique among 24 h-spaced buckets),
not by their order; a no-data row (no `date`, `consumption: null`) fills nothing, and any bucket no
dated row claimed is a null bucket.

`WALTERO_DAILY_BUCKETS=utc-calendar` reads the page the other way: buckets are UTC calendar days cut
to `[startDate, endDate)` (the first from `startDate` to the next UTC midnight, the last from the last
UTC midnight to `endDate`), each labelled with its UTC date. Such buckets cannot be split at a local
midnight that is not a UTC midnight, so in a zone whose midnights are not UTC midnights every local
day is asked as its own call (`calendar_segments`), whose one or two buckets sum to exactly that
local day; in UTC (or a zone at offset 0 over the range) it is one call. `python -m app.doctor`
tells which reading the vendor follows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from app.backends.waltero.shapes import DailyConsumptionRow
from app.infra.timeutil import days, local_midnight

BUCKET = timedelta(hours=24)

BucketRule = Literal["rolling", "utc-calendar"]


@dataclass(frozen=True, slots=True)
class Segment:
    """Local days `[start, end)` whose local midnights are all 24 h apart (or one transition day)."""

    start: date
    end: date

    def utc_range(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The UTC instants to ask Waltero for: local midnight of `start` and of `end`."""
        return local_midnight(self.start, tz), local_midnight(self.end, tz)


def offset_stable_segments(start: date, end: date, tz: ZoneInfo) -> list[Segment]:
    """Split local days `[start, end)` so that no segment crosses a UTC offset change of `tz`.

    A day that is not 24 h long (the DST transition day) becomes a segment of its own; the days between
    transitions form one segment each. Empty when `end <= start`."""
    segments: list[Segment] = []
    open_from = start
    for day in days(start, end):
        following = day + timedelta(days=1)
        if local_midnight(following, tz) - local_midnight(day, tz) != BUCKET:
            if open_from < day:
                segments.append(Segment(open_from, day))
            segments.append(Segment(day, following))
            open_from = following
    if open_from < end:
        segments.append(Segment(open_from, end))
    return segments


def calendar_segments(start: date, end: date, tz: ZoneInfo) -> list[Segment]:
    """Segments for the utc-calendar rule: one when every local midnight of the range is a UTC
    midnight, else one per local day. Empty when `end <= start`."""
    if end <= start:
        return []
    midnights = [local_midnight(day, tz) for day in days(start, end + timedelta(days=1))]
    if all(m.astimezone(UTC).time() == time(0) for m in midnights):
        return [Segment(start, end)]
    return [Segment(day, day + timedelta(days=1)) for day in days(start, end)]


def segments_for(rule: BucketRule, start: date, end: date, tz: ZoneInfo) -> list[Segment]:
    return calendar_segments(start, end, tz) if rule == "utc-calendar" else offset_stable_segments(start, end, tz)


def bucket_starts(start: datetime, end: datetime, rule: BucketRule = "rolling") -> list[datetime]:
    """Start instants of Waltero's buckets over `[start, end)`: 24 h windows from `start` (rolling), or
    `start` and every UTC midnight after it before `end` (utc-calendar)."""
    if rule == "utc-calendar":
        starts = [start]
        midnight = datetime.combine(start.astimezone(UTC).date() + timedelta(days=1), time(0), UTC)
        while midnight < end:
            starts.append(midnight)
            midnight += timedelta(days=1)
        return starts if start < end else []
    count = max(0, math.ceil((end - start) / BUCKET))
    return [start + i * BUCKET for i in range(count)]


@dataclass(slots=True)
class LocalDay:
    """Bucket values that start on one local date; `consumption` and `complete` fold them null-aware."""

    values: list[float | None]

    @property
    def consumption(self) -> float | None:
        known = [v for v in self.values if v is not None]
        return sum(known) if known else None

    @property
    def complete(self) -> bool:
        return bool(self.values) and all(v is not None for v in self.values)


def local_days_of_call(
    rows: Iterable[DailyConsumptionRow], start: datetime, end: datetime, tz: ZoneInfo, rule: BucketRule = "rolling"
) -> dict[str, dict[date, LocalDay]]:
    """Fold one call's rows into `{device_id: {local date: LocalDay}}`.

    `start`/`end` are the UTC instants the call asked for. Every device that has any row gets every
    bucket (null where no dated row claimed it); dated rows outside the call's buckets are ignored."""
    starts = bucket_starts(start, end, rule)
    index_of_utc_day = {s.astimezone(UTC).date(): i for i, s in enumerate(starts)}
    local_date = [s.astimezone(tz).date() for s in starts]
    found: dict[str, dict[int, float | None]] = {}
    for row in rows:
        claimed = found.setdefault(row.device_id, {})
        if row.date is None:
            continue
        i = index_of_utc_day.get(row.date)
        if i is not None and i not in claimed:
            claimed[i] = row.consumption
    result: dict[str, dict[date, LocalDay]] = {}
    for device_id, claimed in found.items():
        per_day: dict[date, LocalDay] = {}
        for i in range(len(starts)):
            per_day.setdefault(local_date[i], LocalDay([])).values.append(claimed.get(i))
        result[device_id] = per_day
    return result
