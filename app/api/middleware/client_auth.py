"""Client API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

The presented key is hashed first (SHA-256), then its digest is looked up in a dict of the configured
keys' digests: what the lookup's timing could depend on is the digest, which says nothing usable about
the key's content or length, and the cost stays one hash and one lookup however many keys there are.

Open paths need no key. With no keys configured the API is open (the factory allows that only in
sandbox mode or with `FACADE_ALLOW_ANONYMOUS=true`).

Each key has a label (`FACADE_API_KEYS=app1:KEY1,...`, see `app.infra.config.parse_api_keys`); the label of
the key a request presented goes to `scope["facade"]["client"]`, for the access log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.docs_ui import DOCS_PATHS
from app.api.problems import PROBLEM_JSON, problem_body

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", *DOCS_PATHS})
"""Paths served without a key: probes, metrics, the spec, and the docs pages with their assets."""
UNAUTHORIZED_DETAIL = "Send a valid API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."


class ClientAuth:
    def __init__(self, app: ASGIApp, keys: Iterable[tuple[str, str]]) -> None:
        """`keys`: (label, key) pairs."""
        self.app = app
        self._digests = {hashlib.sha256(key.encode()).digest(): label for label, key in keys}

    def _label_of(self, presented: bytes | None) -> str | None:
        """The label of the presented key, or None when it matches none."""
        if not presented:
            return None
        return self._digests.get(hashlib.sha256(presented).digest())

    def admit(self, scope: Scope) -> bool:
        """Whether the request may go on (an open path, no keys configured, or a valid key, whose label
        then goes to `scope["facade"]["client"]`)."""
        if not self._digests or scope["path"] in OPEN_PATHS:
            return True
        presented = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                presented = value.strip()
                break
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].strip()
                break
        label = self._label_of(presented)
        if label is None:
            return False
        scope.setdefault("facade", {})["client"] = label
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.admit(scope):
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
