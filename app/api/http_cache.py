"""HTTP caching of successful GETs: `ETag`, `Cache-Control`, `Age`, `X-Cache`, 304s, and the
pre-serialized response cache the hit path answers from.

A `StoredResponse` keeps the exact bytes of a 200 answer with the `Provenance` of the data it was built
from, and is served only while that provenance `is_current()`. So a correction that evicts data, or
data expiring, invalidates every response built from it without any bookkeeping here, and a hit costs a
dict lookup and a few identity checks, never a pydantic model.

Keys are the path plus the query parameters the API knows, sorted: an unknown parameter (`&junk=1`)
is ignored, by the routes and by this cache alike, so it never makes a new entry. Only requests that
validated are stored. The cache is bounded in bytes as well as entries, and a body larger than
`max_entry_bytes` is served but never stored.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from cachetools import LRUCache
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from app.guard.provenance import Answer, Provenance
from app.infra.timeutil import Clock

ResponseKey = tuple[str, tuple[tuple[str, str], ...]]
ENTRY_OVERHEAD = 400  # the StoredResponse, its key and the LRU's bookkeeping


@functools.lru_cache(maxsize=4096)  # bounded; a hit's query string is parsed once, not on every hit
def response_key(path: str, query_string: bytes, known: frozenset[str]) -> ResponseKey:
    """The path and, sorted, the query parameters its route takes (`known`); any other is dropped."""
    if not query_string or not known:
        return (path, ())
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return (path, tuple(sorted(p for p in pairs if p[0] in known)))


@dataclass(slots=True, eq=False)
class StoredResponse:
    body: bytes
    etag: bytes
    route: str
    provenance: Provenance
    created: float
    fresh_until: float
    link: bytes | None = None
    """`Link: <next page>; rel="next"` of a list with more to come."""
    _second: int = -1
    _ok: list[tuple[bytes, bytes]] | None = None
    _not_modified: list[tuple[bytes, bytes]] | None = None

    def hit_headers(self, now: float, *, modified: bool) -> list[tuple[bytes, bytes]]:
        """The headers of a hit (200, or 304 when not `modified`), made once per second: only
        `max-age` and `Age` change, and only by whole seconds."""
        second = int(now)
        if second != self._second or self._ok is None or self._not_modified is None:
            base = cache_headers(self.etag, max_age=self.fresh_until - now, age=now - self.created, result="HIT")
            if self.link is not None:
                base.append((b"link", self.link))
            self._not_modified = base
            self._ok = [*base, (b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.body))]
            self._second = second
        return self._ok if modified else self._not_modified

    def is_current(self, now: float) -> bool:
        return now < self.fresh_until and self.provenance.is_current()


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
    """Bounded LRU of pre-serialized 200 answers (entries and bytes)."""

    def __init__(self, maxsize: int, clock: Clock, *, max_bytes: int, max_entry_bytes: int) -> None:
        self.params_by_path: dict[str, frozenset[str]] = {}
        """Query parameters each route without path parameters takes (set by the app from its routes);
        a path not in it (`/meters/{meter_id}`, ...) takes none."""
        self._floor = max(1, max_bytes // maxsize)
        self.max_entry_bytes = max_entry_bytes
        self._entries: LRUCache[ResponseKey, StoredResponse] = LRUCache(max_bytes, getsizeof=self._weight)
        self._clock = clock

    def _weight(self, stored: StoredResponse) -> int:
        return max(len(stored.body) + ENTRY_OVERHEAD, self._floor)

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, path: str, query_string: bytes) -> ResponseKey:
        return response_key(path, query_string, self.params_by_path.get(path, frozenset()))

    @property
    def bytes(self) -> int:
        return int(self._entries.currsize)

    def lookup(self, key: ResponseKey) -> StoredResponse | None:
        stored = self._entries.get(key)
        if stored is None:
            return None
        if stored.is_current(self._clock()):
            return stored
        self._entries.pop(key, None)
        return None

    def store(self, key: ResponseKey, stored: StoredResponse) -> bool:
        """Keep `stored` unless it is larger than the per-entry limit; whether it was kept."""
        if len(stored.body) + ENTRY_OVERHEAD > min(self.max_entry_bytes, self._entries.maxsize):
            return False
        self._entries[key] = stored
        return True

    def clear(self) -> None:
        self._entries.clear()


def next_link(request: Request, next_cursor: str) -> str:
    """`<path?...&cursor=...>; rel="next"`: the same query with the next page's cursor (RFC 8288)."""
    return f'<{request.url.path}?{request.url.include_query_params(cursor=next_cursor).query}>; rel="next"'


def render(
    request: Request,
    answer: Answer[Any],
    model: BaseModel,
    *,
    exclude: set[str] | None = None,
) -> Response:
    """Serialize `model` once, answer 200 or 304, and keep the bytes for the hit path when the
    answer is whole (no backend errors) and came from cache entries that are still fresh."""
    responses: ResponseCache = request.app.responses
    clock: Clock = request.app.clock
    body = model.model_dump_json(exclude=exclude).encode()
    etag = etag_of(body)
    now = clock()
    provenance = answer.provenance
    fresh_until = provenance.fresh_until(now)
    created = provenance.created(now)
    result = provenance.cache_result
    scope = request.scope
    route = scope.get("route")
    template = getattr(route, "path", "unmatched")
    facade = scope.setdefault("facade", {})
    facade["cache"] = result
    next_cursor = getattr(model, "next_cursor", None)
    link = next_link(request, next_cursor) if next_cursor else None
    if not answer.errors and provenance.cached and fresh_until > now and result != "STALE":
        responses.store(
            responses.key(scope["path"], scope["query_string"]),
            StoredResponse(body, etag, template, provenance, created, fresh_until, link.encode() if link else None),
        )
    max_age = max(0.0, fresh_until - now) if not answer.errors else 0.0
    headers = dict(
        (k.decode(), v.decode()) for k, v in cache_headers(etag, max_age=max_age, age=now - created, result=result)
    )
    if link:
        headers["link"] = link
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
