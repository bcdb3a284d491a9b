"""Run one operation on several backends at once and keep what answered.

One backend failing becomes its own `errors` entry and the others' answers are kept; every backend
failing raises the most telling error. An unexpected exception (a bug, not a vendor failure) in one
backend is logged once with its traceback and becomes that backend's 502 entry: it must not take the
other vendors' answers down with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from app.errors import FacadeError, UpstreamBadResponse
from app.models import BackendError

log = logging.getLogger("app.fanout")

T = TypeVar("T")


class Named(Protocol):
    @property
    def name(self) -> str: ...


B = TypeVar("B", bound=Named)


async def fan_out(backends: Sequence[B], fetch: Callable[[B], Awaitable[T]]) -> tuple[list[T], list[BackendError]]:
    """`fetch` on every backend at once: (the answers in backend order, an error entry per failure)."""
    results = await asyncio.gather(*(fetch(b) for b in backends), return_exceptions=True)
    good: list[T] = []
    failures: list[tuple[str, FacadeError]] = []
    for backend, result in zip(backends, results, strict=True):
        if isinstance(result, FacadeError):
            failures.append((backend.name, result))
        elif isinstance(result, asyncio.CancelledError):
            raise result
        elif isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            log.error(
                "unexpected error in a backend",
                exc_info=result,
                extra={"fields": {"backend": backend.name}},
            )
            failures.append(
                (backend.name, UpstreamBadResponse(f"{backend.name} failed unexpectedly.", backend=backend.name))
            )
        else:
            good.append(result)
    if not good and failures:
        raise max((f for _, f in failures), key=lambda e: (e.status == 503, e.status))
    errors = [BackendError(backend=name, status=e.status, title=e.title, detail=e.detail) for name, e in failures]
    return good, errors
