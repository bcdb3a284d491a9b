"""What the live hub needs from the rest of the service, and nothing more.

The hub never sees `MeterService` or a `Backend`: it gets a `Resolve` (meter id → where its stream
comes from), a `History` (readings of one meter in a window, for resume and catch-up) and one
`LiveSource` per backend that can stream. `wiring.py` binds them to the service.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.domain.models import Reading
from app.infra.errors import FacadeError


@dataclass(frozen=True, slots=True)
class LiveTarget:
    """Where one meter's live readings come from."""

    backend: str
    """`iometer`, `waltero`: picks the `LiveSource`."""
    meter_id: str
    """The facade id (`<backend>:<upstream id>`), as the readings of the stream carry it."""
    upstream_id: str
    site_id: str | None
    """The facade site id (`iometer:<installation>`, `waltero:<organization>`), when known."""


@dataclass(frozen=True, slots=True)
class Connected:
    """Yielded by `LiveSource.stream` once the upstream accepted the subscription (or answered its
    first poll, after that poll's points): everything yielded after it is live."""


CONNECTED = Connected()


class LiveSource(Protocol):
    """One backend's live readings. `stream` ends only by raising (upstream trouble): the hub then
    reports `reconnecting`, backs off with jitter, calls `stream` again and catches up from history."""

    name: str
    resumable: bool
    """True when `stream(key, since)` itself delivers everything after `since` (a poller): the hub
    then needs no history call to catch up after a reconnect."""

    def channel_key(self, target: LiveTarget) -> str:
        """The upstream stream a meter's readings arrive on (IOmeter: its installation; Waltero: the
        device itself). Meters with the same key share one upstream stream."""
        ...

    def stream(self, key: str, since: datetime | None) -> AsyncIterator[Connected | Sequence[Reading]]:
        """`CONNECTED` once live, then normalized readings (facade units, facade ids) as they arrive,
        ascending by time per meter; a reading may repeat (the hub drops what it has sent)."""
        ...


Resolve = Callable[[str], Awaitable[LiveTarget]]
"""Meter id → `LiveTarget`. Raises the usual `FacadeError`s: `NotFound` (404), `InvalidRequest` (422),
`NotSupported` (501, a backend without a `LiveSource`)."""

History = Callable[[str, datetime, datetime], Awaitable[list[Reading]]]
"""`(meter_id, start, end)` → every reading of the meter with `start <= time < end`, any order, all
quantities, normalized as `/readings` serves them. Raises `FacadeError`s."""


class LiveOverloaded(FacadeError):
    """`FACADE_LIVE_MAX_CLIENTS` streams are open on this replica."""

    status, title, slug = 503, "Overloaded", "overloaded"

    def __init__(self, detail: str, *, retry_after: float = 5.0) -> None:
        super().__init__(detail)
        self.retry_after = float(math.ceil(retry_after))
