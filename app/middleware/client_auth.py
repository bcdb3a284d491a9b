"""Client API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

Keys are compared as SHA-256 digests with `hmac.compare_digest` against every configured key, so
neither a key's content nor its length leaks through timing. Open paths need no key. With no keys
configured the API is open (the factory allows that only in sandbox mode or with
`FACADE_ALLOW_ANONYMOUS=true`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.docs_ui import DOCS_PATHS
from app.problems import PROBLEM_JSON, problem_body

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", *DOCS_PATHS})
"""Paths served without a key: probes, metrics, the spec, and the docs pages with their assets."""
UNAUTHORIZED_DETAIL = "Send a valid API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."


class ClientAuth:
    def __init__(self, app: ASGIApp, keys: Iterable[str]) -> None:
        self.app = app
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def _accepted(self, presented: bytes | None) -> bool:
        if not presented:
            return False
        digest = hashlib.sha256(presented).digest()
        ok = False
        for known in self._digests:  # no early exit: every key is compared
            ok |= hmac.compare_digest(digest, known)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._digests or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                presented = value.strip()
                break
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].strip()
                break
        if self._accepted(presented):
            await self.app(scope, receive, send)
            return
        body = problem_body(401, "Unauthorized", UNAUTHORIZED_DETAIL, type_="/problems/unauthorized")
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", b"%d" % len(body)),
                    (b"www-authenticate", b'Bearer realm="meter-facade"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
