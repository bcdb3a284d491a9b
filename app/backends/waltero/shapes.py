"""Waltero's wire: every path, query parameter and payload shape, in one place.

Only the adapter (and the doctor) use this module: the sandbox emulator serves JSON written from the vendor's page
(`app/backends/waltero/emulator/wire.py`), so the two can disagree and the doctor (`python -m app.doctor`) can
tell. Everything here follows `UPSTREAMS.md`; the parts marked *pinned* there are this project's reading
of a vendor page that left them out, so when a real server disagrees, this is the one module to correct.

Conventions of the wire (pinned):
- timestamps are UTC ISO-8601 with milliseconds, `2026-05-18T22:00:00.000Z` (`format_wire_time`);
- the metering application is always addressed as `/v3/` (the unversioned path may move);
- the metering application speaks camelCase (`deviceId`), platform-api snake_case (`device_id`);
- errors are `{"code", "message"}` with the codes of `ERROR_CODES`; 429 carries `Retry-After` seconds.

Parsing is tolerant (unknown fields are ignored) but strict about what the adapter relies on: a payload
without a required field raises `UpstreamBadResponse` via `parse`, never a `KeyError`. Where the page
allows two readings, both are accepted and `app.infra.tolerance` records which one Waltero used:
- `data_wrapper`: a list answer wrapped as `{"data": [...]}` (pinned) or sent bare (`[...]`);
- `telemetry_keys`: telemetry fields flat (`"meter.value.processed": 1.0`, pinned) or nested
  (`"meter": {"value": {"processed": 1.0}}`), flattened here to the dotted names;
- `accessible_organizations`: objects (pinned) or plain id strings;
- `id_case`: ids in lower case (pinned) or upper case, normalized to lower case (the facade's ids are
  lower case; an upper-case id would never match one).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import quote

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, model_validator

from app.infra import tolerance
from app.infra.errors import UpstreamBadResponse
from app.infra.timeutil import format_millis, parse_rfc3339

BACKEND: Final = "waltero"

# --- paths (Starlette-style templates; the emulator routes on them, the client formats them) -------------
LOGIN_PATH: Final = "/api/auth/login"
ME_PATH: Final = "/api/auth/me"
DAILY_CONSUMPTION_ROUTE: Final = "/api/organizations/{org_id}/applications/metering/v3/data/device-daily-consumption"
DEVICES_ROUTE: Final = "/api/organizations/{org_id}/devices"
DEVICE_ROUTE: Final = "/api/devices/{device_id}"
TELEMETRY_ROUTE: Final = "/api/devices/{device_id}/telemetry"
FIELDS_ROUTE: Final = "/api/devices/{device_id}/fields"
CHANGES_ROUTE: Final = "/api/organizations/{org_id}/data-audit/changes"


def _segment(value: str) -> str:
    """One path segment, percent-encoded so an id can never add a path level."""
    return quote(value, safe="")


def daily_consumption_path(org_id: str) -> str:
    return DAILY_CONSUMPTION_ROUTE.format(org_id=_segment(org_id))


def devices_path(org_id: str) -> str:
    return DEVICES_ROUTE.format(org_id=_segment(org_id))


def device_path(device_id: str) -> str:
    return DEVICE_ROUTE.format(device_id=_segment(device_id))


def telemetry_path(device_id: str) -> str:
    return TELEMETRY_ROUTE.format(device_id=_segment(device_id))


def fields_path(device_id: str) -> str:
    return FIELDS_ROUTE.format(device_id=_segment(device_id))


def changes_path(org_id: str) -> str:
    return CHANGES_ROUTE.format(org_id=_segment(org_id))


def join_url(base_url: str, path: str) -> str:
    """`base_url` (which may end in `/prod` or `/prod/`) plus an absolute `path`, without `//`."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


# --- query parameters --------------------------------------------------------------------------------
START_DATE: Final = "startDate"
END_DATE: Final = "endDate"
RESOLUTION: Final = "resolution"
FIELDS: Final = "fields"
LIMIT: Final = "limit"
OFFSET: Final = "offset"
SINCE: Final = "since"
CURSOR: Final = "cursor"

RESOLUTIONS: Final = ("day", "week", "month", "year")
DEVICES_DEFAULT_LIMIT: Final = 100
DEVICES_MAX_LIMIT: Final = 100
CHANGES_DEFAULT_LIMIT: Final = 200
CHANGES_MAX_LIMIT: Final = 1000

METER_TYPES: Final = ("water_cold", "water_hot", "gas", "electricity", "heat")
UNITS: Final = ("m3", "L", "kWh", "Wh", "MWh")
ACTORS: Final = ("system", "user")

