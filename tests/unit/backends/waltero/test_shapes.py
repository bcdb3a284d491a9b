from datetime import UTC, date, datetime

import pytest

from app.backends.waltero import shapes
from app.infra.errors import UpstreamBadResponse


def test_paths_pin_v3_and_encode_ids() -> None:
    assert shapes.daily_consumption_path("00000000-0000-0000-0000-000000000001") == (
        "/api/organizations/00000000-0000-0000-0000-000000000001/applications/metering/v3/data/device-daily-consumption"
    )
    assert shapes.devices_path("org") == "/api/organizations/org/devices"
    assert shapes.device_path("a/b") == "/api/devices/a%2Fb"
    assert shapes.telemetry_path("d") == "/api/devices/d/telemetry"
    assert shapes.fields_path("d") == "/api/devices/d/fields"
    assert shapes.changes_path("o") == "/api/organizations/o/data-audit/changes"


@pytest.mark.parametrize("base", ["https://h.example/prod", "https://h.example/prod/", "https://h.example/prod//"])
def test_join_url_never_doubles_slashes(base: str) -> None:
    assert shapes.join_url(base, "/api/auth/login") == "https://h.example/prod/api/auth/login"


def test_join_url_without_a_stage() -> None:
    assert shapes.join_url("http://127.0.0.1:8000", "/api/auth/me") == "http://127.0.0.1:8000/api/auth/me"


@pytest.mark.parametrize("text", ["2026-05-18T22:00:00.000Z", "2026-05-18T22:00:00Z", "2026-05-18T22:00:00.5+00:00"])
def test_wire_time_accepts_utc_forms(text: str) -> None:
    assert shapes.parse_wire_time(text).replace(microsecond=0) == datetime(2026, 5, 18, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    "text", ["2026-05-18T22:00:00", "2026-05-19T00:00:00+02:00", "2026-05-18", "yesterday", "2026-05-18 22:00:00Z"]
)
def test_wire_time_rejects_other_forms(text: str) -> None:
    with pytest.raises(ValueError):
        shapes.parse_wire_time(text)


def test_format_wire_time_has_milliseconds() -> None:
    assert shapes.format_wire_time(datetime(2026, 5, 18, 22, tzinfo=UTC)) == "2026-05-18T22:00:00.000Z"
    assert shapes.format_wire_time(datetime(2026, 5, 18, 22, 0, 1, 234567, tzinfo=UTC)) == "2026-05-18T22:00:01.234Z"


def test_error_codes_follow_the_vendor_table() -> None:
    assert [shapes.error_code(s) for s in (400, 401, 403, 404, 429, 500)] == [
        "BAD_REQUEST",
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "RATE_LIMITED",
        "INTERNAL_ERROR",
    ]
    assert shapes.error_code(503) == "INTERNAL_ERROR"
    assert shapes.error_code(405) == "BAD_REQUEST"


def test_daily_row_without_data_has_no_date_key() -> None:
    row = shapes.DailyConsumptionRow(device_id="d", device_name="n", serial_number="s", date=None, consumption=None)
    assert row.to_wire() == {"deviceId": "d", "deviceName": "n", "serialNumber": "s", "consumption": None}
    dated = shapes.DailyConsumptionRow(device_id="d", date=date(2026, 5, 18), consumption=1.5)
    assert dated.to_wire()["date"] == "2026-05-18"


def test_daily_rows_parse_with_and_without_date() -> None:
    payload = {
        "data": [
            {"deviceId": "d1", "deviceName": "", "serialNumber": "S1", "date": "2026-05-18", "consumption": 0.25},
            {"deviceId": "d1", "deviceName": "", "serialNumber": "S1", "consumption": None},
            {
                "deviceId": "d2",
                "deviceName": "x",
                "serialNumber": "S2",
                "date": "2026-05-18",
                "consumption": 3,
                "newField": True,
            },
        ]
    }
    rows = shapes.parse(shapes.DailyConsumptionResponse, payload, "daily consumption").data
    assert [(r.device_id, r.date, r.consumption) for r in rows] == [
        ("d1", date(2026, 5, 18), 0.25),
        ("d1", None, None),
        ("d2", date(2026, 5, 18), 3.0),
    ]


