"""Per-request context shared by the HTTP front and the upstream transport.

Context variables live here, below both: the middleware sets them, the transport and the retry loop
read them, and neither imports the other. asyncio copies the context into each task, so a coalesced
load started by one request reports to that request only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

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
