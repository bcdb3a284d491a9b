"""Redaction by derivation: what the logs and the doctor blank out.

A secret rarely leaks as itself. A vendor that echoes the request's `Authorization` header in an error
text shows `Basic <base64 of id:secret>`; WSSE shows a `PasswordDigest`; a bearer token is a secret of
its own. So `Redactor` blanks, in any text:

- every configured secret, and every form it takes on the wire: base64 (standard and URL-safe) at each
  of the three alignments it can have inside a longer base64 string (so `base64("partner:secret")` loses
  every character that depends on the secret), and percent-encoded;
- credentials by their shape, whatever secret made them: the value after `Basic` / `Bearer`, WSSE's
  `PasswordDigest` and `Nonce`, and JWT-shaped tokens (`eyJ….….…`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "[redacted]"
MIN_SECRET_CHARS = 4
"""Shorter configured values are not blanked (they would blank ordinary words)."""

_CREDENTIAL_SHAPES = re.compile(
    r"(?i)(?P<scheme>\b(?:basic|bearer)\s+)(?P<token>[A-Za-z0-9+/=._~-]{8,})"
    r"|(?P<wsse>\b(?:passworddigest|nonce)\s*=\s*\\?[\"']?)[A-Za-z0-9+/=]{6,}"
    r"|\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
)
_NOT_A_WORD = re.compile(r"[0-9+/=._~-]|.[A-Z]")
"""A credential after `Basic`/`Bearer` has a digit, a symbol or an inner capital; a word of prose
("basic authentication") has none and is left alone."""


def _base64_forms(secret: bytes) -> set[str]:
    """The characters of `base64(prefix + secret + suffix)` that depend only on `secret`, for each
    alignment of `secret` (prefix length mod 3), in both alphabets."""
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret).decode().rstrip("=")
        start = (offset * 8 + 5) // 6  # characters holding prefix bits
        end = (offset + len(secret)) * 8 // 6  # the last whole character of the secret's bits
        middle = encoded[start:end]
        if len(middle) >= MIN_SECRET_CHARS:
            forms.add(middle)
            forms.add(middle.replace("+", "-").replace("/", "_"))
    return forms


def derived_forms(secret: str) -> set[str]:
    """`secret` and the strings it becomes on the wire (base64 at any alignment, percent-encoding)."""
    if len(secret) < MIN_SECRET_CHARS:
        return set()
    forms = {secret, quote(secret, safe=""), *_base64_forms(secret.encode())}
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


class Redactor:
    """Blanks secrets, their derived forms and credential shapes from a text (see the module doc)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms |= derived_forms(secret)
        # longest first, so a form inside a longer one never leaves the rest of the longer one behind
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return _CREDENTIAL_SHAPES.sub(_mask_shape, text)


def _mask_shape(match: re.Match[str]) -> str:
    if match.group("scheme"):
        if not _NOT_A_WORD.search(match.group("token")):
            return match.group(0)
        return match.group("scheme") + MASK
    return (match.group("wsse") or "") + MASK