# Telemetry field names (the `fields` endpoint groups them by their prefix).
PROCESSED: Final = "meter.value.processed"
RAW: Final = "meter.value.raw"
BATTERY_VOLTAGE: Final = "battery.voltage"
BATTERY_PERCENT: Final = "battery.percent"
RSSI: Final = "connection.rssi"
LAST_SEEN: Final = "connection.last_seen"
TEMPERATURE: Final = "meta.temperature"

# Vendor error table: status -> code. Other 4xx answer BAD_REQUEST, other 5xx INTERNAL_ERROR.
ERROR_CODES: Final = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
}


def error_code(status: int) -> str:
    """The vendor's error code for an HTTP status."""
    if status in ERROR_CODES:
        return ERROR_CODES[status]
    return "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST"


# --- time on the wire ----------------------------------------------------------------------------------
_WIRE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)$")


def parse_wire_time(text: str) -> dt.datetime:
    """A query timestamp as Waltero accepts it: UTC ISO-8601, milliseconds optional
    (`2026-05-18T22:00:00.000Z` or `2026-05-18T22:00:00Z`). Raises `ValueError` otherwise."""
    if not _WIRE_TIME.match(text):
        raise ValueError("must be a UTC ISO-8601 timestamp such as 2026-05-18T22:00:00.000Z")
    return parse_rfc3339(text)


def format_wire_time(value: dt.datetime) -> str:
    """UTC ISO-8601 with milliseconds: `2026-05-18T22:00:00.000Z`."""
    return format_millis(value)


