"""One vendor down: `/consumption` keeps the other's rows with an `errors` entry, in JSON, CSV and NDJSON;
a serial-number lookup without a vendor lookup of its own filters the cached listing."""

from __future__ import annotations

import csv
import io
import json

from app.infra.errors import UpstreamUnavailable
from tests.support.apps import fake_app, running
from tests.support.fake_backend import FakeBackend

WINDOW = {"start": "2026-03-29", "end": "2026-03-30", "tz": "Europe/Berlin"}


async def test_a_failing_vendor_is_an_errors_entry_in_every_form() -> None:
    good, bad = FakeBackend("iometer"), FakeBackend("waltero")
    bad.fail = UpstreamUnavailable("Waltero is down.", backend="waltero", retry_after=5)
    app = fake_app({"iometer": good, "waltero": bad})
    async with running(app) as c:
        for resolution, rows_per_meter in (("hour", 23), ("15min", 92), ("day", 1), ("month", 1)):
            r = await c.get("/consumption", params={"resolution": resolution, **WINDOW})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["next_cursor"] is None
            assert [e["backend"] for e in body["errors"]] == ["waltero"]
            assert body["errors"][0]["status"] == 503
            assert len(body["items"]) == rows_per_meter * len(good.meter_ids)
            assert {i["meter_id"].split(":")[0] for i in body["items"]} == {"iometer"}
            if resolution == "hour":  # the fake's register rises 0.5 kWh per hour
                assert [i["consumption"] for i in body["items"][:23]] == [0.5] * 23
                assert all(i["complete"] for i in body["items"])
        as_csv = await c.get("/consumption", params={"resolution": "hour", **WINDOW}, headers={"Accept": "text/csv"})
        assert as_csv.status_code == 200
        assert as_csv.headers["x-backend-errors"] == "waltero=503"
        assert as_csv.headers["cache-control"] == "private, max-age=0"  # a partial answer is not to be kept
        assert len(list(csv.DictReader(io.StringIO(as_csv.text, newline="")))) == 23 * len(good.meter_ids)
        streamed = await c.get(
            "/consumption", params={"resolution": "hour", **WINDOW}, headers={"Accept": "application/x-ndjson"}
        )
        assert streamed.headers["x-backend-errors"] == "waltero=503"
        lines = [json.loads(line) for line in streamed.text.splitlines()]
        assert len(lines) == 23 * len(good.meter_ids)
        bad.fail = None
        good.fail = UpstreamUnavailable("IOmeter is down.", backend="iometer", retry_after=5)
        cached = await c.get("/consumption", params={"resolution": "hour", "backend": "iometer", **WINDOW})
        assert cached.status_code == 200  # what is cached needs no vendor
        other_day = {**WINDOW, "start": "2026-04-05", "end": "2026-04-06"}
        both_down = await c.get(
            "/consumption",
            params={"resolution": "hour", "backend": "iometer", **other_day},
            headers={"Accept": "text/csv"},
        )
        assert both_down.status_code == 503
        assert both_down.headers["content-type"] == "application/problem+json"


async def test_serial_number_without_a_vendor_lookup_filters_the_listing() -> None:
    one, other = FakeBackend("iometer"), FakeBackend("waltero")
    app = fake_app({"iometer": one, "waltero": other})
    async with running(app) as c:
        wanted = f"SN-{other.meter_ids[1][:8]}"
        r = await c.get("/meters", params={"serial_number": wanted})
        assert r.status_code == 200
        assert [m["id"] for m in r.json()["items"]] == [f"waltero:{other.meter_ids[1]}"]
        calls = other.calls["list_meters"]
        again = await c.get("/meters", params={"serial_number": f"SN-{other.meter_ids[2][:8]}"})
        assert [m["id"] for m in again.json()["items"]] == [f"waltero:{other.meter_ids[2]}"]
        assert other.calls["list_meters"] == calls  # served by the cached listing
        assert (await c.get("/meters", params={"serial_number": "SN-none"})).json()["items"] == []
