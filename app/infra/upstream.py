"""The httpx side of every vendor call: one pooled client per backend, instrumented.

`InstrumentedTransport` wraps the real transport (a socket, or the sandbox emulator's ASGI app) and,
for each attempt: forwards `X-Request-ID`, counts the call for the request's access log, records
`facade_upstream_requests_total` / `..._duration_seconds`, counts logins, and writes one log line
(backend, operation, status, duration, attempt). It never logs headers or bodies.

`HotGets` sends a vendor's idempotent GETs straight on the aiohttp session under the client (the
default `FACADE_UPSTREAM_TRANSPORT=aiohttp`, no transport injected): no httpx request, URL or response
object per call, which cost about as much CPU as the call itself (README "Performance", round three).
It records the same metrics and log line per attempt, forwards `X-Request-ID`, sends the client's
headers, timeouts and proxy, and raises the same httpx exceptions (httpx-aiohttp's own mapping), so
the callers' retries, auth flows and error mapping are the ones of the httpx path.

A response without `Set-Cookie` skips httpx's cookie jar, which otherwise builds a `urllib` request per
response only to find no cookie (`SetCookieOnly`; README "Performance", the miss path). The client reads
no proxy settings from the environment (`trust_env=False`): a proxy is named by `FACADE_UPSTREAM_PROXY`.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from app import __version__
from app.infra.config import Settings
from app.infra.context import current_attempt, current_operation, request_id_var, upstream_calls_var
from app.infra.metrics import Metrics

if TYPE_CHECKING:
    from aiohttp import ClientSession, ClientTimeout
    from httpx_aiohttp import AiohttpTransport
    from multidict import CIMultiDictProxy

log = logging.getLogger("app.infra.upstream")


class SetCookieOnly(httpx.Cookies):
    """httpx's cookie jar, consulted only when a response sets a cookie. `http.cookiejar` reads nothing
    but `Set-Cookie`/`Set-Cookie2`, so skipping responses without them changes nothing, and saves the
    `urllib.request.Request` httpx builds for every response (about 2 % of a miss's CPU)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


def _count_call() -> None:
    calls = upstream_calls_var.get()
    if calls is not None:
        calls[0] += 1


def _outcome(status: int) -> str:
    return "ok" if status < 400 else "429" if status == 429 else f"{status // 100}xx"


def record_call(
    metrics: Metrics,
    backend: str,
    operation: str,
    request_id: str | None,
    method: str,
    status: int | None,
    outcome: str,
    elapsed: float,
) -> None:
    """One attempt's metrics (requests, duration, logins) and its `upstream call` log line."""
    metrics.upstream_requests.labels(backend, operation, outcome).inc()
    metrics.upstream_duration.labels(backend, operation).observe(elapsed)
    if operation == "login":
        if outcome == "ok":
            metrics.token_refreshes.labels(backend).inc()
        else:
            metrics.token_refresh_failures.labels(backend).inc()
    log.info(
        "upstream call",
        extra={
            "fields": {
                "request_id": request_id,
                "backend": backend,
                "operation": operation,
                "method": method,
                "status": status,
                "outcome": outcome,
                "duration_ms": round(elapsed * 1000, 3),
                "attempt": current_attempt.get(),
            }
        },
    )


class InstrumentedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, backend: str, metrics: Metrics) -> None:
        self._inner = inner
        self._backend = backend
        self._metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        operation = current_operation.get()
        request_id = request_id_var.get()
        if request_id:
            request.headers["X-Request-ID"] = request_id
        _count_call()
        started = time.perf_counter()
        status: int | None = None
        outcome = "error"
        try:
            response = await self._inner.handle_async_request(request)
            status = response.status_code
            outcome = _outcome(status)
            return response
        except httpx.TimeoutException:
            outcome = "timeout"
            raise
        finally:
            record_call(
                self._metrics,
                self._backend,
                operation,
                request_id,
                request.method,
                status,
                outcome,
                time.perf_counter() - started,
            )

    async def aclose(self) -> None:
        await self._inner.aclose()


