"""What the service layer needs from a vendor: the `Backend` protocol.

A backend speaks only normalized models (`app.domain.models`) and the error tree of `app.infra.errors`. It takes
*upstream* ids (the part after `<backend>:`), already checked with `is_valid_id`, and returns
normalized ids with its own prefix. It does no caching: the service caches what it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable
from zoneinfo import ZoneInfo

from app.domain.models import Change, DailyConsumption, DeviceStatus, Meter, Reading

# Capability names, as `/backends` lists them.
METERS = "meters"
READINGS = "readings"
DAILY_CONSUMPTION = "consumption.daily"
DEVICE_STATUS = "device_status"
CHANGES = "changes"


T = TypeVar("T")


class SharedIndex(Protocol[T]):
    """An adapter's index (a listing it keeps to find things: IOmeter's installations, Waltero's
    organizations and devices) shared by the replicas of a fleet (`FACADE_REDIS_URL`): loaded once for
    the fleet, read back by the others. Neither method raises for the shared store: when it is
    unavailable, `load` runs `make` here, as a replica alone does."""

    async def load(self, make: Callable[[], Awaitable[T]], *, max_age: float, part: str = "") -> tuple[T, float]:
        """The index (or its `part`, e.g. one device's record) as loaded by any replica at most `max_age`
        seconds ago (and within the index's TTL), else from `make()`, run by one replica of the fleet at a
        time while the others wait for its result; with the epoch seconds it was loaded at. Raises what
        `make` raised."""
        ...

    async def publish(self, value: T, loaded_at: float, *, part: str = "") -> None:
        """Share an index this replica loaded anyway (a full listing asked for itself)."""
        ...


class IndexStore(Protocol):
    """Makes the shared indexes of one vendor account (`BackendContext.index_store(account)`)."""

    def __call__(
        self, name: str, value_type: Any, *, ttl: float, check: Callable[[Any], object] | None = None
    ) -> SharedIndex[Any]:
        """Index `name` holding values of `value_type` (anything pydantic can serialize), kept `ttl`
        seconds (its refresh age). `check(value)` raises `ValueError` for a value read back that this
        code would not have loaded: it is then dropped and reloaded, never served."""
        ...


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


# Optional capabilities: a backend that has one implements its protocol, and the service asks with
# `isinstance` (never `getattr`). Each is a cheaper or more exact path than the `Backend` default.


@runtime_checkable
class SerialLookup(Protocol):
    """A backend that finds meters by printed number itself (else the service filters its listing)."""

    async def meters_by_serial(self, serial_number: str) -> list[Meter]:
        """Exact matches of the printed number; empty when there is none."""
        ...


@runtime_checkable
class WindowedReadings(Protocol):
    """A backend whose whole-window read is cheaper than `readings` with a limit, and which can say
    where the next reading after the window is (days up to it are known empty)."""

    async def readings_window(
        self, upstream_meter_id: str, start: datetime, end: datetime
    ) -> tuple[list[Reading], datetime | None]:
        """Every reading of `[start, end)` (all registers), and the time of the first reading at or
        after `end` when the vendor showed it (else None)."""
        ...


@runtime_checkable
class RegisterValues(Protocol):
    """A backend that names which reading is a meter's cumulative register (the one its consumption
    derives from); without it the service takes `volume` (water, gas) or `energy_import` (the rest)."""

    def register_value(self, meter: Meter, reading: Reading) -> float | None:
        """The reading's value when it is the meter's cumulative register (kWh or m3), else None."""
        ...


@runtime_checkable
class ChunkedReadings(Protocol):
    """A backend whose readings are best cached in chunks of several days (the default is one UTC day)."""

    readings_chunk_days: int


@runtime_checkable
class DailyBySite(Protocol):
    """A backend whose vendor answers daily consumption for a whole site at once (Waltero: one call per
    organization). The service caches one entry per site and window and answers any subset of the
    site's meters from it, instead of one entry per asked meter set."""

    async def daily_sites(self, upstream_meter_ids: frozenset[str] | None) -> dict[str, frozenset[str] | None]:
        """Site id -> the asked upstream meter ids on it (None: every meter of the site). None asks for every
        site. Raises `NotFound` for a meter the backend does not have."""
        ...

    async def site_daily_consumption(self, site: str, start: date, end: date, tz: ZoneInfo) -> list[DailyConsumption]:
        """One row per meter of `site` per local day in `[start, end)` of `tz` (as `daily_consumption`)."""
        ...


# issue 21: late data
@runtime_checkable
class LateReadings(Protocol):
    """A backend whose vendor lists readings as it received them, some late, with no corrections feed
    to say so: a window's data may still change until `late_window` seconds after its end."""

    late_window: float
    on_late_readings: Callable[[set[str]], object] | None
    """Set by the service: called with facade meter ids when a read meets readings listed late that
    belong after its window (another window's, perhaps cached): the service evicts that meter's entries."""


def settled_at(backend: object, end: datetime) -> datetime:
    """When the data of a window ending at `end` stops changing: `end`, or later for `LateReadings`
    (so caching a window as past data waits for its late uploads)."""
    if isinstance(backend, LateReadings):
        return end + timedelta(seconds=backend.late_window)
    return end
