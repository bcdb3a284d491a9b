"""Opaque, tamper-checked pagination cursors.

A cursor is `base64url(json) . base64url(hmac-sha256)[:16 bytes]`, signed with
`FACADE_CURSOR_SECRET` (else, with `FACADE_REDIS_URL`, a key shared by the replicas through Redis;
else a per-process random key, so cursors then die with the process) and bound
to the query that made it: a cursor from another query, a forged one or a garbled one is a 422.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from typing import Any

from app.infra.errors import InvalidRequest


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, secret: bytes | None = None) -> None:
        self._key = secret or os.urandom(32)
        self._previous: list[bytes] = []

    @property
    def key(self) -> bytes:
        """The key cursors are signed with now."""
        return self._key

    def adopt(self, secret: bytes, also_valid: Iterable[bytes] = ()) -> None:
        """Sign with `secret` from now on (the fleet's shared key, obtained after startup); cursors
        already handed out under the old key, or under one of `also_valid` (keys other replicas
        signed with recently), keep working."""
        older = [self._key] if secret != self._key else []
        keep: list[bytes] = []
        for k in (*older, *self._previous, *also_valid):
            if k != secret and k not in keep:
                keep.append(k)
        self._previous = keep[:6]
        self._key = secret

    def _mac(self, scope: str, payload: bytes, key: bytes | None = None) -> bytes:
        return hmac.new(key or self._key, scope.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]

    def _valid(self, scope: str, payload: bytes, given: bytes) -> bool:
        return any(hmac.compare_digest(given, self._mac(scope, payload, k)) for k in (self._key, *self._previous))

    def encode(self, scope: str, state: dict[str, Any]) -> str:
        """`scope` names the query (route and filters) the cursor belongs to."""
        payload = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{_b64(self._mac(scope, payload))}"

    def decode(self, scope: str, cursor: str) -> dict[str, Any]:
        """The state given to `encode`; raises `InvalidRequest` (422) for anything else."""
        bad = InvalidRequest("cursor is not valid for this query: pass back next_cursor unchanged", field="cursor")
        if len(cursor) > 4096 or cursor.count(".") != 1:
            raise bad
        body, mac = cursor.split(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise bad from None
        if not self._valid(scope, payload, given):
            raise bad
        try:
            state = json.loads(payload)
        except ValueError:
            raise bad from None
        if not isinstance(state, dict):
            raise bad
        return state
