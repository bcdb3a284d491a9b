from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from app.domain.cursors import CursorCodec
from app.domain.ids import split_id
from app.infra.errors import InvalidRequest, NotFound
from app.infra.timeutil import days, format_millis, format_rfc3339, local_midnight, parse_rfc3339, zone


def test_split_id_routes_on_prefix():
    fid = split_id("iometer:578936dc-8020-4022-a560-2f59d2dca9ee", field="meter_id", in_path=True)
    assert (fid.backend, fid.upstream) == ("iometer", "578936dc-8020-4022-a560-2f59d2dca9ee")
    assert str(fid) == "iometer:578936dc-8020-4022-a560-2f59d2dca9ee"


@pytest.mark.parametrize(
    "raw", ["", "nocolon", ":x", "iometer:", "iometer:a b", "iometer:x/y", "IOMETER:x", "a:" + "x" * 200]
)
def test_malformed_ids_are_404_in_path_and_422_in_query(raw):
    with pytest.raises(NotFound):
        split_id(raw, field="meter_id", in_path=True)
    with pytest.raises(InvalidRequest) as info:
        split_id(raw, field="meter_id", in_path=False)
    assert info.value.field == "meter_id"


def test_cursor_round_trip_and_tamper_checks():
    codec = CursorCodec(b"k" * 32)
    cursor = codec.encode("meters|*", {"after": "iometer:x"})
    assert codec.decode("meters|*", cursor) == {"after": "iometer:x"}
    _body, mac = cursor.split(".")
    forged = codec.encode("meters|*", {"after": "zzz"}).split(".")[0] + "." + mac
    for bad in [forged, cursor + "x", "garbage", "a.b", "", "." * 3, "€.€", cursor.replace(".", "..")]:
        with pytest.raises(InvalidRequest):
            codec.decode("meters|*", bad)
    with pytest.raises(InvalidRequest):  # bound to the query that made it
        codec.decode("meters|waltero", cursor)
    with pytest.raises(InvalidRequest):  # another process's key
        CursorCodec(b"j" * 32).decode("meters|*", cursor)


def test_parse_rfc3339_accepts_offsets_and_rejects_naive():
    assert parse_rfc3339("2026-05-19T08:15:00+02:00") == datetime(2026, 5, 19, 6, 15, tzinfo=UTC)
    assert parse_rfc3339("2026-05-19t06:15:00.123456789z").microsecond == 123456
    for bad in ["2026-05-19", "2026-05-19T06:15:00", "yesterday", "2026-13-01T00:00:00Z", "2026-05-19T06:15:00+2"]:
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


def test_formats():
    t = datetime(2026, 5, 18, 22, 0, tzinfo=UTC)
    assert format_rfc3339(t) == "2026-05-18T22:00:00Z"
    assert format_millis(t) == "2026-05-18T22:00:00.000Z"
    assert format_rfc3339(t.replace(microsecond=5000)) == "2026-05-18T22:00:00.005000Z"


def test_local_midnight_and_dst_day_lengths():
    berlin = ZoneInfo("Europe/Berlin")
    assert local_midnight(date(2026, 5, 19), berlin) == datetime(2026, 5, 18, 22, tzinfo=UTC)
    spring = local_midnight(date(2026, 3, 30), berlin) - local_midnight(date(2026, 3, 29), berlin)
    autumn = local_midnight(date(2026, 10, 26), berlin) - local_midnight(date(2026, 10, 25), berlin)
    assert (spring.total_seconds(), autumn.total_seconds()) == (23 * 3600, 25 * 3600)
    assert days(date(2026, 1, 30), date(2026, 2, 2)) == [date(2026, 1, 30), date(2026, 1, 31), date(2026, 2, 1)]
    with pytest.raises(ValueError):
        zone("Mars/Olympus")
    with pytest.raises(ValueError):
        zone("../../etc/passwd")


def test_years_below_1000_are_padded_to_four_digits():
    early = datetime(523, 8, 18, 11, 35, 49, 938294, tzinfo=UTC)
    assert format_rfc3339(early) == "0523-08-18T11:35:49.938294Z"
    assert format_millis(early) == "0523-08-18T11:35:49.938Z"
    assert parse_rfc3339(format_rfc3339(early)) == early
