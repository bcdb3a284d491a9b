import asyncio
import base64
import json
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from app.backends.http import RetryPolicy
from app.backends.waltero.emulator import SANDBOX_SETTINGS, Emulator, create_emulator
from app.backends.waltero.token import TokenManager, renewal_margin, token_expiry
from app.infra.errors import UpstreamAuthFailed, UpstreamRateLimited
from tests.support.clock import FakeClock

BASE = "http://waltero.test/prod"
ME = f"{BASE}/api/auth/me"


def _jwt(claims: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2ln"


def test_token_expiry_reads_exp_without_verifying() -> None:
    assert token_expiry(_jwt({"exp": 1_779_086_400, "sub": "u"})) == 1_779_086_400.0
    assert token_expiry(_jwt({"exp": 1.5})) == 1.5


@pytest.mark.parametrize(
    "token",
    ["opaque", "a.b.c", _jwt({"sub": "u"}), _jwt({"exp": "soon"}), _jwt({"exp": True}), _jwt([1, 2]), "a.!!!.c", ""],
)
def test_unreadable_exp_is_none(token: str) -> None:
    assert token_expiry(token) is None


def test_renewal_margin_is_five_minutes_or_a_tenth() -> None:
    assert renewal_margin(86400) == 300
    assert renewal_margin(1000) == 100
    assert renewal_margin(10) == 1
    assert renewal_margin(-5) == 0


async def _yield(seconds: float) -> None:
    await asyncio.sleep(0)


class Rig:
    """TokenManager + emulator over ASGITransport. ASGITransport runs the app inline without ever
    suspending, so the emulator's latency knob is given a sleep that yields to the event loop: every
    request then really interleaves with the others, as over a socket, without waiting."""

    def __init__(self, *, token_ttl: float = 86400, password: str | None = None) -> None:
        self.clock = FakeClock()
        self.emulator: Emulator = create_emulator(self.clock, token_ttl=token_ttl, sleep=_yield)
        self.emulator.faults.latency = 1.0
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.emulator.app))
        self.retries: list[str] = []
        self.tokens = TokenManager(
            self.http,
            BASE,
            SANDBOX_SETTINGS["WALTERO_USERNAME"],
            SecretStr(password or SANDBOX_SETTINGS["WALTERO_PASSWORD"]),
            clock=self.clock,
            sleep=self.clock.sleep,
            rng=random.Random(1),
            on_retry=self.retries.append,
        )

    async def me(self) -> httpx.Response:
        return await self.http.get(ME, auth=self.tokens)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    yield rig
    await rig.http.aclose()


async def test_first_call_logs_in_and_sends_the_bearer(rig: Rig) -> None:
    assert rig.tokens.expires_at is None
    assert rig.tokens.authenticated is None
    response = await rig.me()
    assert response.status_code == 200
    assert rig.emulator.stats["login"] == 1
    assert response.request.headers["authorization"].startswith("Bearer ey")
    assert rig.tokens.expires_at == datetime.fromtimestamp(int(rig.clock.now) + 86400, UTC)
    assert rig.tokens.authenticated is True
    await rig.me()
    assert rig.emulator.stats["login"] == 1


async def test_renews_early_at_the_margin_never_after_expiry() -> None:
    rig = Rig(token_ttl=100)  # margin = 10 s
    async with rig.http:
        await rig.me()
        rig.clock.advance(89.5)
        await rig.me()
        assert rig.emulator.stats["login"] == 1
        rig.clock.advance(1)  # 90.5 s: inside the margin
        await rig.me()
        assert rig.emulator.stats["login"] == 2
        assert rig.emulator.stats["auth_rejected"] == 0


async def test_token_expiring_in_seconds_under_traffic_never_401s() -> None:
    rig = Rig(token_ttl=5)  # margin 0.5 s
    async with rig.http:
        for _ in range(40):
            assert (await rig.me()).status_code == 200
            rig.clock.advance(0.5)
        assert rig.emulator.stats["auth_rejected"] == 0
        assert rig.emulator.stats["login"] == 5  # 20 s of traffic, a new token every 4.5 s


async def test_fifty_concurrent_first_callers_make_one_login(rig: Rig) -> None:
    responses = await asyncio.gather(*(rig.me() for _ in range(50)))
    assert {r.status_code for r in responses} == {200}
    assert rig.emulator.stats["login"] == 1
    assert rig.emulator.stats["tokens_issued"] == 1
    assert rig.tokens.logins == 1


