"""Waltero's hot GETs (`HotGets`: straight on the aiohttp session, no httpx model) over loopback keep
what the httpx path does per attempt: the same retries, one re-login for a burst of 401s, the
`facade_upstream_requests_total` samples and the `upstream call` log line, the same request on the wire,
timeouts, and a vendor's cookie (from then on the call goes through httpx, whose jar sends it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.backends.waltero.client import WalteroClient, waltero_retry_policy
from app.backends.waltero.emulator import SANDBOX_SETTINGS, create_emulator
from app.backends.waltero.token import TokenManager
from app.infra.config import Settings
from app.infra.context import request_id_var, upstream_operation
from app.infra.errors import UpstreamTimeout
from app.infra.metrics import Metrics
from app.infra.upstream import HotGets, InstrumentedTransport, UpstreamClient, build_client
from tests.support.clock import FakeClock
from tests.support.servers import serve_in_thread

DEVICE = "11111111-1111-1111-1111-111111111101"


class Rig:
    """A `WalteroClient` on the app's own client (`build_client`) against `app` on loopback."""

    def __init__(self, base: str, settings: Settings | None = None) -> None:
        self.clock = FakeClock()
        self.metrics = Metrics()
        self.http = build_client("waltero", settings or Settings(), self.metrics)
        self.retries: list[str] = []
        policy = waltero_retry_policy()
        parts: dict[str, Any] = {
            "clock": self.clock,
            "policy": policy,
            "sleep": self.clock.sleep,
            "rng": random.Random(3),
            "on_retry": self.retries.append,
        }
        self.tokens = TokenManager(
            self.http,
            base,
            SANDBOX_SETTINGS["WALTERO_USERNAME"],
            SecretStr(SANDBOX_SETTINGS["WALTERO_PASSWORD"]),
            **parts,
        )
        self.client = WalteroClient(self.http, base, self.tokens, **parts)

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def emulator_url() -> Iterator[tuple[Any, str]]:
    emulator = create_emulator(FakeClock())
    with serve_in_thread(emulator.app) as url:
        yield emulator, url + "/prod"