def network_transport(kind: str, limits: httpx.Limits, proxy: str | None = None) -> httpx.AsyncBaseTransport:
    """The socket layer under the httpx API: `aiohttp` (httpx-aiohttp's `AiohttpTransport`: httpx's auth
    flows, hooks and timeouts on aiohttp's I/O, measured faster here; see README "Performance") or
    httpx's own `httpx` transport; through `proxy` when one is given."""
    if kind == "aiohttp":
        return _aiohttp_transport(limits, proxy)[0]
    return httpx.AsyncHTTPTransport(limits=limits, retries=0, proxy=proxy)


def _aiohttp_transport(
    limits: httpx.Limits, proxy: str | None
) -> tuple[httpx.AsyncBaseTransport, AiohttpTransport, httpx.Proxy | None]:
    """The aiohttp transport (wrapped to send a plain-http proxy's headers), the bare one (whose session
    `HotGets` shares), and the proxy."""
    from httpx_aiohttp import AiohttpTransport

    via = _proxy_with_header(proxy) if proxy else None
    bare = AiohttpTransport(limits=limits, retries=0, proxy=via)
    transport: httpx.AsyncBaseTransport = bare
    if via is not None and via.headers:
        transport = _PlainHttpProxyAuth(transport, via.headers)
    return transport, bare, via


def _proxy_with_header(url: str) -> httpx.Proxy:
    """`url` as an `httpx.Proxy` whose credentials travel as a `Proxy-Authorization` header (aiohttp's
    `BasicAuth`, which httpx-aiohttp would build from them, is deprecated)."""
    parsed = httpx.URL(url)
    if not parsed.username:
        return httpx.Proxy(url)
    token = base64.b64encode(f"{parsed.username}:{parsed.password}".encode()).decode()
    bare = parsed.copy_with(username=None, password=None)
    return httpx.Proxy(bare, headers={"Proxy-Authorization": f"Basic {token}"})


class _PlainHttpProxyAuth(httpx.AsyncBaseTransport):
    """aiohttp sends a proxy's headers only on an `https://` tunnel's CONNECT: a plain `http://` request
    through the proxy gets them here."""

    def __init__(self, inner: httpx.AsyncBaseTransport, headers: httpx.Headers) -> None:
        self._inner = inner
        self._headers = headers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            request.headers.update(self._headers)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(frozen=True, slots=True)
class HotAnswer:
    """A vendor's answer to a hot GET, its body read: what the retry loop, the auth flow and the
    decoders read of it."""

    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    async def aclose(self) -> None:
        """Nothing to release: the body is read and the connection back in the pool."""

    def as_httpx(self, request: httpx.Request | None = None) -> httpx.Response:
        """The answer as an `httpx.Response`, for the error mapping (errors only: it costs the model)."""
        return httpx.Response(
            self.status_code, headers=list(self.headers.items()), content=self.content, request=request
        )


