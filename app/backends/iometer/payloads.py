"""IOmeter response payloads: shape checks and the OBIS/unit readings of docs/vendors/iometer.md.

Every accessor raises `UpstreamBadResponse` when the vendor's JSON lacks a field or has the wrong
type, so a malformed answer is a 502 and never a `KeyError` (500). The OBIS table and the unit
conversions (energy to kWh, power to W) live here and nowhere else.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import accumulate, chain
from operator import add, itemgetter
from typing import Any, NamedTuple

from app.domain.models import Medium
from app.infra import tolerance
from app.infra.errors import UpstreamBadResponse
from app.infra.timeutil import parse_rfc3339

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
            if meter_id is not None and meter_id != meter_id.lower():  # one spelling per id: lower case
                tolerance.record(BACKEND, "id_case", "upper", pinned=False)
                meter_id = meter_id.lower()
            readings.append(WireReading(meter_id, time, [v for v in values if math.isfinite(v.value)]))
    except (KeyError, TypeError) as exc:
        raise bad("a reading lacks a field") from exc
    forms = Counter(obis_form(v.obis) for reading in readings for v in reading.values)
    for form, count in forms.items():
        tolerance.record(BACKEND, "obis_format", form, pinned=form == "decimal", count=count)
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


class EpochParser:
    """Epoch seconds of a page's times, for the daily derivation: what `TimeParser(text).timestamp()`
    gives, and the same refusals.

    A page of 20-character times (the pinned `YYYY-MM-DDTHH:MM:SSZ`, docs/vendors/iometer.md) is read
    from two small tables, `YYYY-MM-DDT` to that day's first second and `HH:MM:SSZ` to a time of day,
    each entry parsed once by `parse_rfc3339` (at that length a time is valid exactly when both halves
    are, and means their sum); any other page goes through `TimeParser`, string by string. Remembers
    at most `LIMIT` days and times of day."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self._days: dict[str, float] = {}
        self._clocks: dict[str, float] = {}
        self._other = TimeParser()

    def page(self, texts: list[str]) -> list[float]:
        """`texts` (strings) as epoch seconds; raises `UpstreamBadResponse` for a time that is not RFC 3339."""
        if texts and set(map(len, texts)) == {20}:
            days, clocks = list(map(_DAY, texts)), list(map(_CLOCK, texts))
            if self._learn(self._days, days, "{}00:00:00Z") and self._learn(self._clocks, clocks, "1970-01-01T{}"):
                return list(map(add, map(self._days.__getitem__, days), map(self._clocks.__getitem__, clocks)))
        return [self._other(text).timestamp() for text in texts]

    def _learn(self, table: dict[str, float], keys: list[str], form: str) -> bool:
        """Add the keys `table` lacks; False when one is not valid (the page then goes string by string)."""
        missing = set(keys).difference(table)
        if len(table) + len(missing) > self.LIMIT:
            table.clear()
            missing = set(keys)
        for key in missing:
            try:
                table[key] = parse_rfc3339(form.format(key)).timestamp()
            except ValueError:
                return False
        return True


_DAY, _CLOCK = itemgetter(slice(0, 11)), itemgetter(slice(11, 20))


class RegisterPage(NamedTuple):
    """A readings page as the daily derivation reads it: per reading, in page order, its time (epoch
    seconds), its meter (partner-wide pages; lower case), and its cumulative register in facade units
    (`register_value`; None when it has none)."""

    times: list[float]
    meter_ids: list[str] | None
    values: list[float | None]
    units: list[str | None]
    cursor: str | None


def register_page_reference(response: Any, *, with_meter: bool, times: EpochParser) -> RegisterPage:
    """`register_page` the general way: `readings_page`, then `TimeParser` and `register_value` for each
    reading. What the fast path must equal (tests/unit/backends/iometer/test_register_page.py)."""
    page = readings_page(response, with_meter=with_meter)
    epochs = [times._other(r.time).timestamp() for r in page.readings]
    registers = [register_value(r.values) for r in page.readings]
    return RegisterPage(
        epochs,
        [r.meter_id or "" for r in page.readings] if with_meter else None,
        [None if found is None else found[0] for found in registers],
        [None if found is None else found[1] for found in registers],
        page.cursor,
    )


