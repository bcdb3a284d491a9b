"""What the Waltero emulator puts on the wire, written from the vendor's page (`waltero-metering-api.txt`)
and UPSTREAMS.md's pinned shapes, independently of the adapter's `app.backends.waltero.shapes`.

The emulator must be able to disagree with the adapter: a misreading in the adapter's shape module then
fails a test instead of passing twice. So nothing here imports the adapter; names are spelled as the
page spells them (camelCase in the metering application, snake_case in platform-api).

The records are plain frozen dataclasses with a `to_wire()` giving the JSON object as served.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from app.infra.timeutil import parse_rfc3339

# --- paths, as the page's curl examples spell them ---------------------------------------------------
LOGIN = "/api/auth/login"
ME = "/api/auth/me"
DAILY = "/api/organizations/{org_id}/applications/metering/v3/data/device-daily-consumption"
DEVICES = "/api/organizations/{org_id}/devices"
DEVICE = "/api/devices/{device_id}"
TELEMETRY = "/api/devices/{device_id}/telemetry"
FIELDS = "/api/devices/{device_id}/fields"
AUDIT = "/api/organizations/{org_id}/data-audit/changes"

# --- telemetry field names (the page's examples) -------------------------------------------------------
PROCESSED = "meter.value.processed"
RAW = "meter.value.raw"
BATTERY_VOLTAGE = "battery.voltage"
BATTERY_PERCENT = "battery.percent"
RSSI = "connection.rssi"
LAST_SEEN = "connection.last_seen"
TEMPERATURE = "meta.temperature"

RESOLUTIONS = ("day", "week", "month", "year")
ACTORS = ("system", "user")

# The page's error table.
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
}


def error_body(status: int, message: str) -> dict[str, str]:
    code = ERROR_CODES.get(status) or ("INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    return {"code": code, "message": message}


_QUERY_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)$")


def parse_query_time(text: str) -> datetime:
    """`startDate`/`endDate`/`since`: UTC ISO-8601 (the page: `2026-05-18T22:00:00.000Z`)."""
    if not _QUERY_TIME.match(text):
        raise ValueError("not a UTC ISO-8601 timestamp")
    return parse_rfc3339(text)


def wire_time(value: datetime) -> str:
    """UTC with milliseconds and `Z`, as the page writes timestamps: `2026-05-18T22:00:00.000Z`."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Device:
    """A device record of platform-api (snake_case)."""

    id: str
    name: str
    serial_number: str
    external_id: str
    meter_type: str
    unit: str
    multiplier: float
    organization_id: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "serial_number": self.serial_number,
            "external_id": self.external_id,
            "meter_type": self.meter_type,
            "unit": self.unit,
            "multiplier": self.multiplier,
            "organization_id": self.organization_id,
        }


@dataclass(frozen=True, slots=True)
class TelemetryPoint:
    """`{"timestamp", "<field>": value, ...}`: a field the point lacks is absent."""

    timestamp: datetime
    values: dict[str, Any] = field(default_factory=dict)

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        return float(value)

    def field_names(self) -> list[str]:
        return sorted(self.values)

    def to_wire(self) -> dict[str, Any]:
        return {"timestamp": wire_time(self.timestamp), **self.values}


@dataclass(frozen=True, slots=True)
class DeviceFields:
    meter: list[str]
    battery: list[str]
    connection: list[str]
    meta: list[str]

    def to_wire(self) -> dict[str, Any]:
        return {"meter": self.meter, "battery": self.battery, "connection": self.connection, "meta": self.meta}


@dataclass(frozen=True, slots=True)
class DailyRow:
    """One row of the metering application (camelCase); `date` is omitted on no-data rows."""

    device_id: str
    device_name: str
    serial_number: str
    date: date | None
    consumption: float | None

    def to_wire(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "deviceId": self.device_id,
            "deviceName": self.device_name,
            "serialNumber": self.serial_number,
        }
        if self.date is not None:
            row["date"] = self.date.isoformat()
        row["consumption"] = self.consumption
        return row


@dataclass(frozen=True, slots=True)
class AuditChange:
    """One data-audit row (snake_case)."""

    id: str
    device_id: str
    timestamp: datetime
    previous_value: float | None
    new_value: float | None
    actor: str
    changed_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device_id": self.device_id,
            "timestamp": wire_time(self.timestamp),
            "previous_value": self.previous_value,
            "new_value": self.new_value,
            "actor": self.actor,
            "changed_at": wire_time(self.changed_at),
        }
