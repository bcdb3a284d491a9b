"""The httpx side of every vendor call: one pooled client per backend, instrumented.

`InstrumentedTransport` wraps the real transport (a socket, or the sandbox emulator's ASGI app) and,
for each attempt: forwards `X-Request-ID`, counts the call for the request's access log, records
`facade_upstream_requests_total` / `..._duration_seconds`, counts logins, and writes one log line
(backend, operation, status, duration, attempt). It never logs headers or bodies.

A response without `Set-Cookie` skips httpx's cookie jar, which otherwise builds a `urllib` request per
response only to find no cookie (`SetCookieOnly`; README "Performance", the miss path). The client reads
no proxy settings from the environment (`trust_env=False`): a proxy is named by `FACADE_UPSTREAM_PROXY`.
"""

from __future__ import annotations

import base64
import logging
import time

import httpx

from app import __version__
from app.infra.config import Settings
from app.infra.context import current_attempt, current_operation, request_id_var, upstream_calls_var
from app.infra.metrics import Metrics

log = logging.getLogger("app.infra.upstream")


class SetCookieOnly(httpx.Cookies):
    """httpx's cookie jar, consulted only when a response sets a cookie. `http.cookiejar` reads nothing
    but `Set-Cookie`/`Set-Cookie2`, so skipping responses without them changes nothing, and saves the
    `urllib.request.Request` httpx builds for every response (about 2 % of a miss's CPU)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


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
        calls = upstream_calls_var.get()
        if calls is not None:
            calls[0] += 1
        started = time.perf_counter()
        status: int | None = None
        outcome = "error"
        try:
            response = await self._inner.handle_async_request(request)
            status = response.status_code
            outcome = "ok" if status < 400 else "429" if status == 429 else f"{status // 100}xx"
            return response
        except httpx.TimeoutException:
            outcome = "timeout"
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.upstream_requests.labels(self._backend, operation, outcome).inc()
            self._metrics.upstream_duration.labels(self._backend, operation).observe(elapsed)
            if operation == "login":
                if outcome == "ok":
                    self._metrics.token_refreshes.labels(self._backend).inc()
                else:
                    self._metrics.token_refresh_failures.labels(self._backend).inc()
            log.info(
                "upstream call",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "backend": self._backend,
                        "operation": operation,
                        "method": request.method,
                        "status": status,
                        "outcome": outcome,
                        "duration_ms": round(elapsed * 1000, 3),
                        "attempt": current_attempt.get(),
                    }
                },
            )

    async def aclose(self) -> None:
        await self._inner.aclose()


def network_transport(kind: str, limits: httpx.Limits, proxy: str | None = None) -> httpx.AsyncBaseTransport:
    """The socket layer under the httpx API: `aiohttp` (httpx-aiohttp's `AiohttpTransport`: httpx's auth
    flows, hooks and timeouts on aiohttp's I/O, measured faster here; see README "Performance") or
    httpx's own `httpx` transport; through `proxy` when one is given."""
    if kind == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        via = _proxy_with_header(proxy) if proxy else None
        transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=limits, retries=0, proxy=via)
        if via is not None and via.headers:
            transport = _PlainHttpProxyAuth(transport, via.headers)
        return transport
    return httpx.AsyncHTTPTransport(limits=limits, retries=0, proxy=proxy)


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


def build_client(
    backend: str, settings: Settings, metrics: Metrics, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
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
    inner = transport or network_transport(settings.upstream_transport, limits, proxy)
    client = httpx.AsyncClient(  # the pool limits are the transport's: httpx ignores `limits=` beside `transport=`
        transport=InstrumentedTransport(inner, backend, metrics),
        timeout=timeout,
        headers={"User-Agent": f"meter-facade/{__version__}"},
        follow_redirects=False,
        trust_env=False,  # no proxy or netrc from the environment: FACADE_UPSTREAM_PROXY says it
    )
    client._cookies = SetCookieOnly()  # httpx's `cookies` setter would copy into a plain jar
    return client
