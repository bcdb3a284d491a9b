"""CSV and NDJSON on every list against both emulators; meters found by their printed number."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.factory import create_app
from app.infra.config import Settings
from app.sandbox import create_emulators
from tests.support.apps import running
from tests.support.clock import FakeClock

CSV = {"Accept": "text/csv"}
NDJSON = {"Accept": "application/x-ndjson"}
NOW = datetime(2026, 4, 20, 10, 7, tzinfo=UTC)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    clock = FakeClock(NOW)
    emulators = create_emulators(clock)
    settings = Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0)
    app = create_app(settings, clock=clock, sleep=clock.sleep, emulators=emulators)
    async with running(app, key=None) as c:
        yield c


def z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def as_cells(item: dict[str, Any]) -> dict[str, str]:
    """A JSON item as the CSV should carry it (written out independently of app.api.exports)."""
    out = {}
    for key, value in item.items():
        if value is None:
            out[key] = ""
        elif value is True or value is False:
            out[key] = "true" if value else "false"
        elif isinstance(value, float | int):
            out[key] = json.dumps(value)
        else:
            out[key] = str(value)
    return out


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


async def meters(c: httpx.AsyncClient, backend: str) -> list[dict[str, Any]]:
    return list((await c.get("/meters", params={"backend": backend})).json()["items"])


LISTS = {
    "meters": ("/meters", {"limit": 7}),
    "readings": ("/readings", {"start": z(NOW - timedelta(hours=30)), "end": z(NOW - timedelta(hours=2))}),
    "consumption": (
        "/consumption",
        {"resolution": "hour", "start": "2026-03-28", "end": "2026-03-30", "tz": "Europe/Berlin"},
    ),
    "daily": ("/consumption/daily", {"start": "2026-03-25", "end": "2026-04-02", "tz": "Europe/Berlin"}),
    "changes": ("/changes", {"since": z(NOW - timedelta(days=60)), "limit": 50}),
}


@pytest.mark.parametrize("name", list(LISTS))
async def test_csv_rows_equal_the_json_rows(client: httpx.AsyncClient, name: str) -> None:
    path, params = LISTS[name]
    if name == "readings":
        params = {**params, "meter_id": (await meters(client, "iometer"))[0]["id"]}
    as_json = await client.get(path, params=params)
    assert as_json.status_code == 200
    items = as_json.json()["items"]
    assert items
    for how in ({"headers": CSV}, {"params": {**params, "format": "csv"}}):
        response = await client.get(path, **({"params": params} | how))  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        disposition = response.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="')
        assert disposition.endswith('.csv"')
        assert response.headers["etag"]
        rows = parse_csv(response.text)
        assert list(rows[0]) == list(items[0])  # header row: the JSON fields, in order
        assert rows == [as_cells(i) for i in items]


async def test_a_cached_json_answer_is_not_served_to_a_csv_request(client: httpx.AsyncClient) -> None:
    first = await client.get("/meters")
    again = await client.get("/meters")
    assert again.headers["x-cache"] == "HIT"
    as_csv = await client.get("/meters", headers=CSV)
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert len(parse_csv(as_csv.text)) == len(first.json()["items"])
    by_param = await client.get("/meters", params={"format": "csv"})
    assert by_param.headers["content-type"].startswith("text/csv")
    # and the JSON stays JSON
    assert (await client.get("/meters")).json() == first.json()


async def test_ndjson_streams_the_whole_window_without_paging(client: httpx.AsyncClient) -> None:
    meter = (await meters(client, "iometer"))[0]["id"]
    params = {"meter_id": meter, "start": z(NOW - timedelta(days=3)), "end": z(NOW - timedelta(hours=1))}
    pages: list[dict[str, Any]] = []
    page = (await client.get("/readings", params={**params, "limit": 1000})).json()
    pages.extend(page["items"])
    while page["next_cursor"]:
        page = (await client.get("/readings", params={"cursor": page["next_cursor"], "limit": 1000})).json()
        pages.extend(page["items"])
    assert len(pages) > 1000  # the JSON needed several pages
    streamed = await client.get("/readings", params={**params, "limit": 5}, headers=NDJSON)  # limit is not paging
    assert streamed.status_code == 200
    assert streamed.headers["content-type"] == "application/x-ndjson"
    assert ndjson(streamed.text) == pages


async def test_ndjson_of_changes_consumption_and_meters(client: httpx.AsyncClient) -> None:
    since = z(NOW - timedelta(days=60))
    pages: list[dict[str, Any]] = []
    page = (await client.get("/changes", params={"since": since, "limit": 3})).json()
    pages.extend(page["items"])
    while page["next_cursor"]:
        page = (await client.get("/changes", params={"cursor": page["next_cursor"], "limit": 3})).json()
        pages.extend(page["items"])
    assert len(pages) > 3
    assert ndjson((await client.get("/changes", params={"since": since}, headers=NDJSON)).text) == pages
    path, params = LISTS["consumption"]
    assert (
        ndjson((await client.get(path, params=params, headers=NDJSON)).text)
        == (await client.get(path, params=params)).json()["items"]
    )
    every = (await client.get("/meters", params={"limit": 1000})).json()["items"]
    assert ndjson((await client.get("/meters", params={"limit": 2}, headers=NDJSON)).text) == every


@pytest.mark.parametrize("accept", ["text/csv", "application/x-ndjson"])
async def test_errors_stay_problem_json_whatever_the_accept(client: httpx.AsyncClient, accept: str) -> None:
    headers = {"Accept": accept}
    cases = [
        (
            "/readings",
            {"meter_id": "iometer:0badc0de-0000-4000-8000-000000000000", "start": z(NOW - timedelta(days=1))},
            404,
        ),
        ("/readings", {"meter_id": "nope", "start": "yesterday"}, 422),
        ("/consumption", {"resolution": "hour", "start": "2026-01-01", "end": "2026-03-01"}, 422),
        ("/consumption/daily", {"start": "2026-01-01", "tz": "Mars/Olympus"}, 422),
        ("/changes", {"since": z(NOW - timedelta(days=1)), "backend": "iometer"}, 501),
        ("/meters", {"format": "xlsx"}, 422),
    ]
    for path, params, status in cases:
        response = await client.get(path, params=params, headers=headers)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status


async def test_unknown_format_values_are_a_422_naming_the_field(client: httpx.AsyncClient) -> None:
    for value in ("xlsx", "", "CSV;drop"):
        response = await client.get("/meters", params={"format": value})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "format"
    assert (await client.get("/meters", params={"format": "json"})).headers["content-type"] == "application/json"


async def test_serial_number_finds_a_meter_of_each_vendor(client: httpx.AsyncClient) -> None:
    for backend in ("iometer", "waltero"):
        meter = (await meters(client, backend))[-1]
        found = await client.get("/meters", params={"serial_number": meter["serial_number"]})
        assert found.status_code == 200
        assert meter in found.json()["items"]
        assert {m["serial_number"] for m in found.json()["items"]} == {meter["serial_number"]}
        only = await client.get("/meters", params={"serial_number": meter["serial_number"], "backend": backend})
        assert meter in only.json()["items"]
    for missing in ("NO-SUCH-METER", "1emh0000000000"):
        none = await client.get("/meters", params={"serial_number": missing})
        assert none.status_code == 200
        assert none.json() == {"items": [], "next_cursor": None}
    bad = await client.get("/meters", params={"serial_number": "x" * 65})
    assert bad.status_code == 422


async def test_csv_pages_like_the_json_and_links_the_next_page(client: httpx.AsyncClient) -> None:
    first = await client.get("/meters", params={"limit": 4, "format": "csv"})
    link = first.headers["link"]
    assert link.endswith('>; rel="next"')
    url = link[1 : link.index(">")]
    second = await client.get(url)
    assert second.headers["content-type"].startswith("text/csv")
    json_first = (await client.get("/meters", params={"limit": 4})).json()
    json_second = (await client.get("/meters", params={"cursor": json_first["next_cursor"], "limit": 4})).json()
    assert parse_csv(second.text) == [as_cells(i) for i in json_second["items"]]
    every = await client.get("/meters", params={"limit": 1000, "format": "csv"})
    assert "link" not in every.headers  # the last page has no next
