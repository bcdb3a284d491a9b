"""An in-memory `Backend` for testing the service and HTTP layers without a vendor.

Deterministic data, a call counter per operation, an injectable failure, and an optional gate that
holds every call until released (to test coalescing).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from app.backends.base import CHANGES, DAILY_CONSUMPTION, DEVICE_STATUS, METERS, READINGS, AuthState, ChangesPage
from app.domain.models import Change, DailyConsumption, DeviceStatus, Meter, Reading
from app.infra.errors import NotFound, NotSupported
from app.infra.timeutil import days, local_midnight

UUID_NS = uuid.UUID("00000000-0000-0000-0000-000000000000")


def fake_uuid(*parts: object) -> str:
    return str(uuid.uuid5(UUID_NS, "/".join(map(str, parts))))


class FakeBackend:
    mode: Literal["live", "sandbox"] = "live"
    daily_grain: Literal["meter", "backend"] = "backend"

    def __init__(self, name: str, *, meters: int = 3, changes: bool = False, grain: str = "backend") -> None:
        self.name = name
        self.capabilities = frozenset(
            {METERS, READINGS, DAILY_CONSUMPTION, DEVICE_STATUS} | ({CHANGES} if changes else set())
        )
        self.daily_grain = grain  # type: ignore[assignment]
        self.meter_ids = [fake_uuid(name, "meter", i) for i in range(meters)]
        self.calls: Counter[str] = Counter()
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.change_log: list[Change] = []

    def is_valid_id(self, upstream_id: str) -> bool:
        try:
            return str(uuid.UUID(upstream_id)) == upstream_id
        except ValueError:
            return False

    async def _enter(self, op: str) -> None:
        self.calls[op] += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail

    def _meter(self, upstream: str) -> Meter:
        return Meter(
            id=f"{self.name}:{upstream}",
            backend=self.name,
            serial_number=f"SN-{upstream[:8]}",  # type: ignore[arg-type]
            name=None,
            medium="electricity",
            unit="kWh",
            site_id=None,
            device_id=f"{self.name}:{upstream}",
        )

    async def list_meters(self) -> list[Meter]:
        await self._enter("list_meters")
        return [self._meter(m) for m in self.meter_ids]

    async def get_meter(self, upstream_id: str) -> Meter:
        await self._enter("get_meter")
        if upstream_id not in self.meter_ids:
            raise NotFound("no such meter", backend=self.name)
        return self._meter(upstream_id)

    async def readings(self, upstream_meter_id, start, end, quantities, limit):  # type: ignore[no-untyped-def]
        await self._enter("readings")
        if upstream_meter_id not in self.meter_ids:
            raise NotFound("no such meter", backend=self.name)
        out: list[Reading] = []
        t = datetime.fromtimestamp((int(start.timestamp()) + 899) // 900 * 900, UTC)
        while t < end and len(out) < limit:
            hours = (t - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds() / 3600
            for quantity, value, unit in (("energy_import", 1000 + hours * 0.5, "kWh"), ("power", 500.0, "W")):
                if quantities is None or quantity in quantities:
                    out.append(
                        Reading(
                            meter_id=f"{self.name}:{upstream_meter_id}",
                            time=t,
                            quantity=quantity,
                            obis=None,
                            value=value,
                            unit=unit,
                        )
                    )
            t += timedelta(minutes=15)
        return out

    async def daily_consumption(self, upstream_meter_ids, start: date, end: date, tz: ZoneInfo):  # type: ignore[no-untyped-def]
        await self._enter("daily_consumption")
        ids = sorted(upstream_meter_ids) if upstream_meter_ids else self.meter_ids
        for m in ids:
            if m not in self.meter_ids:
                raise NotFound("no such meter", backend=self.name)
        rows = []
        for m in sorted(ids):
            for d in days(start, end):
                hours = (local_midnight(d + timedelta(days=1), tz) - local_midnight(d, tz)).total_seconds() / 3600
                rows.append(
                    DailyConsumption(
                        meter_id=f"{self.name}:{m}",
                        date=d,
                        consumption=hours * 0.5,
                        unit="kWh",
                        complete=True,
                        source="upstream",
                    )
                )
        return rows

    async def device_status(self, upstream_device_id: str) -> DeviceStatus:
        await self._enter("device_status")
        if upstream_device_id not in self.meter_ids:
            raise NotFound("no such device", backend=self.name)
        return DeviceStatus(
            device_id=f"{self.name}:{upstream_device_id}",
            backend=self.name,  # type: ignore[arg-type]
            online=True,
            last_seen=None,
            battery_percent=80,
            battery_voltage=3.6,
            power_source="battery",
            rssi_dbm=-70.0,
            details={},
        )

    async def changes(self, since, limit, cursor):  # type: ignore[no-untyped-def]
        await self._enter("changes")
        if CHANGES not in self.capabilities:
            raise NotSupported("no changes", backend=self.name)
        rows = [c for c in self.change_log if c.changed_at >= since]
        offset = int(cursor or 0)
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        return ChangesPage(items=page, next_cursor=str(offset + limit) if more else None)

    async def auth_state(self) -> AuthState:
        return AuthState(authenticated=True, token_expires_at=None)

    async def check_ready(self) -> None:
        await self._enter("check_ready")

    async def aclose(self) -> None:
        return None
