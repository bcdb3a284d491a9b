from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.backends.waltero.daily import (
    Segment,
    bucket_starts,
    calendar_segments,
    local_days_of_call,
    offset_stable_segments,
    segments_for,
)
from app.backends.waltero.shapes import DailyConsumptionRow

BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")


def test_utc_is_one_segment_even_over_a_year() -> None:
    assert offset_stable_segments(date(2026, 1, 1), date(2027, 1, 1), UTC_ZONE) == [
        Segment(date(2026, 1, 1), date(2027, 1, 1))
    ]


def test_berlin_without_transition_is_one_segment() -> None:
    assert offset_stable_segments(date(2026, 5, 1), date(2026, 6, 1), BERLIN) == [
        Segment(date(2026, 5, 1), date(2026, 6, 1))
    ]


def test_berlin_march_transition_day_stands_alone() -> None:
    segments = offset_stable_segments(date(2026, 3, 20), date(2026, 4, 5), BERLIN)
    assert segments == [
        Segment(date(2026, 3, 20), date(2026, 3, 29)),
        Segment(date(2026, 3, 29), date(2026, 3, 30)),
        Segment(date(2026, 3, 30), date(2026, 4, 5)),
    ]
    first, transition, after = (s.utc_range(BERLIN) for s in segments)
    assert first == (datetime(2026, 3, 19, 23, tzinfo=UTC), datetime(2026, 3, 28, 23, tzinfo=UTC))
    assert transition == (datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC))
    assert after == (datetime(2026, 3, 29, 22, tzinfo=UTC), datetime(2026, 4, 4, 22, tzinfo=UTC))
    assert transition[1] - transition[0] == timedelta(hours=23)


def test_berlin_october_transition_day_stands_alone() -> None:
    segments = offset_stable_segments(date(2026, 10, 20), date(2026, 10, 31), BERLIN)
    assert segments == [
        Segment(date(2026, 10, 20), date(2026, 10, 25)),
        Segment(date(2026, 10, 25), date(2026, 10, 26)),
        Segment(date(2026, 10, 26), date(2026, 10, 31)),
    ]
    start, end = segments[1].utc_range(BERLIN)
    assert (start, end) == (datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 23, tzinfo=UTC))
    assert bucket_starts(start, end) == [start, start + timedelta(hours=24)]


def test_range_starting_or_ending_on_a_transition() -> None:
    assert offset_stable_segments(date(2026, 3, 29), date(2026, 4, 2), BERLIN) == [
        Segment(date(2026, 3, 29), date(2026, 3, 30)),
        Segment(date(2026, 3, 30), date(2026, 4, 2)),
    ]
    assert offset_stable_segments(date(2026, 10, 20), date(2026, 10, 26), BERLIN) == [
        Segment(date(2026, 10, 20), date(2026, 10, 25)),
        Segment(date(2026, 10, 25), date(2026, 10, 26)),
    ]
    assert offset_stable_segments(date(2026, 3, 29), date(2026, 3, 30), BERLIN) == [
        Segment(date(2026, 3, 29), date(2026, 3, 30))
    ]


def test_a_whole_year_in_berlin_has_five_segments() -> None:
    segments = offset_stable_segments(date(2026, 1, 1), date(2027, 1, 1), BERLIN)
    assert [s.end - s.start for s in segments] == [
        timedelta(days=87),
        timedelta(days=1),
        timedelta(days=209),
        timedelta(days=1),
        timedelta(days=67),
    ]
    assert segments[0].start == date(2026, 1, 1)
    assert segments[-1].end == date(2027, 1, 1)


def test_empty_range() -> None:
    assert offset_stable_segments(date(2026, 3, 2), date(2026, 3, 2), BERLIN) == []
    assert offset_stable_segments(date(2026, 3, 2), date(2026, 3, 1), BERLIN) == []


def test_bucket_starts_cut_the_last_bucket() -> None:
    start = datetime(2026, 5, 18, 22, tzinfo=UTC)
    assert len(bucket_starts(start, start + timedelta(days=7))) == 7
    assert len(bucket_starts(start, start + timedelta(days=7, hours=1))) == 8
    assert bucket_starts(start, start) == []


def _row(device: str, day: date | None, value: float | None) -> DailyConsumptionRow:
    return DailyConsumptionRow(device_id=device, device_name="n", serial_number="s", date=day, consumption=value)


def test_rows_are_placed_by_date_not_order_and_labelled_locally() -> None:
    start, end = datetime(2026, 5, 17, 22, tzinfo=UTC), datetime(2026, 5, 20, 22, tzinfo=UTC)
    rows = [
        _row("a", date(2026, 5, 19), 3.0),
        _row("a", None, None),
        _row("a", date(2026, 5, 17), 1.0),
        _row("b", None, None),
        _row("b", None, None),
        _row("b", None, None),
        _row("a", date(2030, 1, 1), 9.0),  # not a bucket of this call: ignored
    ]
    folded = local_days_of_call(rows, start, end, BERLIN)
    a = {day: (d.consumption, d.complete) for day, d in folded["a"].items()}
    assert a == {date(2026, 5, 18): (1.0, True), date(2026, 5, 19): (None, False), date(2026, 5, 20): (3.0, True)}
    assert {d.consumption for d in folded["b"].values()} == {None}
    assert len(folded["b"]) == 3


