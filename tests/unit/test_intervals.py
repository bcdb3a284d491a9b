"""Interval consumption at 15min / hour / day / month resolution (app.domain.intervals), DST included."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.domain.intervals import (
    IntervalConsumption,
    boundaries,
    day_boundaries,
    derive,
    epoch,
    group_sums,
    window_error,
)

BERLIN = ZoneInfo("Europe/Berlin")
MAX_GAP = 21600.0
SPRING = date(2026, 3, 29)  # Europe/Berlin 02:00 CET -> 03:00 CEST
FALL = date(2026, 10, 25)  # Europe/Berlin 03:00 CEST -> 02:00 CET
ORDINARY = date(2026, 5, 4)
NEXT = timedelta(days=1)


def real(b0: datetime, b1: datetime) -> timedelta:
    """Elapsed time (Python subtracts datetimes of one zone on the wall clock)."""
    return b1.astimezone(UTC) - b0.astimezone(UTC)


def rows(start: date, end: date, tz: ZoneInfo, resolution: str) -> list[tuple[str, str]]:
    b = boundaries(start, end, tz, resolution)
    return [(s.isoformat(), e.isoformat()) for s, e in itertools.pairwise(b)]


# --- boundaries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("day", "hours", "quarters"), [(SPRING, 23, 92), (FALL, 25, 100), (ORDINARY, 24, 96)], ids=str)
def test_dst_days_have_real_numbers_of_hours_and_quarter_hours(day: date, hours: int, quarters: int) -> None:
    hourly = boundaries(day, day + NEXT, BERLIN, "hour")
    quarterly = boundaries(day, day + NEXT, BERLIN, "15min")
    assert len(hourly) - 1 == hours
    assert len(quarterly) - 1 == quarters
    for b in (hourly, quarterly):
        assert b[0] == datetime(day.year, day.month, day.day, tzinfo=BERLIN)
        assert real(b[0], b[-1]) == timedelta(hours=hours)
        assert all(b0 < b1 for b0, b1 in itertools.pairwise(b))
    assert all(real(b0, b1) == timedelta(hours=1) for b0, b1 in itertools.pairwise(hourly))
    assert all(real(b0, b1) == timedelta(minutes=15) for b0, b1 in itertools.pairwise(quarterly))


def test_spring_forward_rows_skip_the_missing_hour_with_the_local_offset() -> None:
    r = rows(SPRING, SPRING + NEXT, BERLIN, "hour")
    assert r[0] == ("2026-03-29T00:00:00+01:00", "2026-03-29T01:00:00+01:00")
    assert r[1] == ("2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00")  # one real hour
    assert r[2] == ("2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00")
    assert r[-1] == ("2026-03-29T23:00:00+02:00", "2026-03-30T00:00:00+02:00")


def test_fall_back_rows_show_the_repeated_hour_twice_with_different_offsets() -> None:
    r = rows(FALL, FALL + NEXT, BERLIN, "hour")
    starts = [s for s, _ in r]
    assert starts[2:5] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]
    q = rows(FALL, FALL + NEXT, BERLIN, "15min")
    assert [s for s, _ in q].count("2026-10-25T02:45:00+02:00") == 1
    assert [s for s, _ in q].count("2026-10-25T02:45:00+01:00") == 1
    assert q[-1] == ("2026-10-25T23:45:00+01:00", "2026-10-26T00:00:00+01:00")


def test_day_boundaries_are_local_midnights() -> None:
    b = day_boundaries(date(2026, 3, 28), date(2026, 3, 31), BERLIN)
    assert [x.isoformat() for x in b] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
        "2026-03-31T00:00:00+02:00",
    ]
    assert boundaries(date(2026, 3, 28), date(2026, 3, 31), BERLIN, "day") == b


def test_months_are_calendar_months_cut_at_the_window() -> None:
    b = boundaries(date(2025, 11, 15), date(2026, 3, 10), BERLIN, "month")
    assert [x.isoformat() for x in b] == [
        "2025-11-15T00:00:00+01:00",
        "2025-12-01T00:00:00+01:00",
        "2026-01-01T00:00:00+01:00",
        "2026-02-01T00:00:00+01:00",
        "2026-03-01T00:00:00+01:00",
        "2026-03-10T00:00:00+01:00",
    ]
    aligned = boundaries(date(2026, 1, 1), date(2026, 3, 1), UTC_ZONE, "month")
    assert [x.isoformat() for x in aligned] == [
        "2026-01-01T00:00:00+00:00",
        "2026-02-01T00:00:00+00:00",
        "2026-03-01T00:00:00+00:00",
    ]


UTC_ZONE = ZoneInfo("UTC")


def test_half_hour_offsets_and_half_hour_dst_steps() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # +05:30: local hours start at :30 UTC
    hours = boundaries(ORDINARY, ORDINARY + NEXT, kolkata, "hour")
    assert len(hours) == 25
    assert all(h.astimezone(UTC).minute == 30 for h in hours)
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # DST moves the clock by 30 minutes
    day = date(2026, 4, 5)  # 02:00 +11:00 -> 01:30 +10:30: a 24.5 h day
    hours = boundaries(day, day + NEXT, lord_howe, "hour")
    quarters = boundaries(day, day + NEXT, lord_howe, "15min")
    assert real(hours[0], hours[-1]) == timedelta(hours=24, minutes=30)
    assert len(quarters) - 1 == 98
    assert all(h.minute == 0 for h in hours)
    assert all(b0 < b1 for b0, b1 in itertools.pairwise(hours))


def test_empty_window_and_unknown_resolution() -> None:
    assert boundaries(ORDINARY, ORDINARY, BERLIN, "hour") == []
    with pytest.raises(ValueError, match="resolution"):
        boundaries(ORDINARY, ORDINARY + NEXT, BERLIN, "minute")


# --- window limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolution", "days_ok", "limit_text"),
    [("15min", 31, "31 days"), ("hour", 31, "31 days"), ("day", 366, "366 days")],
)
def test_window_limits_in_days(resolution: str, days_ok: int, limit_text: str) -> None:
    start = date(2026, 1, 1)
    assert window_error(start, start + timedelta(days=days_ok), resolution) is None
    error = window_error(start, start + timedelta(days=days_ok + 1), resolution)
    assert error is not None
    assert limit_text in error
    assert resolution in error


def test_month_window_is_ten_years() -> None:
    assert window_error(date(2016, 1, 1), date(2026, 1, 1), "month") is None
    error = window_error(date(2016, 1, 1), date(2026, 1, 2), "month")
    assert error is not None
    assert "10 years" in error
    assert window_error(date(2016, 2, 29), date(2026, 2, 28), "month") is None
    assert window_error(date(2016, 2, 29), date(2026, 3, 1), "month") is not None


# --- derivation ------------------------------------------------------------------------------------


def noisy_register(start: float, end: float, seed: int) -> tuple[list[float], list[float]]:
    """Irregular readings of a rising register with gaps (some beyond MAX_GAP) and a meter swap."""
    rnd = random.Random(seed)
    times, values = [], []
    t, v = start, 1000.0
    while t < end:
        times.append(t)
        values.append(v)
        gap = rnd.choice([60.0, 300.0, 900.0, 900.0, 1800.0, 3600.0, 7200.0])
        if rnd.random() < 0.01:
            gap = MAX_GAP + rnd.uniform(1, 20000)  # a hole no boundary may be interpolated across
        t += gap
        v += rnd.uniform(0, 2.0) * gap / 3600
        if rnd.random() < 0.003:
            v = rnd.uniform(0, 5)  # meter swap: the register starts over
    return times, values


@pytest.mark.parametrize("resolution", ["hour", "15min"])
@pytest.mark.parametrize("day", [SPRING, FALL, ORDINARY], ids=str)
def test_finer_rows_sum_to_the_day_whenever_complete(resolution: str, day: date) -> None:
    checked = incomplete = 0
    for seed in range(40):
        start_day, end_day = day - timedelta(days=2), day + timedelta(days=3)
        days_b = boundaries(start_day, end_day, BERLIN, "day")
        times, values = noisy_register(days_b[0].timestamp() - 7200, days_b[-1].timestamp() + 7200, seed)
        daily = derive(times, values, epoch(days_b), MAX_GAP)
        for (d0, d1), whole in zip(itertools.pairwise(days_b), daily, strict=True):
            fine = derive(times, values, epoch(boundaries(d0.date(), d1.date(), BERLIN, resolution)), MAX_GAP)
            if all(f.complete for f in fine):
                assert whole.complete
                assert whole.consumption is not None
                assert sum(f.consumption or 0.0 for f in fine) == pytest.approx(whole.consumption, rel=1e-9, abs=1e-9)
                checked += 1
            else:
                incomplete += 1
    assert checked > 50  # the property was really exercised
    assert incomplete > 0  # and the data had holes that made some rows incomplete


def test_a_rising_register_gives_its_rate_per_hour_across_dst() -> None:
    for day, hours in ((SPRING, 23), (FALL, 25)):
        d0 = datetime(day.year, day.month, day.day, tzinfo=BERLIN).timestamp()
        times = [d0 - 3600 + 600 * i for i in range(6 * 30)]
        values = [t / 3600 * 2.0 for t in times]  # 2 kWh per real hour, read every 10 minutes
        result = derive(times, values, epoch(boundaries(day, day + NEXT, BERLIN, "hour")), MAX_GAP)
        assert len(result) == hours
        assert all(r.complete for r in result)
        assert [r.consumption for r in result] == pytest.approx([2.0] * hours)
        quarters = derive(times, values, epoch(boundaries(day, day + NEXT, BERLIN, "15min")), MAX_GAP)
        assert [r.consumption for r in quarters] == pytest.approx([0.5] * hours * 4)


def test_gap_beyond_max_gap_leaves_the_hours_it_crosses_null_and_incomplete() -> None:
    d0 = datetime(2026, 5, 4, tzinfo=BERLIN).timestamp()
    times = [d0 - 3600, d0, d0 + 3600, d0 + 3600 + MAX_GAP + 1, d0 + 86400 + 3600]
    values = [0.0, 1.0, 2.0, 9.0, 40.0]
    result = derive(times, values, epoch(boundaries(ORDINARY, ORDINARY + NEXT, BERLIN, "hour")), MAX_GAP)
    assert result[0] == IntervalConsumption(pytest.approx(1.0), True)
    assert result[1].consumption is None
    assert not result[1].complete
    assert all(r.consumption is None for r in result[2:7])
    assert not any(r.complete for r in result[2:7])
    # 07:00..: the pair from 07:00:01 to 01:00 next day spans 18 h > MAX_GAP, so not interpolated
    assert all(r.consumption is None for r in result[7:])


def test_a_meter_swap_inside_an_hour_counts_zero_never_negative() -> None:
    d0 = datetime(2026, 5, 4, tzinfo=BERLIN).timestamp()
    times = [d0 + 900 * i for i in range(9)]
    values = [10.0, 11.0, 12.0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    first, second = derive(times, values, [d0, d0 + 3600, d0 + 7200], MAX_GAP)
    assert first == IntervalConsumption(pytest.approx(3.0), True)  # 1 + 1 + 0 (swap) + 1
    assert second == IntervalConsumption(pytest.approx(4.0), True)


# --- months ----------------------------------------------------------------------------------------


def test_a_month_is_the_sum_of_its_days() -> None:
    start, end = date(2026, 2, 20), date(2026, 4, 3)
    days_b = boundaries(start, end, BERLIN, "day")
    months_b = boundaries(start, end, BERLIN, "month")
    times, values = noisy_register(days_b[0].timestamp() - 3600, days_b[-1].timestamp() + 3600, 7)
    days = derive(times, values, epoch(days_b), MAX_GAP)
    months = group_sums(days, days_b, months_b)
    assert len(months) == 3
    offset = 0
    for (m0, m1), month in zip(itertools.pairwise(months_b), months, strict=True):
        n = (m1.date() - m0.date()).days
        part = days[offset : offset + n]
        offset += n
        known = [d.consumption for d in part if d.consumption is not None]
        assert month.consumption == pytest.approx(sum(known))
        assert month.complete == all(d.complete for d in part)
    assert offset == len(days)


def test_month_sums_are_null_aware() -> None:
    days_b = boundaries(date(2026, 1, 30), date(2026, 2, 3), UTC_ZONE, "day")
    months_b = boundaries(date(2026, 1, 30), date(2026, 2, 3), UTC_ZONE, "month")
    parts = [
        IntervalConsumption(None, False),
        IntervalConsumption(None, False),
        IntervalConsumption(1.5, True),
        IntervalConsumption(None, False),
    ]
    january, february = group_sums(parts, days_b, months_b)
    assert january == IntervalConsumption(None, False)
    assert february == IntervalConsumption(1.5, False)
    all_complete = [IntervalConsumption(1.0, True)] * 4
    assert group_sums(all_complete, days_b, months_b) == [IntervalConsumption(2.0, True)] * 2
    with pytest.raises(ValueError, match="part boundaries"):
        group_sums(all_complete, days_b, [days_b[0], days_b[0] + timedelta(hours=1)])
