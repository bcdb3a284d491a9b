"""Waltero's wire: every path, query parameter and payload shape, in one place.

Only the adapter (and the doctor) use this module: the sandbox emulator serves JSON written from the vendor's page
(`app/backends/waltero/emulator/wire.py`), so the two can disagree and the doctor (`python -m app.doctor`) can
tell. Everything here follows `docs/vendors/waltero.md`; the parts marked *pinned* there are this project's reading
of a vendor page that left them out, so when a real server disagrees, this is the one module to correct.

Conventions of the wire (pinned):
- timestamps are UTC ISO-8601 with milliseconds, `2026-05-18T22:00:00.000Z` (`format_wire_time`);
- the metering application is always addressed as `/v3/` (the unversioned path may move);
- the metering application speaks camelCase (`deviceId`), platform-api snake_case (`device_id`);
- errors are `{"code", "message"}`: `errors.py` maps them by status and only quotes the code; 429 carries
  `Retry-After` seconds.

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

DEVICES_MAX_LIMIT: Final = 100
CHANGES_MAX_LIMIT: Final = 1000

# Telemetry field names (the `fields` endpoint groups them by their prefix).
PROCESSED: Final = "meter.value.processed"
RAW: Final = "meter.value.raw"
BATTERY_VOLTAGE: Final = "battery.voltage"
BATTERY_PERCENT: Final = "battery.percent"
RSSI: Final = "connection.rssi"
LAST_SEEN: Final = "connection.last_seen"


# --- time on the wire ----------------------------------------------------------------------------------
def format_wire_time(value: dt.datetime) -> str:
    """UTC ISO-8601 with milliseconds: `2026-05-18T22:00:00.000Z`."""
    return format_millis(value)


_PINNED_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
"""The form Waltero's own examples use (`format_wire_time`'s): `2026-05-18T22:00:00.000Z`."""


def parse_wire_time(text: str) -> dt.datetime:
    """A payload timestamp as an aware UTC datetime: any RFC 3339 form with an offset; raises `ValueError`.
    The pinned form is read by `datetime.fromisoformat` alone (a fifth of `parse_rfc3339`'s cost, the
    same result: UTC, milliseconds); every other form goes through `parse_rfc3339`."""
    if _PINNED_TIME.fullmatch(text):
        return dt.datetime.fromisoformat(text)
    return parse_rfc3339(text)


def _to_utc(value: object) -> object:
    """Payload timestamps: any RFC 3339 form with an offset (tolerant), or an aware datetime."""
    if isinstance(value, str):
        return parse_wire_time(value)
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
    organization_id: WireId | None = None
    """Pinned present, but the page never shows it: where it is missing, the organization the device
    was listed under, or for a single lookup the login's organizations (`WalteroBackend._device`)."""

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, value: object) -> object:
        """`GET /api/devices/{id}` is pinned to answer the bare record; `{"data": {...}}` is accepted."""
        if isinstance(value, dict) and set(value) == {"data"} and isinstance(value["data"], dict):
            tolerance.record(BACKEND, "device_wrapper", "data", pinned=False)
            return value["data"]
        return value

    def in_organization(self, org_id: str) -> Device:
        """This device with `org_id` as its organization where the vendor sent none."""
        if self.organization_id is not None:
            return self
        tolerance.record(BACKEND, "device_organization", "missing", pinned=False)
        return self.model_copy(update={"organization_id": org_id})


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
        """Nested keys (`{"meter": {"value": {"processed": 1}}}`) become the dotted names the page uses;
        a time key other than the pinned `timestamp` (the page shows no telemetry answer) is read as it."""
        if isinstance(value, dict) and "timestamp" not in value:
            value = _pinned_time_key(value)
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
        return finite_number((self.model_extra or {}).get(field))

    def field_names(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def finite_number(value: object) -> float | None:
    """A telemetry value as a reading: a finite int or float, else None (absent, a string, a bool, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _is_nested(point: dict[str, object]) -> bool:
    return any(isinstance(v, dict) for k, v in point.items() if k != "timestamp")


# issue 21: the telemetry time key, where the page is silent
TIME_KEYS = ("timestamp", "time", "ts", "datetime", "date", "recorded_at", "recordedAt", "created_at", "createdAt")
"""Names a point's time may come under: `timestamp` (pinned) first, then the usual alternatives."""


def time_key(point: dict[str, object]) -> str | None:
    """The key a telemetry point carries its time under (the first of `TIME_KEYS` holding a string)."""
    return next((k for k in TIME_KEYS if isinstance(point.get(k), str)), None)


def _pinned_time_key(point: dict[str, object]) -> dict[str, object]:
    key = time_key(point)
    if key is None or key == "timestamp":
        return point
    moved = {k: v for k, v in point.items() if k != key}
    moved["timestamp"] = point[key]
    return moved


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
            first = points[0] if isinstance(points[0], dict) else {}
            key = time_key(first) or "missing"
            shape = key if key in ("timestamp", "missing") else "other"  # a closed label set
            tolerance.record(BACKEND, "telemetry_time_key", shape, pinned=key == "timestamp")
        return value


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
    return parse(model, _loads(body, what), what)


def _loads(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)  # measured faster than json.loads on telemetry pages
    except ValueError as exc:
        raise UpstreamBadResponse(f"Waltero sent a {what} answer that is not JSON", backend=BACKEND) from exc


# --- telemetry values in one pass ----------------------------------------------------------------------
TimedValue = tuple[dt.datetime, float | None]
"""A telemetry point reduced to one field: (its time in UTC, the field's number or None)."""


def parse_telemetry_values(body: bytes, field: str, what: str) -> list[TimedValue]:
    """One field of a telemetry answer, point by point in the answer's order: exactly
    `[(p.timestamp, p.number(field)) for p in parse_json(body, TelemetryResponse, what).data]`, with
    the same `UpstreamBadResponse` and the same wire-shape counts, in one pass without a model per point
    when every point has the pinned shape (a flat point with a string `timestamp`). Any other answer
    (a nested point, another time key, a bad value, ...) goes through `TelemetryResponse`, which
    decides what it is. Raises `UpstreamBadResponse`."""
    payload = _loads(body, what)
    values = _pinned_telemetry_values(payload, field)
    if values is None:
        answer = parse(TelemetryResponse, payload, what)
        return [(point.timestamp, point.number(field)) for point in answer.data]
    # the counts `parse(TelemetryResponse, ...)` makes for such an answer, in its order
    tolerance.record(
        BACKEND, "data_wrapper", "bare" if isinstance(payload, list) else "wrapped", pinned=isinstance(payload, dict)
    )
    if values:
        tolerance.record(BACKEND, "telemetry_keys", "flat", pinned=True)
        tolerance.record(BACKEND, "telemetry_time_key", "timestamp", pinned=True)
    device_id = payload.get("deviceId") if isinstance(payload, dict) else None
    if isinstance(device_id, str) and device_id.lower() != device_id:
        tolerance.record(BACKEND, "id_case", "upper", pinned=False)
    return values


def _pinned_telemetry_values(payload: object, field: str) -> list[TimedValue] | None:
    """The values of an answer in the pinned shape (see `parse_telemetry_values`), or None when any
    part of it is not; records nothing."""
    if isinstance(payload, dict):
        device_id = payload.get("deviceId")
        if "device_id" in payload or not (device_id is None or isinstance(device_id, str)):
            return None  # the id by its field name, or not a string: the model decides
        points = payload.get("data")
    else:
        points = payload
    if not isinstance(points, list):
        return None
    times: dict[str, dt.datetime] = {}  # each distinct string parsed once
    isfinite = math.isfinite
    pair = field != "timestamp"
    values: list[TimedValue] = []
    for point in points:
        if not isinstance(point, dict):
            return None
        text = point.get("timestamp")
        if not isinstance(text, str):
            return None  # another time key, a number, or none: the model decides
        value = point.get(field)
        if pair and len(point) == 2 and value is not None:  # {"timestamp", field}: nested only if the value is
            if isinstance(value, dict):
                return None
        elif _is_nested(point):
            return None
        when = times.get(text)
        if when is None:
            try:
                when = times[text] = parse_wire_time(text)
            except ValueError:
                return None
        values.append((when, value if type(value) is float and isfinite(value) else finite_number(value)))
    return values