def test_fall_back_day_sums_its_two_buckets_null_aware() -> None:
    start, end = datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 23, tzinfo=UTC)
    both = local_days_of_call(
        [_row("a", date(2026, 10, 24), 2.0), _row("a", date(2026, 10, 25), 0.5)], start, end, BERLIN
    )
    assert (both["a"][date(2026, 10, 25)].consumption, both["a"][date(2026, 10, 25)].complete) == (2.5, True)
    one = local_days_of_call([_row("a", date(2026, 10, 24), 2.0), _row("a", None, None)], start, end, BERLIN)
    assert (one["a"][date(2026, 10, 25)].consumption, one["a"][date(2026, 10, 25)].complete) == (2.0, False)
    none = local_days_of_call([_row("a", None, None), _row("a", None, None)], start, end, BERLIN)
    assert (none["a"][date(2026, 10, 25)].consumption, none["a"][date(2026, 10, 25)].complete) == (None, False)
    assert list(both["a"]) == [date(2026, 10, 25)]


def test_spring_forward_day_is_one_bucket() -> None:
    start, end = datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC)
    folded = local_days_of_call([_row("a", date(2026, 3, 28), 4.0)], start, end, BERLIN)
    assert {day: d.values for day, d in folded["a"].items()} == {date(2026, 3, 29): [4.0]}


@pytest.mark.parametrize("tz", [UTC_ZONE, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe")])
def test_every_day_of_a_segment_gets_exactly_one_bucket(tz: ZoneInfo) -> None:
    for segment in offset_stable_segments(date(2026, 1, 1), date(2027, 1, 1), tz):
        start, end = segment.utc_range(tz)
        labels = [s.astimezone(tz).date() for s in bucket_starts(start, end)]
        days = (segment.end - segment.start).days
        if days == 1:
            assert set(labels) == {segment.start}
        else:
            assert labels == [segment.start + timedelta(days=i) for i in range(days)]


# --- WALTERO_DAILY_BUCKETS=utc-calendar -------------------------------------------------------------------
def test_calendar_buckets_are_utc_days_cut_to_the_range() -> None:
    start, end = datetime(2026, 5, 1, 12, tzinfo=UTC), datetime(2026, 5, 3, 12, tzinfo=UTC)
    assert bucket_starts(start, end, "utc-calendar") == [
        start,
        datetime(2026, 5, 2, tzinfo=UTC),
        datetime(2026, 5, 3, tzinfo=UTC),
    ]
    assert bucket_starts(start, end, "rolling") == [start, start + timedelta(days=1)]
    assert bucket_starts(end, end, "utc-calendar") == []


def test_calendar_segments_are_one_call_in_utc_and_one_per_day_elsewhere() -> None:
    assert calendar_segments(date(2026, 5, 1), date(2026, 6, 1), UTC_ZONE) == [
        Segment(date(2026, 5, 1), date(2026, 6, 1))
    ]
    assert calendar_segments(date(2026, 5, 1), date(2026, 5, 4), BERLIN) == [
        Segment(date(2026, 5, 1), date(2026, 5, 2)),
        Segment(date(2026, 5, 2), date(2026, 5, 3)),
        Segment(date(2026, 5, 3), date(2026, 5, 4)),
    ]
    assert segments_for("rolling", date(2026, 5, 1), date(2026, 5, 4), BERLIN) == [
        Segment(date(2026, 5, 1), date(2026, 5, 4))
    ]


@pytest.mark.parametrize(
    ("zone", "first_label"), [("Europe/Berlin", date(2026, 5, 9)), ("America/New_York", date(2026, 5, 10))]
)
def test_a_local_day_asked_alone_sums_its_calendar_buckets(zone: str, first_label: date) -> None:
    """Berlin day 10 May = [22:00Z 9 May, 22:00Z 10 May): buckets labelled 9 and 10 May; New York's
    = [04:00Z 10 May, 04:00Z 11 May): labelled 10 and 11 May. Both fold into the one local day."""
    tz = ZoneInfo(zone)
    segment = Segment(date(2026, 5, 10), date(2026, 5, 11))
    start, end = segment.utc_range(tz)
    rows = [
        DailyConsumptionRow(deviceId="d", date=first_label, consumption=1.5),
        DailyConsumptionRow(deviceId="d", date=first_label + timedelta(days=1), consumption=2.0),
    ]
    days = local_days_of_call(rows, start, end, tz, "utc-calendar")
    assert list(days["d"]) == [date(2026, 5, 10)]
    assert days["d"][date(2026, 5, 10)].consumption == 3.5
    assert days["d"][date(2026, 5, 10)].complete
    # read with the rolling rule, the same answer loses a bucket
    assert local_days_of_call(rows, start, end, tz, "rolling")["d"][date(2026, 5, 10)].consumption != 3.5
