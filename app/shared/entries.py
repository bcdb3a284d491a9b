"""Cache entries in Redis: compact, schema-versioned, invalidated by generation counters.

A stored entry is one Redis string: a small JSON header (`created`, `fresh_until`, `stale_until` as
epoch seconds, `tags`, and the generation of each tag when it was loaded), a newline, then the value
as JSON written by a pydantic `TypeAdapter` (the same serializer the API uses, so a round trip gives
equal models). It lives in Redis until `stale_until` (its fresh plus stale-if-error window).

Keys are `<prefix>:e:{<version>:<kind>:<digest>}` (the flight's lock shares the hash tag):
- `version` is `SCHEMA_VERSION` plus a fingerprint of the value type's JSON schema, so a rolling
  upgrade that changes a model's shape reads nothing the old code wrote (and the reverse);
- `digest` is a SHA-256 of the cache key in a canonical form (frozensets sorted, dates in ISO form),
  identical in every process whatever its hash seed.

Invalidation (the pattern of Symfony's TagAwareAdapter): one hash `<prefix>:gen`, without a TTL, holds
a random generation token per tag (a meter id, `<backend>:*`) and `_seq`, which changes with every
bump. An entry records its tags' tokens; a reader compares them with the hash (`valid`), and a
correction replaces the tokens of the meters it touched (`bump`), so every copy in Redis is invalid at
once, whatever Redis evicted: an evicted entry is a miss, an evicted hash (or field) gets new tokens,
so it invalidates, never resurrects. The loader reads `_seq` before its vendor call and stores nothing
if it moved by the time the tokens are read (a correction landed during the load).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Generic, TypeVar, cast

from pydantic import TypeAdapter, ValidationError

from app.infra.timeutil import Clock
from app.shared.tier import RedisTier, SharedUnavailable

V = TypeVar("V")
SCHEMA_VERSION = 1
"""Bump when the envelope itself changes; value shapes are fingerprinted automatically."""

SEQ = "_seq"
"""The field of the generation hash that changes with every bump."""

_GENERATIONS = """
local out = {}
for i, field in ipairs(ARGV) do
  if i > 1 then
    local v = redis.call('HGET', KEYS[1], field)
    if not v then
      v = ARGV[1] .. i
      redis.call('HSET', KEYS[1], field, v)
    end
    out[i - 1] = v
  end
end
return out
"""
"""Each field's token, created (`<random><n>`) where missing: ARGV[1] is the random part."""

_BUMP = """
for i, field in ipairs(ARGV) do
  if i > 1 then redis.call('HSET', KEYS[1], field, ARGV[1] .. i) end
end
return #ARGV - 1
"""


