"""Monthly rows of a long window reuse the local-midnight arithmetic of the same window (remembered
`intervals.boundaries`), with rows identical to computing it afresh."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from app.core import consumption
from app.domain.intervals import boundaries
from tests.support.apps import fake_app, running
from tests.support.fake_backend import FakeBackend


async def test_a_year_of_months_asked_twice_computes_its_midnights_once(monkeypatch):
    io = FakeBackend("iometer", meters=1)
    app = fake_app({"iometer": io})
    meters = [f"iometer:{io.meter_ids[0]}"]
    tz = ZoneInfo("Europe/Berlin")
    start, end = date(2025, 3, 1), date(2026, 3, 1)
    async with running(app):
        service = app.service.consumptions
        consumption._bounds.cache_clear()
        first = await service.consumption(meters, None, start, end, tz, "month")
        second = await service.consumption(meters, None, start, end, tz, "month")
        info = consumption._bounds.cache_info()
        assert (info.misses, info.hits) == (2, 2)  # days and months, computed once each
        monkeypatch.setattr(consumption, "_bounds", lambda s, e, z, r: tuple(boundaries(s, e, z, r)))
        fresh = await service.consumption(meters, None, start, end, tz, "month")
    assert first.value == second.value == fresh.value
    assert len(first.value) == 12
    assert first.value[0].start.isoformat() == "2025-03-01T00:00:00+01:00"
    assert first.value[-1].end.isoformat() == "2026-03-01T00:00:00+01:00"