_TIME, _VALUES, _METER, _ID = itemgetter("time"), itemgetter("values"), itemgetter("meter"), itemgetter("id")
_OBIS, _NUMBER, _UNIT = itemgetter("obisCode"), itemgetter("value"), itemgetter("unit")


def register_page(response: Any, *, with_meter: bool, times: EpochParser) -> RegisterPage:
    """A `MeterReadingsResponse` object decoded for the daily derivation only: equal to
    `register_page_reference` (the same values, refusals and tolerance counts), at a fraction of its cost.

    A page in the pinned shape (docs/vendors/iometer.md: well-typed finite values, each reading's
    register in a unit spelt as pinned) is read in one pass per field over the page, with no object per
    reading or register. Anything else, whatever the strict path would refuse or tolerate (a missing
    field, a value of another type, `NaN`, a unit in another case or unknown), goes through
    `register_page_reference`, so it is refused or tolerated exactly as there. (One difference from the
    readings path: `unit_case` counts the readings of a whole page, not only those of the window.)"""
    rows = list_field(response, "readings")
    cursor = str_field(response, "cursor", nullable=True)
    fast = _pinned_registers(rows, with_meter)
    if fast is None:
        return register_page_reference(response, with_meter=with_meter, times=times)
    texts, meter_ids, values, units, codes = fast
    if meter_ids is not None:
        lowered = list(map(str.lower, meter_ids))
        if lowered != meter_ids:  # one spelling per id: lower case
            upper = sum(a != b for a, b in zip(lowered, meter_ids, strict=True))
            tolerance.record(BACKEND, "id_case", "upper", pinned=False, count=upper)
            meter_ids = lowered
    forms: Counter[str] = Counter()
    for code, count in codes.items():
        forms[obis_form(code)] += count
    for form, count in forms.items():
        tolerance.record(BACKEND, "obis_format", form, pinned=form == "decimal", count=count)
    return RegisterPage(times.page(texts), meter_ids, values, units, cursor)


def _types(items: list[Any]) -> set[type]:
    return set(map(type, items))


_STR, _NUMBERS = {str}, {float, int}


def _pinned_registers(
    rows: list[Any], with_meter: bool
) -> tuple[list[str], list[str] | None, list[float | None], list[str | None], Counter[str]] | None:
    """(times as sent, meter ids as sent, registers, their units, count of each OBIS code) of a page in
    the pinned shape, else None."""
    try:
        texts = list(map(_TIME, rows))
        meter_ids = list(map(_ID, map(_METER, rows))) if with_meter else None
        lists = list(map(_VALUES, rows))
        if not _types(lists) <= {list}:
            return None
        flat = list(chain.from_iterable(lists))
        codes, numbers, units = list(map(_OBIS, flat)), list(map(_NUMBER, flat)), list(map(_UNIT, flat))
        if not (
            _types(texts) <= _STR
            and (meter_ids is None or _types(meter_ids) <= _STR)
            and _types(numbers) <= _NUMBERS
            and math.isfinite(sum(numbers))  # a NaN or an infinity anywhere makes the sum one
        ):
            return None
    except (KeyError, TypeError, OverflowError):
        return None
    n = len(lists)
    width = len(lists[0]) if lists else 0
    if list(map(len, lists)) == [width] * n and codes == codes[:width] * n and units == units[:width] * n:
        # the usual page: every reading lists the same registers in the same units (checked as sent)
        return _uniform(texts, meter_ids, numbers, codes[:width], units[:width], n)
    if not (_types(codes) <= _STR and _types(units) <= _STR):
        return None
    counts = Counter(codes)
    medium = {code: _MEDIUM_OF_REGISTER.get(decimal_obis(code)) for code in counts}
    lengths = list(map(len, lists))
    starts = list(accumulate(lengths[:-1], initial=0)) if lengths else []
    registers = [_register_index(codes, medium, start, k) for start, k in zip(starts, lengths, strict=True)]
    exponents: dict[tuple[str, str], int] = {}
    for at in set(registers):
        if at is None:
            continue
        facade_unit = UNIT_BY_MEDIUM[medium[codes[at]] or "electricity"]
        exponent = _exponent(units[at], facade_unit)
        if exponent is None:
            return None
        exponents[(units[at], facade_unit)] = exponent
    values: list[float | None] = []
    out_units: list[str | None] = []
    for at in registers:
        if at is None:
            values.append(None)
            out_units.append(None)
            continue
        facade_unit = UNIT_BY_MEDIUM[medium[codes[at]] or "electricity"]
        values.append(_scale(numbers[at], exponents[(units[at], facade_unit)]))
        out_units.append(facade_unit)
    return texts, meter_ids, values, out_units, counts


