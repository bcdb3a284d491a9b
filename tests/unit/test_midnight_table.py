"""The local-midnight table (`app.domain.intervals.MidnightTable`) gives exactly what computing each
midnight gives (`_local(local_midnight(day, tz), tz)`), across DST changes, skipped days and year ends."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.domain.intervals import _local, boundaries, day_boundaries, day_seconds
from app.infra.timeutil import local_midnight

ZONES = ["Europe/Berlin", "Australia/Lord_Howe", "Pacific/Apia", "America/Sao_Paulo", "UTC", "Asia/Kathmandu"]


def computed(start: date, end: date, tz: ZoneInfo) -> list[str]:
    return [
        _local(local_midnight(start + timedelta(days=i), tz), tz).isoformat() for i in range((end - start).days + 1)
    ]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2011, 12, 25), date(2012, 1, 5)),  # Apia skipped 30 December 2011
        (date(2025, 3, 1), date(2026, 11, 3)),
        (date(1970, 1, 1), date(1970, 1, 3)),
        (date(1969, 12, 30), date(1970, 1, 2)),  # before the table's years: computed
        (date(9998, 12, 30), date(9998, 12, 31)),
    ],
)
def test_the_table_equals_the_computed_midnights(zone: str, start: date, end: date) -> None:
    tz = ZoneInfo(zone)
    found = day_boundaries(start, end, tz)
    assert [b.isoformat() for b in found] == computed(start, end, tz)
    assert [b.timestamp() for b in found] == [
        local_midnight(start + timedelta(days=i), tz).timestamp() for i in range(len(found))
    ]
    month = boundaries(start, end, tz, "month")
    firsts = [start, *(d for d in (start + timedelta(days=i) for i in range(1, (end - start).days)) if d.day == 1), end]
    assert [b.isoformat() for b in month] == [_local(local_midnight(d, tz), tz).isoformat() for d in firsts]


def test_day_seconds_are_real_day_lengths() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    lengths = day_seconds(date(2026, 3, 29), date(2027, 1, 1), berlin)
    assert lengths[date(2026, 3, 29)] == 23 * 3600
    assert lengths[date(2026, 10, 25)] == 25 * 3600
    assert lengths[date(2026, 12, 31)] == 24 * 3600
    assert min(lengths) == date(2026, 3, 29) and max(lengths) == date(2026, 12, 31)
    for zone in ZONES:
        tz = ZoneInfo(zone)
        lengths = day_seconds(date(2011, 12, 20), date(2027, 1, 1), tz)
        for day in (date(2011, 12, 29), date(2011, 12, 30), date(2026, 3, 29), date(2026, 12, 31)):
            expected = (local_midnight(day + timedelta(days=1), tz) - local_midnight(day, tz)).total_seconds()
            assert lengths[day] == expected
