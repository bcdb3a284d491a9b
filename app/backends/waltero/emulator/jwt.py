"""Real HS256 JSON Web Tokens for the sandbox's login (RFC 7519 compact form, hmac + sha256).

The emulator signs with its own secret and verifies signature and `exp` on every call, so the facade's
token handling meets the same rules as against Waltero's Cognito tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any


class InvalidToken(Exception):
    """Malformed, wrongly signed, or expired."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: dict[str, Any], secret: bytes) -> str:
    """`header.payload.signature`, each base64url without padding; HS256."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = _b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def decode(token: str, secret: bytes, *, now: float) -> dict[str, Any]:
    """The claims of a token this secret signed and whose `exp` is after `now`; raises `InvalidToken`."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        expected = hmac.new(secret, f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64url(signature_b64)):
            raise InvalidToken("bad signature")
        header = json.loads(_unb64url(header_b64))
        claims = json.loads(_unb64url(payload_b64))
    except (ValueError, binascii.Error) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        raise InvalidToken("unexpected header or claims")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise InvalidToken("no exp claim")
    if now >= exp:
        raise InvalidToken("token expired")
    return claims
