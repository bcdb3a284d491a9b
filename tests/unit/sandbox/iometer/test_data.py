"""The demo data set: what it must contain, and readings as a pure function of (meter, time)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from app.backends.iometer.emulator.data import BERLIN, DemoData
from app.infra.timeutil import local_midnight
from tests.support.clock import FakeClock


@pytest.fixture(scope="module")
def data() -> DemoData:
    return DemoData(7, FakeClock())


def test_counts_and_every_status_value(data: DemoData) -> None:
    assert len(data.installations) >= 3
    assert len(data.meters) >= 5
    assert len(data.devices) >= 4
    assert {d.bridge_connection for d in data.devices} | {d.core_connection for d in data.devices} == {
        "connected",
        "disconnected",
    }
    assert {d.attachment for d in data.devices} == {"attached", "detached"}
    assert {d.power for d in data.devices} == {"battery", "wired"}
    assert {d.pin for d in data.devices} == {"missing", "entering", "entered"}
    assert any(i.external_id for i in data.installations)
    assert any(i.current_device_id is None for i in data.installations)
    assert not {m.id for m in data.foreign_meters} & {m.id for m in data.meters}


def test_ids_are_deterministic_from_the_seed() -> None:
    clock = FakeClock()
    a, b, c = DemoData(7, clock), DemoData(7, clock), DemoData(8, clock)
    assert [m.id for m in a.meters] == [m.id for m in b.meters]
    assert [m.id for m in a.meters] != [m.id for m in c.meters]
    start, end = a.window_start + timedelta(days=3), a.window_start + timedelta(days=4)
    assert a.readings(a.meters[0].id, start, end) == b.readings(b.meters[0].id, start, end)


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 5, 17, tzinfo=UTC),
        datetime(2026, 1, 10, tzinfo=UTC),
        datetime(2025, 8, 1, tzinfo=UTC),
        datetime(2025, 12, 31, 23, tzinfo=UTC),
    ],
)
def test_the_window_holds_90_days_and_a_dst_change(when: datetime) -> None:
    data = DemoData(7, FakeClock(when))
    assert data.window_start <= when - timedelta(days=90)
    assert data.dst_changes
    assert all(data.window_start < local_midnight(d, BERLIN) and d < data.today for d in data.dst_changes)


def test_registers_tariffs_units_and_export(data: DemoData) -> None:
    start = local_midnight(data.today - timedelta(days=3), BERLIN)
    kinds = set()
    for meter in data.meters:
        rows = data.readings(meter.id, start, start + timedelta(days=1))
        assert len(rows) == 96
        for row in rows:
            total, t1, t2 = row.value("1-0:1.8.0"), row.value("1-0:1.8.1"), row.value("1-0:1.8.2")
            assert total is not None
            assert t1 is not None
            assert t2 is not None
            assert t1 + t2 == total
            assert {v.unit for v in row.values if v.code.startswith("1-0:1.8") or v.code == "1-0:2.8.0"} == {"Wh"}
            assert next(v.unit for v in row.values if v.code == "1-0:16.7.0") == "W"
        export = [row.value("1-0:2.8.0") for row in rows]
        kinds.add("absent" if export[0] is None else "zero" if export[-1] == export[0] else "solar")
    assert kinds == {"absent", "zero", "solar"}


def test_readings_are_a_pure_function_of_meter_and_time(data: DemoData) -> None:
    meter = data.meters[0]
    start = data.window_start + timedelta(days=40, hours=5)
    wide = data.readings(meter.id, data.window_start, start + timedelta(days=2))
    narrow = data.readings(meter.id, start, start + timedelta(hours=3))
    assert narrow == [r for r in wide if start <= r.at < start + timedelta(hours=3)]
    fresh = DemoData(7, FakeClock()).readings(meter.id, start, start + timedelta(hours=3))
    assert fresh == narrow


def test_readings_stop_at_now(data: DemoData) -> None:
    now = datetime.fromtimestamp(data.clock(), UTC)
    rows = data.readings(data.meters[0].id, now - timedelta(hours=2), now + timedelta(days=1))
    assert rows[-1].at <= now < rows[-1].at + timedelta(minutes=15)


def test_a_believable_daily_shape(data: DemoData) -> None:
    meter = data.meters[3]  # no solar: import is the household load
    day = data.today - timedelta(days=20)
    start = local_midnight(day, BERLIN)
    rows = data.readings(meter.id, start, start + timedelta(days=1, minutes=15))
    import_wh = [b.value("1-0:1.8.0") - a.value("1-0:1.8.0") for a, b in itertools.pairwise(rows)]  # type: ignore[operator]
    night, evening = sum(import_wh[8:20]), sum(import_wh[76:88])  # 02-05 h vs 19-22 h local
    assert evening > 1.5 * night
    assert 4_000 < sum(import_wh) < 25_000  # Wh per day


def test_gaps_and_the_swap(data: DemoData) -> None:
    spans = []
    for meter_id, gaps in data.gaps.items():
        for a, b in gaps:
            rows = data.readings(meter_id, a - timedelta(minutes=15), b + timedelta(minutes=30))
            times = [r.at for r in rows]
            assert a in times
            assert b in times
            assert not any(a < t < b for t in times)
            spans.append(b - a)
    assert max(spans) == timedelta(hours=8)
    assert min(spans) == timedelta(hours=2)
    [(meter_id, swap)] = data.swaps.items()
    rows = data.readings(meter_id, swap - timedelta(minutes=15), swap + timedelta(minutes=15))
    before, after = rows[0].value("1-0:1.8.0"), rows[1].value("1-0:1.8.0")
    assert before is not None
    assert after is not None
    assert before > 1_000_000
    assert after < 100  # same meter id, register back near zero


def test_dst_days_have_23_and_25_hours_of_readings() -> None:
    autumn = DemoData(7, FakeClock(datetime(2025, 11, 20, tzinfo=UTC)))
    assert date(2025, 10, 26) in autumn.dst_changes
    start = local_midnight(date(2025, 10, 26), BERLIN)
    end = local_midnight(date(2025, 10, 27), BERLIN)
    assert len(autumn.readings(autumn.meters[3].id, start, end)) == 100
    spring = DemoData(7, FakeClock())
    start, end = local_midnight(date(2026, 3, 29), BERLIN), local_midnight(date(2026, 3, 30), BERLIN)
    assert len(spring.readings(spring.meters[3].id, start, end)) == 92
