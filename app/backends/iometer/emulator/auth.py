"""The emulator's side of IOmeter auth: check WSSE and Basic headers as UPSTREAMS.md pins them.

Written independently of the adapter's `WsseAuth` (only the rules are shared), so that a mistake in
one is not silently mirrored by the other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import re
from collections.abc import Mapping

from app.infra.timeutil import parse_rfc3339

WINDOW = 300.0
"""Seconds a WSSE `Created` may be away from the server clock; also how long a nonce is remembered."""

_PARAM = re.compile(r'\s*(\w+)="([^"]*)"\s*(?:,|$)')
_NONCE = re.compile(r"[0-9a-f]{32}")
_CREATED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


class NonceStore:
    """Nonces seen within the window. Bounded: entries expire with the window, and beyond
    `max_entries` the oldest are dropped (a flood cannot grow it without bound)."""

    def __init__(self, window: float = WINDOW, max_entries: int = 100_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def _expire(self, now: float) -> None:
        while self._heap and (self._heap[0][0] <= now or len(self._expiry) > self.max_entries):
            expiry, nonce = heapq.heappop(self._heap)
            if self._expiry.get(nonce) == expiry:
                del self._expiry[nonce]

    def seen(self, nonce: str, now: float) -> bool:
        self._expire(now)
        return nonce in self._expiry

    def add(self, nonce: str, now: float, created: float | None = None) -> None:
        # A header stays acceptable until `created + window` (Created may run ahead of our clock), so
        # its nonce must be remembered at least that long or the header could be replayed.
        expiry = max(now, created if created is not None else now) + self.window
        self._expiry[nonce] = expiry
        heapq.heappush(self._heap, (expiry, nonce))
        self._expire(now)


def expected_digest(nonce: str, created: str, secret: str) -> str:
    text = (nonce + created + secret).encode()
    return base64.b64encode(hashlib.sha256(text).hexdigest().encode()).decode()


class Authenticator:
    """Decides whether an `Authorization` value identifies a partner. `check` returns the partner id,
    or None with a reason (reasons are for the emulator's stats, never sent to the client)."""

    def __init__(self, secrets: Mapping[str, str], nonces: NonceStore) -> None:
        self._secrets = secrets
        self._nonces = nonces

    def check(self, header: str | None, now: float) -> tuple[str | None, str]:
        if not header:
            return None, "missing"
        scheme, _, rest = header.partition(" ")
        if scheme == "Basic":
            return self._basic(rest.strip())
        if scheme == "UsernameToken":
            return self._wsse(rest, now)
        return None, "scheme"

    def _basic(self, token: str) -> tuple[str | None, str]:
        try:
            decoded = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, "malformed"
        partner_id, sep, secret = decoded.partition(":")
        expected = self._secrets.get(partner_id)
        if not sep or expected is None:
            return None, "unknown_partner"
        if not hmac.compare_digest(secret.encode(), expected.encode()):
            return None, "bad_secret"
        return partner_id, "ok"

    def _wsse(self, rest: str, now: float) -> tuple[str | None, str]:
        params: dict[str, str] = {}
        position = 0
        while position < len(rest):
            match = _PARAM.match(rest, position)
            if not match or match.group(1) in params:
                return None, "malformed"
            params[match.group(1)] = match.group(2)
            position = match.end()
        if set(params) != {"Username", "PasswordDigest", "Nonce", "Created"}:
            return None, "malformed"
        partner_id, digest, nonce, created = (
            params["Username"],
            params["PasswordDigest"],
            params["Nonce"],
            params["Created"],
        )
        if not _NONCE.fullmatch(nonce) or not _CREATED.fullmatch(created):
            return None, "malformed"
        secret = self._secrets.get(partner_id)
        if secret is None:
            return None, "unknown_partner"
        try:
            created_at = parse_rfc3339(created).timestamp()
        except ValueError:
            return None, "malformed"
        if abs(created_at - now) > self._nonces.window:
            return None, "stale"
        if not hmac.compare_digest(digest.encode(), expected_digest(nonce, created, secret).encode()):
            return None, "bad_digest"
        if self._nonces.seen(nonce, now):
            return None, "replay"
        self._nonces.add(nonce, now, created_at)
        return partner_id, "ok"
