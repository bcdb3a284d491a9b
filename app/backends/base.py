"""What the service layer needs from a vendor: the `Backend` protocol.

A backend speaks only normalized models (`app.domain.models`) and the error tree of `app.infra.errors`. It takes
*upstream* ids (the part after `<backend>:`), already checked with `is_valid_id`, and returns
normalized ids with its own prefix. It does no caching: the service caches what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from app.domain.models import Change, DailyConsumption, DeviceStatus, Meter, Reading

# Capability names, as `/backends` lists them.
METERS = "meters"
READINGS = "readings"
DAILY_CONSUMPTION = "consumption.daily"
DEVICE_STATUS = "device_status"
CHANGES = "changes"


@dataclass(frozen=True, slots=True)
class ChangesPage:
    items: list[Change]
    next_cursor: str | None
    """The backend's own resume token (the facade wraps it in a signed cursor); None when done."""


@dataclass(frozen=True, slots=True)
class AuthState:
    """What `/backends` may show about credentials: never a secret, only when the token ends."""

    authenticated: bool | None
    token_expires_at: datetime | None = None


@runtime_checkable
class Backend(Protocol):
    name: str
    """`iometer` or `waltero`: the id prefix."""
    mode: Literal["live", "sandbox"]
    capabilities: frozenset[str]
    daily_grain: Literal["meter", "backend"]
    """`backend`: one upstream call answers daily consumption for every meter of the backend, so the
    service always asks for all meters and filters (one upstream call serves any meter subset).
    `meter`: the cost grows with the meters asked, so the service asks for exactly those."""

    def is_valid_id(self, upstream_id: str) -> bool:
        """Whether `upstream_id` has the vendor's id format (checked before any upstream call)."""
        ...

    async def list_meters(self) -> list[Meter]:
        """Every meter the backend can see, in any order."""
        ...

    async def get_meter(self, upstream_id: str) -> Meter:
        """One meter; raises `NotFound`."""
        ...

    async def readings(
        self, upstream_meter_id: str, start: datetime, end: datetime, quantities: frozenset[str] | None, limit: int
    ) -> list[Reading]:
        """Readings with `start <= time < end` (aware UTC), ascending by (time, quantity).

        `quantities` None means all. Returns every reading in the window or at least `limit` of them
        (it may return more: the caller slices); fewer than `limit` means the window is exhausted.
        Energy in kWh, power in W, volume in m3. Raises `NotFound` for an unknown meter.
        """
        ...

    async def daily_consumption(
        self, upstream_meter_ids: frozenset[str] | None, start: date, end: date, tz: ZoneInfo
    ) -> list[DailyConsumption]:
        """One row per meter per local day in `[start, end)` of `tz` (every day present, ordered by
        meter_id, date). None means every meter. Raises `NotFound` if a named meter does not exist."""
        ...

    async def device_status(self, upstream_device_id: str) -> DeviceStatus:
        """Raises `NotFound`."""
        ...

    async def changes(self, since: datetime, limit: int, cursor: str | None) -> ChangesPage:
        """Corrections with `changed_at >= since`, ascending by (changed_at, id), at most `limit`.
        Backends without the `changes` capability raise `NotSupported`."""
        ...

    async def auth_state(self) -> AuthState:
        """Cheap: no upstream call."""
        ...

    async def check_ready(self) -> None:
        """Prove the backend can authenticate now (may log in); raises an `UpstreamError` if not."""
        ...

    async def aclose(self) -> None:
        """Release what the backend itself owns (not the injected httpx client)."""
        ...
