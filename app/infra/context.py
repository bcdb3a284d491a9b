"""Per-request context shared by the HTTP front and the upstream transport.

Context variables live here, below both: the middleware sets them, the transport and the retry loop
read them, and neither imports the other. asyncio copies the context into each task, so a coalesced
load started by one request reports to that request only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The request id the front assigned (or accepted from `X-Request-ID`); forwarded to the vendors."""

upstream_calls_var: ContextVar[list[int] | None] = ContextVar("upstream_calls", default=None)
"""A one-element counter of upstream calls made for the current request."""

current_operation: ContextVar[str] = ContextVar("current_operation", default="other")
"""The facade operation an upstream call serves (`readings`, `daily_consumption`, ...): a metric label."""

current_attempt: ContextVar[int] = ContextVar("current_attempt", default=1)
"""Which attempt of a retried call is being sent (1 = first): for the upstream call log."""


@contextlib.contextmanager
def upstream_operation(name: str) -> Iterator[None]:
    """Label every upstream request made inside the block with `name`."""
    token = current_operation.set(name)
    try:
        yield
    finally:
        current_operation.reset(token)


@dataclass(slots=True)
class RequestInfo:
    """What the layers of one HTTP request tell its access-log line and metrics. The front puts one
    in the ASGI scope (`request_info(scope)`); each layer fills in what it knows."""

    route: str | None = None
    """The route template when no FastAPI route matched (a page served by the front itself, a hit)."""
    cache: str | None = None
    """`HIT`, `MISS` or `STALE`."""
    client: str | None = None
    """The label of the API key presented (never the key)."""
    invalid_fields: list[str] | None = None
    """A 422's field names (never their values)."""
    status: int | None = None
    """A status recorded for a request that sent none (499: the client left before the answer)."""
    negotiated: bool = False
    """The route picks its representation by `Accept`/`format`, so its answers carry `Vary: Accept`."""


def request_info(scope: MutableMapping[str, Any]) -> RequestInfo:
    """The request's `RequestInfo`, created on first use."""
    info = scope.get("facade")
    if info is None:
        info = scope["facade"] = RequestInfo()
    return info  # type: ignore[no-any-return]


Answered = tuple[int, list[tuple[bytes, bytes]], bytes]
"""A complete answer from stored bytes: (status, headers, body)."""


@runtime_checkable
class Answers(Protocol):
    """A front layer that can take part in the fast path: `answer(scope)` adds the layer's own
    condition and asks the layer below, returning a stored answer or None (then the request goes
    through the layers as usual)."""

    def answer(self, scope: MutableMapping[str, Any]) -> Answered | None: ...


def answer_of(app: object) -> Answers | None:
    """`app` when it can take part in the fast path, else None."""
    return app if isinstance(app, Answers) else None