def test_telemetry_point_keeps_dotted_fields_and_reads_numbers() -> None:
    payload = {
        "deviceId": "d",
        "data": [
            {"timestamp": "2026-05-18T22:00:00.000Z", "meter.value.processed": 12.5, "connection.last_seen": "x"},
            {"timestamp": "2026-05-18T23:00:00Z", "battery.percent": 80, "battery.voltage": True},
        ],
    }
    answer = shapes.parse(shapes.TelemetryResponse, payload, "telemetry")
    first, second = answer.data
    assert first.timestamp == datetime(2026, 5, 18, 22, tzinfo=UTC)
    assert first.number(shapes.PROCESSED) == 12.5
    assert first.number(shapes.LAST_SEEN) is None  # not a number
    assert second.number(shapes.PROCESSED) is None  # absent
    assert second.number(shapes.BATTERY_PERCENT) == 80.0
    assert second.number(shapes.BATTERY_VOLTAGE) is None  # a bool is not a number
    assert first.to_wire() == payload["data"][0]


def test_devices_page_and_device() -> None:
    device = {
        "id": "d",
        "name": "",
        "serial_number": "S",
        "external_id": "E",
        "meter_type": "water_cold",
        "unit": "L",
        "multiplier": 10,
        "organization_id": "o",
    }
    page = shapes.parse(shapes.DevicesPage, {"data": [device], "total": 7}, "devices")
    assert page.total == 7
    assert page.data[0].multiplier == 10.0
    assert page.data[0].to_wire() == {**device, "multiplier": 10.0}


def test_audit_page_parses() -> None:
    payload = {
        "data": [
            {
                "id": "c1",
                "device_id": "d",
                "timestamp": "2026-05-18T22:00:00.000Z",
                "previous_value": 1,
                "new_value": None,
                "actor": "user",
                "changed_at": "2026-05-19T01:00:00.000+00:00",
            }
        ],
        "next_cursor": None,
    }
    page = shapes.parse(shapes.AuditChangesPage, payload, "changes")
    assert page.data[0].changed_at == datetime(2026, 5, 19, 1, tzinfo=UTC)
    assert page.data[0].previous_value == 1.0
    assert page.next_cursor is None


@pytest.mark.parametrize(
    ("model", "payload", "named"),
    [
        (shapes.DevicesPage, {"data": [], "total": -1}, "total"),
        (shapes.DevicesPage, {"data": [{"id": "x"}], "total": 1}, "data.0.organization_id"),
        (shapes.DailyConsumptionResponse, {"data": "nope"}, "data"),
        (shapes.TelemetryResponse, {"deviceId": "d", "data": [{"meter.value.processed": 1}]}, "data.0.timestamp"),
        (
            shapes.AuditChangesPage,
            {"data": [{"id": "c", "device_id": "d", "timestamp": "2026-05-18T22:00:00"}]},
            "data.0",
        ),
        (shapes.MeResponse, [], "(root)"),
    ],
)
def test_bad_payloads_raise_upstream_bad_response(model: type, payload: object, named: str) -> None:
    with pytest.raises(UpstreamBadResponse) as caught:
        shapes.parse(model, payload, "thing")
    assert named in caught.value.detail
    assert caught.value.backend == "waltero"


def test_bad_payload_message_never_carries_values() -> None:
    with pytest.raises(UpstreamBadResponse) as caught:
        shapes.parse(shapes.LoginResponse, {"token": 12345, "accessToken": "secret-token-value"}, "login")
    assert "secret-token-value" not in str(caught.value)
    assert "12345" not in str(caught.value)
    # chained for debugging, but the chained validation error repeats no input either
    assert "secret-token-value" not in str(caught.value.__cause__)
    assert "12345" not in str(caught.value.__cause__)


