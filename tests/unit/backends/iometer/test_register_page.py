"""The daily derivation's page decode (`register_page`) against the general one it replaces
(`register_page_reference`: `readings_page`, then `TimeParser` and `register_value` per reading).

On generated pages, pinned-shape pages and pages bent off that shape in every way the strict path
refuses or tolerates, the two give the same registers, times, meters and cursor, the same refusal (type
and message), and the same tolerance counts."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.backends.iometer import payloads
from app.backends.iometer.payloads import EpochParser, RegisterPage, register_page, register_page_reference
from app.infra import tolerance
from app.infra.errors import UpstreamBadResponse

PROPERTIES = settings(max_examples=400, derandomize=True, deadline=None)

CODES = [
    "1-0:1.8.0",
    "1-0:1.8.0*255",
    "01-00:01.08.00*ff",
    "1.8.0",
    "1-0:1.8.1",
    "1-0:2.8.0",
    "1-0:16.7.0",
    "6-0:1.0.0",
    "7-0:3.0.0",
    "8-0:1.0.0",
    "1-0:1.8.0*1",
    "0-0:96.1.0",
]
UNITS = ["Wh", "kWh", "MWh", "wh", "KWH", "mwh", "m3", "L", "l", "dm3", "M3", "W", "varh", ""]
T0 = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)


def pinned_time(i: int) -> str:
    return f"{T0 + timedelta(minutes=15 * i):%Y-%m-%dT%H:%M:%SZ}"


odd_times = st.sampled_from(
    [
        "2026-03-29T01:15:00.5Z",
        "2026-03-29T03:15:00+02:00",
        "2026-03-29t01:15:00z",
        "2026-03-29 01:15:00Z",
        "2026-02-30T00:00:00Z",
        "2026-03-29T24:00:00Z",
        "2026-03-29T23:59:60Z",
        "2026-03-29T01:15Z",
        "2026-03-29T01:15:00",
        "2026-03-29T01:15:00X",
        "2026-03-29Q01:15:00Z",
        "\uff12\uff10\uff12\uff16-03-29T01:15:00Z",  # full-width digits (Unicode `\d`)
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "yesterday",
    ]
)
numbers = st.one_of(
    st.floats(min_value=0, max_value=1e12, allow_nan=False),
    st.integers(min_value=0, max_value=10**12),
)
odd_numbers = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), True, False, None, "1", 1e308]),
    st.integers(min_value=2**63, max_value=2**70),
)


@st.composite
def pages(draw: st.DrawFn) -> tuple[Any, bool]:
    """A page in the pinned shape (each reading the same registers in the same units), then bent."""
    with_meter = draw(st.booleans())
    width = draw(st.integers(0, 4))
    codes = draw(st.lists(st.sampled_from(CODES), min_size=width, max_size=width))
    units = draw(st.lists(st.sampled_from(UNITS), min_size=width, max_size=width))
    meters = draw(st.lists(st.sampled_from(["m-a", "m-b", "M-B"]), min_size=1, max_size=3))
    n = draw(st.integers(0, 12))
    first = draw(st.integers(-3, 2000))
    rows: list[Any] = []
    for i in range(n):
        row: dict[str, Any] = {}
        if with_meter:
            row["meter"] = {"id": meters[i % len(meters)]}
        row["time"] = pinned_time(first + i)
        row["values"] = [
            {"obisCode": code, "value": draw(numbers), "unit": unit} for code, unit in zip(codes, units, strict=True)
        ]
        rows.append(row)
    page: Any = {"readings": rows, "cursor": draw(st.sampled_from([None, "next"]))}
    for _ in range(draw(st.integers(0, 3))):
        page = bend(draw, page, with_meter)
    return page, with_meter


def bend(draw: st.DrawFn, page: Any, with_meter: bool) -> Any:
    """One change off the pinned shape, somewhere on the page."""
    kind = draw(
        st.sampled_from(
            [
                "time",
                "time_type",
                "number",
                "code",
                "unit",
                "drop_key",
                "extra_key",
                "extra_value",
                "no_values",
                "values_type",
                "row_type",
                "meter",
                "cursor",
                "readings",
                "swap",
            ]
        )
    )
    if not isinstance(page, dict) or not isinstance(page.get("readings"), list):
        return page
    rows = page["readings"]
    if kind == "cursor":
        page["cursor"] = draw(st.sampled_from([5, None, "c", []]))
        return page
    if kind == "readings":
        return draw(st.sampled_from([{"readings": None, "cursor": None}, {"cursor": None}, [], None]))
    if not rows:
        return page
    row = rows[draw(st.integers(0, len(rows) - 1))]
    if not isinstance(row, dict):
        return page
    values = row.get("values")
    value = values[draw(st.integers(0, len(values) - 1))] if isinstance(values, list) and values else None
    if kind == "time":
        row["time"] = draw(odd_times)
    elif kind == "time_type":
        row["time"] = draw(st.sampled_from([None, 5, ["2026-03-29T01:15:00Z"]]))
    elif kind == "row_type":
        rows[rows.index(row)] = draw(st.sampled_from(["nope", None, [], 3]))
    elif kind == "meter" and with_meter:
        row["meter"] = draw(st.sampled_from([None, {}, {"id": 5}, {"id": "UPPER-ID"}, "m"]))
    elif kind == "no_values":
        row["values"] = []
    elif kind == "values_type":
        row["values"] = draw(st.sampled_from([None, {}, {"obisCode": "1-0:1.8.0"}, "values", 3]))
    elif kind == "extra_value" and isinstance(values, list):
        values.insert(
            draw(st.integers(0, len(values))),
            {"obisCode": draw(st.sampled_from(CODES)), "value": draw(numbers), "unit": draw(st.sampled_from(UNITS))},
        )
    elif kind == "swap" and isinstance(values, list) and len(values) > 1:
        values.reverse()
    elif value is not None:
        if kind == "number":
            value["value"] = draw(odd_numbers)
        elif kind == "code":
            value["obisCode"] = draw(st.sampled_from([*CODES, 5, None]))
        elif kind == "unit":
            value["unit"] = draw(st.sampled_from([*UNITS, 5, None]))
        elif kind == "drop_key":
            del value[draw(st.sampled_from(["obisCode", "value", "unit"]))]
        elif kind == "extra_key":
            value["scale"] = 3
    return page


def decoded(decode: Any, page: Any, with_meter: bool) -> tuple[Any, list[Any]]:
    """(the result, or the refusal as (type, message)), and the tolerance counts it left."""
    shapes = tolerance.WireShapes()
    with tolerance.recording(shapes):
        try:
            result: Any = decode(copy.deepcopy(page), with_meter=with_meter, times=EpochParser())
        except Exception as exc:  # the very same refusal, whatever it is, is the point
            result = (type(exc), str(exc))
    return result, shapes.items()


@PROPERTIES
@given(pages())
def test_the_fast_decode_equals_the_reference(case: tuple[Any, bool]) -> None:
    page, with_meter = case
    assert decoded(register_page, page, with_meter) == decoded(register_page_reference, page, with_meter)


@PROPERTIES
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=20), st.integers(0, 4_000_000_000))
def test_epoch_seconds_equal_the_time_parser(offsets: list[int], base: int) -> None:
    texts = [f"{datetime.fromtimestamp(base + o, UTC):%Y-%m-%dT%H:%M:%SZ}" for o in offsets]
    parse = payloads.TimeParser()
    assert EpochParser().page(texts) == [parse(t).timestamp() for t in texts]


def pinned_page(n: int) -> dict[str, Any]:
    return {
        "readings": [
            {
                "time": pinned_time(i),
                "values": [
                    {"obisCode": "1-0:1.8.0", "value": 1000.0 * i + 7, "unit": "Wh"},
                    {"obisCode": "1-0:16.7.0", "value": 250, "unit": "W"},
                ],
            }
            for i in range(n)
        ],
        "cursor": "c",
    }


def test_the_pinned_shape_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Else the property above would compare the reference with itself."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the general path ran")

    monkeypatch.setattr(payloads, "readings_page", refuse)
    page = register_page(pinned_page(3), with_meter=False, times=EpochParser())
    start = T0.timestamp()
    assert page == RegisterPage([start, start + 900, start + 1800], None, [0.007, 1.007, 2.007], ["kWh"] * 3, "c")


def test_a_page_off_the_pinned_shape_is_refused_as_before() -> None:
    page = pinned_page(3)
    page["readings"][1]["values"][1]["value"] = True
    with pytest.raises(UpstreamBadResponse, match="not \\(obisCode, value, unit\\)"):
        register_page(page, with_meter=False, times=EpochParser())
    page["readings"][1]["values"][1] = {"obisCode": "1-0:16.7.0", "unit": "W"}
    with pytest.raises(UpstreamBadResponse, match="lacks a field"):
        register_page(page, with_meter=False, times=EpochParser())
