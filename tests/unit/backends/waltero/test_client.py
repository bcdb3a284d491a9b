"""Retries and error mapping of the Waltero client, driven by the emulator's fault knobs (FakeClock sleep).

The emulator-driven tests run on both paths of a data GET: httpx (over `ASGITransport`) and the hot
GETs on the aiohttp session (`HotGets`, the emulator served on loopback)."""

import contextlib
import email.utils
import random
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from app.backends.waltero.client import WalteroClient, waltero_retry_policy
from app.backends.waltero.emulator import ORG_NORTH, ORG_OTHER, SANDBOX_SETTINGS, create_emulator
from app.backends.waltero.token import TokenManager
from app.infra.config import Settings
from app.infra.errors import (
    NotFound,
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from app.infra.metrics import Metrics
from app.infra.tolerance import WireShapeCollector
from app.infra.upstream import UpstreamClient, build_client
from tests.support.clock import FakeClock
from tests.support.servers import serve_in_thread
from tests.support.wire_shapes import current_shapes

BASE = "http://waltero.test/prod"
DEVICE = "11111111-1111-1111-1111-111111111101"


class Rig:
    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        max_attempts: int = 4,
        loopback: Callable[[object], str] | None = None,
    ) -> None:
        """`loopback(app)` serves the emulator on a socket and answers its base URL: the client is then
        the app's own (`build_client`, hot GETs on aiohttp)."""
        self.clock = FakeClock()
        self.emulator = create_emulator(self.clock)
        base = BASE
        if loopback is not None:
            base = loopback(self.emulator.app) + "/prod"
            self.http: httpx.AsyncClient = build_client("waltero", Settings(), Metrics())
        else:
            self.http = httpx.AsyncClient(transport=transport or httpx.ASGITransport(app=self.emulator.app))
        self.retries: list[str] = []
        policy = waltero_retry_policy(max_attempts=max_attempts)
        tokens = TokenManager(
            self.http,
            base,
            SANDBOX_SETTINGS["WALTERO_USERNAME"],
            SecretStr(SANDBOX_SETTINGS["WALTERO_PASSWORD"]),
            clock=self.clock,
            policy=policy,
            sleep=self.clock.sleep,
            rng=random.Random(2),
            on_retry=self.retries.append,
        )
        self.client = WalteroClient(
            self.http,
            base,
            tokens,
            clock=self.clock,
            policy=policy,
            sleep=self.clock.sleep,
            rng=random.Random(2),
            on_retry=self.retries.append,
        )

    @property
    def device_calls(self) -> int:
        return self.emulator.stats["device"]