def _uniform(
    texts: list[str], meter_ids: list[str] | None, numbers: list[Any], codes: list[str], units: list[str], n: int
) -> tuple[list[str], list[str] | None, list[float | None], list[str | None], Counter[str]] | None:
    """`_pinned_registers` of a page whose `n` readings all have the registers `codes` in `units`."""
    if not (_types(codes) <= _STR and _types(units) <= _STR):
        return None
    counts = Counter({code: count * n for code, count in Counter(codes).items()})
    medium = {code: _MEDIUM_OF_REGISTER.get(decimal_obis(code)) for code in counts}
    at = _register_index(codes, medium, 0, len(codes))
    if at is None:
        return texts, meter_ids, [None] * n, [None] * n, counts
    facade_unit = UNIT_BY_MEDIUM[medium[codes[at]] or "electricity"]
    exponent = _exponent(units[at], facade_unit)
    if exponent is None:
        return None
    values: list[float | None] = list(_scale_all(numbers[at :: len(codes)], exponent))
    same_unit: list[str | None] = [facade_unit] * n
    return texts, meter_ids, values, same_unit, counts


def _exponent(unit: str, facade_unit: str) -> int | None:
    """The exponent of a register's unit spelt exactly as pinned; None for another spelling or a unit we
    cannot convert (the general path decides those)."""
    return (_ENERGY_TO_KWH if facade_unit == "kWh" else _VOLUME_TO_M3).get(unit)


def _register_index(codes: list[str], medium: dict[str, str | None], start: int, n: int) -> int | None:
    """Where `register_value` finds the register among one reading's values `codes[start:start + n]`."""
    found = None
    for at in range(start, start + n):
        kind = medium[codes[at]]
        if kind == "electricity":
            return at
        if kind is not None and found is None:
            found = at
    return found


def _scale_all(values: list[float], exponent: int) -> list[float]:
    """`_scale` of each value (the very same arithmetic, so the very same floats)."""
    if exponent < 0:
        divisor = 10**-exponent
        return [v / divisor for v in values]
    factor = 10**exponent
    return [float(v * factor) for v in values]


_OBIS_DECIMAL = re.compile(r"(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\*(\d{1,3}))?")
_OBIS_HEX = re.compile(r"([0-9a-f]{2})-([0-9a-f]{2}):([0-9a-f]{2})\.([0-9a-f]{2})\.([0-9a-f]{2})\*([0-9a-f]{2})", re.I)
_OBIS_SHORT = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})")

Obis = tuple[int, int, int, int, int]