class HotGets:
    """Idempotent vendor GETs sent straight on the aiohttp session that the client's transport owns
    (one pool for both paths). Per attempt, exactly what `InstrumentedTransport` does on the httpx path:
    `X-Request-ID` forwarded, the call counted, `record_call`; the client's default headers, timeouts
    (httpx-aiohttp's mapping) and proxy (with its `Proxy-Authorization` on plain-http requests); aiohttp
    errors raised as the httpx exceptions httpx-aiohttp maps them to. No retries or auth here: the
    vendor client wraps `get` in its `Retrier` and its auth flow."""

    def __init__(
        self,
        transport: AiohttpTransport,
        backend: str,
        metrics: Metrics,
        headers: Mapping[str, str],
        timeout: httpx.Timeout,
        proxy: httpx.Proxy | None,
        cookies: httpx.Cookies,
    ) -> None:
        from aiohttp import ClientTimeout

        self._transport = transport
        self._backend = backend
        self._metrics = metrics
        self._headers = dict(headers)
        self._timeout: ClientTimeout = ClientTimeout(
            sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
        )
        self._proxy = str(proxy.url) if proxy is not None else None
        self._proxy_headers = dict(proxy.headers) if proxy is not None and proxy.headers else None
        self._cookies = cookies

    @property
    def ready(self) -> bool:
        """False once a vendor has set a cookie: from then on the caller sends through httpx, whose jar
        sends it back (the hot path sends no `Cookie`)."""
        return not self._cookies.jar

    def _session(self) -> ClientSession:
        from aiohttp import ClientSession

        session = self._transport.client
        if not isinstance(session, ClientSession):  # the transport makes it on first use: make it now
            session = self._transport.client = self._transport.get_client()
        return session

    async def get(self, url: str, headers: Mapping[str, str]) -> HotAnswer:
        """GET `url` (already encoded, as `str(httpx.URL(...))` would be) with `headers` on top of the
        client's. Raises `httpx.TransportError`s like the httpx path."""
        from httpx_aiohttp.transport import map_aiohttp_exceptions
        from yarl import URL

        operation = current_operation.get()
        request_id = request_id_var.get()
        sent = {**self._headers, **headers}
        if request_id:
            sent["X-Request-ID"] = request_id
        if self._proxy_headers is not None and url.startswith("http:"):
            sent.update(self._proxy_headers)  # aiohttp sends proxy headers only on an https tunnel's CONNECT
        _count_call()
        started = time.perf_counter()
        status: int | None = None
        outcome = "error"
        try:
            with map_aiohttp_exceptions():
                response = await self._session().request(
                    "GET",
                    URL(url, encoded=True),
                    headers=sent,
                    allow_redirects=False,
                    timeout=self._timeout,
                    proxy=self._proxy,
                    proxy_headers=self._proxy_headers,
                )
            status = response.status
            outcome = _outcome(status)
        except httpx.TimeoutException:
            outcome = "timeout"
            raise
        finally:
            # measured to the answer's head, like the httpx path (whose transport returns there)
            record_call(
                self._metrics,
                self._backend,
                operation,
                request_id,
                "GET",
                status,
                outcome,
                time.perf_counter() - started,
            )
        try:
            with map_aiohttp_exceptions():
                content = await response.read()
        finally:
            response.release()
        answer = HotAnswer(status, response.headers, content)
        if "set-cookie" in answer.headers:  # into the client's jar, as httpx would (and `ready` turns False)
            self._cookies.extract_cookies(answer.as_httpx(httpx.Request("GET", url)))
        return answer


class UpstreamClient(httpx.AsyncClient):
    """The httpx client of one backend, with `hot`: its `HotGets` when the socket layer is aiohttp's and
    not injected (tests' `MockTransport`s and `FACADE_UPSTREAM_TRANSPORT=httpx` leave it None, and the
    vendor clients then send every call through httpx)."""

    hot: HotGets | None = None


def build_client(
    backend: str, settings: Settings, metrics: Metrics, transport: httpx.AsyncBaseTransport | None = None
) -> UpstreamClient:
    """A pooled client for one backend. The pool is kept small on purpose: httpx slows down sharply
    with many concurrent connections (README, "Performance"), and coalescing keeps upstream concurrency low."""
    limits = httpx.Limits(
        max_connections=settings.upstream_concurrency, max_keepalive_connections=settings.upstream_concurrency
    )
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.request_deadline,
    )
    proxy = settings.upstream_proxy.get_secret_value() if settings.upstream_proxy is not None else None
    bare: AiohttpTransport | None = None
    via: httpx.Proxy | None = None
    if transport is not None:
        inner = transport
    elif settings.upstream_transport == "aiohttp":
        inner, bare, via = _aiohttp_transport(limits, proxy)
    else:
        inner = network_transport(settings.upstream_transport, limits, proxy)
    client = UpstreamClient(  # the pool limits are the transport's: httpx ignores `limits=` beside `transport=`
        transport=InstrumentedTransport(inner, backend, metrics),
        timeout=timeout,
        headers={"User-Agent": f"meter-facade/{__version__}"},
        follow_redirects=False,
        trust_env=False,  # no proxy or netrc from the environment: FACADE_UPSTREAM_PROXY says it
    )
    client._cookies = SetCookieOnly()  # httpx's `cookies` setter would copy into a plain jar
    if bare is not None:
        client.hot = HotGets(bare, backend, metrics, client.headers, timeout, via, client._cookies)
    return client
