"""Daily consumption derived from a cumulative register (CONTRACT.md, IOmeter `source: derived`).

For a local day `[t0, t1)` and each pair of consecutive readings `(a, b)`:
- a pair inside the day (`t0 <= a.t` and `b.t <= t1`) adds `max(0, b.v - a.v)`; a decrease means the
  meter was replaced, so that step counts zero, never negative;
- a pair that straddles `t0` or `t1` adds the same increase times the share of `[a.t, b.t]` inside the
  day (linear interpolation), but only when `b.t - a.t <= max_gap`.
A boundary is *bracketed* when such a pair straddles it or a reading falls exactly on it; a day is
`complete` when both boundaries are. With no pair contributing, the consumption is None.

Pure and fast: one pass builds prefix sums of the positive steps, then each day costs two bisections
on its boundaries, so a year of days over 35,040 readings is a few milliseconds, not a rescan per day.
Times are epoch seconds; the consumption is in the unit of the values.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import sub


@dataclass(frozen=True, slots=True)
class DayConsumption:
    consumption: float | None
    """Register increase over the day, in the unit of the values; None when no pair contributed."""
    complete: bool
    """Both day boundaries are bracketed by the readings."""


def daily_from_register(
    times: Sequence[float], values: Sequence[float], boundaries: Sequence[float], max_gap: float
) -> list[DayConsumption]:
    """Consumption for each day `[boundaries[k], boundaries[k+1])`.

    `times` must be strictly ascending (epoch seconds) with `values` the register at those times;
    `boundaries` ascending day starts (epoch seconds of local midnights, so 23 h and 25 h days are
    real). `max_gap` is in seconds. Returns `len(boundaries) - 1` results in day order."""
    if len(times) != len(values):
        raise ValueError("times and values must have the same length")
    n = len(times)
    steps = [d if d > 0 else 0.0 for d in map(sub, values[1:], values[:-1])]
    prefix = list(accumulate(steps, initial=0.0))  # prefix[i] = sum of steps[:i]

    results: list[DayConsumption] = []
    for k in range(len(boundaries) - 1):
        t0 = boundaries[k]
        t1 = boundaries[k + 1]
        lo = bisect_left(times, t0)  # first reading at or after t0
        hi = bisect_right(times, t1) - 1  # last reading at or before t1

        total = 0.0
        contributing = False
        if hi > lo:  # pairs lo..hi-1 lie wholly inside the day
            total = prefix[hi] - prefix[lo]
            contributing = True

        start_bracketed = lo < n and times[lo] == t0
        if not start_bracketed and 0 < lo < n:
            a_t, b_t = times[lo - 1], times[lo]
            span = b_t - a_t
            if span <= max_gap:
                total += steps[lo - 1] * (min(b_t, t1) - t0) / span
                contributing = True
                start_bracketed = True

        end_bracketed = hi >= 0 and times[hi] == t1
        if not end_bracketed and 0 <= hi < n - 1:
            a_t, b_t = times[hi], times[hi + 1]
            span = b_t - a_t
            if span <= max_gap:
                if hi != lo - 1:  # else the same pair straddles t0 too and was counted above
                    total += steps[hi] * (t1 - a_t) / span
                contributing = True
                end_bracketed = True

        results.append(DayConsumption(total if contributing else None, start_bracketed and end_bracketed))
    return results
