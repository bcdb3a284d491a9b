"""IOmeter partner authentication as `httpx.Auth` flows: WSSE (the default) and Basic.

Both schemes put the partner secret, or a digest of it, into the `Authorization` header of each
request. WSSE is computed anew for every request, retries included: a fresh 16-byte nonce and a
fresh `Created` time, because the server refuses a nonce it has seen and a `Created` more than
300 s away from its clock. Neither object ever shows its secret in `repr`/`str`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Generator
from datetime import UTC, datetime

import httpx
from pydantic import SecretStr

from app.infra.timeutil import Clock, format_rfc3339_seconds

NonceSource = Callable[[], bytes]


def wsse_created(epoch_seconds: float) -> str:
    """`Created` as the server wants it: UTC RFC 3339 to the second, `Z` suffix."""
    return format_rfc3339_seconds(datetime.fromtimestamp(int(epoch_seconds), UTC))


def wsse_digest(nonce: str, created: str, secret: str) -> str:
    """`PasswordDigest` = base64( hex( sha256(nonce + created + secret) ) ).

    The hex step is the vendor's: the base64 encodes the 64 hex characters, not the 32 raw bytes."""
    hex_digest = hashlib.sha256((nonce + created + secret).encode()).hexdigest()
    return base64.b64encode(hex_digest.encode("ascii")).decode("ascii")


def wsse_header(partner_id: str, secret: str, *, nonce: str, created: str) -> str:
    """The whole `Authorization` value for one request."""
    digest = wsse_digest(nonce, created, secret)
    return f'UsernameToken Username="{partner_id}", PasswordDigest="{digest}", Nonce="{nonce}", Created="{created}"'


def basic_header(partner_id: str, secret: str) -> str:
    """`Basic base64("<partner_id>:<partner_secret>")`."""
    return "Basic " + base64.b64encode(f"{partner_id}:{secret}".encode()).decode("ascii")


class WsseAuth(httpx.Auth):
    """WSSE UsernameToken auth. `clock` gives epoch seconds; `nonce_source` 16 random bytes."""

    def __init__(
        self,
        partner_id: str,
        secret: SecretStr,
        *,
        clock: Clock,
        nonce_source: NonceSource = lambda: os.urandom(16),
    ) -> None:
        self.partner_id = partner_id
        self._secret = secret
        self._clock = clock
        self._nonce_source = nonce_source

    def header(self) -> str:
        """A new header value: new nonce, new `Created`."""
        nonce = self._nonce_source().hex()
        return wsse_header(
            self.partner_id, self._secret.get_secret_value(), nonce=nonce, created=wsse_created(self._clock())
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header()
        yield request

    def __repr__(self) -> str:
        return f"WsseAuth(partner_id={self.partner_id!r})"


class BasicAuth(httpx.Auth):
    """Basic auth with the partner id and secret (the secret travels on every request)."""

    def __init__(self, partner_id: str, secret: SecretStr) -> None:
        self.partner_id = partner_id
        self._secret = secret

    def header(self) -> str:
        return basic_header(self.partner_id, self._secret.get_secret_value())

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header()
        yield request

    def __repr__(self) -> str:
        return f"BasicAuth(partner_id={self.partner_id!r})"