def _to_utc(value: object) -> object:
    """Payload timestamps: any RFC 3339 form with an offset (tolerant), or an aware datetime."""
    if isinstance(value, str):
        return parse_rfc3339(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp without an offset")
        return value.astimezone(dt.UTC)
    return value


WireTime = Annotated[dt.datetime, BeforeValidator(_to_utc), PlainSerializer(format_wire_time, return_type=str)]


def _lower_id(value: object) -> object:
    if isinstance(value, str):
        lowered = value.lower()
        if lowered != value:
            tolerance.record(BACKEND, "id_case", "upper", pinned=False)
        return lowered
    return value


WireId = Annotated[str, BeforeValidator(_lower_id)]
"""A vendor id (UUID), normalized to lower case."""


# --- payloads ------------------------------------------------------------------------------------------
class WireModel(BaseModel):
    """Tolerant reader: fields Waltero adds later are ignored, the ones we use are checked."""

    # hide_input_in_errors: a validation error (chained into logs) never repeats a token or a value.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True, hide_input_in_errors=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object as Waltero sends it (aliases, wire timestamps)."""
        return self.model_dump(mode="json", by_alias=True)


class LoginRequest(WireModel):
    """`POST /api/auth/login` body."""

    username: str
    password: str


class OrganizationMembership(WireModel):
    organization_id: WireId
    role: str | None = None


class User(WireModel):
    """The user record (pinned: `id`, `email`, `organizations`). The adapter reads nothing from it,
    so every field is optional: an unexpected user record must not fail a login."""

    id: str | None = None
    email: str | None = None
    organizations: list[OrganizationMembership] = Field(default_factory=list)


class LoginResponse(WireModel):
    """`POST /api/auth/login` answer. `token` (a JWT) is the Bearer value."""

    token: str = Field(min_length=1)
    access_token: str | None = Field(default=None, alias="accessToken")
    refresh_token: str | None = Field(default=None, alias="refreshToken")
    user: User | None = None


class AccessibleOrganization(WireModel):
    organization_id: WireId
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_id(cls, value: object) -> object:
        # Pinned as objects; the page only says "accessible_organizations", so a bare id is accepted.
        if isinstance(value, str):
            tolerance.record(BACKEND, "organizations", "plain_ids", pinned=False)
            return {"organization_id": value}
        return value


class MeResponse(WireModel):
    """`GET /api/auth/me` (pinned shape)."""

    user: User
    accessible_organizations: list[AccessibleOrganization]


class Device(WireModel):
    """A device (= one meter). `unit` is the display unit; display value = raw x `multiplier`.
    `meter_type` and `unit` are kept as strings: values outside the pinned enums map to `unknown`."""

    id: WireId
    name: str | None = None
    serial_number: str | None = None
    external_id: str | None = None
    meter_type: str
    unit: str | None = None
    multiplier: float | None = 1.0
    organization_id: WireId


class DevicesPage(WireModel):
    """`GET /api/organizations/{orgId}/devices?limit=&offset=`: follow `offset` until `total`."""

    data: list[Device]
    total: int | None = Field(default=None, ge=0)
    """Pinned present; without it the client pages until a short or empty page."""


class DailyConsumptionRow(WireModel):
    """One (device, bucket) row of the metering v3 daily consumption. `date` is the UTC day of the
    bucket's start and is *absent* on no-data rows (whose `consumption` is null)."""

    device_id: WireId = Field(alias="deviceId")
    device_name: str | None = Field(default=None, alias="deviceName")
    serial_number: str | None = Field(default=None, alias="serialNumber")
    date: dt.date | None = None
    consumption: float | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        if wire["date"] is None:
            del wire["date"]
        return wire


class DailyConsumptionResponse(WireModel):
    data: list[DailyConsumptionRow]


class TelemetryPoint(BaseModel):
    """`{"timestamp", "<field>": value, ...}`; a field the point lacks is absent."""

    model_config = ConfigDict(extra="allow", frozen=True, hide_input_in_errors=True)

    timestamp: WireTime

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, value: object) -> object:
        """Nested keys (`{"meter": {"value": {"processed": 1}}}`) become the dotted names the page uses."""
        if not isinstance(value, dict) or not _is_nested(value):
            return value
        flat: dict[str, object] = {}

        def walk(prefix: str, node: dict[str, object]) -> None:
            for key, item in node.items():
                name = f"{prefix}.{key}" if prefix else str(key)
                if isinstance(item, dict) and len(name) < 200:
                    walk(name, item)
                else:
                    flat[name] = item

        walk("", value)
        return flat

    def number(self, field: str) -> float | None:
        """The field's numeric value, or None when absent, not a number, or not finite (JSON parsers
        accept `NaN` and `Infinity`; neither is a reading)."""
        value = (self.model_extra or {}).get(field)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        return float(value)

    def field_names(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _is_nested(point: dict[str, object]) -> bool:
    return any(isinstance(v, dict) for k, v in point.items() if k != "timestamp")


class TelemetryResponse(WireModel):
    """`GET /api/devices/{id}/telemetry?startDate=&endDate=&fields=a,b`, ascending by `timestamp`."""

    device_id: WireId | None = Field(default=None, alias="deviceId")
    data: list[TelemetryPoint]

    @model_validator(mode="before")
    @classmethod
    def _count_key_shape(cls, value: object) -> object:
        """Once per answer (not per point): were the points' keys flat (pinned) or nested?"""
        points = value.get("data") if isinstance(value, dict) else None
        if isinstance(points, list) and points:
            nested = any(isinstance(p, dict) and _is_nested(p) for p in points)
            tolerance.record(BACKEND, "telemetry_keys", "nested" if nested else "flat", pinned=not nested)
        return value


class DeviceFields(WireModel):
    """`GET /api/devices/{id}/fields`: the field names the device's sensor variant reports."""

    meter: list[str] = Field(default_factory=list)
    battery: list[str] = Field(default_factory=list)
    connection: list[str] = Field(default_factory=list)
    meta: list[str] = Field(default_factory=list)


class AuditChange(WireModel):
    """One data-audit row. `timestamp` is the corrected reading's time; values in the display unit."""

    id: WireId
    device_id: WireId
    timestamp: WireTime
    previous_value: float | None = None
    new_value: float | None = None
    actor: str | None = None
    changed_at: WireTime


class AuditChangesPage(WireModel):
    """`GET /api/organizations/{orgId}/data-audit/changes?since=&limit=&cursor=`: ascending by
    (`changed_at`, `id`), `since` inclusive on `changed_at`; `next_cursor` null when none remain."""

    data: list[AuditChange]
    next_cursor: str | None = None


class ErrorBody(WireModel):
    code: str
    message: str


# --- parsing --------------------------------------------------------------------------------------------
M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], payload: Any, what: str) -> M:
    """Validate a decoded payload; raises `UpstreamBadResponse` naming the bad fields (never the values)."""
    if isinstance(payload, list) and "data" in model.model_fields:
        # Pinned as `{"data": [...]}`; a bare list reads just as plausibly from the page.
        tolerance.record(BACKEND, "data_wrapper", "bare", pinned=False)
        payload = {"data": payload}
    elif isinstance(payload, dict) and "data" in model.model_fields:
        tolerance.record(BACKEND, "data_wrapper", "wrapped", pinned=True)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        places = sorted({".".join(str(part) for part in error["loc"]) or "(root)" for error in exc.errors()})
        shown = ", ".join(places[:5]) + (", ..." if len(places) > 5 else "")
        detail = f"Waltero sent an unexpected {what} payload (bad: {shown})"
        raise UpstreamBadResponse(detail, backend=BACKEND) from exc


def parse_json(body: bytes, model: type[M], what: str) -> M:
    """Decode JSON bytes and validate; raises `UpstreamBadResponse` for anything unexpected."""
    try:
        payload = orjson.loads(body)  # measured faster than json.loads on telemetry pages
    except ValueError as exc:
        raise UpstreamBadResponse(f"Waltero sent a {what} answer that is not JSON", backend=BACKEND) from exc
    return parse(model, payload, what)
