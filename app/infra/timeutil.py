"""Time parsing and formatting shared by every layer.

The facade speaks UTC RFC 3339 with `Z`. Parsing accepts any RFC 3339 offset and converts to UTC;
a timestamp without an offset is rejected rather than guessed.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Clock = Callable[[], float]
"""Seconds since the epoch, like `time.time`; injected wherever time matters."""

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime; raises `ValueError`."""
    if not _RFC3339.match(text):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-05-19T06:15:00Z")
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:  # Python keeps microseconds; drop the rest
        text = text.replace(frac.group(0), "." + frac.group(1)[:6])
    try:
        return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T")).astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("timestamp is out of range") from None


def _utc_seconds(value: datetime) -> str:
    # Not strftime: glibc's %Y does not pad years below 1000 to four digits.
    v = value.astimezone(UTC)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"


def format_rfc3339(value: datetime) -> str:
    """UTC, seconds or microseconds, `Z` suffix."""
    micro = value.microsecond
    return _utc_seconds(value) + (f".{micro:06d}Z" if micro else "Z")


def format_rfc3339_seconds(value: datetime) -> str:
    """UTC to the second (fraction dropped), `Z` suffix."""
    return _utc_seconds(value) + "Z"


def format_millis(value: datetime) -> str:
    """UTC ISO-8601 with milliseconds, as Waltero wants: `2026-05-18T22:00:00.000Z`."""
    return _utc_seconds(value) + f".{value.microsecond // 1000:03d}Z"


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


SUPPORTED_FROM = datetime(1970, 1, 1, tzinfo=UTC)
SUPPORTED_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
"""Instants the service serves: years 1970 to 9998. Outside, windows and day bounds could not be
computed (year 1 minus a day, year 9999 plus a chunk) and no meter has data anyway."""


def check_supported(value: datetime) -> datetime:
    """`value` if it lies in the supported range; raises `ValueError` saying the range."""
    if not SUPPORTED_FROM <= value < SUPPORTED_UNTIL:
        raise ValueError("is outside the supported range: years 1970 to 9998")
    return value


_NOT_ZONES = frozenset({"localtime", "posixrules"})
"""Files some systems keep beside the zones (the host's own zone, a POSIX rule template): a client asking
for them would get whatever the server's machine is set to."""


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES


def zone(name: str) -> ZoneInfo:
    """An IANA zone by name, one of `zoneinfo.available_timezones()` (so not `localtime` or
    `posixrules`, which name files, not zones); raises `ValueError` otherwise."""
    if name not in _zone_names():
        raise ValueError(f"unknown IANA time zone {name[:64]!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which `day` starts in `tz` (DST-aware: days last 23, 24 or 25 h)."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def days(start: date, end: date) -> list[date]:
    """Every date in `[start, end)`."""
    return [start + timedelta(days=i) for i in range((end - start).days)]