@dataclass(frozen=True, slots=True)
class SharedEntry(Generic[V]):
    """A value with the times (epoch seconds, from the loading replica's clock) that govern it."""

    value: V
    created: float
    fresh_until: float
    stale_until: float
    tags: frozenset[str] = frozenset()
    generations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Each tag's generation token when the value was loaded (set when stored)."""
    missing: tuple[str, str | None] | None = None
    """A not-found answer (`value` is None): its detail and backend, so every replica answers 404
    without asking the vendor again."""


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
    Raises `TypeError` for a key part with no canonical form."""
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
            {
                "c": entry.created,
                "f": entry.fresh_until,
                "s": entry.stale_until,
                "t": sorted(entry.tags),
                "g": dict(entry.generations),
                **({"m": list(entry.missing)} if entry.missing is not None else {}),
            },
            separators=(",", ":"),
        )
        body = b"null" if entry.missing is not None else self.adapter.dump_json(entry.value)
        return header.encode() + b"\n" + body

    def decode(self, blob: bytes, now: float | None = None) -> SharedEntry[V]:
        """Raises `ValueError` for anything this version did not write, or whose times or numbers are
        not what it would write (`valid_times`, `valid_tags`, `finite_fields`): Redis is read as
        strictly as a vendor. `now` (epoch seconds) bounds `created`."""
        header, sep, body = blob.partition(b"\n")
        if not sep:
            raise ValueError("no envelope header")
        try:
            meta = json.loads(header)
            missing = meta.get("m")
            if missing is not None:
                detail, backend = missing
                if not isinstance(detail, str) or not isinstance(backend, str | None) or body != b"null":
                    raise TypeError("not-found record")
                missing = (detail, backend)
            value = cast(V, None) if missing is not None else finite_fields(self.adapter.validate_json(body))
            generations = meta["g"]
            if not isinstance(generations, dict) or len(generations) > MAX_TAGS:
                raise TypeError("generations")
            created, fresh_until, stale_until = valid_times(meta["c"], meta["f"], meta["s"], now)
            return SharedEntry(
                value,
                created,
                fresh_until,
                stale_until,
                valid_tags(meta["t"]),
                {str(k): str(v) for k, v in generations.items()},
                missing,
            )
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
    """Get, put and invalidate cache entries in Redis; every method degrades (see `RedisTier.call`)."""

    def __init__(self, tier: RedisTier, clock: Clock, *, max_entry_bytes: int = 1024 * 1024) -> None:
        self.tier = tier
        self.clock = clock
        self._clock = clock
        self._max_entry_bytes = max_entry_bytes
        self.generations_key = tier.key("gen")

    def group(self, kind: EntryKind[Any], key: Hashable) -> str:
        """The hash tag shared by an entry and its flight lock."""
        return f"{kind.version}:{kind.name}:{key_digest(key)}"

    def key(self, kind: EntryKind[Any], key: Hashable) -> str:
        return self.tier.slot_key("e", self.group(kind, key))

    async def get(self, kind: EntryKind[V], key: Hashable) -> SharedEntry[V] | None:
        """The entry if Redis holds one this version can read and no correction invalidated; raises
        `SharedUnavailable`."""
        blob: bytes | str | None = await self.tier.call(
            "get", lambda r: r.get(self.key(kind, key)), classify=lambda b: "hit" if b is not None else "miss"
        )
        if blob is None:
            return None
        try:
            entry = kind.decode(blob if isinstance(blob, bytes) else blob.encode(), self._clock())
        except ValueError:
            await self.drop_invalid(kind, key, "get")
            return None
        return entry if await self.valid(entry) else None

    async def drop_invalid(self, kind: EntryKind[Any], key: Hashable, operation: str) -> None:
        """Count an entry this code would not have written (`facade_shared_cache_operations_total
        {operation, outcome="corrupt"}`) and delete it, so the next load replaces it; never raises."""
        self.tier.note(operation, "corrupt")
        with contextlib.suppress(SharedUnavailable):
            await self.tier.call("delete_invalid", lambda r: r.delete(self.key(kind, key)))

    async def generations(self, tags: Iterable[str]) -> dict[str, str]:
        """The current token of each tag, created where missing; raises `SharedUnavailable`."""
        fields = sorted(set(tags))
        if not fields:
            return {}
        seed = os.urandom(8).hex() + ":"
        tokens: list[bytes | str] = await self.tier.call(
            "generations",
            lambda r: self.tier.script(_GENERATIONS)(keys=[self.generations_key], args=[seed, *fields]),
        )
        return {f: _text(t) for f, t in zip(fields, tokens, strict=True)}

    async def sequence(self) -> str:
        """The token that changes with every bump (read it before a load); raises `SharedUnavailable`."""
        return (await self.generations([SEQ]))[SEQ]

    async def valid(self, entry: SharedEntry[Any]) -> bool:
        """Whether no correction bumped a tag of `entry` since it was loaded; raises `SharedUnavailable`."""
        if not entry.tags:
            return True
        fields = sorted(entry.tags)
        if any(f not in entry.generations for f in fields):
            return False
        current: list[bytes | str | None] = await self.tier.call(
            "generations_check",
            lambda r: r.hmget(self.generations_key, fields),
            classify=lambda vs: "ok" if all(v is not None for v in vs) else "missing",
        )
        ok = all(v is not None and _text(v) == entry.generations[f] for f, v in zip(fields, current, strict=True))
        if not ok:
            self.tier.note("get", "invalidated")
        return ok

    async def bump(self, tags: Iterable[str]) -> int:
        """Invalidate every shared entry carrying any of `tags` (new tokens, and a new `_seq`); how many
        tags. Raises `SharedUnavailable`."""
        fields = sorted(set(tags))
        if not fields:
            return 0
        seed = os.urandom(8).hex() + ":"
        bumped = await self.tier.call(
            "bump", lambda r: self.tier.script(_BUMP)(keys=[self.generations_key], args=[seed, *fields, SEQ])
        )
        return int(bumped) - 1

    async def put(self, kind: EntryKind[V], key: Hashable, entry: SharedEntry[V], *, since: str | None) -> bool:
        """Store `entry` until its `stale_until` with its tags' current tokens, unless a bump happened
        after `since` (the `sequence()` read before the load; None: unknown, so not stored) or its
        encoding is larger than `max_entry_bytes`; whether it was stored. Raises `SharedUnavailable`."""
        ttl_ms = int((entry.stale_until - self._clock()) * 1000)
        if ttl_ms <= 0 or since is None:
            return False
        tokens = await self.generations([*entry.tags, SEQ])
        if tokens.pop(SEQ) != since:  # a correction during the load: the value may predate it
            self.tier.note("set", "raced")
            return False
        stamped = dataclasses.replace(entry, generations=tokens)
        blob = kind.encode(stamped)
        if len(blob) > self._max_entry_bytes:  # bounded like the in-process caches: served, not shared
            self.tier.note("set", "too_large")
            return False
        name = self.key(kind, key)
        await self.tier.call("set", lambda r: r.set(name, blob, px=ttl_ms))
        return True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
