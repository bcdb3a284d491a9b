"""The hit path: answer a GET (or HEAD) whose exact response is cached, before FastAPI routing.

Measured on this stack (PERF-NOTES.md), FastAPI's routing and dependency machinery, not the cache
lookup, is what a hit pays for; answering from stored bytes here costs one dict lookup, a few identity
checks and the headers. Everything else (misses, errors, other methods, other representations such as
CSV) goes on to the app unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.http_cache import ResponseCache, cache_headers, etag_matches, response_key
from app.timeutil import Clock

_OTHER_REPRESENTATIONS = (b"text/csv", b"ndjson", b"text/event-stream")


class HitPath:
    def __init__(
        self, app: ASGIApp, responses: ResponseCache, clock: Clock, on_hit: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self.responses = responses
        self.clock = clock
        self.on_hit = on_hit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        stored = self.responses.lookup(response_key(scope["path"], scope["query_string"]))
        if stored is not None and _wants_export(scope):
            stored = None  # stored bytes are JSON; a CSV or NDJSON request goes to its route
        if stored is None:
            await self.app(scope, receive, send)
            return
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value
            elif name == b"accept" and any(r in value for r in _OTHER_REPRESENTATIONS):
                await self.app(scope, receive, send)
                return
        now = self.clock()
        facade = scope.setdefault("facade", {})
        facade["route"] = stored.route
        facade["cache"] = "HIT"
        if self.on_hit is not None:
            self.on_hit(stored.route)
        headers = cache_headers(stored.etag, max_age=stored.fresh_until - now, age=now - stored.created, result="HIT")
        if stored.link is not None:
            headers.append((b"link", stored.link))
        if etag_matches(if_none_match, stored.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(stored.body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": stored.body if scope["method"] == "GET" else b""})


def _wants_export(scope: Scope) -> bool:
    """An `Accept` naming CSV or NDJSON (`app.exports.negotiate` decides the rest in the route)."""
    for key, value in scope["headers"]:
        if key == b"accept":
            lowered = value.lower()
            return b"csv" in lowered or b"ndjson" in lowered or b"jsonl" in lowered
    return False