@pytest.fixture(params=["httpx", "hot"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    with contextlib.ExitStack() as served:
        if request.param == "hot":
            rig = Rig(loopback=lambda app: served.enter_context(serve_in_thread(app)))
            assert isinstance(rig.http, UpstreamClient) and rig.http.hot is not None
        else:
            rig = Rig()
        await rig.client.tokens.ensure_token()  # faults below hit the data call, not the login
        yield rig
        await rig.http.aclose()


async def test_a_429_waits_retry_after_then_succeeds(rig: Rig) -> None:
    rig.emulator.faults.retry_after = 2
    rig.emulator.faults.fail_next = [429]
    device = await rig.client.device(DEVICE)
    assert device.id == DEVICE
    assert rig.device_calls == 2
    assert rig.retries == ["429"]
    assert len(rig.clock.slept) == 1
    assert 2 <= rig.clock.slept[0] <= 2.2  # Retry-After plus a little jitter


async def test_persistent_429_is_rate_limited_with_retry_after(rig: Rig) -> None:
    rig.emulator.faults.rate_limit_rate = 1.0
    rig.emulator.faults.retry_after = 1
    with pytest.raises(UpstreamRateLimited) as caught:
        await rig.client.device(DEVICE)
    assert caught.value.retry_after == 1
    assert caught.value.status == 503
    assert rig.device_calls == 4  # bounded attempts
    assert rig.retries == ["429"] * 3


async def test_a_long_retry_after_is_not_waited_out(rig: Rig) -> None:
    rig.emulator.faults.retry_after = 120
    rig.emulator.faults.fail_next = [429]
    with pytest.raises(UpstreamRateLimited) as caught:
        await rig.client.device(DEVICE)
    assert caught.value.retry_after == 120
    assert rig.device_calls == 1
    assert rig.clock.slept == []


async def test_a_500_is_retried_once(rig: Rig) -> None:
    rig.emulator.faults.fail_next = [500]
    await rig.client.device(DEVICE)
    assert rig.device_calls == 2
    assert rig.retries == ["5xx"]


async def test_a_second_500_escalates(rig: Rig) -> None:
    rig.emulator.faults.fail_next = [500, 500, 500]
    with pytest.raises(UpstreamBadResponse, match="500 INTERNAL_ERROR"):
        await rig.client.device(DEVICE)
    assert rig.device_calls == 2


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gateway_errors_get_bounded_retries(rig: Rig, status: int) -> None:
    rig.emulator.faults.fail_next = [status, status]
    await rig.client.device(DEVICE)
    assert rig.device_calls == 3
    rig.emulator.faults.fail_next = [status] * 5
    with pytest.raises(UpstreamBadResponse) as caught:
        await rig.client.device(DEVICE)
    assert caught.value.status == 502
    assert rig.device_calls == 6


async def test_outage_is_bad_response_after_retries(rig: Rig) -> None:
    rig.emulator.faults.outage = True
    with pytest.raises(UpstreamBadResponse):
        await rig.client.device(DEVICE)
    assert rig.device_calls == 3


@pytest.mark.parametrize(("status", "error"), [(400, UpstreamBadResponse), (403, NotFound), (404, NotFound)])
async def test_client_errors_are_never_retried(rig: Rig, status: int, error: type[Exception]) -> None:
    rig.emulator.faults.fail_next = [status]
    with pytest.raises(error):
        await rig.client.device(DEVICE)
    assert rig.device_calls == 1
    assert rig.retries == []


async def test_not_found_names_the_resource(rig: Rig) -> None:
    with pytest.raises(NotFound, match="device 11111111-1111-1111-1111-111111111199"):
        await rig.client.device("11111111-1111-1111-1111-111111111199")


async def test_an_unreadable_organization_is_a_credentials_problem(rig: Rig) -> None:
    for org in (ORG_OTHER, "00000000-0000-0000-0000-000000000099"):  # 403, then 404
        with pytest.raises(UpstreamAuthFailed, match=f"read organization {org}.*WALTERO_ORGANIZATIONS"):
            await rig.client.devices_page(org, limit=10, offset=0)


async def test_a_401_after_relogin_is_auth_failed(rig: Rig) -> None:
    rig.emulator.token_ttl = 0  # from now on every token is born expired
    rig.emulator.revoke_tokens()
    with pytest.raises(UpstreamAuthFailed) as caught:
        await rig.client.device(DEVICE)
    assert caught.value.status == 502
    assert rig.emulator.stats["login"] == 2  # the first login (fixture) and exactly one re-login


async def test_all_devices_follows_offset_until_total(rig: Rig) -> None:
    devices = await rig.client.all_devices(ORG_NORTH)
    assert [d.id for d in devices] == [d.id for d in rig.emulator.devices(ORG_NORTH)]


def _mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    def with_login(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/api/auth/login"):
            return httpx.Response(200, json={"token": "opaque"})
        return handler(request)

    return httpx.MockTransport(with_login)


async def test_retry_after_as_http_date() -> None:
    answers: list[httpx.Response] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if not answers:
            when = email.utils.formatdate(http_date_rig.clock.now + 3, usegmt=True)
            answers.append(httpx.Response(429, headers={"Retry-After": when}, json={"code": "RATE_LIMITED"}))
            return answers[-1]
        return httpx.Response(200, json={"user": {"id": "u"}, "accessible_organizations": []})

    http_date_rig = Rig(_mock(handler))
    async with http_date_rig.http:
        await http_date_rig.client.me()
        assert 3 <= http_date_rig.clock.slept[0] <= 3.2


async def test_connection_errors_are_retried_then_unavailable() -> None:
    failures = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal failures
        failures += 1
        raise httpx.ConnectError("refused", request=request)

    rig = Rig(_mock(handler))
    async with rig.http:
        with pytest.raises(UpstreamUnavailable) as caught:
            await rig.client.me()
        assert caught.value.status == 503
        assert failures == 4
        assert rig.retries == ["connect"] * 3


async def test_connection_error_then_success() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.RemoteProtocolError("reset", request=request)
        return httpx.Response(200, json={"user": {"id": "u"}, "accessible_organizations": []})

    rig = Rig(_mock(handler))
    async with rig.http:
        assert (await rig.client.me()).user.id == "u"


async def test_a_timeout_is_upstream_timeout_and_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("slow", request=request)

    rig = Rig(_mock(handler))
    async with rig.http:
        with pytest.raises(UpstreamTimeout) as caught:
            await rig.client.me()
        assert caught.value.status == 504
        assert calls == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(200, json={"user": "nobody"}),
        httpx.Response(200, json=[]),
    ],
)
async def test_bad_payloads_are_bad_responses(response: httpx.Response) -> None:
    rig = Rig(_mock(lambda request: response))
    async with rig.http:
        with pytest.raises(UpstreamBadResponse):
            await rig.client.me()


async def test_paths_join_onto_a_stage_base_url() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"data": [], "total": 0})

    rig = Rig(_mock(handler))
    async with rig.http:
        await rig.client.devices_page(ORG_NORTH, limit=100, offset=0)
    assert seen == [f"http://waltero.test/prod/api/organizations/{ORG_NORTH}/devices?limit=100&offset=0"]


