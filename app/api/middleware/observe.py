"""Request id, Prometheus metrics and the access log for every HTTP request.

The `route` label is the matched path template (set by the router in `scope["route"]`, or by the hit
path in `scope["facade"]["route"]`); an unmatched path is `unmatched`, so raw paths and ids never
become label values. Methods outside the standard set are counted as `OTHER`.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.middleware.client_auth import OPEN_PATHS
from app.api.middleware.hit_path import Answered
from app.api.problems import problem_body
from app.infra.logs import ACCESS_LOG
from app.infra.metrics import Metrics

log = logging.getLogger("app.access")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
upstream_calls_var: ContextVar[list[int] | None] = ContextVar("upstream_calls", default=None)
"""A one-element counter of upstream calls made for the current request."""

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Observe:
    def __init__(self, app: ASGIApp, metrics: Metrics, hit: Callable[[Scope], Answered | None] | None = None) -> None:
        """`hit`: answers a request from stored bytes when it can (auth and the response cache, see
        `FacadeApp`), so a hit skips the inner layers, the context variables and the send wrapper."""
        self.app = app
        self.hit = hit
        self.stats = metrics.http
        # Request ids: a per-process random prefix and a counter, unique without a syscall per request.
        self._id_prefix = os.urandom(6).hex()
        self._next_id = itertools.count(1).__next__

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if self.hit is not None:
            answered = self.hit(scope)
            if answered is not None:
                await self._answer_hit(scope, send, answered, started)
                return
        request_id = self._request_id(scope)
        rid_token = request_id_var.set(request_id)
        calls = [0]
        calls_token = upstream_calls_var.set(calls)
        facade: dict[str, Any] = scope.setdefault("facade", {})
        status = 500
        started_response = False
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        stats = self.stats
        stats.in_flight += 1
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            # Outermost layer. An error FastAPI already answered (and its handler logged) ends here
            # once more and is dropped; anything that escaped before a response is logged once and
            # still answered with a problem+json 500.
            if not started_response:
                log.error("unhandled error", exc_info=True, extra={"fields": {"request_id": request_id}})
                body = problem_body(500, "Internal error", "The service failed unexpectedly; it has been logged.")
                await send_wrapper(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/problem+json"),
                            (b"content-length", b"%d" % len(body)),
                        ],
                    }
                )
                await send_wrapper({"type": "http.response.body", "body": body})
        finally:
            stats.in_flight -= 1
            self._record(scope, facade, request_id, status, started, calls[0])
            request_id_var.reset(rid_token)
            upstream_calls_var.reset(calls_token)

    def _request_id(self, scope: Scope) -> str:
        """The caller's `X-Request-ID` when it is well-formed, else a new one."""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate: str = value.decode("latin-1")
                if _VALID_REQUEST_ID.match(candidate):
                    return candidate
                break
        return f"{self._id_prefix}{self._next_id():020x}"

    async def _answer_hit(self, scope: Scope, send: Send, answered: Answered, started: float) -> None:
        status, headers, body = answered
        request_id = self._request_id(scope)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"x-request-id", request_id.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self._record(scope, scope["facade"], request_id, status, started, 0)

    def _record(
        self, scope: Scope, facade: dict[str, Any], request_id: str, status: int, started: float, calls: int
    ) -> None:
        """Count the request in the metrics and write its access line."""
        elapsed = time.perf_counter() - started
        route_obj = scope.get("route")
        # API routes leave their template in the scope; the docs and spec routes are a fixed set of
        # paths, so their own path is a bounded label too; anything else is `unmatched`.
        route = (
            getattr(route_obj, "path", None)
            or facade.get("route")
            or (scope["path"] if scope["path"] in OPEN_PATHS else "unmatched")
        )
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        self.stats.record(route, method, status, elapsed)
        if ACCESS_LOG.enabled:
            ACCESS_LOG.request(
                request_id,
                method,
                route,
                status,
                round(elapsed * 1000, 3),
                facade.get("cache"),
                calls,
                facade.get("client"),
                facade.get("invalid_fields"),
            )
