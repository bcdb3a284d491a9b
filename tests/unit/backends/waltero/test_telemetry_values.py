"""The one-pass telemetry decode (`shapes.parse_telemetry_values`) and row building
(`mapping.readings_from_telemetry`) against the pydantic reference they replace on the readings path.

Hypothesis generates telemetry answers in the pinned shape and around it (nulls, glitches, odd time forms,
other time keys, missing keys, wrong types, nested keys, bare lists, upper-case ids): the fast decode must
return what `TelemetryResponse` returns, raise the same `UpstreamBadResponse`, and count the same wire
shapes; the rows must equal the validated `Reading`s the adapter built before, in the same order."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.backends.waltero import shapes
from app.backends.waltero.mapping import UnitScale, readings_from_telemetry, unit_scale
from app.domain.models import Reading
from app.infra import tolerance
from app.infra.errors import UpstreamBadResponse
from app.infra.timeutil import parse_rfc3339

PROPERTIES = settings(max_examples=400, derandomize=True, deadline=None)
FIELD = shapes.PROCESSED
BASE = datetime(2026, 5, 18, 22, tzinfo=UTC)

# --- what Waltero might send ---------------------------------------------------------------------------
instants = st.integers(min_value=-48, max_value=24 * 9).map(lambda h: BASE + timedelta(hours=h))
pinned_times = instants.map(shapes.format_wire_time)
odd_times = st.one_of(
    instants.map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")),  # no fraction
    instants.map(lambda t: t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")),
    instants.map(lambda t: (t + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.123+02:00")),
    instants.map(lambda t: t.strftime("%Y-%m-%dt%H:%M:%S.000z")),  # lower case
    instants.map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S.000Z")),  # a space
    instants.map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.123456789Z")),  # nanoseconds
    instants.map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000")),  # no offset: refused
    st.sampled_from(
        [
            "2026-13-01T00:00:00.000Z",  # no such month
            "2026-02-30T00:00:00.000Z",
            "0000-01-01T00:00:00.000Z",
            "٢٠٢٦-05-18T22:00:00.000Z",  # not ASCII digits
            "2026-05-18T22:00:00,000Z",
            "2026-05-18T22:00:00.0000Z",
            "yesterday",
            "",
        ]
    ),
)
any_time: st.SearchStrategy[Any] = st.one_of(
    pinned_times,
    pinned_times,
    odd_times,
    st.integers(min_value=0, max_value=2_000_000_000),  # unix seconds: the model reads them
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just({"iso": "2026-05-18T22:00:00.000Z"}),
)
values: st.SearchStrategy[Any] = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(min_value=-1e4, max_value=1e6),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.none(),
    st.booleans(),
    st.sampled_from(["12.5", "n/a", "", 1e308, -1e308, 0.0, -0.0]),
    st.just({"value": 1.0}),  # a dict under a flat key: nested
    st.just([1.0]),
)
extra_keys = st.dictionaries(
    st.sampled_from([shapes.RAW, shapes.BATTERY_VOLTAGE, "time", "ts", "date", "note"]), values, max_size=2
)


@st.composite
def points(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["pinned", "pinned", "pinned", "extras", "other_key", "no_time", "nested", "odd"]))
    when = draw(any_time)
    value = draw(values)
    if kind == "pinned":
        point: dict[str, Any] = {"timestamp": when}
        if draw(st.booleans()):
            point[FIELD] = value
        return point
    if kind == "extras":
        return {"timestamp": when, **draw(extra_keys), FIELD: value}
    if kind == "other_key":
        return {draw(st.sampled_from(shapes.TIME_KEYS[1:])): when, FIELD: value, **draw(extra_keys)}
    if kind == "no_time":
        return {FIELD: value}
    if kind == "nested":
        return {"timestamp": when, "meter": {"value": {"processed": value}}, **draw(extra_keys)}
    return draw(st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2), st.none()))


@st.composite
def answers(draw: st.DrawFn) -> Any:
    data = draw(st.lists(points(), max_size=8))
    if draw(st.booleans()):  # mostly in order, like the vendor
        data = sorted(data, key=lambda p: str(p.get("timestamp")) if isinstance(p, dict) else "")
    wrapper = draw(st.sampled_from(["wrapped", "wrapped", "wrapped", "no_id", "bare", "snake_id", "bad_data", "odd"]))
    device = draw(
        st.sampled_from(["11111111-1111-1111-1111-111111111101", "ABCDEF00-1111-1111-1111-111111111101", None, 7])
    )
    if wrapper == "wrapped":
        return {"deviceId": device, "data": data}
    if wrapper == "no_id":
        return {"data": data, "other": 1}
    if wrapper == "bare":
        return data
    if wrapper == "snake_id":
        return {"device_id": device, "data": data}
    if wrapper == "bad_data":
        return {"deviceId": device, "data": draw(st.sampled_from([None, "x", {"a": 1}, 3]))}
    return draw(st.sampled_from([None, 1, "text", {"deviceId": device}]))


def outcome(decode: Any, body: bytes) -> tuple[Any, list[Any]]:
    """(the values or the error's detail, the wire shapes counted)."""
    with tolerance.recording(tolerance.WireShapes()) as counted:
        try:
            result: Any = decode(body)
        except UpstreamBadResponse as exc:
            result = ("error", exc.detail, exc.backend)
        else:
            result = [(t, t.utcoffset(), t.tzinfo, v, type(v)) for t, v in result]
    return result, counted.items()


def reference(body: bytes) -> list[shapes.TimedValue]:
    answer = shapes.parse_json(body, shapes.TelemetryResponse, "device d")
    return [(point.timestamp, point.number(FIELD)) for point in answer.data]


def fast(body: bytes) -> list[shapes.TimedValue]:
    return shapes.parse_telemetry_values(body, FIELD, "device d")


@PROPERTIES
@given(answers())
def test_the_fast_decode_is_the_pydantic_decode(payload: Any) -> None:
    body = orjson.dumps(payload)
    assert outcome(fast, body) == outcome(reference, body)


@PROPERTIES
@given(st.lists(st.tuples(pinned_times, st.floats(min_value=0, max_value=1e6)), max_size=12))
def test_answers_in_the_pinned_shape_take_the_fast_path(pairs: list[tuple[str, float]]) -> None:
    body = orjson.dumps({"deviceId": "d", "data": [{"timestamp": t, FIELD: v} for t, v in pairs]})
    assert fast(body) == reference(body)
    with mock.patch.object(shapes, "parse", side_effect=AssertionError("the model was used")):
        assert fast(body) == [(datetime.fromisoformat(t), v) for t, v in pairs]


def test_bodies_that_are_not_json_fail_alike() -> None:
    for body in (b"<html>gateway</html>", b'{"data": [{"timestamp": "2026-05-18T22:00:00.000Z", "x": NaN}]}', b""):
        assert outcome(fast, body) == outcome(reference, body)
        assert outcome(fast, body)[0][1] == "Waltero sent a device d answer that is not JSON"


def test_a_bad_point_is_the_models_error_naming_its_place() -> None:
    body = orjson.dumps(
        {"data": [{"timestamp": "2026-05-18T22:00:00.000Z", FIELD: 1}, {"timestamp": "2026-13-01T00:00:00Z"}]}
    )
    with pytest.raises(UpstreamBadResponse, match=r"bad: data\.1\.timestamp"):
        fast(body)


def read(parser: Any, text: str) -> Any:
    try:
        when = parser(text)
    except ValueError:
        return "ValueError"
    return when, when.utcoffset(), when.tzinfo


TRICKY_TIMES = [
    "2026-05-18T22:00:00.000Z",
    "2026-05-18T22:00:00,000Z",  # fromisoformat reads these, RFC 3339 does not
    "2026-05-18T22:00:00+0000",
    "20260518T220000.000+0000",
    "2026-W21-1T22:00:00.000Z",
    "2026-05-18T22:00:00.000+00",
    "2026-05-18t22:00:00.000z",  # RFC 3339 reads this, fromisoformat does not
    "٢٠٢٦-05-18T22:00:00.000Z",
    "2026-13-01T00:00:00.000Z",
    "9998-12-31T23:59:59.999Z",
]


@PROPERTIES
@given(
    st.one_of(
        st.sampled_from(TRICKY_TIMES),
        st.tuples(pinned_times, st.integers(0, 23), st.sampled_from(list("0123456789-:T.Z+tz ,W٢"))).map(
            lambda m: m[0][: m[1]] + m[2] + m[0][m[1] + 1 :]  # one character changed
        ),
    )
)
def test_the_pinned_time_form_is_read_like_parse_rfc3339(text: str) -> None:
    assert read(shapes.parse_wire_time, text) == read(parse_rfc3339, text)


# --- rows -------------------------------------------------------------------------------------------------
def reference_rows(values: list[shapes.TimedValue], scale: UnitScale, start: datetime, end: datetime) -> list[Reading]:
    """What the adapter built before: every point sorted by time, then validated `Reading`s."""
    rows = []
    for when, number in sorted(values, key=lambda v: v[0]):
        value = scale.apply(number)
        if value is None or not start <= when < end:
            continue
        rows.append(
            Reading(meter_id="waltero:m", time=when, quantity="volume", obis=None, value=value, unit=scale.unit)
        )
    return rows


timed_values = st.lists(
    st.tuples(
        instants,
        st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e306, -1e307])),
    ),
    max_size=12,
)


