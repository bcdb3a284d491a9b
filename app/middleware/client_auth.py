"""Client API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

Keys are compared as SHA-256 digests with `hmac.compare_digest` against every configured key, so
neither a key's content nor its length leaks through timing. Open paths need no key. With no keys
configured the API is open (the factory allows that only in sandbox mode or with
`FACADE_ALLOW_ANONYMOUS=true`).

Each key has a label (`FACADE_API_KEYS=app1:KEY1,...`, see `app.config.parse_api_keys`); the label of
the key a request presented goes to `scope["facade"]["client"]`, for the access log.
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
    def __init__(self, app: ASGIApp, keys: Iterable[tuple[str, str]]) -> None:
        """`keys`: (label, key) pairs."""
        self.app = app
        self._digests = [(label, hashlib.sha256(key.encode()).digest()) for label, key in keys]

    def _label_of(self, presented: bytes | None) -> str | None:
        """The label of the presented key, or None when it matches none."""
        if not presented:
            return None
        digest = hashlib.sha256(presented).digest()
        matched = None
        for label, known in self._digests:  # no early exit: every key is compared
            if hmac.compare_digest(digest, known):
                matched = label
        return matched

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
        label = self._label_of(presented)
        if label is not None:
            scope.setdefault("facade", {})["client"] = label
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
