"""The Waltero poller: one fetch per interval, only points newer than the last one sent."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from app.backends.live import CONNECTED, LiveTarget
from app.backends.waltero.live_source import AHEAD, WalteroLiveSource
from app.domain.models import Reading
from tests.support.clock import FakeClock

T0 = datetime(2026, 5, 19, 6, 0, tzinfo=UTC)


def point(hours: int) -> Reading:
    t = T0 + timedelta(hours=hours)
    return Reading(meter_id="waltero:d", time=t, quantity="volume", obis=None, value=float(hours), unit="m3")


async def test_polls_once_per_interval_and_yields_only_newer_points() -> None:
    clock = FakeClock(T0.timestamp() + 60)
    calls: list[tuple[str, datetime, datetime]] = []

    async def fetch(device: str, start: datetime, end: datetime) -> list[Reading]:
        calls.append((device, start, end))
        # the vendor window is inclusive of its start: the last point sent comes back every time
        return [point(h) for h in range(-2, 4) if start <= point(h).time < end and point(h).time.timestamp() <= clock()]

    source = WalteroLiveSource(fetch, interval=600, clock=clock, sleep=clock.sleep)
    assert source.channel_key(LiveTarget("waltero", "waltero:d", "d", "waltero:org")) == "d"
    got = []
    async with contextlib.aclosing(source.stream("d", None)) as stream:
        got.append(await anext(stream))
        clock.advance(3600)  # hour 1 appears
        got.append(await anext(stream))
        clock.advance(2 * 3600)  # hours 2 and 3
        got.append(await anext(stream))
    assert got[0] is CONNECTED
    assert [[r.value for r in batch] for batch in got[1:]] == [[1.0], [2.0, 3.0]]
    assert clock.slept
    assert set(clock.slept) == {600}
    assert calls[0] == ("d", T0 + timedelta(seconds=60), T0 + timedelta(seconds=60) + AHEAD)
    assert calls[-1][1] == point(1).time  # resumes from the last point sent


async def test_resumes_from_the_since_it_is_given() -> None:
    clock = FakeClock(T0.timestamp() + 3 * 3600 + 60)
    seen: list[datetime] = []

    async def fetch(device: str, start: datetime, end: datetime) -> list[Reading]:
        seen.append(start)
        return [point(h) for h in range(0, 4) if start <= point(h).time < end]

    source = WalteroLiveSource(fetch, interval=60, clock=clock, sleep=clock.sleep)
    async with contextlib.aclosing(source.stream("d", point(1).time)) as stream:
        assert [r.value for r in await anext(stream)] == [2.0, 3.0]  # what was missed, then live
        assert await anext(stream) is CONNECTED
    assert seen == [point(1).time]
