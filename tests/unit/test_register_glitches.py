"""Register arithmetic that tells a glitch from a reset (app.domain.intervals `clean`, `derive`, `plausible`).

Example-based cases first (the issue's own series among them), then Hypothesis properties over generated
rising registers with injected glitches, resets, duplicates, gaps and out-of-order points."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.intervals import (
    GLITCH_READINGS,
    DerivedConsumption,
    Plausibility,
    clean,
    derive,
    ordered,
    plausible,
    worst,
)

MAX_GAP = 21600.0
QUARTER = 900.0
PROPERTIES = settings(max_examples=300, derandomize=True, deadline=None)


def quarters(values: Sequence[float]) -> list[float]:
    return [QUARTER * i for i in range(len(values))]


# --- examples --------------------------------------------------------------------------------------


def test_the_issues_misread_is_ignored_and_says_so() -> None:
    values = [12345, 12345.25, 0, 12345.75, 12346]
    [whole] = derive(quarters(values), values, [0.0, 4 * QUARTER], MAX_GAP)
    assert whole.consumption == pytest.approx(1.0)  # was 12,346.25 kWh, complete
    assert whole.quality == "suspect"
    assert not whole.complete
    # per quarter hour: the two around the ignored reading share its pair; the others are untouched
    rows = derive(quarters(values), values, [QUARTER * i for i in range(5)], MAX_GAP)
    assert [r.consumption for r in rows] == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert [r.quality for r in rows] == ["measured", "suspect", "suspect", "measured"]
    assert [r.complete for r in rows] == [True, False, False, True]


def test_a_misaligned_digit_spike_is_ignored() -> None:
    values = [12345, 12345.25, 123455.0, 12345.75, 12346]  # one digit shifted: x10
    [whole] = derive(quarters(values), values, [0.0, 4 * QUARTER], MAX_GAP)
    assert whole.consumption == pytest.approx(1.0)
    assert (whole.quality, whole.complete) == ("suspect", False)


def test_a_drop_that_persists_is_a_reset_counted_from_the_new_base() -> None:
    values = [12345, 12345.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    register = clean(quarters(values), values)
    assert register.ignored == []
    [whole] = derive(quarters(values), values, [0.0, 6 * QUARTER], MAX_GAP)
    assert whole.consumption == pytest.approx(0.25 + 1.0)  # the step into the reset counts zero
    assert (whole.quality, whole.complete) == ("reset", False)
    later = derive(quarters(values), values, [3 * QUARTER, 6 * QUARTER], MAX_GAP)
    assert later == [DerivedConsumption(pytest.approx(0.75), True, "measured")]


def test_a_glitch_of_a_few_readings_is_still_a_glitch_and_a_longer_one_a_reset() -> None:
    run = [0.0] * GLITCH_READINGS
    values = [10.0, 11.0, *run, 15.0, 16.0]
    assert clean(quarters(values), values).ignored == quarters(values)[2 : 2 + GLITCH_READINGS]
    longer = [10.0, 11.0, *run, 0.0, 15.0, 16.0]
    register = clean(quarters(longer), longer)
    assert register.ignored == []  # a reset to 0, then a rise: never a glitch
    [whole] = derive(quarters(longer), longer, [0.0, quarters(longer)[-1]], MAX_GAP)
    assert whole.quality == "reset"


def test_the_newest_reading_below_the_track_waits_for_the_next() -> None:
    values = [10.0, 11.0, 12.0, 3.0]
    register = clean(quarters(values), values)
    assert register.ignored == [3 * QUARTER]
    [whole] = derive(quarters(values), values, [0.0, 3 * QUARTER], MAX_GAP)
    assert whole.consumption == pytest.approx(2.0)
    assert (whole.quality, whole.complete) == ("suspect", False)


def test_duplicates_and_out_of_order_points_are_ordered_first() -> None:
    points = [(900.0, 2.0), (0.0, 1.0), (1800.0, 3.0), (900.0, 2.0), (2700.0, 4.0)]
    assert ordered(points) == ([0.0, 900.0, 1800.0, 2700.0], [1.0, 2.0, 3.0, 4.0])


def test_the_plausibility_bound() -> None:
    bounds = Plausibility({"electricity": 100.0, "heat": 500.0, "water": 10.0, "gas": 50.0})
    assert bounds.bound("electricity", "kWh", 900) == pytest.approx(25.0)
    assert bounds.bound(None, "kWh", 3600) == pytest.approx(500.0)  # medium unknown: the loosest of the unit
    assert bounds.bound("unknown", "L/h", 3600) is None
    assert bounds.bound("heat", "GJ", 3600) is None  # a unit passed through as sent: not in kW terms
    assert bounds.bound("water", "kWh", 3600) == pytest.approx(500.0)  # the unit decides what is bounded
    assert bounds.surely_plausible(99.0, "kWh", 3600)
    assert not bounds.surely_plausible(101.0, "kWh", 3600)
    assert plausible(30.0, True, "measured", 25.0) == (False, "suspect")
    assert plausible(20.0, True, None, 25.0) == (True, "measured")
    assert plausible(None, False, None, 25.0) == (False, None)


def test_worst_quality() -> None:
    assert worst(["measured", "estimated", None]) == "estimated"
    assert worst(["reset", "suspect", "measured"]) == "suspect"
    assert worst([None, None]) is None


# --- properties ------------------------------------------------------------------------------------


@st.composite
def rising(draw: st.DrawFn, *, max_gap: float = MAX_GAP, min_len: int = 8) -> tuple[list[float], list[float]]:
    """A rising register (steps of 0 included) read at irregular times, gaps up to `max_gap`."""
    n = draw(st.integers(min_len, 60))
    gaps = draw(st.lists(st.sampled_from([60.0, 300.0, 900.0, 1800.0, 3600.0, max_gap]), min_size=n, max_size=n))
    steps = draw(st.lists(st.sampled_from([0.0, 0.001, 0.25, 1.0, 3.5, 10.0]), min_size=n, max_size=n))
    start = draw(st.sampled_from([1000.0, 12345.0, 99999.5]))
    times = list(itertools.accumulate(gaps[1:], initial=1_780_000_000.0))
    values = list(itertools.accumulate(steps[1:], initial=start))
    return times, values


def cuts(times: list[float], seed: int, count: int) -> list[float]:
    """Ascending interval boundaries from the first to the last reading, some on readings, some not."""
    rnd = random.Random(seed)
    inner = sorted({rnd.choice([rnd.choice(times), rnd.uniform(times[0], times[-1])]) for _ in range(count)})
    return sorted({times[0], *inner, times[-1]})


def ignored_in(result_bounds: tuple[float, float], ignored: list[float]) -> bool:
    t0, t1 = result_bounds
    return any(t0 <= t <= t1 for t in ignored)


@PROPERTIES
@given(series=rising(), where=st.floats(0, 1), low=st.booleans(), size=st.floats(1e-3, 1e6), seed=st.integers(0, 99))
def test_a_single_outlier_never_changes_the_total_by_more_than_the_true_step_around_it(
    series: tuple[list[float], list[float]], where: float, low: bool, size: float, seed: int
) -> None:
    times, values = series
    n = len(values)
    i = 1 + int(where * (n - 2)) if n > 2 else 1
    i = min(i, n - 2)
    bad = list(values)
    bad[i] = max(0.0, values[i - 1] - size) if low else values[i + 1] + size
    if bad[i] == values[i - 1] or (low and values[i - 1] == 0):
        return  # not off the track
    whole = [times[0], times[-1]]
    [true_total] = derive(times, values, whole, MAX_GAP)
    [got_total] = derive(times, bad, whole, MAX_GAP)
    assert true_total.consumption is not None and got_total.consumption is not None
    around = values[i + 1] - values[i - 1]
    assert abs(got_total.consumption - true_total.consumption) <= around + 1e-6
    assert got_total.quality == "suspect"
    assert not got_total.complete

    # per interval: off by at most the true rise over the readings next to it, never complete around it
    bounds = cuts(times, seed, 12)
    ignored = clean(times, bad).ignored
    assert ignored  # the outlier (or, when it is ambiguous, its neighbour) was left out
    near = values[min(n - 1, i + 2)] - values[max(0, i - 2)]
    for (t0, t1), truth, got in zip(
        itertools.pairwise(bounds),
        derive(times, values, bounds, MAX_GAP),
        derive(times, bad, bounds, MAX_GAP),
        strict=True,
    ):
        # leaving a reading out may open a hole wider than MAX_GAP: then the row is null, never complete
        assert got.consumption is not None or not got.complete
        if got.consumption is not None and truth.consumption is not None:
            assert abs(got.consumption - truth.consumption) <= near + 1e-6
        if ignored_in((t0, t1), ignored):
            assert not got.complete
            assert got.quality in (None, "suspect")  # None: no figure at all


@PROPERTIES
@given(series=rising(), where=st.floats(0, 1), base=st.floats(0, 100), seed=st.integers(0, 99))
def test_a_reset_counts_from_the_new_base_and_is_never_complete(
    series: tuple[list[float], list[float]], where: float, base: float, seed: int
) -> None:
    times, values = series
    n = len(values)
    r = min(n - 2, 1 + int(where * (n - 2)))
    swapped = values[:r] + [base + v - values[r] for v in values[r:]]  # a new meter, far below the old one
    [total] = derive(times, swapped, [times[0], times[-1]], MAX_GAP)
    assert total.consumption == pytest.approx((values[r - 1] - values[0]) + (values[-1] - values[r]), abs=1e-6)
    assert (total.quality, total.complete) == ("reset", False)
    bounds = cuts(times, seed, 10)
    for (t0, t1), row in zip(itertools.pairwise(bounds), derive(times, swapped, bounds, MAX_GAP), strict=True):
        if t0 < times[r] and times[r - 1] < t1:  # the step into the reset lies (partly) inside
            assert row.quality == "reset"
            assert not row.complete


@st.composite
def messy(draw: st.DrawFn) -> tuple[list[tuple[float, float]], list[float], list[float]]:
    """A rising register with glitches, resets, duplicates and shuffled order; gaps stay within
    half an hour, so every boundary inside the readings stays bracketed. Returns (points, times, values)."""
    times, values = draw(rising(max_gap=1800.0, min_len=12))  # holes stay within MAX_GAP with readings left out
    rnd = random.Random(draw(st.integers(0, 10_000)))
    values = list(values)
    for _ in range(draw(st.integers(0, 4))):
        k = rnd.randrange(len(values))
        kind = rnd.choice(["low", "high", "reset"])
        if kind == "low":
            values[k] = rnd.uniform(0, values[k])
        elif kind == "high":
            values[k] = values[k] * rnd.choice([10.0, 1.5, 1000.0])
        else:
            values[k:] = [v - values[k] + rnd.uniform(0, 5) for v in values[k:]]
    points = list(zip(times, values, strict=True))
    points += [points[rnd.randrange(len(points))] for _ in range(draw(st.integers(0, 5)))]  # sent twice
    rnd.shuffle(points)
    return points, times, values


@PROPERTIES
@given(data=messy(), seed=st.integers(0, 99))
def test_finer_rows_sum_to_the_coarser_row_and_share_its_flags(
    data: tuple[list[tuple[float, float]], list[float], list[float]], seed: int
) -> None:
    points, times, values = data
    assert ordered(points) == (times, values)
    t, v = ordered(points)
    kept = clean(t, v).times  # a newest reading off the track is left out: the window ends before it
    coarse_bounds = [kept[0] + 1.0, kept[-1] - 1.0] if kept[-1] - kept[0] > 2.0 else [kept[0], kept[-1]]
    fine_bounds = sorted({*coarse_bounds, *(b for b in cuts(t, seed, 20) if coarse_bounds[0] < b < coarse_bounds[1])})
    [coarse] = derive(t, v, coarse_bounds, MAX_GAP)
    fine = derive(t, v, fine_bounds, MAX_GAP)
    assert coarse.consumption is not None
    assert all(f.consumption is not None for f in fine)
    assert sum(f.consumption or 0.0 for f in fine) == pytest.approx(coarse.consumption, rel=1e-9, abs=1e-6)
    assert (coarse.quality == "suspect") == any(f.quality == "suspect" for f in fine)
    assert coarse.complete == all(f.complete for f in fine)
    ignored = clean(t, v).ignored
    for bounds, row in zip(itertools.pairwise(fine_bounds), fine, strict=True):
        if ignored_in(bounds, ignored):
            assert not row.complete


@PROPERTIES
@given(data=messy())
def test_no_row_is_complete_when_it_contains_an_ignored_reading(
    data: tuple[list[tuple[float, float]], list[float], list[float]],
) -> None:
    _, times, values = data
    register = clean(times, values)
    # every kept value rises, except into a reset
    for k, (a, b) in enumerate(itertools.pairwise(register.values)):
        assert b >= a or register.flags[k] & 2
    bounds = sorted({*times, *(x + 450.0 for x in times)})
    for (t0, t1), row in zip(itertools.pairwise(bounds), derive(times, values, bounds, MAX_GAP), strict=True):
        if ignored_in((t0, t1), register.ignored):
            assert not row.complete
            assert row.quality in (None, "suspect")


def test_the_guides_worked_example_is_what_derive_answers() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "api-guide.md").read_text()
    row = re.search(r"^\| register \(kWh\) \|(.*)\|$", guide, re.MULTILINE)
    assert row, "the worked example's table changed: update this test"
    values = [float(cell.strip().strip("*")) for cell in row[1].split("|")]
    assert values == [12345.0, 12345.25, 0.0, 12345.75, 12346.0]
    [hour] = derive(quarters(values), values, [0.0, 4 * QUARTER], MAX_GAP)
    assert (hour.consumption, hour.quality, hour.complete) == (pytest.approx(1.0), "suspect", False)
    assert "`consumption: 1.0, quality: suspect, complete: false`" in guide
    naive = sum(max(0.0, b - a) for a, b in itertools.pairwise(values))
    assert f"**{naive:,.2f} kWh**" in guide
    reset = [12345.0, 12345.25, 0.5, 0.75, 1.0]
    [hour] = derive(quarters(reset), reset, [0.0, 4 * QUARTER], MAX_GAP)
    assert (hour.consumption, hour.quality, hour.complete) == (pytest.approx(0.75), "reset", False)
