"""`SharedTokenStore`: one vendor login per token lifetime for the whole fleet.

The token, its expiry and its renewal time live in a Redis hash `<prefix>:token:{<account>}` that
expires with the token. `account` names the vendor account without revealing it (a digest of the
login URL and user name), so two configurations never share a token.

- `renew(held, login)`: a token other than `held` that is not yet due for renewal, from Redis if a
  peer already renewed, else by one `login()` under a fleet lock (peers wait for it, bounded by their
  budget, then log in on their own). Redis unavailable → `login()` locally.
- `invalidate(token)`: after a 401, drop the shared token, but only if it is still the one that was
  rejected (compare-and-delete): the first replica to see the 401 drops it, the others find a newer
  one, so a revoked token costs one login for the fleet.

Tokens are encrypted at rest with a key derived from the vendor credential (`TokenSeal`): a reader
of Redis (a backup, a `MONITOR`, another tenant of a managed instance) sees no usable token, and
replicas configured with another credential cannot read it. The seal is encrypt-then-MAC from the
standard library: an HMAC-SHA256 keystream in counter mode under a random 16-byte nonce, and an
HMAC-SHA256 tag over nonce and ciphertext. The compare-and-delete after a 401 compares a keyed
fingerprint, never the token. Still use `rediss://` and an ACL user limited to the prefix (README).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from app.infra.timeutil import Clock
from app.shared.locks import FleetLock
from app.shared.tier import RedisTier, SharedUnavailable

TokenSource = Literal["shared", "login", "local"]

_INVALIDATE = "if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class TokenSeal:
    """Encrypts and authenticates a token with keys derived from a vendor credential."""

    def __init__(self, credential: str) -> None:
        root = hashlib.sha256(b"meter-facade token seal\0" + credential.encode()).digest()
        self._enc = hmac.new(root, b"encrypt", hashlib.sha256).digest()
        self._mac = hmac.new(root, b"authenticate", hashlib.sha256).digest()

    def _stream(self, nonce: bytes, size: int) -> bytes:
        blocks = (size + 31) // 32
        return b"".join(
            hmac.new(self._enc, nonce + i.to_bytes(4, "big"), hashlib.sha256).digest() for i in range(blocks)
        )[:size]

    def seal(self, token: str) -> str:
        nonce = os.urandom(16)
        plain = token.encode()
        cipher = bytes(a ^ b for a, b in zip(plain, self._stream(nonce, len(plain)), strict=True))
        tag = hmac.new(self._mac, nonce + cipher, hashlib.sha256).digest()[:16]
        return base64.b64encode(nonce + cipher + tag).decode("ascii")

    def open(self, sealed: str) -> str:
        """The token; raises `ValueError` for anything this credential did not seal."""
        try:
            raw = base64.b64decode(sealed, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not a sealed token") from None
        if len(raw) < 33:
            raise ValueError("not a sealed token")
        nonce, cipher, tag = raw[:16], raw[16:-16], raw[-16:]
        if not hmac.compare_digest(tag, hmac.new(self._mac, nonce + cipher, hashlib.sha256).digest()[:16]):
            raise ValueError("sealed with another credential, or altered")
        return bytes(a ^ b for a, b in zip(cipher, self._stream(nonce, len(cipher)), strict=True)).decode()

    def fingerprint(self, token: str) -> str:
        """A keyed digest naming the token without revealing it (for compare-and-delete)."""
        return hmac.new(self._mac, b"fingerprint\0" + token.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SharedToken:
    token: str
    expires: float
    """Epoch seconds when the vendor stops accepting it."""
    renew_at: float
    """Epoch seconds from which a replica should renew it (a margin before `expires`)."""

    def __repr__(self) -> str:  # never the token
        return f"SharedToken(expires={self.expires}, renew_at={self.renew_at})"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- validation of what Redis returns (issue 22) ---------------------------------------------------

MAX_TOKEN_LIFETIME = 31 * 86400.0
"""No vendor token lives longer than this (they live hours); a record saying so is forged or corrupt."""
MAX_TOKEN_CHARS = 8192


def valid_token(fields: dict[str, str], now: float) -> SharedToken:
    """A token record as this code writes it: a printable ASCII token (it goes into an HTTP header),
    finite times, `renew_at <= expires`, `expires` within `MAX_TOKEN_LIFETIME` of `now`. Raises
    `ValueError` (or `KeyError` for a missing field) otherwise."""
    token = fields["token"]
    if not token or len(token) > MAX_TOKEN_CHARS or not (token.isascii() and token.isprintable()):
        raise ValueError("token is not a printable ASCII string")
    expires, renew_at = float(fields["expires"]), float(fields["renew_at"])
    if not (math.isfinite(expires) and math.isfinite(renew_at)):
        raise ValueError("token times are not finite")
    if not 0 < renew_at <= expires <= now + MAX_TOKEN_LIFETIME:
        raise ValueError("token times out of order or out of bounds")
    return SharedToken(token, expires, renew_at)


def account_name(*parts: str) -> str:
    """A non-secret, stable name for a vendor account (e.g. login URL and user name)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class SharedTokenStore:
    def __init__(
        self,
        tier: RedisTier,
        account: str,
        *,
        credential: str,
        clock: Clock,
        lock_ttl: float = 5.0,
        wait_share: float = 0.5,
        first_poll: float = 0.02,
        max_poll: float = 0.2,
    ) -> None:
        self.tier = tier
        # One hash tag: the token and its lock live in one Redis Cluster slot.
        self.key = tier.slot_key("token", account)
        self._lock_key = tier.slot_key("token-lock", account)
        self._seal = TokenSeal(credential)
        self._clock = clock
        self._lock_ttl = lock_ttl
        self._wait_share = wait_share
        self._first_poll = first_poll
        self._max_poll = max_poll

    async def get(self) -> SharedToken | None:
        """The shared token if one is stored; raises `SharedUnavailable`."""
        raw: dict[bytes | str, bytes | str] = await self.tier.call(
            "token_get", lambda r: r.hgetall(self.key), classify=lambda f: "hit" if f else "miss"
        )
        if not raw:
            return None
        try:
            fields = {_text(k): _text(v) for k, v in raw.items()}
            token = self._seal.open(fields["token"])
        except (KeyError, ValueError, UnicodeDecodeError):
            # sealed with another credential (a password being rotated across the fleet) or altered: not
            # ours to open, and not ours to delete (its owner's `invalidate` goes by fingerprint)
            self.tier.note("token_get", "corrupt")
            return None
        try:
            return valid_token({**fields, "token": token}, self._clock())
        except (KeyError, ValueError):
            # not a record this code writes: counted, dropped, and the next renewal logs in afresh
            self.tier.note("token_get", "corrupt")
            with contextlib.suppress(SharedUnavailable):
                await self.tier.call("token_drop_invalid", lambda r: r.delete(self.key))
            return None

    async def put(self, token: SharedToken) -> None:
        """Store `token` until it expires; raises `SharedUnavailable`."""
        ttl_ms = int((token.expires - self._clock()) * 1000)
        if ttl_ms <= 0:
            return

        async def store(r: Redis) -> list[object]:
            pipe = r.pipeline(transaction=True)
            pipe.hset(
                self.key,
                mapping={
                    "token": self._seal.seal(token.token),
                    "fp": self._seal.fingerprint(token.token),
                    "expires": repr(token.expires),
                    "renew_at": repr(token.renew_at),
                },
            )
            pipe.pexpire(self.key, ttl_ms)
            return await pipe.execute()

        await self.tier.call("token_set", store)

    async def invalidate(self, token: str) -> bool:
        """Drop the shared token if it is still `token`; whether this call dropped it. Never raises."""
        try:
            dropped = await self.tier.call(
                "token_invalidate",
                lambda r: self.tier.script(_INVALIDATE)(keys=[self.key], args=[self._seal.fingerprint(token)]),
                classify=lambda n: "dropped" if n else "already",
            )
        except SharedUnavailable:
            return False
        return bool(dropped)

    def _usable(self, found: SharedToken | None, held: str | None) -> bool:
        return found is not None and found.token != held and self._clock() < found.renew_at

    async def renew(
        self, held: str | None, login: Callable[[], Awaitable[SharedToken]], *, budget: float
    ) -> tuple[SharedToken, TokenSource]:
        """A usable token other than `held` (`shared`), else one from `login()` done once for the fleet
        (`login`), or by this replica alone (`local`) when Redis is down or answers with an error, or
        when the peer's login or Redis's answers outlast `wait_share * budget` seconds. Raises what
        `login()` raised."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + max(0.0, budget * self._wait_share)
        lock = FleetLock(self.tier, self._lock_key, ttl=self._lock_ttl, operation="token_lock")
        poll = self._first_poll
        while True:
            try:
                found = await self.get()
                if found is not None and self._usable(found, held):
                    return found, "shared"
                if await lock.acquire():
                    async with lock.renewed():
                        found = await self.get()  # a peer may have finished between our read and the lock
                        if found is not None and self._usable(found, held):
                            return found, "shared"
                        token = await login()
                        with contextlib.suppress(SharedUnavailable):
                            await self.put(token)
                        return token, "login"
            except SharedUnavailable as exc:
                if not exc.timed_out or not self.tier.available:
                    return await login(), "local"
                # No answer in time, but Redis is not known to be down (a busy moment): ask again within
                # the wait, rather than log in beside the fleet at the first slow command.
            remaining = give_up - loop.time()
            if remaining <= 0:
                self.tier.note("token_wait", "deadline")
                return await login(), "local"
            await asyncio.sleep(min(poll, remaining))
            poll = min(poll * 2, self._max_poll)
