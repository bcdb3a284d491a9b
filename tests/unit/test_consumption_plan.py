"""`Plan.slices` / `Plan.after`: pages of a `/consumption` window cover every (meter, interval) once."""

from __future__ import annotations

from datetime import date
from typing import Any, cast
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from app.core.consumption import Plan


def plan(meters: int, intervals: int) -> Plan:
    bounds = cast(Any, list(range(intervals + 1)))  # only their count matters here
    listed = cast(Any, [(None, f"m:{i:03d}", None) for i in range(meters)])
    return Plan(date(2026, 1, 1), date(2026, 1, 2), ZoneInfo("UTC"), "hour", bounds, listed, [])


@given(st.integers(0, 6), st.integers(1, 40), st.integers(1, 120))
def test_pages_cover_every_row_once_in_order(meters: int, intervals: int, limit: int) -> None:
    p = plan(meters, intervals)
    seen: list[tuple[int, int]] = []
    position: tuple[int, int] | None = (0, 0) if meters else None
    assert p.slices(0, 0, limit) == [] or meters
    for _ in range(meters * intervals + 2):
        if position is None:
            break
        slices = p.slices(*position, limit)
        assert slices
        assert sum(s.stop - s.first for s in slices) == min(limit, meters * intervals - len(seen))
        seen.extend((s.meter, k) for s in slices for k in range(s.first, s.stop))
        position = p.after(slices[-1])
    else:
        raise AssertionError("more pages than rows")
    assert seen == [(m, k) for m in range(meters) for k in range(intervals)]


def test_a_page_ending_on_a_meter_boundary_continues_with_the_next_meter() -> None:
    p = plan(3, 24)
    slices = p.slices(0, 0, 48)
    assert [(s.meter, s.first, s.stop) for s in slices] == [(0, 0, 24), (1, 0, 24)]
    assert p.after(slices[-1]) == (2, 0)
    last = p.slices(2, 10, 100)
    assert [(s.meter, s.first, s.stop) for s in last] == [(2, 10, 24)]
    assert p.after(last[-1]) is None
