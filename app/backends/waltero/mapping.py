"""Waltero payloads -> normalized models (pure functions).

Units: the facade speaks kWh and m3. Waltero's display units map as
`m3 -> m3 (x1)`, `L -> m3 (/1000)`, `kWh -> kWh (x1)`, `Wh -> kWh (/1000)`, `MWh -> kWh (x1000)`;
any other unit is passed through unscaled. Media: `water_cold`/`water_hot` -> water, `gas`,
`electricity`, `heat`; anything else -> unknown. `meter.value.processed` is a `volume` for water and
gas and an `energy_import` for electricity and heat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from app.backends.waltero.shapes import AuditChange, Device, TimedValue
from app.domain.models import Change, Medium, Meter, Reading

PREFIX = "waltero:"


@dataclass(frozen=True, slots=True)
class UnitScale:
    """How to turn a value in the device's display unit into the facade's unit."""

    unit: str | None
    factor: float = 1.0
    divide: bool = False
    """Divide by `factor` instead of multiplying (keeps `1234.5 L` -> `1.2345 m3` free of float noise)."""

    def apply(self, value: float | None) -> float | None:
        if value is None:
            return None
        if self.factor == 1.0:
            return value
        if self.divide:
            return value / self.factor
        # 105.595278 MWh * 1000 is 105595.27799999999 in binary floats: round the noise away
        return round(value * self.factor, 9)


_UNITS: dict[str, UnitScale] = {
    "m3": UnitScale("m3"),
    "m³": UnitScale("m3"),
    "L": UnitScale("m3", 1000.0, divide=True),
    "l": UnitScale("m3", 1000.0, divide=True),
    "kWh": UnitScale("kWh"),
    "Wh": UnitScale("kWh", 1000.0, divide=True),
    "MWh": UnitScale("kWh", 1000.0),
}

_MEDIA: dict[str, Medium] = {
    "water_cold": "water",
    "water_hot": "water",
    "gas": "gas",
    "electricity": "electricity",
    "heat": "heat",
}

_ACTORS: dict[str, Literal["system", "user"]] = {"system": "system", "user": "user"}


def unit_scale(unit: str | None) -> UnitScale:
    """The normalized unit and scale for a Waltero display unit (unknown units pass through as sent)."""
    if unit is None:
        return UnitScale(None)
    return _UNITS.get(unit, UnitScale(unit))


def medium(meter_type: str) -> Medium:
    return _MEDIA.get(meter_type, "unknown")


_VOLUME_UNITS = frozenset({"m3", "m³", "L", "l"})
_ENERGY_UNITS = frozenset({"kWh", "Wh", "MWh"})


def quantity(meter_type: str, unit: str | None = None) -> Literal["volume", "energy_import"] | None:
    """What `meter.value.processed` measures. A meter type outside the pinned enum is placed by its
    display unit (a volume or an energy unit); None only when neither says."""
    kind = medium(meter_type)
    if kind in ("water", "gas"):
        return "volume"
    if kind in ("electricity", "heat"):
        return "energy_import"
    if unit in _VOLUME_UNITS:
        return "volume"
    if unit in _ENERGY_UNITS:
        return "energy_import"
    return None


def prefixed(upstream_id: str) -> str:
    return PREFIX + upstream_id


def meter_from_device(device: Device) -> Meter:
    """One device is one meter; an empty name falls back to `external_id`."""
    return Meter(
        id=prefixed(device.id),
        backend="waltero",
        serial_number=device.serial_number or "",
        name=device.name or device.external_id or None,
        medium=medium(device.meter_type),
        unit=unit_scale(device.unit).unit,
        site_id=prefixed(device.organization_id) if device.organization_id else None,
        device_id=prefixed(device.id),
    )


def change_from_audit(row: AuditChange, device_unit: str | None) -> Change:
    """A data-audit row as a `Change`, values scaled from the device's display unit."""
    scale = unit_scale(device_unit)
    return Change(
        id=prefixed(row.id),
        backend="waltero",
        meter_id=prefixed(row.device_id),
        time=row.timestamp,
        previous_value=scale.apply(row.previous_value),
        new_value=scale.apply(row.new_value),
        unit=scale.unit,
        actor=_ACTORS.get(row.actor or ""),
        changed_at=row.changed_at,
    )


def readings_from_telemetry(
    values: list[TimedValue], *, meter_id: str, quantity: str, scale: UnitScale, start: datetime, end: datetime
) -> list[Reading]:
    """The readings of one telemetry answer (`shapes.parse_telemetry_values`): points with a number in
    `[start, end)`, scaled, ascending by time (stable: points of the same instant keep the answer's
    order). The vendor sends them ascending (pinned), so they are sorted only when they are not."""
    rows: list[Reading] = []
    apply = scale.apply
    unit = scale.unit
    isfinite = math.isfinite
    last: datetime | None = None
    ordered = True
    for when, number in values:
        value = apply(number)
        if value is None or not start <= when < end:
            continue
        if not isfinite(value):  # scaled past the float range: the model refuses it, as it always did
            Reading(meter_id=meter_id, time=when, quantity=quantity, obis=None, value=value, unit=unit)
        if last is not None and when < last:
            ordered = False
        last = when
        rows.append(
            Reading.trusted(
                {"meter_id": meter_id, "time": when, "quantity": quantity, "obis": None, "value": value, "unit": unit}
            )
        )
    if not ordered:
        rows.sort(key=lambda row: row.time)
    return rows
