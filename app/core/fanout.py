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
from typing import Any, Protocol, TypeVar

from app.domain.models import BackendError
from app.guard.provenance import Answer, Provenance
from app.infra.errors import FacadeError, UpstreamBadResponse

log = logging.getLogger("app.core.fanout")

T = TypeVar("T")


class Named(Protocol):
    @property
    def name(self) -> str: ...


B = TypeVar("B", bound=Named)
R = TypeVar("R")


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


async def gather_rows(
    backends: Sequence[B],
    fetch: Callable[[B], Awaitable[tuple[list[R], Provenance]]],
    order: Callable[[R], Any],
) -> Answer[list[R]]:
    """`fan_out` of a fetch answering (rows, provenance): every answering backend's rows in one list
    sorted by `order`, their provenance together, an error entry per failing backend."""
    good, errors = await fan_out(backends, fetch)
    answer: Answer[list[R]] = Answer([], errors=errors)
    for rows, provenance in good:
        answer.provenance.extend(provenance)
        answer.value.extend(rows)
    answer.value.sort(key=order)
    return answer