@lru_cache(maxsize=4096)  # a partner sends a handful of distinct codes, millions of times
def parse_obis(code: str) -> tuple[Obis, str] | None:
    """(value groups A..E, form) of an OBIS code in any `ObisFormat` form, or None.

    Forms: `decimal` `1-0:1.8.0`, `full` `1-0:1.8.0*255`, `hex` `01-00:01.08.00*ff`, `short` `1.8.0`
    (electricity, channel 0). A full or hex code whose F group is not 255 is kept as sent (None):
    F qualifies the value (a billing period), so it is a different register."""
    if m := _OBIS_DECIMAL.fullmatch(code):
        groups = m.groups()
        if groups[5] is not None and int(groups[5]) != 255:
            return None
        a, b, c, d, e = (int(g) for g in groups[:5])
        return (a, b, c, d, e), "decimal" if groups[5] is None else "full"
    if m := _OBIS_HEX.fullmatch(code):
        a, b, c, d, e, f = (int(g, 16) for g in m.groups())
        return ((a, b, c, d, e), "hex") if f == 255 else None
    if m := _OBIS_SHORT.fullmatch(code):
        c, d, e = (int(g) for g in m.groups())
        return (1, 0, c, d, e), "short"
    return None


@lru_cache(maxsize=4096)
def decimal_obis(code: str) -> str:
    """Any form of an OBIS code in decimal (`01-00:01.08.00*ff`, `1-0:1.8.0*255` → `1-0:1.8.0`);
    a code that is not OBIS is returned as sent."""
    parsed = parse_obis(code)
    if parsed is None:
        return code
    a, b, c, d, e = parsed[0]
    return f"{a}-{b}:{c}.{d}.{e}"


MEDIUM_BY_GROUP_A: dict[int, Medium] = {1: "electricity", 6: "heat", 7: "gas", 8: "water", 9: "water"}
"""OBIS value group A (IEC 62056-6-1): 1 electricity, 6 heat, 7 gas, 8 cold water, 9 hot water."""

UNIT_BY_MEDIUM: dict[str, str] = {"electricity": "kWh", "heat": "kWh", "gas": "m3", "water": "m3"}

REGISTER_BY_MEDIUM: dict[str, str] = {
    "electricity": ENERGY_IMPORT,
    "heat": "6-0:1.0.0",
    "gas": "7-0:3.0.0",
    "water": "8-0:1.0.0",
}
"""The cumulative register daily consumption is derived from, per medium (energy, or volume)."""


def medium_of(codes: list[str]) -> Medium:
    """The medium an OBIS code list measures (the first code with a known group A); `unknown` if none."""
    for code in codes:
        parsed = parse_obis(code)
        if parsed is not None and parsed[0][0] in MEDIUM_BY_GROUP_A:
            return MEDIUM_BY_GROUP_A[parsed[0][0]]
    return "unknown"


def obis_form(code: str) -> str:
    """`decimal`, `full`, `hex`, `short` or `other`: which form the server sent."""
    parsed = parse_obis(code)
    return parsed[1] if parsed is not None else "other"


def normalize(value: WireValue) -> tuple[str, str, float, str]:
    """(quantity, obis, value, unit) in facade units: energy kWh, power W.

    A known register in a unit we cannot convert is passed on as `obis:<code>` with its unit, rather
    than mislabelled."""
    obis = decimal_obis(value.obis)
    quantity = QUANTITY_BY_OBIS.get(obis)
    if quantity is not None:
        unit, exponents = _CONVERSIONS[quantity]
        exponent = unit_exponent(exponents, value.unit)
        if exponent is not None:
            return quantity, obis, _scale(value.value, exponent), unit
    return f"obis:{obis}", obis, float(value.value), canonical_unit(value.unit)


def _scale(value: float, exponent: int) -> float:
    # Divide for smaller units: 12345678 Wh / 1000 is exactly 12345.678, * 0.001 is not.
    return value / 10**-exponent if exponent < 0 else float(value * 10**exponent)


_VOLUME_TO_M3 = {"m3": 0, "L": -3, "l": -3, "dm3": -3}