@pytest.fixture
def httpx_gets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods of the requests that went through the httpx client's transport."""
    seen: list[str] = []
    original = InstrumentedTransport.handle_async_request

    async def counting(self: InstrumentedTransport, request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return await original(self, request)

    monkeypatch.setattr(InstrumentedTransport, "handle_async_request", counting)
    return seen


@contextlib.asynccontextmanager
async def rig_for(base: str, settings: Settings | None = None) -> AsyncIterator[Rig]:
    rig = Rig(base, settings)
    assert isinstance(rig.http, UpstreamClient) and rig.http.hot is not None
    try:
        yield rig
    finally:
        await rig.http.aclose()


async def test_a_429_and_a_500_are_retried_with_a_metric_sample_and_a_log_line_per_attempt(
    emulator_url, httpx_gets, caplog
):
    emulator, base = emulator_url
    async with rig_for(base) as rig:
        await rig.tokens.ensure_token()
        emulator.faults.retry_after = 2
        emulator.faults.fail_next = [429, 500]
        caplog.set_level(logging.INFO, logger="app.infra.upstream")
        token = request_id_var.set("req-hot-1")
        try:
            with upstream_operation("device_status"):
                device = await rig.client.device(DEVICE)
        finally:
            request_id_var.reset(token)
    assert device.id == DEVICE
    assert httpx_gets == ["POST"]  # the login; every GET went on the hot path
    assert emulator.stats["device"] == 3
    assert rig.retries == ["429", "5xx"]
    assert 2 <= rig.clock.slept[0] <= 2.2  # Retry-After plus at most the base delay of jitter
    assert len(rig.clock.slept) == 2
    for outcome in ("429", "5xx", "ok"):
        labels = {"backend": "waltero", "operation": "device_status", "outcome": outcome}
        assert rig.sample("facade_upstream_requests_total", **labels) == 1.0
    assert (
        rig.sample("facade_upstream_request_duration_seconds_count", backend="waltero", operation="device_status") == 3
    )
    calls = [r.fields for r in caplog.records if r.getMessage() == "upstream call" and r.fields["operation"] != "login"]
    assert [(c["method"], c["status"], c["outcome"], c["attempt"], c["request_id"]) for c in calls] == [
        ("GET", 429, "429", 1, "req-hot-1"),
        ("GET", 500, "5xx", 2, "req-hot-1"),
        ("GET", 200, "ok", 3, "req-hot-1"),
    ]
    assert all(c["backend"] == "waltero" and c["duration_ms"] > 0 for c in calls)


async def test_a_burst_of_401s_logs_in_again_once(emulator_url, httpx_gets):
    emulator, base = emulator_url
    async with rig_for(base) as rig:
        await rig.tokens.ensure_token()
        emulator.revoke_tokens()
        devices = await asyncio.gather(*(rig.client.device(DEVICE) for _ in range(5)))
        assert [d.id for d in devices] == [DEVICE] * 5
        assert rig.tokens.logins == 2  # the first login and exactly one re-login for the five
        assert httpx_gets == ["POST", "POST"]
        assert rig.sample("facade_token_refreshes_total", backend="waltero") == 2.0
        assert rig.sample("facade_upstream_requests_total", backend="waltero", operation="other", outcome="4xx") == 5


def _recording_vendor(seen: list[tuple[bytes, dict[str, str]]], *, slow: float = 0.0) -> Starlette:
    """Logs in anyone; records each GET's raw target and headers; sets a cookie on `/prod/api/auth/me`."""

    async def login(request: Request) -> JSONResponse:
        return JSONResponse({"token": "opaque"})

    async def anything(request: Request) -> Response:
        seen.append((request.scope["raw_path"] + b"?" + request.scope["query_string"], dict(request.headers)))
        if slow:
            await asyncio.sleep(slow)
        if request.url.path.endswith("/me"):
            response = JSONResponse({"user": {"id": "u"}, "accessible_organizations": []})
            response.set_cookie("session", "s-1", path="/")
            return response
        return JSONResponse({"data": [], "total": 0})

    return Starlette(
        routes=[Route("/prod/api/auth/login", login, methods=["POST"]), Route("/prod/{rest:path}", anything)]
    )


async def test_the_hot_path_sends_what_the_httpx_path_sends():
    seen: list[tuple[bytes, dict[str, str]]] = []
    start = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    with serve_in_thread(_recording_vendor(seen)) as url:
        for transport in ("aiohttp", "httpx"):
            async with contextlib.AsyncExitStack() as stack:
                rig = Rig(url + "/prod", Settings(FACADE_UPSTREAM_TRANSPORT=transport))
                stack.push_async_callback(rig.http.aclose)
                assert (rig.http.hot is not None) == (transport == "aiohttp")
                token = request_id_var.set("req-same")
                try:
                    await rig.client.telemetry(DEVICE, start, start + timedelta(days=7), ["energy_in", "energy out"])
                    await rig.client.changes("org-1", since=start, limit=5, cursor="a+b/c=")
                    await rig.client.devices_page("org ä/%2F?", limit=1, offset=0)
                finally:
                    request_id_var.reset(token)
    hot, plain = seen[:3], seen[3:]
    assert [target for target, _ in hot] == [target for target, _ in plain]
    assert b"energy_in%2Cenergy+out" in hot[0][0] and b"cursor=a%2Bb%2Fc%3D" in hot[1][0]
    assert b"/organizations/org%20%C3%A4%2F%252F%3F/devices?" in hot[2][0]
    wanted = ("authorization", "user-agent", "accept", "accept-encoding", "x-request-id")
    for (_, sent), (_, reference) in zip(hot, plain, strict=True):
        assert {k: sent.get(k) for k in wanted} == {k: reference.get(k) for k in wanted}
        assert sent["authorization"] == "Bearer opaque" and sent["x-request-id"] == "req-same"


async def test_a_read_timeout_is_upstream_timeout_not_retried_and_counted():
    seen: list[tuple[bytes, dict[str, str]]] = []
    with serve_in_thread(_recording_vendor(seen, slow=2.0)) as url:
        async with rig_for(url + "/prod", Settings(FACADE_READ_TIMEOUT=0.2)) as rig:
            with pytest.raises(UpstreamTimeout):
                await rig.client.devices_page("org-1", limit=1, offset=0)
            assert len(seen) == 1
            assert (
                rig.sample("facade_upstream_requests_total", backend="waltero", operation="other", outcome="timeout")
                == 1
            )


async def test_after_a_vendor_sets_a_cookie_the_calls_go_through_httpx_and_send_it(httpx_gets):
    seen: list[tuple[bytes, dict[str, str]]] = []
    with serve_in_thread(_recording_vendor(seen)) as url:
        async with rig_for(url + "/prod") as rig:
            hot = rig.http.hot
            assert hot is not None and hot.ready
            await rig.client.me()  # on the hot path; its answer sets the cookie
            assert not hot.ready
            await rig.client.devices_page("org-1", limit=1, offset=0)
    assert httpx_gets == ["POST", "GET"]
    assert "cookie" not in seen[0][1]
    assert seen[1][1]["cookie"] == "session=s-1"


def test_hot_gets_exist_only_on_the_aiohttp_socket_layer_when_nothing_is_injected():
    assert isinstance(build_client("v", Settings(), Metrics()).hot, HotGets)
    assert build_client("v", Settings(FACADE_UPSTREAM_TRANSPORT="httpx"), Metrics()).hot is None
    injected = httpx.MockTransport(lambda request: httpx.Response(200))
    assert build_client("v", Settings(), Metrics(), injected).hot is None
