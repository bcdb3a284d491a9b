"""Cache entries in Redis: compact, schema-versioned, tagged.

A stored entry is one Redis string: a small JSON header (`created`, `fresh_until`, `stale_until` as
epoch seconds, `tags`), a newline, then the value as JSON written by a pydantic `TypeAdapter` (the same
serializer the API uses, so a round trip gives equal models). It lives in Redis until `stale_until`
(its fresh plus stale-if-error window).

Keys are `<prefix>:e:<version>:<kind>:<digest>`:
- `version` is `SCHEMA_VERSION` plus a fingerprint of the value type's JSON schema, so a rolling
  upgrade that changes a model's shape reads nothing the old code wrote (and the reverse);
- `digest` is a SHA-256 of the cache key in a canonical form (frozensets sorted, dates in ISO form),
  identical in every process whatever its hash seed.

Each tag has an index set `<prefix>:t:<tag>` of the keys carrying it, living as long as its longest
entry, so `evict_tags` deletes every shared entry a correction touched in one atomic script.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis

from app.infra.timeutil import Clock
from app.shared.tier import RedisTier, SharedUnavailable

V = TypeVar("V")
SCHEMA_VERSION = 1
"""Bump when the envelope itself changes; value shapes are fingerprinted automatically."""

_EVICT_TAGS = """
local n = 0
for _, tag in ipairs(KEYS) do
  local members = redis.call('SMEMBERS', tag)
  for i = 1, #members, 500 do
    n = n + redis.call('DEL', unpack(members, i, math.min(i + 499, #members)))
  end
  redis.call('DEL', tag)
end
return n
"""


@dataclass(frozen=True, slots=True)
class SharedEntry(Generic[V]):
    """A value with the times (epoch seconds, from the loading replica's clock) that govern it."""

    value: V
    created: float
    fresh_until: float
    stale_until: float
    tags: frozenset[str] = frozenset()


def _canonical(key: Any) -> Any:
    if key is None or isinstance(key, bool | int | float | str):
        return key
    if isinstance(key, tuple | list):
        return [_canonical(k) for k in key]
    if isinstance(key, frozenset | set):
        return {"set": sorted(json.dumps(_canonical(k), sort_keys=True) for k in key)}
    if isinstance(key, datetime | date | time):
        return {type(key).__name__: key.isoformat()}
    if dataclasses.is_dataclass(key) and not isinstance(key, type):
        return {type(key).__name__: _canonical(dataclasses.astuple(key))}
    raise TypeError(f"cache key part of type {type(key).__name__} has no canonical form")


def key_digest(key: Hashable) -> str:
    """A stable name for a cache key: the same in every process (no `hash()`, no set order).
    Raises `TypeError` for a key part with no canonical form. Not memoised: a key holds what a client
    asked for, and a digest costs microseconds beside the Redis round trip it names."""
    text = json.dumps(_canonical(key), separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EntryKind(Generic[V]):
    """One cache's value type in Redis: its name, serializer and schema fingerprint."""

    def __init__(self, name: str, value_type: Any) -> None:
        self.name = name
        self.adapter: TypeAdapter[V] = TypeAdapter(value_type)
        try:
            schema = json.dumps(self.adapter.json_schema(), sort_keys=True)
        except Exception:  # a type pydantic cannot describe still gets a fingerprint of its name
            schema = repr(value_type)
        self.version = f"v{SCHEMA_VERSION}-{hashlib.sha256(schema.encode()).hexdigest()[:8]}"

    def encode(self, entry: SharedEntry[V]) -> bytes:
        header = json.dumps(
            {"c": entry.created, "f": entry.fresh_until, "s": entry.stale_until, "t": sorted(entry.tags)},
            separators=(",", ":"),
        )
        return header.encode() + b"\n" + self.adapter.dump_json(entry.value)

    def decode(self, blob: bytes, now: float | None = None) -> SharedEntry[V]:
        """Raises `ValueError` for anything this version did not write, or whose times or numbers are
        not what it would write (`valid_times`, `valid_tags`, `finite_fields`): Redis is read as
        strictly as a vendor. `now` (epoch seconds) bounds `created`."""
        header, sep, body = blob.partition(b"\n")
        if not sep:
            raise ValueError("no envelope header")
        try:
            meta = json.loads(header)
            created, fresh_until, stale_until = valid_times(meta["c"], meta["f"], meta["s"], now)
            tags = valid_tags(meta["t"])
            value = finite_fields(self.adapter.validate_json(body))
            return SharedEntry(value, created, fresh_until, stale_until, tags)
        except (ValidationError, KeyError, TypeError, ValueError, RecursionError) as exc:
            raise ValueError("not an entry of this kind") from exc


# --- validation of what Redis returns (issue 22): kept apart from the envelope, so it reads in one place

MAX_CLOCK_SKEW = 300.0
"""Seconds a replica's clock may run ahead of this one's: an entry `created` later than that is forged."""
MAX_ENTRY_LIFETIME = 400 * 86400.0
"""No cache keeps an entry longer (the longest TTLs are hours); a longer one is forged or corrupt."""
MAX_TAGS, MAX_TAG_CHARS = 10_000, 512


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def valid_times(
    created: object, fresh_until: object, stale_until: object, now: float | None
) -> tuple[float, float, float]:
    """An entry's times as this code writes them: finite epoch seconds, `created <= fresh_until <=
    stale_until`, at most `MAX_ENTRY_LIFETIME` apart, `created` not ahead of `now` (by more than the
    skew). Raises `ValueError` otherwise."""
    c, f, s = _finite(created), _finite(fresh_until), _finite(stale_until)
    if not c <= f <= s or s - c > MAX_ENTRY_LIFETIME or c < 0:
        raise ValueError("entry times out of order or out of bounds")
    if now is not None and c > now + MAX_CLOCK_SKEW:
        raise ValueError("entry created in the future")
    return c, f, s


def valid_tags(tags: object) -> frozenset[str]:
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise ValueError("tags must be a short list")
    if not all(isinstance(t, str) and len(t) <= MAX_TAG_CHARS for t in tags):
        raise ValueError("tags must be short strings")
    return frozenset(tags)


def finite_fields(value: V) -> V:
    """`value` when every float field of it (a dataclass's own fields; models check theirs, see
    `app.domain.models.Resource`) is finite; raises `ValueError` otherwise."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            number = getattr(value, field.name)
            if isinstance(number, float) and not math.isfinite(number):
                raise ValueError(f"{field.name} is not finite")
    return value


class SharedEntries:
    """Get, put and evict cache entries in Redis; every method degrades (see `RedisTier.call`)."""

    def __init__(self, tier: RedisTier, clock: Clock, *, max_entry_bytes: int = 1024 * 1024) -> None:
        self.tier = tier
        self._clock = clock
        self._max_entry_bytes = max_entry_bytes
        self._evict = tier.client.register_script(_EVICT_TAGS)

    def key(self, kind: EntryKind[Any], key: Hashable) -> str:
        return self.tier.key("e", kind.version, kind.name, key_digest(key))

    def tag_key(self, tag: str) -> str:
        return self.tier.key("t", tag)

    async def get(self, kind: EntryKind[V], key: Hashable) -> SharedEntry[V] | None:
        """The entry if Redis holds one this version can read; raises `SharedUnavailable`."""
        blob: bytes | str | None = await self.tier.call(
            "get", lambda r: r.get(self.key(kind, key)), classify=lambda b: "hit" if b is not None else "miss"
        )
        if blob is None:
            return None
        try:
            return kind.decode(blob if isinstance(blob, bytes) else blob.encode(), self._clock())
        except ValueError:
            await self.drop_invalid(kind, key, "get")
            return None

    async def drop_invalid(self, kind: EntryKind[Any], key: Hashable, operation: str) -> None:
        """Count an entry this code would not have written (`facade_shared_cache_operations_total
        {operation, outcome="corrupt"}`) and delete it, so the next load replaces it; never raises."""
        self.tier.note(operation, "corrupt")
        with contextlib.suppress(SharedUnavailable):
            await self.tier.call("delete_invalid", lambda r: r.delete(self.key(kind, key)))

    async def put(self, kind: EntryKind[V], key: Hashable, entry: SharedEntry[V]) -> None:
        """Store `entry` until its `stale_until`, indexed under each tag (not at all when its encoding is
        larger than `max_entry_bytes`); raises `SharedUnavailable`."""
        ttl_ms = int((entry.stale_until - self._clock()) * 1000)
        if ttl_ms <= 0:
            return
        name = self.key(kind, key)
        blob = kind.encode(entry)
        if len(blob) > self._max_entry_bytes:  # bounded like the in-process caches: served, not shared
            self.tier.note("set", "too_large")
            return

        async def store(r: Redis) -> Any:
            pipe = r.pipeline(transaction=True)
            pipe.set(name, blob, px=ttl_ms)
            for tag in entry.tags:
                index = self.tag_key(tag)
                pipe.sadd(index, name)
                # An index outlives its longest entry: set a TTL on a new set, lengthen an older one.
                pipe.pexpire(index, ttl_ms, nx=True)
                pipe.pexpire(index, ttl_ms, gt=True)
            return await pipe.execute()

        await self.tier.call("set", store)

    async def evict_tags(self, tags: Iterable[str]) -> int:
        """Delete every shared entry carrying any of `tags`; how many. Raises `SharedUnavailable`."""
        keys = [self.tag_key(t) for t in sorted(set(tags))]
        if not keys:
            return 0
        deleted = await self.tier.call("evict", lambda r: self._evict(keys=keys))
        return int(deleted)