async def test_concurrent_renewal_after_expiry_is_one_login(rig: Rig) -> None:
    await rig.me()
    rig.clock.advance(86400)
    await asyncio.gather(*(rig.me() for _ in range(30)))
    assert rig.emulator.stats["login"] == 2


async def test_a_401_relogs_in_once_and_resends_once(rig: Rig) -> None:
    await rig.me()
    rig.emulator.faults.fail_next = [401]
    response = await rig.me()
    assert response.status_code == 200
    assert rig.emulator.stats["login"] == 2
    assert rig.emulator.stats["me"] == 3  # first call, the rejected one, its resend


async def test_concurrent_401s_share_one_relogin(rig: Rig) -> None:
    await rig.me()
    rig.emulator.revoke_tokens()
    responses = await asyncio.gather(*(rig.me() for _ in range(10)))
    assert {r.status_code for r in responses} == {200}
    assert rig.emulator.stats["login"] == 2


async def test_a_second_401_is_an_error_not_a_loop() -> None:
    rig = Rig(token_ttl=0)  # every token the emulator issues is already expired
    async with rig.http:
        with pytest.raises(UpstreamAuthFailed, match="401 after re-login"):
            await rig.me()
        assert rig.emulator.stats["login"] == 2
        assert rig.emulator.stats["me"] == 2


async def test_rejected_login_is_auth_failed_and_never_shows_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rig = Rig(password="wrong-password-123")
    async with rig.http:
        with pytest.raises(UpstreamAuthFailed) as caught:
            await rig.me()
        assert caught.value.detail == "Waltero rejected the login"
        assert caught.value.backend == "waltero"
        assert rig.tokens.authenticated is False
        assert "wrong-password-123" not in repr(rig.tokens) + str(caught.value) + caplog.text
        assert rig.emulator.stats["me"] == 0


async def test_concurrent_callers_share_a_failed_login() -> None:
    rig = Rig(password="wrong")
    async with rig.http:
        results = await asyncio.gather(*(rig.me() for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, UpstreamAuthFailed) for r in results)
        assert rig.emulator.stats["login"] == 1


async def test_login_403_is_auth_failed(rig: Rig) -> None:
    rig.emulator.faults.fail_next = [403]
    with pytest.raises(UpstreamAuthFailed, match="rejected the login"):
        await rig.me()


async def test_login_429_and_500_follow_the_retry_policy(rig: Rig) -> None:
    rig.emulator.faults.fail_next = [429, 500]
    assert (await rig.me()).status_code == 200
    assert rig.emulator.stats["login"] == 3
    assert rig.retries == ["429", "5xx"]


async def test_login_rate_limited_after_retries(rig: Rig) -> None:
    rig.emulator.faults.rate_limit_rate = 1.0
    rig.emulator.faults.retry_after = 2
    with pytest.raises(UpstreamRateLimited) as caught:
        await rig.me()
    assert caught.value.retry_after == 2
    assert rig.emulator.stats["login"] == RetryPolicy().max_attempts


async def test_token_never_in_repr_or_logs(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    response = await rig.me()
    token = response.request.headers["authorization"].split()[1]
    assert token not in repr(rig.tokens)
    assert token not in caplog.text
    assert SANDBOX_SETTINGS["WALTERO_PASSWORD"] not in repr(rig.tokens) + caplog.text
    assert "valid until" in caplog.text


async def test_unreadable_exp_counts_as_24_hours() -> None:
    clock = FakeClock()
    logins = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal logins
        if request.url.path.endswith("/login"):
            logins += 1
            return httpx.Response(200, json={"token": "opaque-token"})
        assert request.headers["authorization"] == "Bearer opaque-token"
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        tokens = TokenManager(http, BASE, "u", SecretStr("p"), clock=clock)
        await http.get(ME, auth=tokens)
        assert tokens.expires_at == datetime.fromtimestamp(clock.now + 86400, UTC)
        clock.advance(86400 - 301)
        await http.get(ME, auth=tokens)
        assert logins == 1
        clock.advance(2)
        await http.get(ME, auth=tokens)
        assert logins == 2


async def test_sync_use_is_refused() -> None:
    async with httpx.AsyncClient() as unused:
        tokens = TokenManager(unused, BASE, "u", SecretStr("p"), clock=FakeClock())
    with (
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as http,
        pytest.raises(RuntimeError, match="async only"),
    ):
        http.get(ME, auth=tokens)
