"""Daily consumption from a cumulative register, per the API guide's (docs/api-guide.md) formula."""

from __future__ import annotations

import itertools
import random
import sys
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.domain.intervals import DerivedConsumption, derive
from app.infra.timeutil import days, local_midnight

BERLIN = ZoneInfo("Europe/Berlin")
MAX_GAP = 21600.0


def boundaries(start: date, end: date) -> list[float]:
    return [local_midnight(d, BERLIN).timestamp() for d in [*days(start, end), end]]


def local(day: date, hour: int, minute: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN).timestamp()


ORIGIN = local(date(2025, 1, 1), 0)


def hourly_register(start: float, end: float, step: float = 900.0) -> tuple[list[float], list[float]]:
    """A register rising 1 kWh per real hour, read every `step` seconds in [start, end]."""
    times = [start + i * step for i in range(int((end - start) // step) + 1)]
    return times, [100.0 + (t - ORIGIN) / 3600 for t in times]


def naive(
    times: list[float], values: list[float], bounds: list[float], max_gap: float
) -> list[tuple[DerivedConsumption, bool]]:
    """The formula written out pair by pair (an independent reference), with whether a pair it used
    drops (a reset or a glitch: such a day is never complete, and its figure is the cleaned one)."""
    out = []
    for t0, t1 in itertools.pairwise(bounds):
        total, contributing, drops = 0.0, False, False
        start_ok = any(t == t0 for t in times)
        end_ok = any(t == t1 for t in times)
        for (a_t, a_v), (b_t, b_v) in zip(
            zip(times, values, strict=True), zip(times[1:], values[1:], strict=True), strict=False
        ):
            step = max(0.0, b_v - a_v)
            if a_t >= t0 and b_t <= t1:
                total += step
                contributing = True
                drops = drops or b_v < a_v
                continue
            straddles_start, straddles_end = a_t < t0 < b_t, a_t < t1 < b_t
            if (straddles_start or straddles_end) and b_t - a_t <= max_gap:
                total += step * (min(b_t, t1) - max(a_t, t0)) / (b_t - a_t)
                contributing = True
                start_ok = start_ok or straddles_start
                end_ok = end_ok or straddles_end
                drops = drops or b_v < a_v
        out.append((DerivedConsumption(total if contributing else None, start_ok and end_ok), drops))
    return out


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 29), 23), (date(2025, 10, 26), 25), (date(2026, 5, 4), 24)])
def test_days_are_real_local_days(day: date, hours: int) -> None:
    times, values = hourly_register(local(day, 0) - 86400, local(day, 0) + 2 * 86400)
    [result] = derive(times, values, boundaries(day, day + timedelta(days=1)), MAX_GAP)
    assert result.complete
    assert result.consumption == pytest.approx(hours)


def test_a_gap_longer_than_max_gap_across_midnight_leaves_both_days_incomplete() -> None:
    d = date(2026, 5, 4)
    before = hourly_register(local(d, 0) - 3600, local(d, 20))
    after = hourly_register(local(d, 20) + 8 * 3600, local(d, 0) + 3 * 86400)
    times, values = before[0] + after[0], before[1] + after[1]
    first, second = derive(times, values, boundaries(d, d + timedelta(days=2)), MAX_GAP)
    assert first == DerivedConsumption(pytest.approx(20.0), False, "measured")  # 00:00..20:00; no gap pair
    assert second == DerivedConsumption(pytest.approx(20.0), False, "measured")  # 04:00..24:00


def test_a_gap_shorter_than_max_gap_is_interpolated_across_midnight() -> None:
    d = date(2026, 5, 4)
    before = hourly_register(local(d, 0) - 3600, local(d, 23))
    after = hourly_register(local(d, 23) + 2 * 3600, local(d, 0) + 3 * 86400)
    times, values = before[0] + after[0], before[1] + after[1]
    first, second = derive(times, values, boundaries(d, d + timedelta(days=2)), MAX_GAP)
    assert first == DerivedConsumption(pytest.approx(24.0), True, "estimated")  # 23 inside + half of the 2 h pair
    assert second == DerivedConsumption(pytest.approx(24.0), True, "estimated")


def test_a_meter_swap_counts_zero_for_the_drop() -> None:
    d = date(2026, 5, 4)
    times, values = hourly_register(local(d, 0) - 3600, local(d, 0) + 86400 + 3600)
    swap = times.index(local(d, 12))
    values = values[:swap] + [0.01 + v - values[swap] for v in values[swap:]]  # new meter counts from ~0
    [result] = derive(times, values, boundaries(d, d + timedelta(days=1)), MAX_GAP)
    assert result.consumption == pytest.approx(24.0 - 0.25)  # only the quarter hour into the swap is lost
    assert result.quality == "reset"
    assert not result.complete  # a reset was inferred inside the day


def test_readings_exactly_on_midnight_bracket_the_day() -> None:
    d = date(2026, 5, 4)
    t0, t1 = local(d, 0), local(d, 0) + 86400
    times, values = [t0 - 86400, t0, t1, t1 + 86400], [1.0, 5.0, 17.0, 20.0]  # neighbours far beyond max_gap
    [result] = derive(times, values, [t0, t1], MAX_GAP)
    assert result == DerivedConsumption(12.0, True, "measured")


def test_a_reading_on_midnight_brackets_only_that_boundary() -> None:
    d = date(2026, 5, 4)
    t0, t1 = local(d, 0), local(d, 0) + 86400
    times, values = [t0, t0 + 3600, t1 + 12 * 3600], [1.0, 2.0, 30.0]
    [result] = derive(times, values, [t0, t1], MAX_GAP)
    assert result == DerivedConsumption(1.0, False, "measured")


