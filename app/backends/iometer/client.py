"""The IOmeter GraphQL client: gql's `Client` and session over the app's shared httpx client.

`PartnerTransport` is gql's `HTTPXAsyncTransport` with three changes:
- it sends through the injected `httpx.AsyncClient` (the app owns it: `close()` leaves it open);
- it passes the partner auth per request, so every attempt (retries included) gets a fresh WSSE header;
- it looks at the HTTP status itself before gql parses the body. gql turns a 401 or 429 whose body
  carries `errors` into an ordinary result and loses the status; here 401 becomes
  `UpstreamAuthFailed`, 429 is retried within a bounded budget honouring `Retry-After` and then
  becomes `UpstreamRateLimited`, 5xx is retried and then becomes `UpstreamBadResponse`.

`IometerClient.query` maps what is left (GraphQL `errors`, a body that is not a GraphQL result) into
the facade's error tree. No message carries a credential or a raw vendor body.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from graphql import ExecutionResult

from app.backends.http import Retrier, RetryPolicy, Sleep, parse_retry_after
from app.infra.errors import (
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from app.infra.timeutil import Clock

BACKEND = "iometer"

_ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def _error_code(errors: list[Any] | None) -> str | None:
    """The first GraphQL error's `extensions.code`, if it looks like a code (never free text)."""
    for error in errors or []:
        if isinstance(error, dict):
            extensions = error.get("extensions")
            if isinstance(extensions, dict):
                code = extensions.get("code")
                if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
                    return code
    return None


def _body_error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return _error_code(body.get("errors")) if isinstance(body, dict) else None


class PartnerTransport(HTTPXAsyncTransport):
    """gql transport over an injected httpx client, with per-request auth, retries and status mapping."""

    def __init__(
        self,
        url: str,
        *,
        http: httpx.AsyncClient,
        auth: httpx.Auth,
        policy: RetryPolicy,
        sleep: Sleep,
        clock: Clock,
        rng: random.Random,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(url)
        self._http = http
        self._auth = auth
        self._clock = clock
        self._retrier = Retrier(policy, sleep, clock, rng, on_retry)
        self.authenticated: bool | None = None
        """False after the server rejected the credentials, True after it accepted them."""

    async def connect(self) -> None:
        self.client = self._http

    async def close(self) -> None:
        # The shared client belongs to the app; only forget it.
        self.client = None

    async def execute(
        self,
        request: GraphQLRequest,
        *,
        extra_args: dict[str, Any] | None = None,
        upload_files: bool = False,
    ) -> ExecutionResult:
        post_args = self._prepare_request(request, extra_args=extra_args)

        async def send() -> httpx.Response:
            return await self._http.post(self.url, auth=self._auth, **post_args)

        try:
            response = await self._retrier.send(send, idempotent=True)  # every document we send is a query
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("IOmeter did not answer in time", backend=BACKEND) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable("Could not reach IOmeter", backend=BACKEND) from exc
        self._raise_for_status(response)
        try:
            result: ExecutionResult = self._prepare_result(response)
        except (TransportError, ValueError, TypeError) as exc:
            raise UpstreamBadResponse(
                "IOmeter answered with something that is not a GraphQL result", backend=BACKEND
            ) from exc
        return result

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in (401, 403):
            self.authenticated = False
            raise UpstreamAuthFailed("IOmeter rejected the partner credentials", backend=BACKEND)
        if status < 300:
            self.authenticated = True
            return
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock())
            raise UpstreamRateLimited(
                "IOmeter kept answering 429 (rate limited)", backend=BACKEND, retry_after=retry_after
            )
        if status >= 500:
            raise UpstreamBadResponse(f"IOmeter answered HTTP {status}", backend=BACKEND)
        code = _body_error_code(response)
        suffix = f" ({code})" if code else ""
        raise UpstreamBadResponse(f"IOmeter refused the request with HTTP {status}{suffix}", backend=BACKEND)


class IometerClient:
    """Runs the adapter's documents (`app.backends.iometer.documents`) and returns `data`.

    Raises `UpstreamAuthFailed`, `UpstreamRateLimited`, `UpstreamBadResponse`, `UpstreamTimeout`,
    `UpstreamUnavailable` (all with `backend="iometer"`)."""

    def __init__(self, transport: PartnerTransport) -> None:
        self._transport = transport
        # execute_timeout=None: the shared httpx client's timeouts and the facade's deadline govern.
        self._gql = Client(transport=transport, execute_timeout=None)
        self._session: AsyncClientSession | None = None
        self._lock = asyncio.Lock()

    @property
    def authenticated(self) -> bool | None:
        return self._transport.authenticated

    async def _connected(self) -> AsyncClientSession:
        if self._session is None:
            async with self._lock:
                if self._session is None:
                    self._session = await self._gql.connect_async()  # type: ignore[no-untyped-call]
        return self._session

    async def query(self, document: GraphQLRequest, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Execute `document` with `variables`; returns the `data` object."""
        session = await self._connected()
        request = GraphQLRequest(document, variable_values=variables or None)
        try:
            data = await session.execute(request)
        except TransportQueryError as exc:
            code = _error_code(exc.errors)
            if code == "UNAUTHENTICATED":
                self._transport.authenticated = False
                raise UpstreamAuthFailed("IOmeter rejected the partner credentials", backend=BACKEND) from exc
            suffix = f" ({code})" if code else ""
            raise UpstreamBadResponse(f"IOmeter answered the query with an error{suffix}", backend=BACKEND) from exc
        except (TransportError, AssertionError) as exc:
            # gql asserts that a result without errors has data; `{"data": null}` lands here.
            raise UpstreamBadResponse(
                "IOmeter answered with something that is not a GraphQL result", backend=BACKEND
            ) from exc
        if not isinstance(data, dict):
            raise UpstreamBadResponse("IOmeter answered without a data object", backend=BACKEND)
        return data

    async def aclose(self) -> None:
        """Close the gql session (the shared httpx client stays open)."""
        if self._session is not None:
            await self._gql.close_async()  # type: ignore[no-untyped-call]
            self._session = None
