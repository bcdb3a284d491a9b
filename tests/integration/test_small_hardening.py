"""The smaller holes of issue 22, each over HTTP: a resume point in the future, CSV cells a
spreadsheet would still run, `nosniff` on every answer, the live demo's framing and inline script,
Swagger UI keeping keys, and id patterns that let a trailing newline through."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.backends.registry import create_emulators
from app.domain.models import Meter
from app.factory import create_app
from app.infra.config import Settings
from tests.support.apps import fake_app, running
from tests.support.clock import FakeClock
from tests.support.fake_backend import FakeBackend

NOW = datetime(2026, 4, 20, 10, 7, tzinfo=UTC)


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    clock = FakeClock(NOW)
    app = create_app(
        Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0, FACADE_API_KEYS="k-0123456789"),
        clock=clock,
        sleep=clock.sleep,
        emulators=create_emulators(clock),
    )
    async with running(app, key="k-0123456789") as c:
        yield c


def z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_resume_point_in_the_future_is_a_422(sandbox: httpx.AsyncClient) -> None:
    meter = (await sandbox.get("/meters", params={"backend": "iometer"})).json()["items"][0]["id"]
    ahead = z(NOW + timedelta(days=2))
    async with asyncio.timeout(20):  # an accepted stream never ends: fail, never hang
        r = await sandbox.get("/readings/live", params={"meter_id": meter}, headers={"Last-Event-ID": ahead})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "Last-Event-ID"
        assert "future" in r.json()["detail"]
        r = await sandbox.get("/readings/live", params={"meter_id": meter, "since": ahead})
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "since"
        r = await sandbox.get("/readings/live", params={"meter_id": meter, "since": z(NOW + timedelta(minutes=5))})
        assert r.status_code == 422


NAMES = {
    "lf": "\n=1+1",
    "space": " =1+1",
    "nbsp": "\u00a0=1+1",
    "zwsp": "\u200b=1+1",
    "bom": "\ufeff@SUM(A1)",
    "fullwidth-equals": '\uff1dHYPERLINK("http://x")',
    "fullwidth-plus": "\uff0b1",
    "minus-sign": "\u22121+1",
    "small-equals": "\ufe66cmd",
    "tab": "\t=1",
    "plain": "Kitchen sub-meter",
    "inner": "a=b",
}


class NamedMeters(FakeBackend):
    """A vendor whose meter names are what a hostile tenant typed."""

    def _meter(self, upstream: str) -> Meter:
        fields = super()._meter(upstream).model_dump()
        fields["name"] = list(NAMES.values())[self.meter_ids.index(upstream)]
        return Meter(**fields)


async def test_csv_cells_a_spreadsheet_would_run_are_quoted_whatever_comes_first() -> None:
    app = fake_app({"waltero": NamedMeters("waltero", meters=len(NAMES))})
    async with running(app) as c:
        r = await c.get("/meters", params={"format": "csv", "limit": 100})
        assert r.status_code == 200
        rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    by_name = {row["name"].removeprefix("'"): row["name"] for row in rows}
    assert set(by_name) == set(NAMES.values())
    for label, name in NAMES.items():
        defused = label not in ("plain", "inner")
        assert by_name[name] == ("'" + name if defused else name), label


async def test_every_answer_says_nosniff(sandbox: httpx.AsyncClient) -> None:
    first = await sandbox.get("/meters")
    hit = await sandbox.get("/meters")
    assert hit.headers["x-cache"] == "HIT"
    not_modified = await sandbox.get("/meters", headers={"If-None-Match": first.headers["etag"]})
    assert not_modified.status_code == 304
    answers = [
        first,
        hit,
        not_modified,
        await sandbox.head("/meters"),
        await sandbox.get("/nowhere"),
        await sandbox.get("/meters", params={"bogus": 1}),
        await sandbox.get("/meters/iometer:nope"),
        await sandbox.get("/meters", headers={"X-API-Key": "wrong"}),
        await sandbox.post("/meters"),
        await sandbox.get("/meters", params={"format": "csv"}),
        await sandbox.get("/meters", headers={"Accept": "application/x-ndjson"}),
        await sandbox.get("/healthz"),
        await sandbox.get("/metrics"),
        await sandbox.get("/openapi.json"),
        await sandbox.get("/docs"),
        await sandbox.get("/live-demo"),
    ]
    for r in answers:
        assert r.headers.get_list("x-content-type-options") == ["nosniff"], (r.request.url, r.status_code)
    assert {r.status_code for r in answers} == {200, 304, 401, 404, 405, 422}


async def test_the_live_demo_cannot_be_framed_and_runs_no_inline_script(sandbox: httpx.AsyncClient) -> None:
    page = await sandbox.get("/live-demo", headers={"X-API-Key": ""})
    assert page.status_code == 200
    csp = {d.split()[0]: d.split()[1:] for d in page.headers["content-security-policy"].split("; ")}
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline'
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text and '<script src="/live-demo.js"></script>' in page.text
    script = await sandbox.get("/live-demo.js", headers={"X-API-Key": ""})  # open, like the page
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "/readings/live" in script.text and "Last-Event-ID" in script.text


async def test_swagger_ui_does_not_keep_api_keys(sandbox: httpx.AsyncClient) -> None:
    init = await sandbox.get("/docs/assets/swagger-init.js")
    assert init.status_code == 200
    assert "persistAuthorization: false" in init.text
    assert "persistAuthorization: true" not in init.text


async def test_an_id_with_a_trailing_newline_is_no_id(sandbox: httpx.AsyncClient) -> None:
    meter = (await sandbox.get("/meters", params={"backend": "iometer"})).json()["items"][0]
    assert (await sandbox.get(f"/meters/{meter['id']}")).status_code == 200
    assert (await sandbox.get(f"/meters/{meter['id']}%0A")).status_code == 404
    assert (await sandbox.get(f"/devices/{meter['device_id']}%0A/status")).status_code == 404
    start = z(NOW - timedelta(hours=2))
    r = await sandbox.get("/readings", params={"meter_id": meter["id"] + "\n", "start": start})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "meter_id"
    r = await sandbox.get("/readings", params={"meter_id": meter["id"], "start": start, "quantity": "obis:1.8.0\n"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "quantity"
    r = await sandbox.get("/consumption/daily", params={"start": "2026-04-01\n", "end": "2026-04-03"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "start"
    r = await sandbox.get("/readings", params={"meter_id": meter["id"], "start": start + "\n"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "start"
