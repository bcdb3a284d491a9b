"""`/consumption` pages like every list (`limit`, `cursor`, `next_cursor`, `Link`), its exports stream the
whole window, and a window over the budget is a 422 that names it."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest

from app.infra.errors import UpstreamUnavailable
from tests.support.apps import fake_app, running
from tests.support.fake_backend import FakeBackend

WEEK = {"start": "2026-03-23", "end": "2026-03-30", "tz": "Europe/Berlin"}  # 167 hours (spring forward)
HOURS = 7 * 24 - 1


async def pages(c: httpx.AsyncClient, params: dict[str, Any]) -> list[httpx.Response]:
    out = []
    for _ in range(100):
        r = await c.get("/consumption", params=params)
        assert r.status_code == 200, r.text
        out.append(r)
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return out
        params = {**params, "cursor": cursor}
    raise AssertionError("more than 100 pages")


def key(row: dict[str, Any]) -> tuple[str, str]:
    return row["meter_id"], row["start"]


@pytest.mark.parametrize(("resolution", "per_meter"), [("hour", HOURS), ("15min", HOURS * 4), ("day", 7), ("month", 1)])
async def test_pages_add_up_to_the_whole_window_in_order_whatever_the_limit(resolution: str, per_meter: int) -> None:
    app = fake_app({"iometer": FakeBackend("iometer", meters=2), "waltero": FakeBackend("waltero", meters=3)})
    async with running(app) as c:
        params = {"resolution": resolution, **WEEK}
        streamed = await c.get("/consumption", params={**params, "format": "ndjson"})
        whole = [json.loads(line) for line in streamed.text.splitlines()]
        assert len(whole) == 5 * per_meter
        assert [key(r) for r in whole] == sorted(key(r) for r in whole)
        for limit in (1, 7, per_meter, per_meter + 5, 3000):
            if 5 * per_meter / limit > 100:
                continue
            answered = await pages(c, {**params, "limit": limit})
            assert len(answered) == -(-len(whole) // limit)
            assert [len(r.json()["items"]) for r in answered[:-1]] == [limit] * (len(answered) - 1)
            rows = [row for r in answered for row in r.json()["items"]]
            assert rows == whole  # nothing lost or repeated at meter or page boundaries
            for r in answered[:-1]:  # `Link` is the same request with the next cursor
                link = r.headers["link"]
                assert link.startswith("</consumption?") and link.endswith('>; rel="next"')
                assert f"cursor={r.json()['next_cursor']}" in link
            assert "link" not in answered[-1].headers


async def test_a_cursor_keeps_its_window_and_refuses_other_parameters() -> None:
    app = fake_app({"iometer": FakeBackend("iometer", meters=2)})
    async with running(app) as c:
        first = await c.get("/consumption", params={"resolution": "hour", **WEEK, "limit": 100})
        cursor = first.json()["next_cursor"]
        assert cursor
        other = await c.get(
            "/consumption", params={"resolution": "hour", **WEEK, "start": "2026-03-24", "cursor": cursor}
        )
        assert other.status_code == 422
        assert other.json()["errors"][0]["field"] == "cursor"
        forged = await c.get("/consumption", params={"resolution": "hour", **WEEK, "cursor": cursor[:-2] + "xx"})
        assert forged.status_code == 422
        # without `end`, the cursor's own end goes on (not "tomorrow" of the day the next page is asked)
        no_end = {k: v for k, v in WEEK.items() if k != "end"}
        second = await c.get("/consumption", params={"resolution": "hour", **no_end, "cursor": cursor, "limit": 100})
        assert second.status_code == 200
        assert second.json()["items"][0]["start"] == "2026-03-27T04:00:00+01:00"  # row 101 of meter one
        alone = await c.get("/consumption", params={"cursor": cursor, "limit": 100})  # like every list
        assert alone.json() == second.json()
        missing = await c.get("/consumption", params={"start": WEEK["start"]})
        assert missing.status_code == 422
        assert missing.json()["errors"][0]["field"] == "resolution"


async def test_limit_over_the_page_maximum_is_a_422_naming_the_setting() -> None:
    app = fake_app({"iometer": FakeBackend("iometer")}, FACADE_CONSUMPTION_MAX_PAGE=500)
    async with running(app) as c:
        r = await c.get("/consumption", params={"resolution": "hour", **WEEK, "limit": 501})
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert "FACADE_CONSUMPTION_MAX_PAGE" in r.json()["detail"]
        assert "500" in r.json()["detail"]
        assert r.json()["errors"][0]["field"] == "limit"
        ok = await c.get("/consumption", params={"resolution": "hour", **WEEK, "limit": 500})
        assert ok.status_code == 200
        assert len(ok.json()["items"]) == 500


@pytest.mark.parametrize(
    ("resolution", "start", "end", "rows"),
    [("15min", "2026-03-01", "2026-03-31", 3 * 2876), ("month", "2020-01-01", "2026-01-01", 3 * 2192)],
)
async def test_a_window_over_the_budget_is_a_422_naming_it_before_any_vendor_call(
    resolution: str, start: str, end: str, rows: int
) -> None:
    backend = FakeBackend("iometer", meters=3)
    app = fake_app({"iometer": backend}, FACADE_CONSUMPTION_WINDOW_BUDGET=rows - 1)
    async with running(app) as c:
        window = {"resolution": resolution, "start": start, "end": end, "tz": "Europe/Berlin"}
        for how in ({}, {"format": "ndjson"}, {"format": "csv"}):
            r = await c.get("/consumption", params={**window, **how})
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == "application/problem+json"
            detail = r.json()["detail"]
            assert "FACADE_CONSUMPTION_WINDOW_BUDGET" in detail
            assert f"= {rows} rows" in detail
        assert backend.calls["readings"] == backend.calls["daily_consumption"] == 0
        # one meter fewer fits
        one = await c.get("/consumption", params={**window, "meter_id": f"iometer:{backend.meter_ids[0]}"})
        assert one.status_code == 200


async def test_csv_streams_the_whole_window_as_the_ndjson_does() -> None:
    app = fake_app({"iometer": FakeBackend("iometer", meters=2)}, FACADE_CONSUMPTION_MAX_PAGE=50)
    async with running(app) as c:
        params = {"resolution": "hour", **WEEK}
        as_csv = await c.get("/consumption", params={**params, "format": "csv"})
        assert as_csv.status_code == 200
        assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
        assert "link" not in as_csv.headers
        rows = list(csv.DictReader(io.StringIO(as_csv.text, newline="")))
        streamed = [
            json.loads(line)
            for line in (await c.get("/consumption", params={**params, "format": "ndjson"})).text.splitlines()
        ]
        assert len(rows) == len(streamed) == 2 * HOURS  # many batches of 50, one document
        assert [(r["meter_id"], r["start"], r["consumption"]) for r in rows] == [
            (s["meter_id"], s["start"], json.dumps(s["consumption"])) for s in streamed
        ]


class FailsForOneMeter(FakeBackend):
    """Every meter reads, but the last one's readings fail: an outage in the middle of an export."""

    async def readings(self, upstream_meter_id, start, end, quantities, limit):  # type: ignore[no-untyped-def]
        if upstream_meter_id == self.meter_ids[-1]:
            raise UpstreamUnavailable("IOmeter went down.", backend=self.name, retry_after=5)
        return await super().readings(upstream_meter_id, start, end, quantities, limit)


async def test_a_vendor_failing_in_the_middle_of_an_export_ends_it_with_an_error_line() -> None:
    backend = FailsForOneMeter("iometer", meters=3)
    backend.meter_ids.sort()  # the failing meter is read last
    app = fake_app({"iometer": backend}, FACADE_CONSUMPTION_MAX_PAGE=HOURS)  # one meter per batch
    async with running(app) as c:
        r = await c.get("/consumption", params={"resolution": "hour", **WEEK, "format": "ndjson"})
        assert r.status_code == 200  # the stream had started
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert len(lines) == 2 * HOURS + 1
        assert {row["meter_id"] for row in lines[:-1]} == {f"iometer:{m}" for m in backend.meter_ids[:2]}
        assert lines[-1]["error"]["status"] == 503
        # a page of the failing meter alone is a problem, not a short page
        page = await c.get(
            "/consumption",
            params={"resolution": "hour", **WEEK, "limit": 100, "meter_id": f"iometer:{backend.meter_ids[-1]}"},
        )
        assert page.status_code == 503
