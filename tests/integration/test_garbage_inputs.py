"""Garbage into every parameter of every endpoint: always a problem+json 4xx (or a 200), never a 5xx."""

import pytest

from tests.support.apps import fake_app, running
from tests.support.fake_backend import FakeBackend

GARBAGE = [
    "",
    " ",
    "null",
    "-1",
    "0",
    "1e309",
    "NaN",
    "'; DROP TABLE meters;--",
    "../../etc/passwd",
    "%00",
    "\u202e",
    "iometer:",
    "waltero:../..",
    "x" * 5000,
    "2026-02-30T00:00:00Z",
    "2026-02-30",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01",
    "Europe/../../x",
    "{}",
    "[]",
    "iometer:%2e%2e",
    "🙂",
]

ENDPOINTS = {
    "/meters": ["backend", "limit", "cursor"],
    "/readings": ["meter_id", "start", "end", "quantity", "limit", "cursor"],
    "/consumption/daily": ["meter_id", "backend", "start", "end", "tz"],
    "/changes": ["since", "backend", "limit", "cursor"],
}
VALID = {
    "/readings": {"meter_id": "iometer:{m}", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T02:00:00Z"},
    "/consumption/daily": {"start": "2026-01-01", "end": "2026-01-03"},
    "/changes": {"since": "2026-01-01T00:00:00Z"},
}


@pytest.mark.parametrize("path", list(ENDPOINTS))
async def test_no_5xx_for_garbage_query_parameters(path):
    io, wa = FakeBackend("iometer"), FakeBackend("waltero", changes=True)
    app = fake_app({"iometer": io, "waltero": wa})
    async with running(app) as c:
        for param in ENDPOINTS[path]:
            for junk in GARBAGE:
                params = {k: v.format(m=io.meter_ids[0]) for k, v in VALID.get(path, {}).items()}
                params[param] = junk
                r = await c.get(path, params=params)
                assert r.status_code < 500, (path, param, junk, r.text)
                if r.status_code >= 400:
                    assert r.headers["content-type"] == "application/problem+json", (path, param, junk)
                    body = r.json()
                    assert {"type", "title", "status", "detail"} <= set(body)


async def test_no_5xx_for_garbage_path_ids():
    app = fake_app({"iometer": FakeBackend("iometer"), "waltero": FakeBackend("waltero")})
    async with running(app) as c:
        for junk in [*GARBAGE, "iometer:00000000-0000-0000-0000-000000000000", "a:b:c"]:
            for template in ("/meters/{}", "/devices/{}/status"):
                r = await c.get(template.format(junk.replace("/", "%2F")))
                assert r.status_code in (404, 405, 422), (template, junk, r.status_code)
                assert r.headers["content-type"] == "application/problem+json"
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            r = await c.request(method, "/meters")
            assert r.status_code == 405
            assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "url",
    [
        "/readings?meter_id=iometer:{m}&start=0001-01-01T00:00:00%2B01:00",
        "/readings?meter_id=iometer:{m}&start=9999-12-31T23:59:59-01:00",
        "/readings?meter_id=iometer:{m}&start=0001-01-01T00:00:00Z",
        "/consumption/daily?start=0001-01-01&end=0001-01-03&tz=Europe/Berlin",
        "/changes?since=0001-01-01T00:00:00%2B14:00",
    ],
)
async def test_dates_at_the_edges_of_time_are_422(url):
    io = FakeBackend("iometer")
    app = fake_app({"iometer": io, "waltero": FakeBackend("waltero", changes=True)})
    async with running(app) as c:
        r = await c.get(url.format(m=io.meter_ids[0]))
        assert r.status_code == 422, r.text
        assert sum(io.calls.values()) == 0
