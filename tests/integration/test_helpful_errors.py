"""422s that say how to fix the request, and one problem type for every 404."""

from __future__ import annotations

from urllib.parse import quote

from tests.support.apps import fake_app, running
from tests.support.fake_backend import FakeBackend


async def test_unknown_quantity_lists_the_valid_ones():
    backend = FakeBackend("iometer")
    async with running(fake_app({"iometer": backend})) as c:
        r = await c.get(
            "/readings",
            params={
                "meter_id": f"iometer:{backend.meter_ids[0]}",
                "start": "2026-05-19T00:00:00Z",
                "quantity": "energy",
            },
        )
    assert r.status_code == 422
    [error] = r.json()["errors"]
    assert error["field"] == "quantity"
    for valid in ("energy_import", "energy_import_t1", "energy_import_t2", "energy_export", "power", "volume", "obis:"):
        assert valid in error["message"], valid


async def test_an_offset_whose_plus_arrived_as_a_space_gets_the_percent_encoding_hint():
    backend = FakeBackend("iometer")
    meter = f"iometer:{backend.meter_ids[0]}"
    async with running(fake_app({"iometer": backend})) as c:
        # what `curl '...&start=2026-05-19T06:00:00+02:00'` sends: the + is not encoded
        unencoded = await c.get(f"/readings?meter_id={meter}&start=2026-05-19T06:00:00+02:00")
        other_junk = await c.get(f"/readings?meter_id={meter}&start=yesterday")
        encoded = await c.get(f"/readings?meter_id={meter}&start={quote('2026-05-19T06:00:00+02:00')}")
        since = await c.get("/changes?since=2026-05-19T06:00:00.5+05:30")
    assert unencoded.status_code == 422
    [error] = unencoded.json()["errors"]
    assert error["field"] == "start"
    assert "%2B" in error["message"]
    assert "start=2026-05-19T06:00:00%2B02:00" in error["message"]
    assert other_junk.status_code == 422
    assert "%2B" not in other_junk.text
    assert encoded.status_code == 200
    assert since.status_code == 422
    assert "since=2026-05-19T06:00:00.5%2B05:30" in since.json()["errors"][0]["message"]


async def test_an_unknown_route_is_the_same_404_problem_as_an_unknown_id():
    async with running(fake_app({"iometer": FakeBackend("iometer")})) as c:
        route = await c.get("/no/such/path")
        meter = await c.get("/meters/acme:42")
    assert route.status_code == meter.status_code == 404
    assert route.headers["content-type"] == meter.headers["content-type"] == "application/problem+json"
    assert route.json()["type"] == meter.json()["type"] == "/problems/not-found"
    assert route.json()["title"] == meter.json()["title"]
