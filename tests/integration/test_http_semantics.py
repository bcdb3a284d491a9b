"""HEAD wherever GET is answered, cursors that continue alone, and response-cache keys that ignore
what the API does not know."""

from __future__ import annotations

from tests.support.apps import fake_app, running
from tests.support.fake_backend import FakeBackend


def two_vendors():
    return fake_app({"iometer": FakeBackend("iometer", meters=3), "waltero": FakeBackend("waltero", meters=4)})


async def test_head_is_answered_wherever_get_is_with_the_same_headers_and_no_body():
    app = two_vendors()
    async with running(app) as c:
        for path in ("/healthz", "/meters", "/meters", "/backends", "/openapi.json"):
            get = await c.get(path)
            head = await c.head(path)
            assert head.status_code == get.status_code == 200, path
            assert head.content == b""
            assert head.headers["content-length"] == str(len(get.content)), path
        assert (await c.head("/meters")).headers["x-cache"] == "HIT"
        assert (await c.head("/meters/iometer:nope")).status_code == 404
        assert (await c.head("/nowhere")).status_code == 404


async def test_a_cursor_alone_continues_the_listing():
    app = two_vendors()
    async with running(app) as c:
        first = (await c.get("/meters", params={"backend": "waltero", "limit": 3})).json()
        rest = (await c.get("/meters", params={"cursor": first["next_cursor"], "limit": 3})).json()
        assert [m["backend"] for m in rest["items"]] == ["waltero"]  # the cursor kept the filter
        assert rest["next_cursor"] is None
        meter = first["items"][0]["id"]
        query = {"meter_id": meter, "start": "2026-05-10T00:00:00Z", "end": "2026-05-10T02:00:00Z", "limit": 3}
        page = (await c.get("/readings", params=query)).json()
        alone = (await c.get("/readings", params={"cursor": page["next_cursor"], "limit": 3})).json()
        together = (await c.get("/readings", params={**query, "cursor": page["next_cursor"]})).json()
        assert alone["items"] == together["items"]
        assert alone["items"][0]["time"] >= page["items"][-1]["time"]
        other = {**query, "start": "2026-05-10T00:15:00Z", "cursor": page["next_cursor"]}
        wrong = await c.get("/readings", params=other)
        assert wrong.status_code == 422
        assert wrong.json()["errors"][0]["field"] == "cursor"
        missing = await c.get("/readings", params={"start": "2026-05-10T00:00:00Z"})
        assert missing.status_code == 422


async def test_unknown_parameters_are_refused_and_make_no_new_response_cache_entries():
    app = two_vendors()
    async with running(app) as c:
        await c.get("/meters", params={"limit": 2})
        stored = len(app.responses)
        for i in range(50):
            r = await c.get("/meters", params={"limit": 2, "junk": str(i), f"x{i}": "y"})
            assert r.status_code == 422
            assert "x-cache" not in r.headers
        assert len(app.responses) == stored
        # a known parameter's order does not matter
        await c.get("/meters?limit=2&backend=iometer")
        assert len(app.responses) == stored + 1
        assert (await c.get("/meters?backend=iometer&limit=2")).headers["x-cache"] == "HIT"
        assert len(app.responses) == stored + 1


async def test_not_found_is_remembered_briefly_so_an_unknown_id_costs_one_vendor_call():
    from tests.support.clock import FakeClock

    clock = FakeClock()
    backend = FakeBackend("waltero", meters=1)
    app = fake_app({"waltero": backend}, clock=clock)
    unknown = "waltero:00000000-0000-4000-8000-00000000dead"
    async with running(app) as c:
        for _ in range(20):
            assert (await c.get(f"/meters/{unknown}")).status_code == 404
            assert (await c.get(f"/devices/{unknown}/status")).status_code == 404
        assert (backend.calls["get_meter"], backend.calls["device_status"]) == (1, 1)
        clock.advance(31)  # FACADE_TTL_NOT_FOUND: 30 s by default
        assert (await c.get(f"/meters/{unknown}")).status_code == 404
        assert backend.calls["get_meter"] == 2


