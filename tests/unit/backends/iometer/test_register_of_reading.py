"""Which facade reading is a meter's cumulative register, in the units daily consumption uses."""

from __future__ import annotations

import pytest

from app.backends.iometer.payloads import register_of_reading


@pytest.mark.parametrize(
    ("medium", "obis", "value", "unit", "expected"),
    [
        ("electricity", "1-0:1.8.0", 12.5, "kWh", 12.5),  # energy_import, already in kWh
        ("electricity", "1-0:1.8.1", 12.5, "kWh", None),  # a tariff register is not the total
        ("electricity", "1-0:16.7.0", 500.0, "W", None),  # power is not a register
        ("heat", "6-0:1.0.0", 2500.0, "Wh", 2.5),  # passed on as obis:6-0:1.0.0, as sent
        ("heat", "6-0:1.0.0", 1.5, "MWh", 1500.0),
        ("water", "8-0:1.0.0", 1234.0, "L", 1.234),
        ("gas", "7-0:3.0.0", 3.25, "m3", 3.25),
        ("gas", "8-0:1.0.0", 3.25, "m3", None),  # water's register on a gas meter
        ("water", "8-0:1.0.0", 3.0, "gal", None),  # a unit we cannot convert
        ("water", "8-0:1.0.0", 3.0, None, None),
        ("unknown", "1-0:1.8.0", 3.0, "kWh", None),
        ("electricity", None, 3.0, "kWh", None),
    ],
)
def test_register_of_reading(
    medium: str, obis: str | None, value: float, unit: str | None, expected: float | None
) -> None:
    got = register_of_reading(medium, obis, value, unit)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)
