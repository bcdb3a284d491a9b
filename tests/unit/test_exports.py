"""CSV and NDJSON exports (app.api.exports): negotiation, CSV fidelity, bounded-memory streaming."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from app.api.exports import (
    content_disposition,
    csv_lines,
    csv_response,
    fields_of,
    filename,
    ndjson_lines,
    negotiate,
    primed,
    to_csv,
)
from app.domain.models import Meter, Reading
from app.infra.errors import InvalidRequest, NotFound, UpstreamRateLimited

T0 = datetime(2026, 3, 29, tzinfo=UTC)


def reading(i: int) -> Reading:
    return Reading(
        meter_id="iometer:578936dc-8020-4022-a560-2f59d2dca9ee",
        time=T0 + timedelta(minutes=15 * i),
        quantity="energy_import",
        obis="1-0:1.8.0",
        value=1000.0 + i * 0.25,
        unit="kWh",
    )


# --- negotiation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "json"),
        ("", "json"),
        ("*/*", "json"),
        ("application/json", "json"),
        ("text/csv", "csv"),
        ("TEXT/CSV; charset=utf-8", "csv"),
        ("application/x-ndjson", "ndjson"),
        ("text/csv;q=0.5, application/json", "json"),
        ("application/json;q=0.1, text/csv", "csv"),
        ("text/csv;q=0, application/x-ndjson;q=0.3", "ndjson"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "json"),  # a browser
        ("image/png", "json"),
        ("text/csv;q=abc", "json"),  # an unreadable q is 0
    ],
)
def test_accept_picks_the_representation(accept: str | None, expected: str) -> None:
    assert negotiate(accept, None) == expected


def test_format_parameter_wins_and_unknown_values_are_invalid() -> None:
    assert negotiate("application/x-ndjson", "csv") == "csv"
    assert negotiate("text/csv", "json") == "json"
    assert negotiate(None, "NDJSON") == "ndjson"
    with pytest.raises(InvalidRequest) as caught:
        negotiate(None, "xlsx")
    assert caught.value.field == "format"
    assert "xlsx" in caught.value.detail
    assert "csv" in caught.value.detail


# --- CSV -------------------------------------------------------------------------------------------


def test_csv_rows_equal_the_json_rows() -> None:
    meters = [
        Meter(
            id="waltero:11111111-1111-1111-1111-111111111101",
            backend="waltero",
            serial_number="WS-0001",
            name='Cellar, "north" wall\nsecond line',
            medium="water",
            unit="m3",
            site_id="waltero:org",
            device_id="waltero:11111111-1111-1111-1111-111111111101",
        ),
        Meter(
            id="iometer:1",
            backend="iometer",
            serial_number="1EMH0007058153",
            name=None,
            medium="electricity",
            unit="kWh",
            site_id=None,
            device_id=None,
        ),
    ]
    text = to_csv(meters, fields_of(Meter)).decode()
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(parsed[0]) == list(Meter.model_fields)
    expected = [{k: "" if v is None else v for k, v in m.model_dump(mode="json").items()} for m in meters]
    assert parsed == expected


def test_csv_numbers_booleans_and_times_read_back_as_json_values() -> None:
    rows = [reading(i) for i in range(3)]
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows, fields_of(Reading)).decode(), newline="")))
    for row, item in zip(parsed, rows, strict=True):
        assert float(row["value"]) == item.value
        assert row["time"] == item.model_dump(mode="json")["time"]
        assert row["time"].endswith("Z")


def test_csv_cells_that_spreadsheets_would_run_as_formulas_are_defused() -> None:
    meter = Meter(
        id="waltero:1",
        backend="waltero",
        serial_number='=HYPERLINK("http://evil")',
        name="@SUM(A1)",
        medium="gas",
        unit="m3",
        site_id=None,
        device_id=None,
    )
    [row] = list(csv.DictReader(io.StringIO(to_csv([meter], fields_of(Meter)).decode(), newline="")))
    assert row["serial_number"] == '\'=HYPERLINK("http://evil")'
    assert row["name"] == "'@SUM(A1)"


def test_csv_response_names_the_file() -> None:
    response = csv_response([reading(0)], fields_of(Reading), filename("readings", "2026-03-29", extension="csv"))
    assert response.media_type == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="readings-2026-03-29.csv"'


def test_file_names_keep_only_safe_characters() -> None:
    name = filename("consumption", "hour", '2026-03-29T00:00:00+01:00"; x=../../etc', extension="csv")
    assert name.endswith(".csv")
    assert all(c.isalnum() or c in "._-" for c in name)
    assert content_disposition(name).count('"') == 2
    assert filename(extension="ndjson") == "export.ndjson"


# --- streaming -------------------------------------------------------------------------------------


async def batches_of(count: int, size: int = 1000) -> AsyncIterator[list[Reading]]:
    for start in range(0, count, size):
        yield [reading(i) for i in range(start, min(count, start + size))]


async def collect(lines: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in lines]


async def test_ndjson_is_one_json_object_per_line_equal_to_the_json_items() -> None:
    chunks = await collect(ndjson_lines(batches_of(2500), chunk=8192))
    assert len(chunks) > 10  # flushed in chunks, not one blob
    assert all(len(c) < 8192 + 400 for c in chunks)
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 2500
    assert [json.loads(line) for line in lines[:3]] == [reading(i).model_dump(mode="json") for i in range(3)]
    assert json.loads(lines[-1])["time"] == reading(2499).model_dump(mode="json")["time"]


async def test_csv_stream_has_one_header_and_every_row() -> None:
    text = b"".join(await collect(csv_lines(batches_of(2100, 700), fields_of(Reading), chunk=4096))).decode()
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(parsed) == 2100
    assert text.count("meter_id,time") == 1


async def test_streaming_memory_does_not_grow_with_the_number_of_rows() -> None:
    async def measure(count: int) -> int:
        tracemalloc.start()
        try:
            total = 0
            async for chunk in ndjson_lines(batches_of(count)):
                total += len(chunk)
            assert total > count * 100
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small = await measure(5_000)
    large = await measure(60_000)
    assert large < small * 1.5 + 256 * 1024  # 12x the rows, about the same peak


async def test_an_error_before_the_first_batch_is_raised_up_front() -> None:
    async def failing() -> AsyncIterator[list[Reading]]:
        raise NotFound("no such meter")
        yield []  # pragma: no cover

    with pytest.raises(NotFound):
        await primed(failing())


async def test_an_empty_stream_is_empty_and_a_late_error_ends_it_with_a_problem_line() -> None:
    async def empty() -> AsyncIterator[list[Reading]]:
        return
        yield []  # pragma: no cover

    assert await collect(ndjson_lines(await primed(empty()))) == []

    async def late() -> AsyncIterator[list[Reading]]:
        yield [reading(0), reading(1)]
        raise UpstreamRateLimited("IOmeter kept answering 429", backend="iometer", retry_after=5)

    lines = b"".join(await collect(ndjson_lines(await primed(late())))).decode().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["value"] == reading(0).value
    error = json.loads(lines[-1])["error"]
    assert error["status"] == 503
    assert error["backend"] == "iometer"
