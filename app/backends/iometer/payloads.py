"""IOmeter response payloads: shape checks and the OBIS/unit readings of UPSTREAMS.md.

Every accessor raises `UpstreamBadResponse` when the vendor's JSON lacks a field or has the wrong
type, so a malformed answer is a 502 and never a `KeyError` (500). The OBIS table and the unit
conversions (energy to kWh, power to W) live here and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from app.errors import UpstreamBadResponse
from app.timeutil import parse_rfc3339

BACKEND = "iometer"

ENERGY_IMPORT = "1-0:1.8.0"
"""The register daily consumption is derived from."""

QUANTITY_BY_OBIS: dict[str, str] = {
    ENERGY_IMPORT: "energy_import",
    "1-0:1.8.1": "energy_import_t1",
    "1-0:1.8.2": "energy_import_t2",
    "1-0:2.8.0": "energy_export",
    "1-0:16.7.0": "power",
}
"""Decimal OBIS code → facade quantity. Any other code becomes `obis:<code>`, value and unit as sent."""

# Decimal exponent from the unit as sent to the facade unit (Wh → kWh is 10**-3).
_ENERGY_TO_KWH = {"Wh": -3, "kWh": 0, "MWh": 3}
_POWER_TO_W = {"W": 0, "kW": 3, "MW": 6}
_CONVERSIONS: dict[str, tuple[str, dict[str, int]]] = {
    "energy_import": ("kWh", _ENERGY_TO_KWH),
    "energy_import_t1": ("kWh", _ENERGY_TO_KWH),
    "energy_import_t2": ("kWh", _ENERGY_TO_KWH),
    "energy_export": ("kWh", _ENERGY_TO_KWH),
    "power": ("W", _POWER_TO_W),
}


def bad(what: str) -> UpstreamBadResponse:
    return UpstreamBadResponse(f"IOmeter payload is malformed: {what}", backend=BACKEND)


def field(obj: Any, key: str) -> Any:
    """`obj[key]`, where `obj` must be a JSON object that has `key`."""
    if not isinstance(obj, dict) or key not in obj:
        raise bad(f"missing `{key}`")
    return obj[key]


def obj_field(obj: Any, key: str, *, nullable: bool = False) -> dict[str, Any] | None:
    value = field(obj, key)
    if value is None and nullable:
        return None
    if not isinstance(value, dict):
        raise bad(f"`{key}` is not an object")
    return value


def list_field(obj: Any, key: str) -> list[Any]:
    value = field(obj, key)
    if not isinstance(value, list):
        raise bad(f"`{key}` is not a list")
    return value


def str_field(obj: Any, key: str, *, nullable: bool = False) -> str | None:
    value = field(obj, key)
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise bad(f"`{key}` is not a string")
    return value


def req_str(obj: Any, key: str) -> str:
    value = field(obj, key)
    if not isinstance(value, str):
        raise bad(f"`{key}` is not a string")
    return value


def req_obj(obj: Any, key: str) -> dict[str, Any]:
    value = field(obj, key)
    if not isinstance(value, dict):
        raise bad(f"`{key}` is not an object")
    return value


def int_field(obj: Any, key: str) -> int:
    value = field(obj, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"`{key}` is not an integer")
    return value


class WireValue(NamedTuple):
    obis: str
    value: float
    unit: str


class WireReading(NamedTuple):
    meter_id: str | None
    """Set when the document asked for `meter { id }` (partner-wide readings)."""
    time: str
    """RFC 3339 as sent; parse with `TimeParser`."""
    values: list[WireValue]


@dataclass(frozen=True, slots=True)
class ReadingsPage:
    readings: list[WireReading]
    cursor: str | None


def readings_page(response: Any, *, with_meter: bool) -> ReadingsPage:
    """Check a `MeterReadingsResponse` object and return its readings and cursor."""
    rows = list_field(response, "readings")
    cursor = str_field(response, "cursor", nullable=True)
    readings: list[WireReading] = []
    try:
        for row in rows:
            meter_id = row["meter"]["id"] if with_meter else None
            time = row["time"]
            if not isinstance(time, str) or (with_meter and not isinstance(meter_id, str)):
                raise bad("a reading lacks its time or meter")
            values = [WireValue(v["obisCode"], v["value"], v["unit"]) for v in row["values"]]
            for v in values:
                if (
                    not isinstance(v.obis, str)
                    or not isinstance(v.unit, str)
                    or isinstance(v.value, bool)
                    or not isinstance(v.value, int | float)
                ):
                    raise bad("a reading value is not (obisCode, value, unit)")
            # JSON parsers accept NaN/Infinity; such a value is no reading, the others still are
            readings.append(WireReading(meter_id, time, [v for v in values if math.isfinite(v.value)]))
    except (KeyError, TypeError) as exc:
        raise bad("a reading lacks a field") from exc
    return ReadingsPage(readings, cursor)


class TimeParser:
    """Parses the vendor's RFC 3339 times, remembering each distinct string (a partner-wide page
    repeats one time per meter). Raises `UpstreamBadResponse` for an unparseable time."""

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}

    def __call__(self, text: str) -> datetime:
        parsed = self._seen.get(text)
        if parsed is None:
            try:
                parsed = parse_rfc3339(text)
            except ValueError as exc:
                raise bad("a reading time is not RFC 3339") from exc
            if len(self._seen) > 100_000:
                self._seen.clear()
            self._seen[text] = parsed
        return parsed


def decimal_obis(code: str) -> str:
    """`1-0:1.8.0*255` → `1-0:1.8.0` (the full form's `*255` means "no further qualifier")."""
    return code[:-4] if code.endswith("*255") else code


def normalize(value: WireValue) -> tuple[str, str, float, str]:
    """(quantity, obis, value, unit) in facade units: energy kWh, power W.

    A known register in a unit we cannot convert is passed on as `obis:<code>` with its unit, rather
    than mislabelled."""
    obis = decimal_obis(value.obis)
    quantity = QUANTITY_BY_OBIS.get(obis)
    if quantity is not None:
        unit, exponents = _CONVERSIONS[quantity]
        exponent = exponents.get(value.unit)
        if exponent is not None:
            return quantity, obis, _scale(value.value, exponent), unit
    return f"obis:{obis}", obis, float(value.value), value.unit


def _scale(value: float, exponent: int) -> float:
    # Divide for smaller units: 12345678 Wh / 1000 is exactly 12345.678, * 0.001 is not.
    return value / 10**-exponent if exponent < 0 else float(value * 10**exponent)


def energy_import_kwh(values: list[WireValue]) -> float | None:
    """The `1-0:1.8.0` register of one reading in kWh, or None when the reading lacks it."""
    for v in values:
        if decimal_obis(v.obis) == ENERGY_IMPORT:
            exponent = _ENERGY_TO_KWH.get(v.unit)
            return None if exponent is None else _scale(v.value, exponent)
    return None
