"""WSSE and Basic auth: the seed page's test vectors, a fresh nonce per request, no secret in repr."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from pydantic import SecretStr

from app.backends.iometer.auth import BasicAuth, WsseAuth, basic_header, wsse_created, wsse_digest, wsse_header
from tests.support.clock import FakeClock

# The seed page's examples, verbatim.
BASIC_ID = "b1451a19-53c7-4e8a-87a0-7c45d3807e9d"
BASIC_SECRET = "JjNQKxIYugVSqCrxkbNfQ8Onpvd07K2G"
BASIC_HEADER = "Basic YjE0NTFhMTktNTNjNy00ZThhLTg3YTAtN2M0NWQzODA3ZTlkOkpqTlFLeElZdWdWU3FDcnhrYk5mUThPbnB2ZDA3SzJH"

WSSE_ID = "0da56783-39b2-4b43-adaa-301d247fcd59"
WSSE_SECRET = "1NNbSclq0ULA364TZBB4Hr0EYoRK"
WSSE_CREATED = "2025-10-20T12:38:50Z"
WSSE_NONCE = "eb6c574e12fcfa4cd091a5b21ad0abdb"
WSSE_DIGEST = "NWNiYTMyNzNmZGQ2NWU2ODhjZjc1Mzg3MzliZGE4MTgyMjhjY2Q3NWU1NmYxMzEyM2NhMmI3MWI0ZmMwODY3MA=="
WSSE_HEADER = (
    'UsernameToken Username="0da56783-39b2-4b43-adaa-301d247fcd59", '
    'PasswordDigest="NWNiYTMyNzNmZGQ2NWU2ODhjZjc1Mzg3MzliZGE4MTgyMjhjY2Q3NWU1NmYxMzEyM2NhMmI3MWI0ZmMwODY3MA==", '
    'Nonce="eb6c574e12fcfa4cd091a5b21ad0abdb", Created="2025-10-20T12:38:50Z"'
)


def test_basic_header_matches_the_seed_example() -> None:
    assert basic_header(BASIC_ID, BASIC_SECRET) == BASIC_HEADER
    assert BasicAuth(BASIC_ID, SecretStr(BASIC_SECRET)).header() == BASIC_HEADER


def test_wsse_digest_matches_the_seed_example() -> None:
    assert wsse_digest(WSSE_NONCE, WSSE_CREATED, WSSE_SECRET) == WSSE_DIGEST


def test_wsse_header_matches_the_seed_example() -> None:
    assert wsse_header(WSSE_ID, WSSE_SECRET, nonce=WSSE_NONCE, created=WSSE_CREATED) == WSSE_HEADER


def test_wsse_auth_with_the_seed_clock_and_nonce_gives_the_seed_header() -> None:
    clock = FakeClock(datetime(2025, 10, 20, 12, 38, 50, 750_000, tzinfo=UTC))  # fraction is truncated
    auth = WsseAuth(WSSE_ID, SecretStr(WSSE_SECRET), clock=clock, nonce_source=lambda: bytes.fromhex(WSSE_NONCE))
    assert auth.header() == WSSE_HEADER


def test_created_is_utc_to_the_second() -> None:
    assert wsse_created(datetime(2026, 3, 29, 1, 2, 3, 999_999, tzinfo=UTC).timestamp()) == "2026-03-29T01:02:03Z"


def _capture(auth: httpx.Auth, statuses: list[int]) -> list[str]:
    """Send one request per status through `auth`; return each request's Authorization header."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(statuses[len(seen) - 1])

    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        for _ in statuses:
            client.post("http://iometer.test/api/v1/query", json={})
    return seen


def test_every_request_gets_a_new_nonce_and_created() -> None:
    clock = FakeClock()
    auth = WsseAuth(WSSE_ID, SecretStr(WSSE_SECRET), clock=clock)
    first = _capture(auth, [200])[0]
    clock.advance(7)
    second = _capture(auth, [200])[0]
    nonce = [h.split('Nonce="')[1][:32] for h in (first, second)]
    assert nonce[0] != nonce[1]
    assert all(len(n) == 32 and n == n.lower() and int(n, 16) >= 0 for n in nonce)
    assert 'Created="' + wsse_created(clock() - 7) + '"' in first
    assert 'Created="' + wsse_created(clock()) + '"' in second


async def test_retried_requests_are_signed_anew() -> None:
    """`send_with_retries` calls `send` again; httpx runs the auth flow per request, so each retry
    carries its own nonce (the server would refuse a replayed one)."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(429 if len(seen) < 3 else 200)

    auth = WsseAuth(WSSE_ID, SecretStr(WSSE_SECRET), clock=FakeClock())
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        for _ in range(3):
            await client.post("http://iometer.test/api/v1/query", json={}, auth=auth)
    assert len(set(seen)) == 3


def test_secrets_never_appear_in_repr_or_str() -> None:
    for auth in (
        WsseAuth(WSSE_ID, SecretStr(WSSE_SECRET), clock=FakeClock()),
        BasicAuth(BASIC_ID, SecretStr(BASIC_SECRET)),
    ):
        for text in (repr(auth), str(auth), repr(vars(auth)), str(vars(auth))):
            assert WSSE_SECRET not in text
            assert BASIC_SECRET not in text