# issue 21: unit strings compared case-insensitively
KNOWN_UNITS = frozenset({*_ENERGY_TO_KWH, *_POWER_TO_W, *_VOLUME_TO_M3, "V", "A", "Hz"})
"""Units as docs/vendors/iometer.md spells them (the meter's own: `Wh`, `W`, `V`, ...)."""


_CANONICAL = {u.lower(): u for u in sorted(KNOWN_UNITS, reverse=True)}


def canonical_unit(unit: str) -> str:
    """`unit` as spelt in `KNOWN_UNITS` where it is one of them in another case (`v` is V), else as sent."""
    if unit in KNOWN_UNITS:
        return unit
    return _CANONICAL.get(unit.lower(), unit)


def unit_exponent(table: dict[str, int], unit: str) -> int | None:
    """The exponent `table` gives `unit`: exactly as spelt, else compared case-insensitively (the
    page's `unit` is a free `String!`; `kwh` is kWh). Where two spellings differ only in case (`l`,
    `L`), they mean the same; `MWh` is the only energy unit in `M`/`m`, so `mwh` is MWh."""
    exponent = table.get(unit)
    if exponent is not None:
        return exponent
    # `m` (milli) and `M` (mega) are nine orders apart: a unit written in mixed case (`mW`) means what its
    # letters say, so it matches only with that letter as sent; one written all in lower case (`mwh`) has
    # lost its case and is read as the table's only unit of that spelling
    folded = {key.lower(): (key, value) for key, value in table.items()}
    match = folded.get(unit.lower())
    if match is None or (unit != unit.lower() and unit[:1] in "mM" and match[0][:1] != unit[:1]):
        return None
    tolerance.record(BACKEND, "unit_case", "other", pinned=False)
    return match[1]


_MEDIUM_OF_REGISTER = {code: medium for medium, code in REGISTER_BY_MEDIUM.items()}


def register_value(values: list[WireValue]) -> tuple[float, str] | None:
    """The reading's cumulative register for daily consumption, in facade units: `1-0:1.8.0` (kWh)
    for electricity, else the first of heat `6-0:1.0.0` (kWh), gas `7-0:3.0.0` or water `8-0:1.0.0`
    (m3) in the reading. None when the reading has none of them (or in a unit we cannot convert)."""
    found: tuple[WireValue, str] | None = None
    for v in values:
        medium = _MEDIUM_OF_REGISTER.get(decimal_obis(v.obis))
        if medium == "electricity":
            found = (v, medium)
            break
        if medium is not None and found is None:
            found = (v, medium)
    if found is None:
        return None
    v, medium = found
    unit = UNIT_BY_MEDIUM[medium]
    exponent = unit_exponent(_ENERGY_TO_KWH if unit == "kWh" else _VOLUME_TO_M3, v.unit)
    return None if exponent is None else (_scale(v.value, exponent), unit)


def register_of_reading(medium: str, obis: str | None, value: float, unit: str | None) -> float | None:
    """A facade reading's value if it is `medium`'s cumulative register (`REGISTER_BY_MEDIUM`), in the
    unit daily consumption uses (kWh or m3), else None: what `/consumption` at 15min/hour derives from,
    so that it agrees with the daily derivation (`register_value`)."""
    code = REGISTER_BY_MEDIUM.get(medium)
    if code is None or obis != code or unit is None:
        return None
    facade_unit = UNIT_BY_MEDIUM[medium]
    exponent = unit_exponent(_ENERGY_TO_KWH if facade_unit == "kWh" else _VOLUME_TO_M3, unit)
    return None if exponent is None else _scale(value, exponent)


def energy_import_kwh(values: list[WireValue]) -> float | None:
    """The `1-0:1.8.0` register of one reading in kWh, or None when the reading lacks it."""
    for v in values:
        if decimal_obis(v.obis) == ENERGY_IMPORT:
            exponent = unit_exponent(_ENERGY_TO_KWH, v.unit)
            return None if exponent is None else _scale(v.value, exponent)
    return None