async def test_error_messages_carry_no_vendor_body() -> None:
    body = {"code": "BAD_REQUEST", "message": "secret internal detail: db=prod-7"}
    rig = Rig(_mock(lambda request: httpx.Response(400, json=body)))
    async with rig.http:
        with pytest.raises(UpstreamBadResponse) as caught:
            await rig.client.me()
    assert "secret internal detail" not in str(caught.value)
    assert "400 BAD_REQUEST" in str(caught.value)


def _device(n: int) -> dict[str, object]:
    return {"id": f"00000000-0000-4000-8000-{n:012d}", "meter_type": "gas", "organization_id": ORG_NORTH}


async def test_a_device_listing_that_ignores_offset_stops_and_is_counted() -> None:
    """A server that caps pages at 2 and ignores `offset`: the listing stops at the first repeat
    (no device twice, no endless paging) and the shape is counted."""
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params.get("offset"))
        return httpx.Response(200, json={"data": [_device(1), _device(2)], "total": 5})

    rig = Rig(_mock(handler))
    registry = CollectorRegistry()
    registry.register(WireShapeCollector(current_shapes()))
    labels = {"backend": "waltero", "aspect": "device_paging", "shape": "offset_ignored"}
    before = registry.get_sample_value("facade_vendor_wire_shapes_total", labels) or 0.0
    async with rig.http:
        devices = await rig.client.all_devices(ORG_NORTH)
    assert [d.id for d in devices] == [str(_device(1)["id"]), str(_device(2)["id"])]
    assert asked == ["0", "2"]
    assert registry.get_sample_value("facade_vendor_wire_shapes_total", labels) == before + 1


async def test_a_device_listing_without_total_pages_until_a_short_page() -> None:
    pages = {"0": [_device(n) for n in range(100)], "100": [_device(100)]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": pages.get(request.url.params.get("offset", ""), [])})

    rig = Rig(_mock(handler))
    async with rig.http:
        devices = await rig.client.all_devices(ORG_NORTH)
    assert len(devices) == 101
    assert len({d.id for d in devices}) == 101


async def test_upper_case_ids_from_the_vendor_are_lower_cased() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        upper = {**_device(7), "id": "ABCDEF00-0000-4000-8000-00000000000A", "organization_id": ORG_NORTH.upper()}
        return httpx.Response(200, json={"data": [upper], "total": 1})

    rig = Rig(_mock(handler))
    async with rig.http:
        devices = await rig.client.all_devices(ORG_NORTH)
    assert [(d.id, d.organization_id) for d in devices] == [("abcdef00-0000-4000-8000-00000000000a", ORG_NORTH)]
