"""Daily consumption derived from a cumulative register (CONTRACT.md, IOmeter `source: derived`).

For a local day `[t0, t1)` and each pair of consecutive readings `(a, b)`:
- a pair inside the day (`t0 <= a.t` and `b.t <= t1`) adds `max(0, b.v - a.v)`; a decrease means the
  meter was replaced, so that step counts zero, never negative;
- a pair that straddles `t0` or `t1` adds the same increase times the share of `[a.t, b.t]` inside the
  day (linear interpolation), but only when `b.t - a.t <= max_gap`.
A boundary is *bracketed* when such a pair straddles it or a reading falls exactly on it; a day is
`complete` when both boundaries are. With no pair contributing, the consumption is None.

The rule itself lives in `app.domain.intervals.derive` (any interval, not only days); this module keeps the
daily names the IOmeter adapter uses.

Pure and fast: one pass builds prefix sums of the positive steps, then each day costs two bisections
on its boundaries, so a year of days over 35,040 readings is a few milliseconds, not a rescan per day.
Times are epoch seconds; the consumption is in the unit of the values.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.intervals import IntervalConsumption, derive

DayConsumption = IntervalConsumption
"""Register increase over a day (None when no pair contributed) and whether both midnights are bracketed."""


def daily_from_register(
    times: Sequence[float], values: Sequence[float], boundaries: Sequence[float], max_gap: float
) -> list[DayConsumption]:
    """Consumption for each day `[boundaries[k], boundaries[k+1])`.

    `times` must be strictly ascending (epoch seconds) with `values` the register at those times;
    `boundaries` ascending day starts (epoch seconds of local midnights, so 23 h and 25 h days are
    real). `max_gap` is in seconds. Returns `len(boundaries) - 1` results in day order."""
    return derive(times, values, boundaries, max_gap)