async def test_only_real_zone_names_are_time_zones():
    app = two_vendors()
    async with running(app) as c:
        for name in ("localtime", "posixrules", "Factory/../UTC", "right/UTC/../x"):
            r = await c.get("/consumption/daily", params={"start": "2026-05-01", "end": "2026-05-02", "tz": name})
            assert r.status_code == 422, name
            assert r.json()["errors"][0]["field"] == "tz"
        ok = await c.get(
            "/consumption/daily", params={"start": "2026-05-01", "end": "2026-05-02", "tz": "Asia/Kolkata"}
        )
        assert ok.status_code == 200


async def test_dates_outside_the_supported_range_are_refused_saying_the_range():
    app = two_vendors()
    async with running(app) as c:
        meter = (await c.get("/meters")).json()["items"][0]["id"]
        far = await c.get(
            "/readings", params={"meter_id": meter, "start": "9999-12-15T00:00:00Z", "end": "9999-12-16T00:00:00Z"}
        )
        assert far.status_code == 422
        assert "1970 to 9998" in far.json()["detail"]
        early = await c.get("/consumption/daily", params={"start": "0001-01-01", "end": "0001-01-03"})
        assert early.status_code == 422
        assert "1970 to 9998" in early.json()["detail"]


async def test_lists_link_their_next_page_and_every_list_has_next_cursor():
    app = two_vendors()
    async with running(app) as c:
        first = await c.get("/meters", params={"limit": 2, "backend": "waltero"})
        link = first.headers["link"]
        assert link.endswith('>; rel="next"')
        target = link[1 : link.index(">")]
        assert target.startswith("/meters?")
        following = await c.get(target)
        assert following.status_code == 200
        assert following.json()["items"][0]["id"] > first.json()["items"][-1]["id"]
        again = await c.get("/meters", params={"limit": 2, "backend": "waltero"})
        assert again.headers["x-cache"] == "HIT"
        assert again.headers["link"] == link  # the hit path serves the header too
        last = await c.get("/meters", params={"limit": 1000})
        assert "link" not in last.headers
        assert last.json()["next_cursor"] is None
        daily = (await c.get("/consumption/daily", params={"start": "2026-05-01", "end": "2026-05-02"})).json()
        assert "next_cursor" in daily
        assert daily["next_cursor"] is None


async def test_a_parameter_of_another_route_is_unknown_here_too():
    app = two_vendors()
    async with running(app) as c:
        await c.get("/meters", params={"limit": 2})
        stored = len(app.responses)
        for i in range(20):  # `since` and `tz` are other routes' parameters: /meters refuses them
            r = await c.get("/meters", params={"limit": 2, "since": str(i), "tz": f"x{i}"})
            assert r.status_code == 422
            assert [e["field"] for e in r.json()["errors"]] == ["since", "tz"]
        assert len(app.responses) == stored


async def test_a_cursor_alone_keeps_its_page_size_and_a_limit_beside_it_wins():
    from app.factory import create_app
    from app.infra.config import Settings

    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))
    async with running(app, key=None) as c:
        first = (await c.get("/meters", params={"limit": 5})).json()
        assert len(first["items"]) == 5
        alone = (await c.get("/meters", params={"cursor": first["next_cursor"]})).json()
        assert len(alone["items"]) == 5
        assert alone["items"][0]["id"] > first["items"][-1]["id"]
        again = (await c.get("/meters", params={"cursor": alone["next_cursor"]})).json()
        assert 1 <= len(again["items"]) <= 5
        wider = (await c.get("/meters", params={"cursor": first["next_cursor"], "limit": 7})).json()
        assert len(wider["items"]) == 7

        meter = first["items"][0]["id"]
        page = await c.get("/readings", params={"meter_id": meter, "start": "2026-01-01T00:00:00Z", "limit": 5})
        assert page.status_code == 200, page.text
        body = page.json()
        start = body["items"][0]["time"]
        query = {"meter_id": meter, "start": start, "limit": 5}
        body = (await c.get("/readings", params=query)).json()
        assert len(body["items"]) == 5
        for _ in range(3):  # bounded: three pages, each the cursor's size
            body = (await c.get("/readings", params={"cursor": body["next_cursor"]})).json()
            assert len(body["items"]) == 5

        since = "2026-01-01T00:00:00Z"
        changes = (await c.get("/changes", params={"since": since, "limit": 2})).json()
        assert len(changes["items"]) == 2
        more = (await c.get("/changes", params={"cursor": changes["next_cursor"]})).json()
        assert len(more["items"]) == 2
        assert more["items"][0]["id"] != changes["items"][0]["id"]
