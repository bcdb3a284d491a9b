"""OBIS → quantity, unit conversion, and shape checks of the vendor payloads."""

from __future__ import annotations

import pytest

from app.backends.iometer.payloads import (
    TimeParser,
    WireValue,
    decimal_obis,
    energy_import_kwh,
    medium_of,
    normalize,
    obis_form,
    readings_page,
    register_value,
    req_obj,
    req_str,
)
from app.infra.errors import UpstreamBadResponse


@pytest.mark.parametrize(
    ("obis", "value", "unit", "expected"),
    [
        ("1-0:1.8.0", 12345678.0, "Wh", ("energy_import", "1-0:1.8.0", 12345.678, "kWh")),
        ("1-0:1.8.1", 1500.0, "Wh", ("energy_import_t1", "1-0:1.8.1", 1.5, "kWh")),
        ("1-0:1.8.2", 2.5, "kWh", ("energy_import_t2", "1-0:1.8.2", 2.5, "kWh")),
        ("1-0:2.8.0", 7, "Wh", ("energy_export", "1-0:2.8.0", 0.007, "kWh")),
        ("1-0:2.8.0", 1.25, "MWh", ("energy_export", "1-0:2.8.0", 1250.0, "kWh")),
        ("1-0:16.7.0", -420.0, "W", ("power", "1-0:16.7.0", -420.0, "W")),
        ("1-0:16.7.0", 1.2, "kW", ("power", "1-0:16.7.0", 1200.0, "W")),
        ("1-0:1.8.0*255", 1000.0, "Wh", ("energy_import", "1-0:1.8.0", 1.0, "kWh")),
        ("1-0:32.7.0", 230.1, "V", ("obis:1-0:32.7.0", "1-0:32.7.0", 230.1, "V")),
        # A known register in a unit we cannot convert is passed on as sent, not mislabelled.
        ("1-0:1.8.0", 3.0, "varh", ("obis:1-0:1.8.0", "1-0:1.8.0", 3.0, "varh")),
    ],
)
def test_normalize(obis: str, value: float, unit: str, expected: tuple[str, str, float, str]) -> None:
    assert normalize(WireValue(obis, value, unit)) == expected


def test_wh_to_kwh_divides_exactly() -> None:
    assert normalize(WireValue("1-0:1.8.0", 4743580.0, "Wh"))[2] == 4743580.0 / 1000


def test_energy_import_kwh_picks_the_total_register() -> None:
    values = [WireValue("1-0:1.8.1", 1.0, "Wh"), WireValue("1-0:1.8.0", 2500.0, "Wh")]
    assert energy_import_kwh(values) == 2.5
    assert energy_import_kwh([WireValue("1-0:16.7.0", 1.0, "W")]) is None


def test_readings_page_checks_the_shape() -> None:
    good = {
        "readings": [
            {
                "meter": {"id": "m"},
                "time": "2026-05-01T00:00:00Z",
                "values": [{"obisCode": "1-0:1.8.0", "value": 1, "unit": "Wh"}],
            }
        ],
        "cursor": None,
    }
    page = readings_page(good, with_meter=True)
    assert page.cursor is None
    assert page.readings[0].meter_id == "m"
    assert page.readings[0].values == [WireValue("1-0:1.8.0", 1, "Wh")]
    broken: list[object] = [
        {"readings": None, "cursor": None},
        {"readings": []},
        {"readings": [], "cursor": 5},
        {"readings": [{"time": "2026-05-01T00:00:00Z", "values": []}], "cursor": None},
        {"readings": [{"meter": {"id": "m"}, "values": []}], "cursor": None},
        {
            "readings": [{"meter": {"id": "m"}, "time": "t", "values": [{"obisCode": "x", "unit": "Wh"}]}],
            "cursor": None,
        },
        {
            "readings": [{"meter": {"id": "m"}, "time": "t", "values": [{"obisCode": "x", "value": "1", "unit": "W"}]}],
            "cursor": None,
        },
        {
            "readings": [
                {"meter": {"id": "m"}, "time": "t", "values": [{"obisCode": "x", "value": True, "unit": "W"}]}
            ],
            "cursor": None,
        },
        {"readings": ["nope"], "cursor": None},
        [],
    ]
    for payload in broken:
        with pytest.raises(UpstreamBadResponse) as info:
            readings_page(payload, with_meter=True)
        assert info.value.backend == "iometer"