def test_parse_json_rejects_non_json() -> None:
    with pytest.raises(UpstreamBadResponse, match="not JSON"):
        shapes.parse_json(b"<html>gateway</html>", shapes.MeResponse, "user record")


def test_unused_parts_of_the_login_and_user_record_are_optional() -> None:
    login = shapes.parse(shapes.LoginResponse, {"token": "t", "user": {"name": "someone"}}, "login")
    assert login.token == "t"
    assert login.user is not None
    assert login.user.id is None
    me = shapes.parse(shapes.MeResponse, {"user": {}, "accessible_organizations": [{"organization_id": "o"}]}, "me")
    assert [o.organization_id for o in me.accessible_organizations] == ["o"]


def test_a_device_without_serial_number_or_multiplier_still_parses() -> None:
    device = shapes.parse(
        shapes.Device,
        {
            "id": "d",
            "serial_number": None,
            "meter_type": "gas",
            "unit": "m3",
            "multiplier": None,
            "organization_id": "o",
        },
        "device",
    )
    assert device.serial_number is None
    assert device.multiplier is None


def test_telemetry_numbers_must_be_finite() -> None:
    from app.backends.waltero.shapes import TelemetryPoint

    point = TelemetryPoint.model_validate(
        {
            "timestamp": "2026-05-01T00:00:00.000Z",
            "battery.percent": float("nan"),
            "connection.rssi": float("-inf"),
            "battery.voltage": 3.6,
        }
    )
    assert point.number("battery.percent") is None
    assert point.number("connection.rssi") is None
    assert point.number("battery.voltage") == 3.6


# --- both readings where the page allows two ------------------------------------------------------------
def test_a_bare_list_is_read_as_the_data_wrapper() -> None:
    rows = [{"deviceId": "d", "date": "2026-05-18", "consumption": 1.0}]
    bare = shapes.parse(shapes.DailyConsumptionResponse, rows, "daily")
    wrapped = shapes.parse(shapes.DailyConsumptionResponse, {"data": rows}, "daily")
    assert bare == wrapped
    assert bare.data[0].consumption == 1.0


def test_nested_telemetry_keys_become_the_dotted_names() -> None:
    nested = {"timestamp": "2026-05-18T22:00:00.000Z", "meter": {"value": {"processed": 2.5, "raw": 25}}}
    flat = {"timestamp": "2026-05-18T22:00:00.000Z", "meter.value.processed": 2.5, "meter.value.raw": 25}
    a = shapes.parse(shapes.TelemetryResponse, {"data": [nested]}, "telemetry").data[0]
    b = shapes.parse(shapes.TelemetryResponse, {"data": [flat]}, "telemetry").data[0]
    assert a.number(shapes.PROCESSED) == b.number(shapes.PROCESSED) == 2.5
    assert a.field_names() == b.field_names() == [shapes.PROCESSED, shapes.RAW]


def test_plain_organization_ids_and_upper_case_ids_are_accepted() -> None:
    me = shapes.parse(
        shapes.MeResponse, {"user": {}, "accessible_organizations": ["AB000000-0000-0000-0000-000000000001"]}, "me"
    )
    assert [o.organization_id for o in me.accessible_organizations] == ["ab000000-0000-0000-0000-000000000001"]
    change = shapes.parse(
        shapes.AuditChange,
        {
            "id": "C0FFEE00-0000-4000-8000-000000000001",
            "device_id": "DEADBEEF-0000-4000-8000-000000000001",
            "timestamp": "2026-05-18T22:00:00.000Z",
            "changed_at": "2026-05-18T23:00:00.000Z",
        },
        "audit",
    )
    assert (change.id, change.device_id) == (
        "c0ffee00-0000-4000-8000-000000000001",
        "deadbeef-0000-4000-8000-000000000001",
    )
