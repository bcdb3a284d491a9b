"""Strict parameters: a query parameter a route does not declare is a 422 naming it and listing the
route's own (never silently ignored, never answered from the response cache); `/meters` filters by
`medium` and `site_id`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.backends.registry import create_emulators
from app.factory import create_app
from app.infra.config import Settings
from tests.support.apps import running
from tests.support.clock import FakeClock

NOW = datetime(2026, 4, 20, 10, 7, tzinfo=UTC)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    clock = FakeClock(NOW)
    app = create_app(
        Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0),
        clock=clock,
        sleep=clock.sleep,
        emulators=create_emulators(clock),
    )
    async with running(app, key=None) as c:
        yield c


def unknown_fields(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["type"] == "/problems/invalid-request"
    return [e["field"] for e in body["errors"]]


async def test_a_mistyped_filter_is_a_422_naming_it_not_every_meter(client: httpx.AsyncClient) -> None:
    meters = (await client.get("/meters")).json()["items"]
    one = meters[0]["id"]
    r = await client.get("/consumption/daily", params={"meterid": one, "start": "2026-04-01", "end": "2026-04-03"})
    assert unknown_fields(r) == ["meterid"]
    error = r.json()["errors"][0]
    assert error["accepted"] == ["backend", "end", "format", "meter_id", "start", "tz"]
    assert "meter_id" in error["message"] and "meterid" in r.json()["detail"]
    # the parameter spelled right answers that one meter only
    ok = await client.get("/consumption/daily", params={"meter_id": one, "start": "2026-04-01", "end": "2026-04-03"})
    assert ok.status_code == 200
    assert {row["meter_id"] for row in ok.json()["items"]} == {one}


async def test_every_route_refuses_an_unknown_parameter_and_keeps_its_own(client: httpx.AsyncClient) -> None:
    meter = (await client.get("/meters", params={"medium": "water"})).json()["items"][0]
    valid: dict[str, dict[str, Any]] = {
        "/meters": {"limit": 5, "format": "json"},
        f"/meters/{meter['id']}": {},
        "/readings": {"meter_id": meter["id"], "start": "2026-04-20T00:00:00Z", "format": "csv"},
        "/consumption/daily": {"start": "2026-04-18", "end": "2026-04-20", "tz": "Europe/Berlin"},
        "/consumption": {"start": "2026-04-18", "end": "2026-04-20", "resolution": "day"},
        f"/devices/{meter['device_id']}/status": {},
        "/changes": {"since": "2026-04-19T00:00:00Z", "limit": 5},
        "/backends": {},
        "/healthz": {},
        "/readyz": {},
        "/metrics": {},
    }
    for path, params in valid.items():
        good = await client.get(path, params=params)
        assert good.status_code == 200, (path, good.text)
        bad = await client.get(path, params={**params, "bogus": "1", "Limit": "5"})
        assert unknown_fields(bad) == ["Limit", "bogus"], path
        accepted = bad.json()["errors"][0]["accepted"]
        assert accepted == sorted(accepted) and set(params) <= set(accepted), path
    live = await client.get("/readings/live", params={"meter_id": meter["id"], "since_": "x"})
    assert unknown_fields(live) == ["since_"]


async def test_a_flood_of_unknown_names_is_cut_short(client: httpx.AsyncClient) -> None:
    query = "&".join(f"{'x' * 100}{i:03d}=1" for i in range(50))
    r = await client.get(f"/healthz?{query}")
    fields = unknown_fields(r)
    assert len(fields) == 10 and all(len(f) == 64 for f in fields)
    assert "and 40 more" in r.json()["detail"]


async def test_a_cached_answer_is_never_served_for_a_query_with_an_unknown_parameter(client: httpx.AsyncClient) -> None:
    first = await client.get("/meters", params={"limit": 2})
    again = await client.get("/meters", params={"limit": 2})
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    junk = await client.get("/meters", params={"limit": 2, "junk": "1"})
    assert unknown_fields(junk) == ["junk"]
    assert "x-cache" not in junk.headers
    one = first.json()["items"][0]["id"]
    assert (await client.get(f"/meters/{one}")).status_code == 200
    assert (await client.get(f"/meters/{one}")).headers["x-cache"] == "HIT"
    assert unknown_fields(await client.get(f"/meters/{one}", params={"format": "csv"})) == ["format"]
    # HEAD goes the same way
    head = await client.head("/meters", params={"limit": 2, "junk": "1"})
    assert head.status_code == 422


async def test_meters_filter_by_medium_and_site(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/meters", params={"limit": 1000})).json()["items"]
    media = {m["medium"] for m in everything}
    assert {"electricity", "water"} <= media
    for medium in media:
        got = (await client.get("/meters", params={"medium": medium, "limit": 1000})).json()["items"]
        assert got == [m for m in everything if m["medium"] == medium], medium
    water = [m for m in everything if m["medium"] == "water"]
    assert 0 < len(water) < len(everything)
    sites = {m["site_id"] for m in everything if m["site_id"]}
    assert len(sites) >= 2
    for site in sites:
        got = (await client.get("/meters", params={"site_id": site, "limit": 1000})).json()["items"]
        assert got == [m for m in everything if m["site_id"] == site], site
        assert got
    site = sorted(sites)[0]
    both = (await client.get("/meters", params={"site_id": site, "medium": "water", "limit": 1000})).json()["items"]
    assert both == [m for m in everything if m["site_id"] == site and m["medium"] == "water"]
    for nowhere in ("acme:1", "waltero:00000000-0000-4000-8000-000000000000"):
        r = await client.get("/meters", params={"site_id": nowhere})
        assert r.status_code == 200 and r.json()["items"] == [], nowhere
    wrong = await client.get("/meters", params={"medium": "plasma"})
    assert unknown_fields(wrong) == ["medium"]


async def test_a_filtered_listing_pages_with_its_cursor_alone(client: httpx.AsyncClient) -> None:
    water = (await client.get("/meters", params={"medium": "water", "limit": 1000})).json()["items"]
    assert len(water) >= 2
    seen: list[dict[str, Any]] = []
    page = (await client.get("/meters", params={"medium": "water", "limit": 1})).json()
    for _ in range(len(water) + 1):  # bounded: one page per water meter, and one more would be a bug
        seen.extend(page["items"])
        if page["next_cursor"] is None:
            break
        page = (await client.get("/meters", params={"cursor": page["next_cursor"]})).json()
    assert seen == water
    first = (await client.get("/meters", params={"medium": "water", "limit": 1})).json()
    other = await client.get("/meters", params={"medium": "gas", "cursor": first["next_cursor"]})
    assert unknown_fields(other) == ["cursor"]
