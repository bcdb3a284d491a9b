"""Waltero login and Bearer tokens, as an `httpx.Auth`.

`POST /api/auth/login` answers a JWT (`token`) whose `exp` claim says when it ends (24 h on the real
service). The `TokenManager` logs in on first use, reads `exp` *without* verifying the signature (we
only need to know when to renew; Waltero verifies), and renews **before** expiry with a margin of
min(5 minutes, a tenth of the token's lifetime). A token whose `exp` cannot be read is treated as
valid for 24 h from login.

Concurrency: one login however many requests arrive at once. Renewal runs under an `asyncio.Lock`;
callers that waited for the lock re-check (double-checked locking) and take the token the first one
obtained, or its error, instead of logging in again.

A data call answered 401 renews once (unless another caller already renewed since this token was
issued) and resends once; a second 401 raises `UpstreamAuthFailed` rather than looping. A login
answered 401/403 raises `UpstreamAuthFailed("Waltero rejected the login")`; login 429/5xx/connection
errors follow the retry policy and then map like any other call (`app.backends.waltero.errors`).

With a fleet store (`shared`, several replicas on Redis) a renewal first takes a token another
replica already obtained, and otherwise logs in once for the whole fleet under a Redis lock; a 401
drops the shared token once (`app.shared.tokens`). Redis unavailable: logins are per replica again.

The password is a `SecretStr` and the token lives only in a private attribute: neither appears in a
log line, an exception message, `repr`, or a metric label.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from datetime import datetime

import httpx
from pydantic import SecretStr

from app.backends.http import A, Retrier, RetryHook, RetryPolicy, Sleep, upstream_operation
from app.backends.waltero.errors import error_for_response, error_for_transport
from app.backends.waltero.shapes import BACKEND, LOGIN_PATH, LoginRequest, LoginResponse, join_url, parse_json
from app.infra.errors import FacadeError, UpstreamAuthFailed
from app.infra.timeutil import Clock, format_rfc3339, from_epoch
from app.shared.tokens import SharedToken, SharedTokenStore

logger = logging.getLogger(__name__)

DEFAULT_LIFETIME = 24 * 3600.0
"""Assumed lifetime of a token whose `exp` cannot be read (the vendor's documented TTL)."""
MAX_RENEWAL_MARGIN = 300.0
_NO_AUTH = httpx.Auth()
"""The login itself carries no Authorization header (httpx's base `Auth` sends the request as is)."""
_REJECTED_FRESH = "Waltero rejected a freshly issued token (401 after re-login)"


def token_expiry(token: str) -> float | None:
    """The `exp` claim (epoch seconds) of a JWT, read without verifying the signature; None if unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims["exp"]
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
        return None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def renewal_margin(lifetime: float) -> float:
    """Seconds before expiry at which a token is renewed: min(5 minutes, a tenth of its lifetime)."""
    return max(0.0, min(MAX_RENEWAL_MARGIN, lifetime / 10))


class TokenManager(httpx.Auth):
    """Adds `Authorization: Bearer <token>` to Waltero requests, logging in and renewing as needed.

    Async only. Pass it per request (`http.get(url, auth=tokens)`), or wrap a send that does not go
    through httpx in `authorize`; the login itself goes through the same shared `http` client without auth.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        username: str,
        password: SecretStr,
        *,
        clock: Clock,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        on_retry: RetryHook | None = None,
        shared: SharedTokenStore | None = None,
        shared_budget: float = 10.0,
    ) -> None:
        self._http = http
        self._login_url = join_url(base_url, LOGIN_PATH)
        self._username = username
        self._password = password
        self._clock = clock
        self._retrier = Retrier(policy or RetryPolicy(), sleep, clock, rng or random.Random(), on_retry)
        self._shared = shared
        self._shared_budget = shared_budget
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires: float | None = None
        self._renew_at: float = 0.0
        self._issued = 0
        """Successful logins so far: identifies which token a caller holds."""
        self._attempts = 0
        """Finished login attempts so far: lets waiters take the result of the attempt they waited for."""
        self._last_error: FacadeError | None = None
        self._rejected = False
        self.logins = 0
        """Login requests answered with a token (for metrics and tests)."""

    def __repr__(self) -> str:
        return f"TokenManager(login_url={self._login_url!r}, username={self._username!r}, expires_at={self.expires_at})"

    # --- what /backends may show -----------------------------------------------------------------------
    @property
    def expires_at(self) -> datetime | None:
        """When the current token ends (UTC), None before the first login."""
        return from_epoch(self._expires) if self._expires is not None else None

    @property
    def authenticated(self) -> bool | None:
        """True while an unexpired token is held, False after Waltero rejected the login, else None
        (never logged in, or the token ran out while idle: the next call logs in)."""
        if self._rejected:
            return False
        if self._token is not None and self._expires is not None and self._clock() < self._expires:
            return True
        return None

    # --- tokens ----------------------------------------------------------------------------------------
    async def ensure_token(self) -> None:
        """Log in now unless a token is held that is not yet due for renewal (for readiness checks)."""
        await self._current()

    async def _current(self) -> tuple[str, int]:
        """A token not yet due for renewal, and which login issued it."""
        if self._token is not None and self._clock() < self._renew_at:
            return self._token, self._issued
        return await self._renew(self._issued)

    async def _renew(self, held: int, rejected: str | None = None) -> tuple[str, int]:
        """Log in, unless a login finished since the caller's token `held` was issued (double-checked).
        `rejected`: the token a vendor just answered 401 to."""
        attempts_before = self._attempts
        async with self._lock:
            if self._issued != held and self._token is not None:
                return self._token, self._issued
            if self._attempts != attempts_before and self._last_error is not None:
                # The login we waited for failed: share its outcome rather than hammering the login.
                raise self._last_error
            try:
                if self._shared is None:
                    token = await self._login()
                else:
                    if rejected is not None:
                        await self._shared.invalidate(rejected)
                    token = await self._renew_shared()
            except FacadeError as exc:
                self._last_error = exc
                raise
            finally:
                self._attempts += 1
            self._last_error = None
            return token, self._issued

    async def _renew_shared(self) -> str:
        """A token from the fleet store (another replica's) or from one login for the fleet."""
        assert self._shared is not None
        found, _source = await self._shared.renew(self._token, self._login_for_fleet, budget=self._shared_budget)
        if found.token != self._token:  # another replica's token: adopt it
            self._token, self._expires, self._renew_at = found.token, found.expires, found.renew_at
            self._issued += 1
            self._rejected = False
        return found.token

    async def _login_for_fleet(self) -> SharedToken:
        token = await self._login()
        assert self._expires is not None
        return SharedToken(token, self._expires, self._renew_at)

    async def _login(self) -> str:
        with upstream_operation("login"):
            body = LoginRequest(username=self._username, password=self._password.get_secret_value()).model_dump()

            async def send() -> httpx.Response:
                return await self._http.post(self._login_url, json=body, auth=_NO_AUTH)

            try:
                response = await self._retrier.send(send, idempotent=True)  # a repeated login only issues a new token
            except httpx.TransportError as exc:
                raise error_for_transport(exc, resource="login") from exc
            if response.status_code in (401, 403):
                self._rejected = True
                raise UpstreamAuthFailed("Waltero rejected the login", backend=BACKEND)
            if not response.is_success:
                raise error_for_response(response, resource="login", now=self._clock())
            token = parse_json(response.content, LoginResponse, "login").token

        now = self._clock()
        expires = token_expiry(token)
        if expires is None:
            expires = now + DEFAULT_LIFETIME
        self._token = token
        self._expires = expires
        self._renew_at = expires - renewal_margin(expires - now)
        self._issued += 1
        self._rejected = False
        self.logins += 1
        logger.info("Waltero login succeeded; token valid until %s", format_rfc3339(from_epoch(expires)))
        return token

    # --- the auth flow, for a sender without httpx (the hot GETs) and as an httpx.Auth ---------------------
    async def authorize(self, send: Callable[[str], Awaitable[A]]) -> A:
        """`send(authorization)` with the current token's `Authorization` value; on a 401, renew once
        and send once more, exactly as `async_auth_flow` does; a second 401 raises `UpstreamAuthFailed`."""
        token, held = await self._current()
        answer = await send(f"Bearer {token}")
        if answer.status_code != 401:
            return answer
        await answer.aclose()
        token, held = await self._renew(held, rejected=token)
        answer = await send(f"Bearer {token}")
        if answer.status_code == 401:
            await answer.aclose()
            raise UpstreamAuthFailed(_REJECTED_FRESH, backend=BACKEND)
        return answer

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("TokenManager is async only: use it with httpx.AsyncClient")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token, held = await self._current()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        # Revoked or expired early (clock skew): renew once, resend once.
        token, held = await self._renew(held, rejected=token)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            await response.aclose()
            raise UpstreamAuthFailed(_REJECTED_FRESH, backend=BACKEND)
