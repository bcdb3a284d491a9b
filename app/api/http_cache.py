"""HTTP caching of successful GETs: `ETag`, `Cache-Control`, `Age`, `X-Cache`, 304s, and the
pre-serialized response cache the hit path answers from.

A `StoredResponse` keeps the exact bytes of a 200 answer with the `Provenance` of the data it was built
from, and is served only while that provenance `is_current()`. So a correction that evicts data, or
data expiring, invalidates every response built from it without any bookkeeping here, and a hit costs a
dict lookup and a few identity checks, never a pydantic model.

Keys are the path plus its route's query parameters, sorted. A query with any other parameter
(`&junk=1`) has no key: the route refuses it (422), so it is never answered from here nor stored. Only
requests that validated are stored. The cache is bounded in bytes as well as entries, and a body larger
than `max_entry_bytes` is served but never stored. The memo of parsed query strings is bounded in bytes
too, and holds only query strings whose answer is stored: a flood of distinct junk queries adds nothing.
"""

from __future__ import annotations

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
from app.infra.context import request_info
from app.infra.timeutil import Clock

ResponseKey = tuple[str, tuple[tuple[str, str], ...]]
ENTRY_OVERHEAD = 400  # the StoredResponse, its key and the LRU's bookkeeping


ALIAS_OVERHEAD = 200  # the memo's tuple, its key and the LRU's bookkeeping


def response_key(path: str, query_string: bytes, known: frozenset[str]) -> ResponseKey | None:
    """The path and, sorted, its query parameters; None when one is not among those its route takes
    (`known`): such a request is refused by the route, never answered from the cache."""
    if not query_string:
        return (path, ())
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    if any(name not in known for name, _ in pairs):
        return None
    return (path, tuple(sorted(pairs)))


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
    vary: bool = False
    """Whether the route negotiates its representation (`Vary: Accept` on every hit too)."""
    key_bytes: int = 0
    """What its cache key holds (the query's parameters), counted in the cache's bytes."""
    _second: int = -1
    _ok: list[tuple[bytes, bytes]] | None = None
    _not_modified: list[tuple[bytes, bytes]] | None = None

    def hit_headers(self, now: float, *, modified: bool) -> list[tuple[bytes, bytes]]:
        """The headers of a hit (200, or 304 when not `modified`), made once per second: only
        `max-age` and `Age` change, and only by whole seconds."""
        second = int(now)
        if second != self._second or self._ok is None or self._not_modified is None:
            base = cache_headers(
                self.etag, max_age=self.fresh_until - now, age=now - self.created, result="HIT", vary=self.vary
            )
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


def cache_headers(
    etag: bytes, *, max_age: float, age: float, result: str, vary: bool = False
) -> list[tuple[bytes, bytes]]:
    """`Age` is the oldest part's age, and 0 on a `MISS` (everything fetched for this request);
    `Vary: Accept` when the route's body depends on `Accept` (CSV/NDJSON negotiation)."""
    headers = [
        (b"etag", etag),
        (b"cache-control", b"private, max-age=%d" % max(0, math.floor(max_age))),
        (b"age", b"0" if result == "MISS" else b"%d" % max(0, math.floor(age))),
        (b"x-cache", result.encode()),
    ]
    if vary:
        headers.append((b"vary", b"Accept"))
    return headers


def negotiates(request: Request) -> bool:
    """Whether the route answering `request` picked its representation from `Accept` (set by
    `app.api.exports.wanted`)."""
    return request_info(request.scope).negotiated


def answer_fresh_until(answer: Answer[Any], now: float) -> float:
    """Until when an answer is fresh: its own freshness if it has one, else its parts' earliest."""
    return answer.fresh_until if answer.fresh_until is not None else answer.provenance.fresh_until(now)


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
        self._parsed: LRUCache[tuple[str, bytes], ResponseKey] = LRUCache(
            max(64 * 1024, max_bytes // 16), getsizeof=_alias_weight
        )
        """Raw (path, query string) → key, so a hit parses its query once: filled only by lookups that
        found a stored answer, bounded in bytes (a sixteenth of the cache's)."""

    def _weight(self, stored: StoredResponse) -> int:
        return max(len(stored.body) + ENTRY_OVERHEAD + stored.key_bytes, self._floor)

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, path: str, query_string: bytes) -> ResponseKey | None:
        """The cache key of a request, or None when its query has a parameter its route does not take."""
        if not query_string:
            return (path, ())
        parsed = self._parsed.get((path, query_string))
        if parsed is not None:
            return parsed
        return response_key(path, query_string, self.params_by_path.get(path, frozenset()))

    def find(self, path: str, query_string: bytes) -> StoredResponse | None:
        """The stored, current answer of a request (the hit path's lookup)."""
        key = self.key(path, query_string)
        if key is None:
            return None
        stored = self.lookup(key)
        if stored is not None and query_string and (path, query_string) not in self._parsed:
            self._parsed[(path, query_string)] = key
        return stored

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
        stored.key_bytes = _alias_weight(key) - ALIAS_OVERHEAD
        if len(stored.body) + ENTRY_OVERHEAD + stored.key_bytes > min(self.max_entry_bytes, self._entries.maxsize):
            return False
        self._entries[key] = stored
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._parsed.clear()


def _alias_weight(key: ResponseKey) -> int:
    # the memo's own key holds the raw query string, about as long as the parsed pairs
    return ALIAS_OVERHEAD + 2 * (len(key[0]) + sum(len(name) + len(value) for name, value in key[1]))


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
    fresh_until = answer_fresh_until(answer, now)
    created = provenance.created(now)
    result = provenance.cache_result
    vary = negotiates(request)
    scope = request.scope
    route = scope.get("route")
    template = getattr(route, "path", "unmatched")
    request_info(scope).cache = result
    next_cursor = getattr(model, "next_cursor", None)
    link = next_link(request, next_cursor) if next_cursor else None
    key = responses.key(scope["path"], scope["query_string"])
    if key is not None and not answer.errors and provenance.cached and fresh_until > now and result != "STALE":
        responses.store(
            key,
            StoredResponse(
                body, etag, template, provenance, created, fresh_until, link.encode() if link else None, vary
            ),
        )
    max_age = max(0.0, fresh_until - now) if not answer.errors else 0.0
    headers = dict(
        (k.decode(), v.decode())
        for k, v in cache_headers(etag, max_age=max_age, age=now - created, result=result, vary=vary)
    )
    if link:
        headers["link"] = link
    if etag_matches(", ".join(request.headers.getlist("if-none-match")), etag):  # repeated fields are one list
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
