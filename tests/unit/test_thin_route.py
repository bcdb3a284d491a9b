"""`ThinRoute` answers exactly as FastAPI's own handler: for valid and invalid query strings on every data
route (hand-picked edges and Hypothesis-generated ones, bounded), the status, body and headers of the
sandbox facade with thin routes equal those of the same facade built with FastAPI's `APIRoute` handler;
and a valid query on the thin facade never reaches FastAPI's dependency solving."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import quote

import fastapi.routing
import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.api.deps import get_service
from app.api.routes import changes, consumption, devices, meters, readings
from app.api.thin_route import ThinRoute, thin_handler
from app.backends.registry import create_emulators
from app.factory import create_app
from app.infra.config import Settings
from tests.support.clock import FakeClock
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.timeout(600)

NOW = datetime(2026, 4, 20, 10, 7, tzinfo=UTC)
KEY = "thin-route-key-0123456789"
VARYING = {"x-request-id", "date"}
"""Headers that differ between any two answers (a fresh id, the server's clock)."""


@dataclass
class Facades:
    thin: httpx.Client
    plain: httpx.Client
    meters: list[dict[str, Any]]
    calls: dict[str, int] = field(default_factory=dict)
    """How often each facade ran FastAPI's dependency solving."""


def _app() -> Any:
    clock = FakeClock(NOW)
    settings_ = Settings(
        FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0, FACADE_API_KEYS=KEY, FACADE_CURSOR_SECRET="thin-route-cursor-secret"
    )
    return create_app(settings_, clock=clock, sleep=clock.sleep, emulators=create_emulators(clock))


@pytest.fixture(scope="module")
def facades() -> Iterator[Facades]:
    calls = {"thin": 0, "plain": 0}
    original = fastapi.routing.solve_dependencies

    async def counting(**kwargs: Any) -> Any:
        request = kwargs["request"]
        calls[request.app.title_for_test] += 1
        return await original(**kwargs)

    thin_app = _app()
    plain_app = _app()
    # The same facade answering with FastAPI's own handler: a thin route defers every request of an app
    # that overrides dependencies (this override changes nothing else: the same function)
    plain_app.dependency_overrides[get_service] = get_service
    thin_app.title_for_test = "thin"  # type: ignore[attr-defined]
    plain_app.title_for_test = "plain"  # type: ignore[attr-defined]
    headers = {"X-API-Key": KEY, "Host": "facade.test"}  # one host: `Link` headers name it
    with (
        mock.patch.object(fastapi.routing, "solve_dependencies", counting),
        serve_in_thread(thin_app) as thin_url,
        serve_in_thread(plain_app) as plain_url,
        httpx.Client(base_url=thin_url, headers=headers, timeout=60) as thin,
        httpx.Client(base_url=plain_url, headers=headers, timeout=60) as plain,
    ):
        listed = thin.get("/meters", params={"limit": 1000}).json()["items"]
        assert plain.get("/meters", params={"limit": 1000}).json()["items"] == listed
        yield Facades(thin, plain, listed, calls)


def compare(f: Facades, path: str, query: list[tuple[str, str]] | str) -> tuple[httpx.Response, int, int]:
    """Ask both facades; assert the same answer; return it with how often each solved dependencies."""
    calls = f.calls
    before = dict(calls)
    url = f"{path}?{query}" if isinstance(query, str) else path
    params = None if isinstance(query, str) else query
    thin = f.thin.get(url, params=params)
    plain = f.plain.get(url, params=params)
    assert (thin.status_code, thin.content) == (plain.status_code, plain.content), (path, query)
    thin_headers = [(k, v) for k, v in thin.headers.multi_items() if k not in VARYING]
    plain_headers = [(k, v) for k, v in plain.headers.multi_items() if k not in VARYING]
    assert thin_headers == plain_headers, (path, query)
    assert thin.status_code != 500, thin.text
    return thin, calls["thin"] - before["thin"], calls["plain"] - before["plain"]


def meter_of(f: Facades, backend: str) -> str:
    return next(m["id"] for m in f.meters if m["backend"] == backend)


def valid_queries(f: Facades) -> list[tuple[str, list[tuple[str, str]] | str]]:
    iometer, waltero = meter_of(f, "iometer"), meter_of(f, "waltero")
    device = next(m["device_id"] for m in f.meters if m["backend"] == "iometer")
    return [
        ("/meters", []),
        ("/meters", [("limit", "2"), ("backend", "waltero")]),
        ("/meters", [("medium", "water"), ("site_id", "waltero:00000000-0000-0000-0000-000000000001")]),
        ("/meters", [("serial_number", "WS5942859575"), ("limit", "1000"), ("limit", "7")]),  # the last counts
        ("/meters", [("backend", ""), ("cursor", "")]),
        ("/meters", "limit=0&limit=3"),  # the last of repeated scalars counts
        (f"/meters/{iometer}", []),
        (f"/meters/{waltero}", []),
        (f"/devices/{device}/status", []),
        ("/readings", [("meter_id", waltero), ("start", "2026-04-19T00:00:00Z"), ("end", "2026-04-19T03:00:00Z")]),
        (
            "/readings",
            [
                ("meter_id", iometer),
                ("start", "2026-04-19T00:00:00Z"),
                ("quantity", "energy_import"),
                ("quantity", "power"),
            ],
        ),
        ("/readings", [("meter_id", iometer), ("start", "2026-04-19T00:00:00Z"), ("limit", "1"), ("format", "csv")]),
        ("/consumption/daily", [("start", "2026-04-15"), ("end", "2026-04-18"), ("meter_id", waltero)]),
        ("/consumption/daily", [("start", "2026-04-15"), ("meter_id", iometer), ("meter_id", waltero), ("tz", "UTC")]),
        (
            "/consumption",
            [("resolution", "hour"), ("start", "2026-04-18"), ("end", "2026-04-19"), ("meter_id", iometer)],
        ),
        ("/consumption", [("resolution", "day"), ("start", "2026-04-10"), ("limit", "3"), ("backend", "waltero")]),
        ("/changes", [("since", "2026-04-18T00:00:00Z")]),
        ("/changes", [("since", "2026-04-18T00:00:00Z"), ("backend", "waltero"), ("limit", "1")]),
    ]


def invalid_queries(f: Facades) -> list[tuple[str, list[tuple[str, str]] | str]]:
    iometer = meter_of(f, "iometer")
    window = [("meter_id", iometer), ("start", "2026-04-19T00:00:00Z")]
    return [
        ("/meters", [("limit", "0")]),
        ("/meters", [("limit", "1001")]),
        ("/meters", [("limit", "")]),
        ("/meters", [("limit", "99999999999999999999999")]),
        ("/meters", [("limit", "abc"), ("backend", "x" * 65)]),  # two bad fields: both in `errors`
        ("/meters", [("medium", "Water")]),
        ("/meters", [("medium", "")]),
        ("/meters", [("site_id", "s" * 201)]),
        ("/meters", [("cursor", "c" * 4097)]),
        ("/meters", [("meterid", "x")]),
        ("/meters", [("limit", "0"), ("bogus", "1")]),  # the unknown parameter is judged first
        ("/meters", "limit=5&limit=0"),  # the last of repeated scalars counts
        ("/meters/acme:nothing", []),
        ("/meters/iometer:", []),
        ("/devices/waltero:unknown/status", [("x", "1")]),
        ("/readings", []),
        ("/readings", [*window, ("limit", "0")]),
        ("/readings", [*window, ("format", "f" * 33)]),
        ("/readings", [("meter_id", iometer), ("start", "2026-04-19T00:00:00 02:00")]),
        ("/readings", [*window, ("quantity", "")]),
        ("/consumption/daily", []),
        ("/consumption/daily", [("start", "")]),
        ("/consumption/daily", [("start", "2026-04-15"), ("tz", "Europe/Nowhere")]),
        ("/consumption", [("resolution", "week"), ("start", "2026-04-15")]),
        ("/consumption", [("resolution", "hour"), ("start", "2026-04-15"), ("limit", "0")]),
        ("/consumption", [("resolution", "hour"), ("start", "2026-04-15"), ("limit", "-1")]),
        ("/consumption", [("resolution", ""), ("start", "2026-04-15")]),
        ("/changes", []),
        ("/changes", [("since", "yesterday")]),
        ("/changes", [("since", "2026-04-18T00:00:00Z"), ("backend", "iometer")]),
    ]


def test_every_data_route_has_a_thin_handler() -> None:
    routes = [r for m in (readings, meters, consumption, devices, changes) for r in m.router.routes]
    assert {r.path for r in routes} == {  # type: ignore[attr-defined]
        "/readings",
        "/meters",
        "/meters/{meter_id}",
        "/consumption/daily",
        "/consumption",
        "/devices/{device_id}/status",
        "/changes",
    }
    for route in routes:
        assert isinstance(route, ThinRoute)
        assert thin_handler(route.dependant, None, route.get_route_handler()) is not None, route.path


def test_a_declaration_the_plan_does_not_know_keeps_fastapis_handler() -> None:
    from fastapi import APIRouter, Header, Query
    from starlette.responses import Response

    router = APIRouter(route_class=ThinRoute)

    @router.get("/header")
    async def with_header(x_thing: str | None = Header(default=None)) -> Response:
        return Response()

    @router.get("/pattern")
    async def with_pattern(q: str | None = Query(default=None, pattern="^a+$")) -> Response:
        return Response()

    @router.get("/model")
    async def returns_a_model() -> dict[str, str]:
        return {}

    @router.get("/float")
    async def with_float(q: float | None = None) -> Response:
        return Response()

    for route in router.routes:
        assert isinstance(route, APIRoute)
        assert thin_handler(route.dependant, None, route.get_route_handler()) is None, route.path


def test_hand_picked_valid_queries_answer_alike_without_dependency_solving(facades: Facades) -> None:
    routed = 0
    for path, query in valid_queries(facades):
        response, thin_solved, plain_solved = compare(facades, path, query)
        assert response.status_code == 200, (path, query, response.text)
        assert thin_solved == 0, (path, query)
        routed += plain_solved  # 0 when the front's response cache answered (no route ran)
    assert routed >= len(valid_queries(facades)) - 3  # the plain facade did solve: the comparison means something


def test_hand_picked_invalid_queries_answer_alike(facades: Facades) -> None:
    for path, query in invalid_queries(facades):
        response, thin_solved, plain_solved = compare(facades, path, query)
        assert response.status_code in (404, 422, 501), (path, query, response.text)
        assert thin_solved <= plain_solved == 1, (path, query)
        if response.status_code == 422:
            assert response.json()["errors"], response.text
            assert response.headers["content-type"] == "application/problem+json"


def test_values_the_parsers_do_not_vouch_for_are_fastapis_to_judge(facades: Facades) -> None:
    # `05` is a valid limit to pydantic, not to the thin parser: FastAPI answers it, the same 200
    response, thin_solved, plain_solved = compare(facades, "/meters", [("limit", "05")])
    assert response.status_code == 200 and len(response.json()["items"]) == 5
    assert (thin_solved, plain_solved) == (1, 1)
    for odd in ("+6", " 6", "6 ", "6.0", "1_0", "\uff10\uff16"):  # whatever pydantic makes of them, both say it
        response, thin_solved, plain_solved = compare(facades, "/meters", [("limit", odd)])
        assert response.status_code in (200, 422), (odd, response.text)
        assert thin_solved == plain_solved == 1, odd


PARAMS = {
    "/meters": ["backend", "limit", "cursor", "serial_number", "format", "medium", "site_id"],
    "/readings": ["meter_id", "start", "end", "quantity", "limit", "cursor", "format"],
    "/consumption/daily": ["start", "end", "meter_id", "backend", "tz", "format"],
    "/consumption": ["resolution", "start", "end", "meter_id", "backend", "tz", "limit", "cursor", "format"],
    "/changes": ["since", "backend", "limit", "cursor", "format"],
}
values = st.one_of(
    st.sampled_from(["", "0", "1", "2", "05", "-1", "+3", " 4", "1000", "1001", "3000", "3001", "1e2", "x" * 65]),
    st.sampled_from(["water", "gas", "Water", "hour", "15min", "day", "month", "week", "json", "csv", "ndjson"]),
    st.sampled_from(["waltero", "iometer", "acme", "UTC", "Europe/Berlin", "energy_import", "obis:1-0:1.8.0"]),
    st.sampled_from(["2026-04-18", "2026-04-19", "2026-04-18T00:00:00Z", "2026-04-19T06:00:00+02:00", "0001-01-01"]),
    st.sampled_from(["s" * 201, "c" * 4097, "f" * 33]),
    st.text(max_size=12),
)
EXAMPLES = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("path", sorted(PARAMS))
@EXAMPLES
@given(data=st.data())
def test_generated_queries_answer_alike(facades: Facades, path: str, data: st.DataObject) -> None:
    names = st.one_of(st.sampled_from(PARAMS[path]), st.sampled_from(["meterid", "x", "LIMIT"]))
    if path in ("/readings", "/consumption/daily", "/consumption"):
        # a real meter mostly, so that valid windows reach the vendors' emulators too
        meter = data.draw(st.sampled_from([meter_of(facades, "iometer"), meter_of(facades, "waltero")]))
        names = st.one_of(names, st.just("meter_id"))
        values_ = st.one_of(values, st.just(meter))
    else:
        values_ = values
    query = data.draw(st.lists(st.tuples(names, values_), max_size=5))
    _response, thin_solved, plain_solved = compare(facades, path, query)
    assert thin_solved <= plain_solved


@EXAMPLES
@given(meter_id=st.one_of(st.text(max_size=20), st.sampled_from(["iometer:", "waltero:x", "%2F", "a%20b"])))
def test_generated_path_ids_answer_alike(facades: Facades, meter_id: str) -> None:
    segment = quote(meter_id, safe="")
    for path in (f"/meters/{segment}", f"/devices/{segment}/status"):
        compare(facades, path, [])
