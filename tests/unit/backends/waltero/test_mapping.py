from datetime import UTC, datetime

import pytest

from app.backends.waltero import mapping
from app.backends.waltero.shapes import AuditChange, Device


@pytest.mark.parametrize(
    ("unit", "value", "normalized", "expected"),
    [
        ("m3", 12.5, "m3", 12.5),
        ("L", 1234.5, "m3", 1.2345),
        ("kWh", 8.25, "kWh", 8.25),
        ("Wh", 6000.0, "kWh", 6.0),
        ("MWh", 0.0625, "kWh", 62.5),
        ("GJ", 3.0, "GJ", 3.0),  # unknown units pass through unscaled
    ],
)
def test_unit_normalization(unit: str, value: float, normalized: str, expected: float) -> None:
    scale = mapping.unit_scale(unit)
    assert scale.unit == normalized
    assert scale.apply(value) == pytest.approx(expected, rel=1e-12)
    assert scale.apply(None) is None


def test_litres_divide_without_float_noise() -> None:
    assert mapping.unit_scale("L").apply(1234.5) == 1.2345
    assert mapping.unit_scale("Wh").apply(1500.0) == 1.5


def test_missing_unit() -> None:
    assert mapping.unit_scale(None).unit is None


@pytest.mark.parametrize(
    ("meter_type", "medium", "quantity"),
    [
        ("water_cold", "water", "volume"),
        ("water_hot", "water", "volume"),
        ("gas", "gas", "volume"),
        ("electricity", "electricity", "energy_import"),
        ("heat", "heat", "energy_import"),
        ("steam", "unknown", None),
    ],
)
def test_medium_and_quantity(meter_type: str, medium: str, quantity: str | None) -> None:
    assert mapping.medium(meter_type) == medium
    assert mapping.quantity(meter_type) == quantity


def _device(**changes: object) -> Device:
    values: dict[str, object] = {
        "id": "11111111-1111-1111-1111-111111111101",
        "name": "Kitchen",
        "serial_number": "WS1",
        "external_id": "EXT-1",
        "meter_type": "water_hot",
        "unit": "L",
        "multiplier": 10,
        "organization_id": "00000000-0000-0000-0000-000000000001",
    }
    values.update(changes)
    return Device.model_validate(values)


def test_meter_from_device() -> None:
    meter = mapping.meter_from_device(_device())
    assert meter.model_dump() == {
        "id": "waltero:11111111-1111-1111-1111-111111111101",
        "backend": "waltero",
        "serial_number": "WS1",
        "name": "Kitchen",
        "medium": "water",
        "unit": "m3",
        "site_id": "waltero:00000000-0000-0000-0000-000000000001",
        "device_id": "waltero:11111111-1111-1111-1111-111111111101",
    }


def test_empty_name_falls_back_to_external_id() -> None:
    assert mapping.meter_from_device(_device(name="")).name == "EXT-1"
    assert mapping.meter_from_device(_device(name=None, external_id=None)).name is None


def test_change_from_audit_scales_and_prefixes() -> None:
    row = AuditChange(
        id="c1",
        device_id="d1",
        timestamp=datetime(2026, 5, 18, 22, tzinfo=UTC),
        previous_value=1500.0,
        new_value=None,
        actor="system",
        changed_at=datetime(2026, 5, 19, tzinfo=UTC),
    )
    change = mapping.change_from_audit(row, "Wh")
    assert (change.id, change.meter_id, change.unit) == ("waltero:c1", "waltero:d1", "kWh")
    assert (change.previous_value, change.new_value, change.actor) == (1.5, None, "system")
    assert change.time == row.timestamp
    assert change.changed_at == row.changed_at
    odd = mapping.change_from_audit(row.model_copy(update={"actor": "robot"}), None)
    assert odd.actor is None
    assert odd.unit is None
    assert odd.previous_value == 1500.0


def test_a_device_without_serial_number() -> None:
    assert mapping.meter_from_device(_device(serial_number=None)).serial_number == ""


def test_mwh_to_kwh_leaves_no_float_noise() -> None:
    from app.backends.waltero.mapping import unit_scale

    assert unit_scale("MWh").apply(105.595278) == 105595.278
    assert unit_scale("Wh").apply(1234.5) == 1.2345
