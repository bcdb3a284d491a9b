"""The client's error mapping: HTTP status before gql parsing, retries, GraphQL errors, bad payloads."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from app.backends.http import RetryPolicy
from app.backends.iometer import documents as docs
from app.backends.iometer.auth import WsseAuth
from app.backends.iometer.client import IometerClient, PartnerTransport
from app.infra.errors import (
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tests.support.clock import FakeClock

SECRET = "s3cr3t-partner-value"
URL = "http://iometer.test/api/v1/query"
Handler = Callable[[httpx.Request], httpx.Response]


class Harness:
    def __init__(self, handler: Handler) -> None:
        self.clock = FakeClock()
        self.requests: list[httpx.Request] = []
        self.retries: list[str] = []

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        self.http = httpx.AsyncClient(transport=httpx.MockTransport(record))
        self.transport = PartnerTransport(
            URL,
            http=self.http,
            auth=WsseAuth("partner-1", SecretStr(SECRET), clock=self.clock),
            policy=RetryPolicy(max_attempts=4),
            sleep=self.clock.sleep,
            clock=self.clock,
            rng=random.Random(1),
            on_retry=self.retries.append,
        )
        self.client = IometerClient(self.transport)

    async def partner_id(self) -> dict[str, object]:
        return await self.client.query(docs.PARTNER_ID)


def ok(data: object) -> httpx.Response:
    return httpx.Response(200, json={"data": data})


def errors(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, json={"errors": [{"message": "nope " + SECRET, "extensions": {"code": code}}]}, headers=headers
    )


async def test_a_query_posts_the_document_and_variables() -> None:
    h = Harness(lambda r: ok({"installations": []}))
    data = await h.client.query(docs.INSTALLATIONS, {"pagination": {"limit": 5, "offset": 10}})
    assert data == {"installations": []}
    body = json.loads(h.requests[0].content)
    assert "query Installations" in body["query"]
    assert body["variables"] == {"pagination": {"limit": 5, "offset": 10}}
    assert h.requests[0].headers["authorization"].startswith('UsernameToken Username="partner-1"')
    assert h.client.authenticated is True


async def test_401_is_auth_failed_without_the_secret() -> None:
    h = Harness(lambda r: errors(401, "UNAUTHENTICATED"))
    with pytest.raises(UpstreamAuthFailed) as info:
        await h.partner_id()
    assert info.value.detail == "IOmeter rejected the partner credentials"
    assert info.value.backend == "iometer"
    assert SECRET not in str(info.value)
    assert len(h.requests) == 1  # not retried
    assert h.client.authenticated is False


async def test_429_is_retried_after_retry_after_with_a_fresh_nonce() -> None:
    replies = iter(
        [
            errors(429, "RATE_LIMITED", {"Retry-After": "2"}),
            errors(429, "RATE_LIMITED", {"Retry-After": "1"}),
            ok({"partner": {"id": "p"}}),
        ]
    )
    h = Harness(lambda r: next(replies))
    assert await h.partner_id() == {"partner": {"id": "p"}}
    assert len(h.requests) == 3
    assert len({r.headers["authorization"] for r in h.requests}) == 3
    assert h.clock.slept[0] >= 2
    assert h.clock.slept[1] >= 1
    assert h.retries == ["429", "429"]


async def test_persistent_429_is_rate_limited_with_retry_after() -> None:
    h = Harness(lambda r: errors(429, "RATE_LIMITED", {"Retry-After": "1"}))
    with pytest.raises(UpstreamRateLimited) as info:
        await h.partner_id()
    assert info.value.retry_after == 1
    assert len(h.requests) == 4  # bounded: 3 retries


async def test_429_retries_stop_within_the_time_budget() -> None:
    h = Harness(lambda r: errors(429, "RATE_LIMITED", {"Retry-After": "3"}))
    with pytest.raises(UpstreamRateLimited) as info:
        await h.partner_id()
    assert info.value.retry_after == 3
    assert len(h.requests) == 3  # a third wait would pass the 8 s deadline
    assert sum(h.clock.slept) <= 8


async def test_5xx_is_retried_then_bad_response() -> None:
    h = Harness(lambda r: errors(503, "SERVICE_UNAVAILABLE"))
    with pytest.raises(UpstreamBadResponse) as info:
        await h.partner_id()
    assert "503" in info.value.detail
    assert SECRET not in info.value.detail
    assert 1 < len(h.requests) <= 4


async def test_5xx_then_success_is_absorbed() -> None:
    replies = iter([httpx.Response(502, text="<html>bad gateway</html>"), ok({"partner": {"id": "p"}})])
    h = Harness(lambda r: next(replies))
    assert await h.partner_id() == {"partner": {"id": "p"}}


async def test_400_validation_failure_is_bad_response_naming_the_code() -> None:
    h = Harness(lambda r: errors(400, "GRAPHQL_VALIDATION_FAILED"))
    with pytest.raises(UpstreamBadResponse) as info:
        await h.partner_id()
    assert "GRAPHQL_VALIDATION_FAILED" in info.value.detail
    assert "nope" not in info.value.detail  # the vendor's message is not passed on
    assert len(h.requests) == 1


async def test_graphql_errors_in_a_200_are_bad_response() -> None:
    h = Harness(
        lambda r: httpx.Response(
            200, json={"data": None, "errors": [{"message": "boom " + SECRET, "extensions": {"code": "INTERNAL"}}]}
        )
    )
    with pytest.raises(UpstreamBadResponse) as info:
        await h.partner_id()
    assert "INTERNAL" in info.value.detail
    assert SECRET not in info.value.detail


async def test_unauthenticated_graphql_error_in_a_200_is_auth_failed() -> None:
    h = Harness(lambda r: errors(200, "UNAUTHENTICATED"))
    with pytest.raises(UpstreamAuthFailed):
        await h.partner_id()


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"something": "else"}),
        httpx.Response(200, json={"data": None}),
        httpx.Response(200, json={"data": ["a list"]}),
        httpx.Response(200, json=[1, 2]),
    ],
)
async def test_a_body_that_is_not_a_graphql_result_is_bad_response(response: httpx.Response) -> None:
    h = Harness(lambda r: response)
    with pytest.raises(UpstreamBadResponse):
        await h.partner_id()


async def test_timeout_is_upstream_timeout() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    h = Harness(hang)
    with pytest.raises(UpstreamTimeout):
        await h.partner_id()
    assert len(h.requests) == 1  # a read timeout is not retried


async def test_connection_refused_is_retried_then_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    h = Harness(refuse)
    with pytest.raises(UpstreamUnavailable):
        await h.partner_id()
    assert len(h.requests) == 4
    assert h.retries == ["connect"] * 3


async def test_closing_the_client_leaves_the_shared_http_client_open() -> None:
    h = Harness(lambda r: ok({"partner": {"id": "p"}}))
    await h.partner_id()
    await h.client.aclose()
    assert not h.http.is_closed
    assert await h.partner_id() == {"partner": {"id": "p"}}  # reconnects on demand
    await h.http.aclose()