@PROPERTIES
@given(
    timed_values,
    st.sampled_from([None, "m3", "L", "kWh", "Wh", "MWh", "gal"]),
    st.integers(min_value=-24, max_value=24 * 8),
    st.integers(min_value=0, max_value=24 * 8),
    st.booleans(),
)
def test_rows_are_the_validated_readings_in_the_same_order(
    values: list[shapes.TimedValue], unit: str | None, first: int, hours: int, ascending: bool
) -> None:
    if ascending:
        values = sorted(values, key=lambda v: v[0])
    scale = unit_scale(unit)
    start = BASE + timedelta(hours=first)
    end = start + timedelta(hours=hours)
    try:
        expected = reference_rows(values, scale, start, end)
    except ValidationError:  # a value scaled past the float range
        with pytest.raises(ValidationError):
            readings_from_telemetry(values, meter_id="waltero:m", quantity="volume", scale=scale, start=start, end=end)
        return
    rows = readings_from_telemetry(values, meter_id="waltero:m", quantity="volume", scale=scale, start=start, end=end)
    assert rows == expected
    assert [r.model_dump_json() for r in rows] == [r.model_dump_json() for r in expected]
    assert [r.__pydantic_fields_set__ for r in rows] == [r.__pydantic_fields_set__ for r in expected]
    assert all(math.isfinite(r.value) for r in rows)


def test_ties_keep_the_answers_order_and_disorder_is_sorted() -> None:
    t0, t1 = BASE, BASE + timedelta(hours=1)
    values: list[shapes.TimedValue] = [(t1, 3.0), (t0, 1.0), (t1, 2.0)]
    rows = readings_from_telemetry(
        values, meter_id="waltero:m", quantity="volume", scale=unit_scale("m3"), start=t0, end=t1 + timedelta(hours=1)
    )
    assert [(r.time, r.value) for r in rows] == [(t0, 1.0), (t1, 3.0), (t1, 2.0)]


def test_a_trusted_row_is_the_validated_row() -> None:
    fields: dict[str, Any] = {
        "meter_id": "waltero:m",
        "time": BASE,
        "quantity": "volume",
        "obis": None,
        "value": 1.5,
        "unit": "m3",
    }
    trusted, validated = Reading.trusted(dict(fields)), Reading(**fields)
    assert trusted == validated
    assert repr(trusted) == repr(validated)
    assert trusted.model_dump() == validated.model_dump()
    assert trusted.__pydantic_fields_set__ is validated.__pydantic_fields_set__  # one shared set per shape
    with pytest.raises(ValidationError):  # frozen, like any resource
        trusted.value = 2.0  # type: ignore[misc]
