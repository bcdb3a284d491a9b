"""The Waltero adapter under load and faults: one login per burst, tokens renewed under steady traffic,
retries absorbing 429/500, and the right error when they cannot. No test sleeps for a retry: the
backend's sleep is the FakeClock's."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.backends.waltero.emulator import ORG_NORTH, create_emulator
from app.infra.errors import (
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tests.support.clock import FakeClock
from tests.support.servers import free_port, serve_in_thread
from tests.unit.backends.waltero.harness import Rig, waltero_rig

KITCHEN = "11111111-1111-1111-1111-111111111101"


async def _yield(seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with waltero_rig() as rig:
        yield rig


async def test_a_burst_of_fifty_first_calls_logs_in_once() -> None:
    clock = FakeClock()
    # ASGITransport runs the app inline; a latency knob whose sleep yields makes requests interleave.
    emulator = create_emulator(clock, sleep=_yield)
    emulator.faults.latency = 1.0
    async with waltero_rig(clock, emulator=emulator) as rig:
        devices = [d.id for d in emulator.devices()]
        meters = await asyncio.gather(*(rig.backend.get_meter(devices[i % len(devices)]) for i in range(50)))
        assert len(meters) == 50
        assert emulator.stats["login"] == 1
        assert emulator.stats["tokens_issued"] == 1
        assert emulator.stats["device"] == 50


async def test_a_burst_over_a_socket_logs_in_once() -> None:
    clock = FakeClock()
    emulator = create_emulator(clock)
    with serve_in_thread(emulator.app) as url:
        async with waltero_rig(clock, emulator=emulator, url=url, transport=httpx.AsyncHTTPTransport()) as rig:
            results = await asyncio.gather(
                *(rig.backend.device_status(KITCHEN) for _ in range(25)),
                *(rig.backend.get_meter(KITCHEN) for _ in range(25)),
            )
            assert len(results) == 50
            assert emulator.stats["login"] == 1


async def test_short_lived_tokens_under_steady_traffic() -> None:
    clock = FakeClock()
    async with waltero_rig(clock, token_ttl=6) as rig:
        for _ in range(120):  # 60 s of traffic, a request every half second
            await rig.backend.get_meter(KITCHEN)
            clock.advance(0.5)
        assert rig.emulator.stats["auth_rejected"] == 0
        # a token lasts 6 s and is renewed 0.6 s early: about one login per lifetime
        assert 10 <= rig.logins <= 12
        state = await rig.backend.auth_state()
        assert state.authenticated is True
        assert state.token_expires_at is not None
        assert state.token_expires_at > datetime.fromtimestamp(clock.now, UTC)


async def test_an_expired_token_is_renewed_without_a_401(rig: Rig) -> None:
    await rig.backend.get_meter(KITCHEN)
    rig.clock.advance(86400 - 299)  # inside the 5-minute margin
    await rig.backend.get_meter(KITCHEN)
    assert rig.logins == 2
    assert rig.emulator.stats["auth_rejected"] == 0


async def test_a_revoked_token_costs_one_relogin(rig: Rig) -> None:
    await rig.backend.get_meter(KITCHEN)
    rig.emulator.revoke_tokens()
    await rig.backend.list_meters()
    assert rig.logins == 2
    assert rig.emulator.stats["auth_rejected"] == 1


async def test_429_and_500_are_absorbed(rig: Rig) -> None:
    await rig.backend.check_ready()
    rig.emulator.faults.fail_next = [429, 500, 503]
    meters = await rig.backend.list_meters()
    assert len(meters) == 17
    assert rig.retries == [("waltero", "429"), ("waltero", "5xx"), ("waltero", "5xx")]
    assert rig.clock.slept
    assert sum(rig.clock.slept) >= 1  # Retry-After: 1 was honoured, on the fake clock


async def test_login_faults_are_absorbed_too(rig: Rig) -> None:
    rig.emulator.faults.fail_next = [500, 429]
    assert (await rig.backend.get_meter(KITCHEN)).id == f"waltero:{KITCHEN}"
    assert rig.emulator.stats["login"] == 3
    assert rig.logins == 3


async def test_persistent_429_is_rate_limited(rig: Rig) -> None:
    await rig.backend.check_ready()
    rig.emulator.faults.rate_limit_rate = 1.0
    rig.emulator.faults.retry_after = 2
    with pytest.raises(UpstreamRateLimited) as caught:
        await rig.backend.daily_consumption(None, date(2026, 5, 1), date(2026, 5, 3), ZoneInfo("UTC"))
    assert caught.value.retry_after == 2
    assert caught.value.backend == "waltero"
    assert rig.retries.count(("waltero", "429")) >= 3


async def test_persistent_500_is_bad_response(rig: Rig) -> None:
    await rig.backend.check_ready()
    rig.emulator.faults.error_rate = 1.0
    with pytest.raises(UpstreamBadResponse):
        await rig.backend.get_meter(KITCHEN)
    assert rig.emulator.stats["device"] == 2  # the vendor's "retry once, then escalate"


async def test_outage_fails_readiness(rig: Rig) -> None:
    rig.emulator.faults.outage = True
    with pytest.raises(UpstreamBadResponse):
        await rig.backend.check_ready()
    assert (await rig.backend.auth_state()).authenticated is None


async def test_wrong_credentials_fail_readiness() -> None:
    async with waltero_rig(WALTERO_PASSWORD="not-the-password") as rig:
        with pytest.raises(UpstreamAuthFailed) as caught:
            await rig.backend.check_ready()
        assert "not-the-password" not in str(caught.value)
        assert (await rig.backend.auth_state()).authenticated is False


async def test_a_hanging_vendor_times_out() -> None:
    clock = FakeClock()
    emulator = create_emulator(clock)
    with serve_in_thread(emulator.app) as url:
        try:
            async with waltero_rig(
                clock, emulator=emulator, url=url, transport=httpx.AsyncHTTPTransport(), timeout=0.3
            ) as rig:
                await rig.backend.list_meters()
                emulator.faults.hang = True
                with pytest.raises(UpstreamTimeout) as caught:
                    await rig.backend.changes(datetime(2026, 5, 1, tzinfo=UTC), 10, None)
                assert caught.value.status == 504
                assert emulator.stats["changes"] == 2  # one per organization; a read timeout is not retried
        finally:
            emulator.faults.hang = False  # release the held request so the server can stop


async def test_a_hanging_login_times_out() -> None:
    clock = FakeClock()
    emulator = create_emulator(clock)
    with serve_in_thread(emulator.app) as url:
        try:
            emulator.faults.hang = True
            async with waltero_rig(
                clock, emulator=emulator, url=url, transport=httpx.AsyncHTTPTransport(), timeout=0.3
            ) as rig:
                with pytest.raises(UpstreamTimeout):
                    await rig.backend.get_meter(KITCHEN)
        finally:
            emulator.faults.hang = False


async def test_an_unreachable_vendor_is_unavailable() -> None:
    async with waltero_rig(url=f"http://127.0.0.1:{free_port()}", transport=httpx.AsyncHTTPTransport()) as rig:
        with pytest.raises(UpstreamUnavailable):
            await rig.backend.list_meters()
        assert rig.retries
        assert set(rig.retries) == {("waltero", "connect")}


async def test_a_forbidden_configured_organization_is_a_configuration_error() -> None:
    async with waltero_rig(WALTERO_ORGANIZATIONS=f"{ORG_NORTH},00000000-0000-0000-0000-000000000003") as rig:
        with pytest.raises(UpstreamAuthFailed, match="WALTERO_ORGANIZATIONS"):
            await rig.backend.list_meters()