def test_accessors_raise_bad_response_not_key_error() -> None:
    with pytest.raises(UpstreamBadResponse):
        req_str({}, "id")
    with pytest.raises(UpstreamBadResponse):
        req_str({"id": 3}, "id")
    with pytest.raises(UpstreamBadResponse):
        req_obj({"partner": None}, "partner")
    with pytest.raises(UpstreamBadResponse):
        req_obj(None, "partner")


def test_time_parser_refuses_garbage_with_a_bad_response() -> None:
    parse = TimeParser()
    assert parse("2026-05-01T00:15:00Z").timestamp() == 1777594500
    assert parse("2026-05-01T02:15:00+02:00") == parse("2026-05-01T00:15:00Z")
    with pytest.raises(UpstreamBadResponse):
        parse("yesterday")


def test_non_finite_values_are_dropped_not_served() -> None:
    values = [
        {"obisCode": "1-0:1.8.0", "value": float("nan"), "unit": "Wh"},
        {"obisCode": "1-0:2.8.0", "value": float("inf"), "unit": "Wh"},
        {"obisCode": "1-0:16.7.0", "value": 250, "unit": "W"},
    ]
    page = readings_page(
        {"readings": [{"meter": {"id": "m"}, "time": "2026-05-01T00:00:00Z", "values": values}], "cursor": None},
        with_meter=True,
    )
    assert [v.obis for v in page.readings[0].values] == ["1-0:16.7.0"]


@pytest.mark.parametrize(
    ("code", "decimal", "form"),
    [
        ("1-0:1.8.0", "1-0:1.8.0", "decimal"),
        ("1-0:1.8.0*255", "1-0:1.8.0", "full"),
        ("01-00:01.08.00*ff", "1-0:1.8.0", "hex"),
        ("01-00:10.07.00*FF", "1-0:16.7.0", "hex"),
        ("07-00:03.00.00*ff", "7-0:3.0.0", "hex"),
        ("1.8.0", "1-0:1.8.0", "short"),
    ],
)
def test_every_obis_form_is_normalized(code: str, decimal: str, form: str) -> None:
    assert decimal_obis(code) == decimal
    assert obis_form(code) == form


@pytest.mark.parametrize("code", ["1-0:1.8.0*1", "01-00:01.08.00*01", "C.1.0", "", "1-0:1.8"])
def test_codes_that_are_not_plain_obis_stay_as_sent(code: str) -> None:
    """A billing-period qualifier (F other than 255) is a different register: kept as sent."""
    assert decimal_obis(code) == code


def test_hex_and_full_forms_map_to_the_same_quantities() -> None:
    for code in ("01-00:01.08.00*ff", "1-0:1.8.0*255"):
        assert normalize(WireValue(code, 1500.0, "Wh")) == ("energy_import", "1-0:1.8.0", 1.5, "kWh")
    assert energy_import_kwh([WireValue("01-00:01.08.00*ff", 2000.0, "Wh")]) == 2.0


@pytest.mark.parametrize(
    ("codes", "medium"),
    [
        (["1-0:1.8.0", "1-0:16.7.0"], "electricity"),
        (["07-00:03.00.00*ff"], "gas"),
        (["6-0:1.0.0"], "heat"),
        (["8-0:1.0.0"], "water"),
        (["9-0:1.0.0"], "water"),
        (["0-0:96.1.0", "7-0:3.0.0"], "gas"),
        ([], "unknown"),
        (["nonsense"], "unknown"),
    ],
)
def test_the_medium_comes_from_obis_group_a(codes: list[str], medium: str) -> None:
    assert medium_of(codes) == medium


def test_the_register_for_daily_consumption_follows_the_medium() -> None:
    assert register_value([WireValue("1-0:16.7.0", 5.0, "W"), WireValue("1-0:1.8.0", 2500.0, "Wh")]) == (2.5, "kWh")
    assert register_value([WireValue("07-00:03.00.00*ff", 1234.0, "L")]) == (1.234, "m3")
    assert register_value([WireValue("7-0:3.0.0", 12.5, "m3")]) == (12.5, "m3")
    assert register_value([WireValue("6-0:1.0.0", 3.0, "MWh")]) == (3000.0, "kWh")
    assert register_value([WireValue("7-0:3.0.0", 1.0, "ft3")]) is None
    assert register_value([WireValue("1-0:2.8.0", 1.0, "Wh")]) is None
