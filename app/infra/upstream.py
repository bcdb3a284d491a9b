"""The httpx side of every vendor call: one pooled client per backend, instrumented.

`InstrumentedTransport` wraps the real transport (a socket, or the sandbox emulator's ASGI app) and,
for each attempt: forwards `X-Request-ID`, counts the call for the request's access log, records
`facade_upstream_requests_total` / `..._duration_seconds`, counts logins, and writes one log line
(backend, operation, status, duration, attempt). It never logs headers or bodies.
"""

from __future__ import annotations

import logging
import time

import httpx

from app.api.middleware.observe import request_id_var, upstream_calls_var
from app.backends.http import current_attempt, current_operation
from app.infra.config import Settings
from app.infra.metrics import Metrics

log = logging.getLogger("app.infra.upstream")


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


def network_transport(kind: str, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """The socket layer under the httpx API: `aiohttp` (httpx-aiohttp's `AiohttpTransport`: httpx's auth
    flows, hooks and timeouts on aiohttp's I/O, measured faster here; see README "Performance") or
    httpx's own `httpx` transport."""
    if kind == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=limits, retries=0)
        return transport
    return httpx.AsyncHTTPTransport(limits=limits, retries=0)


def build_client(
    backend: str, settings: Settings, metrics: Metrics, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """A pooled client for one backend. The pool is kept small on purpose: httpx slows down sharply
    with many concurrent connections (PERF-NOTES.md), and coalescing keeps upstream concurrency low."""
    limits = httpx.Limits(
        max_connections=settings.upstream_concurrency, max_keepalive_connections=settings.upstream_concurrency
    )
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.request_deadline,
    )
    inner = transport or network_transport(settings.upstream_transport, limits)
    return httpx.AsyncClient(  # the pool limits are the transport's: httpx ignores `limits=` beside `transport=`
        transport=InstrumentedTransport(inner, backend, metrics),
        timeout=timeout,
        headers={"User-Agent": "meter-facade/0.1"},
        follow_redirects=False,
    )