def test_a_day_with_one_reading() -> None:
    d = date(2026, 5, 4)
    t0, t1 = local(d, 0), local(d, 0) + 86400
    times, values = [t0 - 86400, local(d, 12), t1 + 86400], [0.0, 10.0, 20.0]
    assert derive(times, values, [t0, t1], MAX_GAP) == [DerivedConsumption(None, False)]
    # With neighbours inside max_gap, both pairs straddle a boundary and are interpolated.
    times = [local(d, 12) - 13 * 3600, local(d, 12), local(d, 12) + 14 * 3600]
    [result] = derive(times, values, [t0, t1], 14 * 3600)
    assert result.complete
    assert result.consumption == pytest.approx(10.0 * 12 / 13 + 10.0 * 12 / 14)


def test_a_day_without_readings_is_null_and_incomplete() -> None:
    d = date(2026, 5, 4)
    times, values = [local(d, 0) - 86400, local(d, 0) + 2 * 86400], [1.0, 2.0]
    assert derive(times, values, boundaries(d, d + timedelta(days=1)), MAX_GAP) == [DerivedConsumption(None, False)]
    assert derive([], [], boundaries(d, d + timedelta(days=3)), MAX_GAP) == [DerivedConsumption(None, False)] * 3


def test_one_pair_spanning_the_whole_day_is_counted_once() -> None:
    d = date(2026, 5, 4)
    t0, t1 = local(d, 0), local(d, 0) + 86400
    [result] = derive([t0 - 43200, t1 + 43200], [0.0, 48.0], [t0, t1], 2 * 86400)
    assert result == DerivedConsumption(pytest.approx(24.0), True, "estimated")


def test_consumption_is_the_register_difference_for_a_rising_register() -> None:
    """Bracketed on both sides and only rising: exactly R(t1) - R(t0) (R interpolated linearly)."""
    rng = random.Random(3)
    start = local(date(2026, 3, 20), 0)
    times, values, t, v = [], [], start, 1000.0
    while t < start + 20 * 86400:
        times.append(t)
        values.append(v)
        t += rng.choice([300, 900, 900, 1800, 3600, 5 * 3600])
        v += rng.random() * 2
    bounds = boundaries(date(2026, 3, 21), date(2026, 4, 8))  # includes the 23 h day

    def register(at: float) -> float:
        for (a_t, a_v), (b_t, b_v) in zip(
            zip(times, values, strict=True), zip(times[1:], values[1:], strict=True), strict=False
        ):
            if a_t <= at <= b_t:
                return a_v + (b_v - a_v) * (at - a_t) / (b_t - a_t)
        raise AssertionError("not bracketed")

    results = derive(times, values, bounds, MAX_GAP)
    for (t0, t1), result in zip(itertools.pairwise(bounds), results, strict=True):
        assert result.complete
        assert result.consumption == pytest.approx(register(t1) - register(t0), abs=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_the_formula_written_pair_by_pair(seed: int) -> None:
    rng = random.Random(seed)
    start = local(date(2025, 10, 20), 0)
    times, values, t, v = [], [], start + rng.choice([0, 450, 900]), 50.0
    while t < start + 12 * 86400:
        times.append(t)
        values.append(v)
        t += rng.choice([900] * 20 + [3 * 3600, 8 * 3600, 86400, 1800])
        v = rng.uniform(0, 1) if rng.random() < 0.03 else v + rng.random()  # occasional swap
    bounds = boundaries(date(2025, 10, 21), date(2025, 10, 31))
    got = derive(times, values, bounds, MAX_GAP)
    want = naive(times, values, bounds, MAX_GAP)
    compared = flagged = 0
    for g, (w, drops) in zip(got, want, strict=True):
        assert (g.consumption is None) == (w.consumption is None)
        if drops:  # a swap inside the day: never complete
            assert not g.complete
            assert g.quality in ("reset", "suspect")
            flagged += 1
            continue
        assert g.complete == w.complete
        if g.consumption is not None:
            assert g.consumption == pytest.approx(w.consumption, abs=1e-9)
            compared += 1
    assert compared > 0


def test_a_year_of_days_reads_the_readings_a_bounded_number_of_times() -> None:
    """A year of days from 35,040 readings costs work in proportion to readings + days, never to
    readings x days (no per-day rescan). Counted, not timed (the speed itself is `make bench`'s): every
    line of Python run inside `derive` and what it calls, under a trace. One pass over the readings is a
    few lines each; a rescan per day would be 365 times as many."""
    bounds = boundaries(date(2025, 1, 1), date(2026, 1, 1))
    start = bounds[0]
    rng = random.Random(1)
    times = [start + 900 * i for i in range(35_040)]
    values, v = [], 0.0
    for _ in times:
        v += rng.random() * 0.2
        values.append(v)
    lines = 0

    def count(frame: Any, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return count

    sys.settrace(count)
    try:
        results = derive(times, values, bounds, MAX_GAP)
    finally:
        sys.settrace(None)
    assert len(results) == 365
    assert all(r.complete for r in results[:-1])  # the last day ends after the last reading
    assert lines < 12 * len(times) + 60 * len(results), lines  # a rescan per day: over 365 x 35,040


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        derive([1.0, 2.0], [1.0], [0.0, 3.0], MAX_GAP)
