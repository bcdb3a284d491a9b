"""HTTP caching of successful GETs: `ETag`, `Cache-Control`, `Age`, `X-Cache`, 304s, and the
pre-serialized response cache the hit path answers from.

A `StoredResponse` keeps the exact bytes of a 200 answer together with the data-cache entries it was
built from; it is served only while every one of those entries is still the current, fresh entry under
its key. So a correction that evicts data, or data expiring, invalidates every response built from it
without any bookkeeping here, and a hit costs a dict lookup and a few identity checks, never a
pydantic model.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from app.cache import CacheEntry, SingleFlightCache
from app.service import Answer
from app.timeutil import Clock

Source = tuple[SingleFlightCache, Hashable, CacheEntry[Any]]


@dataclass(slots=True, eq=False)
class StoredResponse:
    body: bytes
    etag: bytes
    route: str
    sources: tuple[Source, ...]
    created: float
    fresh_until: float

    def is_current(self, now: float) -> bool:
        if now >= self.fresh_until:
            return False
        return all(cache.is_current(key, entry) for cache, key, entry in self.sources)


def etag_of(body: bytes) -> bytes:
    return b'"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"'


def etag_matches(if_none_match: bytes | str | None, etag: bytes) -> bool:
    """RFC 9110 weak comparison over a comma-separated `If-None-Match` list, `*` included."""
    if not if_none_match:
        return False
    raw = if_none_match.encode("latin-1") if isinstance(if_none_match, str) else if_none_match
    for candidate in raw.split(b","):
        tag = candidate.strip()
        if tag == b"*" or tag.removeprefix(b"W/") == etag:
            return True
    return False


def cache_headers(etag: bytes, *, max_age: float, age: float, result: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"etag", etag),
        (b"cache-control", b"private, max-age=%d" % max(0, math.floor(max_age))),
        (b"age", b"%d" % max(0, math.floor(age))),
        (b"x-cache", result.encode()),
    ]


class ResponseCache:
    """Bounded LRU of pre-serialized 200 answers keyed by (path, raw query string)."""

    def __init__(self, maxsize: int, clock: Clock) -> None:
        self._entries: LRUCache[tuple[str, bytes], StoredResponse] = LRUCache(maxsize)
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: tuple[str, bytes]) -> StoredResponse | None:
        stored = self._entries.get(key)
        if stored is None:
            return None
        if stored.is_current(self._clock()):
            return stored
        self._entries.pop(key, None)
        return None

    def store(self, key: tuple[str, bytes], stored: StoredResponse) -> None:
        self._entries[key] = stored

    def clear(self) -> None:
        self._entries.clear()


def render(request: Request, answer: Answer[Any], model: BaseModel, *, exclude: set[str] | None = None) -> Response:
    """Serialize `model` once, answer 200 or 304, and keep the bytes for the hit path when the
    answer is whole (no backend errors) and came from cache entries that are still fresh."""
    body = model.model_dump_json(exclude=exclude).encode()
    etag = etag_of(body)
    clock: Clock = request.app.state.clock
    now = clock()
    fresh_until = min((e.fresh_until for _, _, e in answer.sources), default=now)
    created = min((e.created for _, _, e in answer.sources), default=now)
    result = answer.cache_result
    scope = request.scope
    route = scope.get("route")
    template = getattr(route, "path", "unmatched")
    facade = scope.setdefault("facade", {})
    facade["cache"] = result
    if not answer.errors and answer.sources and fresh_until > now and result != "STALE":
        request.app.state.responses.store(
            (scope["path"], scope["query_string"]),
            StoredResponse(body, etag, template, tuple(answer.sources), created, fresh_until),
        )
    max_age = max(0.0, fresh_until - now) if not answer.errors else 0.0
    headers = dict(
        (k.decode(), v.decode()) for k, v in cache_headers(etag, max_age=max_age, age=now - created, result=result)
    )
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
