"""The hit path: answer a GET (or HEAD) whose exact response is cached, before FastAPI routing.

Measured on this stack (PERF-NOTES.md), FastAPI's routing and dependency machinery, not the cache
lookup, is what a hit pays for; answering from stored bytes here costs one dict lookup, a few identity
checks and the headers. Everything else (misses, errors, other methods, other representations such as
CSV) goes on to the app unchanged.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.http_cache import ResponseCache, etag_matches
from app.infra.timeutil import Clock

_OTHER_REPRESENTATION = re.compile(rb"(?i)csv|ndjson|jsonl|event-stream")


Answered = tuple[int, list[tuple[bytes, bytes]], bytes]


class HitPath:
    def __init__(self, app: ASGIApp, responses: ResponseCache, clock: Clock) -> None:
        self.app = app
        self.responses = responses
        self.clock = clock
        self.hits = 0
        """Hits answered here: a plain count, added to `facade_cache_lookups_total` at scrape time."""
        self._published = 0

    def take_hits(self) -> int:
        """Hits since the last call (for the scrape)."""
        new, self._published = self.hits - self._published, self.hits
        return new

    def answer(self, scope: Scope) -> Answered | None:
        """(status, headers, body) of a GET or HEAD whose response is stored and current, or None."""
        if scope["method"] not in ("GET", "HEAD"):
            return None
        stored = self.responses.lookup(self.responses.key(scope["path"], scope["query_string"]))
        if stored is None:
            return None
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value
            elif name == b"accept" and _OTHER_REPRESENTATION.search(value):
                return None  # stored bytes are JSON; CSV or NDJSON goes to its route
        facade = scope.setdefault("facade", {})
        facade["route"] = stored.route
        facade["cache"] = "HIT"
        self.hits += 1
        if if_none_match is not None and etag_matches(if_none_match, stored.etag):
            return 304, stored.hit_headers(self.clock(), modified=False), b""
        body = stored.body if scope["method"] == "GET" else b""
        return 200, stored.hit_headers(self.clock(), modified=True), body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = self.answer(scope) if scope["type"] == "http" else None
        if answered is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = answered
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
