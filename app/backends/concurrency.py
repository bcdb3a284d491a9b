"""Concurrent vendor calls for the adapters: all of them, or the first failure, never a half-run mess."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


async def gather_first_error(calls: Sequence[Awaitable[T]], limit: asyncio.Semaphore | None = None) -> list[T]:
    """Run `calls` concurrently (at most `limit` at a time); on the first failure cancel the rest and
    raise that failure itself (not an ExceptionGroup). Calls cancelled before they started are closed,
    so a failure never leaves coroutines that were never awaited."""

    async def run(call: Awaitable[T]) -> T:
        if limit is None:
            return await call
        async with limit:
            return await call

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(call)) for call in calls]
    except asyncio.CancelledError:  # the caller left: the calls still waiting for `limit` never start
        _close_unstarted(calls)
        raise
    except BaseExceptionGroup as failures:
        _close_unstarted(calls)
        first: BaseException = failures
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


def _close_unstarted(calls: Sequence[Awaitable[Any]]) -> None:
    for call in calls:
        if inspect.iscoroutine(call) and inspect.getcoroutinestate(call) == inspect.CORO_CREATED:
            call.close()


async def both(a: Awaitable[Any], b: Awaitable[Any]) -> tuple[Any, Any]:
    """Two calls at once; the first failure cancels the other and is raised as itself."""
    first, second = await gather_first_error([a, b])
    return first, second
