"""The Waltero sandbox: a Starlette app serving UPSTREAMS.md's Waltero section from demo data.

Vendor paths (at the root, and the same under `/prod` so a base URL ending in `/prod` works):
`POST /api/auth/login`, `GET /api/auth/me`, metering v3 `device-daily-consumption`, devices (list and
one), telemetry, fields, data-audit changes. The JSON is written from the vendor's page and the pinned
shapes of UPSTREAMS.md (`wire.py`), never from the adapter's shape module, so the two can disagree.

Variants (`create_emulator(..., breaks={...})`, `--break NAME`): each breaks one pinned assumption, so
that `python -m app.doctor` can be shown to flag exactly that one (see `BREAKS`).

Rules it enforces (pinned):
- Login issues real HS256 JWTs (`sub`, `iat`, `exp` = `iat` + `token_ttl`); every other call needs
  `Authorization: Bearer <token>` with a valid signature and an unexpired `exp` (else 401).
- Error bodies `{"code", "message"}`: 400 BAD_REQUEST, 401 UNAUTHENTICATED, 403 FORBIDDEN,
  404 NOT_FOUND, 429 RATE_LIMITED (with `Retry-After`), 500 INTERNAL_ERROR (and 503 INTERNAL_ERROR
  during an outage).
- An organization the user cannot read -> 403; an unknown organization -> 404; a device that is
  unknown or in an unreadable organization -> 404.
- Timestamps in queries: UTC ISO-8601, milliseconds optional; `endDate > startDate`; `resolution` in
  day|week|month|year; more than 1000 buckets -> 400.
- Devices: `limit` 1..100 (default 100), `offset` >= 0; out of range -> 400 (not clamped, so a
  client's paging mistake shows). Data-audit: `since` required, `limit` 1..1000 (default 200), `cursor`
  opaque (garbled -> 400).
- Telemetry: `startDate`/`endDate` required; `fields` optional (default every field of the device's
  variant); a point without any asked field is left out.
- `resolution=week|month|year`: 7-day / calendar-month / calendar-year steps from `startDate` (see
  `data.bucket_bounds`).

Faults (`.faults`, `GET|PUT /_sandbox/faults`) apply to every vendor path, login included, in this
order: `outage` (503), `hang` (no answer while it stays set; clearing it releases held requests, so a
server can shut down), `fail_next` (the next statuses, in order), `latency` (uniform 0..latency s),
`error_rate` (500), `rate_limit_rate` (429 with `Retry-After: retry_after`).

Control endpoints (no auth, no faults): `GET|PUT /_sandbox/faults`, `GET /_sandbox/stats`,
`POST /_sandbox/reset` (clears faults, releasing hung requests, and stats), and
`POST /_sandbox/corrections` `{"device_id", "timestamp", "new_value", "actor"}` -> 201 with the new
audit row: the stored reading at that whole hour becomes `new_value` (display unit), so telemetry and
daily consumption change, and the data-audit feed gains a row stamped with the emulator's now.

Only the login's `token` is a Bearer value (`accessToken` is returned, as the vendor does, but not
accepted). Daily consumption per bucket is pinned in `data.py`.

`.stats` counts `requests` plus one key per operation (`login`, `me`, `devices`, `device`,
`telemetry`, `fields`, `daily_consumption`, `changes`) for every request that reached a vendor path
(faulted ones included), plus `tokens_issued` and `auth_rejected`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from app.backends.waltero.emulator import jwt, wire
from app.backends.waltero.emulator.data import DEMO_EMAIL, DEMO_USER_ID, DemoData
from app.infra.timeutil import from_epoch, parse_rfc3339
from app.sandbox.faults import Faults

DEMO_USERNAME = "demo@waltero.example"
DEMO_PASSWORD = "waltero-sandbox-password"  # noqa: S105 - the public demo credential of the sandbox
HANG_POLL = 0.05
DEVICES_MAX_LIMIT = 100
AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT = 200, 1000

BREAKS: dict[str, str] = {
    "opaque_token": "login answers an opaque token, not a JWT with `exp`",
    "plain_org_ids": "`accessible_organizations` is a list of plain organization ids",
    "upper_ids": "every id is sent in upper case",
    "offset_ignored": "the device listing ignores `offset` (always the first page)",
    "nested_telemetry": "telemetry fields are nested objects (`meter.value.processed` as meter → value → processed)",
    "processed_is_raw": "`meter.value.processed` is the raw value (the multiplier is left to the client)",
    "daily_bare": 'daily consumption is a bare list, without the `{"data"}` wrapper',
    "daily_raw_units": "daily consumption is in raw units, not the device's display unit",
    "utc_calendar": "daily buckets are UTC calendar days cut to the range, not 24 h windows from startDate",
    "audit_no_cursor": "the data-audit feed never sends `next_cursor` (clients page by `since`)",
}
"""The emulator variants: name → the pinned assumption it breaks."""


class VendorError(Exception):
    """An answer in Waltero's error shape."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = wire.error_body(self.status, self.message)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


Handler = Callable[[Request], Awaitable[Response]]


class Emulator:
    """The sandbox. Data accessors for value-by-value tests (times are aware UTC datetimes):

    - `organizations()` -> `[{"organization_id", "name", "accessible"}]`
    - `devices(org_id=None)` -> `[wire.Device]` (readable organizations only unless `org_id` given)
    - `device(device_id)` -> `wire.Device` (KeyError when unknown)
    - `processed_value(device_id, at)` / `raw_value(device_id, at)` -> the stored value at a whole
      hour when the device has a point then, else None
    - `telemetry(device_id, start, end, fields=None)` -> `[wire.TelemetryPoint]`
    - `daily_buckets(org_id, start, end, resolution="day")` -> `[wire.DailyRow]`
    - `changes(org_id, since=None)` -> `[wire.AuditChange]` ascending
    - `correct(device_id, timestamp, new_value, actor="user")` -> the new `wire.AuditChange`
    - `issue_token(ttl=None)` -> a valid token (tests that skip the login); `revoke_tokens()`
    - `data` -> the `DemoData` (gaps, silent device, origin).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        seed: int = 7,
        token_ttl: float = 86400,
        username: str = DEMO_USERNAME,
        password: str = DEMO_PASSWORD,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        breaks: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        unknown = set(breaks) - set(BREAKS)
        if unknown:
            raise ValueError(f"unknown emulator variant(s): {', '.join(sorted(unknown))}")
        self.breaks = frozenset(breaks)
        self._opaque: dict[str, float] = {}
        """Opaque tokens issued under `opaque_token`: token → expiry."""
        self.clock = clock
        self.seed = seed
        self.token_ttl = token_ttl
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        self.data = DemoData(clock(), seed, self.breaks)
        self._username = username
        self._password = password
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._secret = hashlib.sha256(f"waltero-sandbox:{seed}".encode()).digest()
        self._issued = 0
        vendor = self._vendor_routes()
        control: list[BaseRoute] = [
            Route("/_sandbox/faults", self._get_faults, methods=["GET"]),
            Route("/_sandbox/faults", self._put_faults, methods=["PUT"]),
            Route("/_sandbox/stats", self._get_stats, methods=["GET"]),
            Route("/_sandbox/reset", self._reset, methods=["POST"]),
            Route("/_sandbox/corrections", self._post_correction, methods=["POST"]),
        ]
        self.app = Starlette(
            routes=[*control, *vendor, Mount("/prod", routes=vendor)],
            exception_handlers={HTTPException: self._http_error},
        )

    # --- accessors -------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return from_epoch(self.clock())

    def organizations(self) -> list[dict[str, Any]]:
        return [
            {"organization_id": org.id, "name": org.name, "accessible": org.accessible}
            for org in self.data.organizations.values()
        ]

    def devices(self, org_id: str | None = None) -> list[wire.Device]:
        if org_id is not None:
            return [d.record for d in self.data.org_devices(org_id)]
        readable = [org.id for org in self.data.organizations.values() if org.accessible]
        return [d.record for org in readable for d in self.data.org_devices(org)]

    def device(self, device_id: str) -> wire.Device:
        return self.data.devices[device_id].record

    def processed_value(self, device_id: str, at: datetime) -> float | None:
        index = self.data.index_at(at)
        if index is None or not self.data.has_point(device_id, index, self.clock()):
            return None
        return self.data.processed(device_id, index)

    def raw_value(self, device_id: str, at: datetime) -> float | None:
        index = self.data.index_at(at)
        if index is None or not self.data.has_point(device_id, index, self.clock()):
            return None
        return self.data.raw(device_id, index)

    def telemetry(
        self, device_id: str, start: datetime, end: datetime, fields: list[str] | None = None
    ) -> list[wire.TelemetryPoint]:
        wanted = frozenset(fields) if fields is not None else None
        return self.data.telemetry(device_id, start, end, wanted, self.clock())

    def daily_buckets(
        self, org_id: str, start: datetime, end: datetime, resolution: str = "day"
    ) -> list[wire.DailyRow]:
        return self.data.daily_rows(org_id, start, end, resolution, self.clock())

    def changes(self, org_id: str, since: datetime | None = None) -> list[wire.AuditChange]:
        return self.data.changes(org_id, since)

    def correct(self, device_id: str, timestamp: datetime, new_value: float, actor: str = "user") -> wire.AuditChange:
        """Change the stored reading at `timestamp` (display unit); telemetry and daily consumption follow."""
        return self.data.correct(device_id, timestamp, new_value, actor, self.clock())

    def issue_token(self, ttl: float | None = None) -> str:
        return self._issue("id", ttl if ttl is not None else self.token_ttl)

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far (as a key rotation would): their next use answers 401."""
        self._secret = hashlib.sha256(self._secret).digest()

    def reset(self) -> None:
        """Clear faults (releasing hung requests) and stats."""
        self.faults.reset()
        self.stats.clear()

    # --- plumbing --------------------------------------------------------------------------------------
    def _issue(self, use: str, ttl: float) -> str:
        self._issued += 1
        issued_at = math.floor(self.clock())
        expires_at = issued_at + (int(ttl) if float(ttl).is_integer() else ttl)
        claims = {
            "sub": DEMO_USER_ID,
            "email": DEMO_EMAIL,
            "token_use": use,
            "iat": issued_at,
            "exp": expires_at,
            "jti": f"{self.seed}-{self._issued}",
        }
        return jwt.encode(claims, self._secret)

    async def _apply_faults(self) -> None:
        faults = self.faults
        if faults.outage:
            raise VendorError(503, "Service unavailable")
        # Polled, not an Event: tests flip the knob from another thread than the server's event loop.
        while self.faults.hang:  # noqa: ASYNC110
            await asyncio.sleep(HANG_POLL)
        if faults.fail_next:
            status = faults.fail_next.pop(0)
            raise self._fault(status)
        if faults.latency > 0:
            await self._sleep(self._rng.uniform(0, faults.latency))
        if faults.error_rate > 0 and self._rng.random() < faults.error_rate:
            raise self._fault(500)
        if faults.rate_limit_rate > 0 and self._rng.random() < faults.rate_limit_rate:
            raise self._fault(429)

    def _fault(self, status: int) -> VendorError:
        if status == 429:
            return VendorError(429, "Too many requests", {"Retry-After": str(self.faults.retry_after)})
        messages = {401: "Missing or expired token", 403: "Forbidden", 404: "Not found", 400: "Bad request"}
        return VendorError(status, messages.get(status, "Internal error"))

    def _authenticate(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            self.stats["auth_rejected"] += 1
            raise VendorError(401, "Missing bearer token")
        if "opaque_token" in self.breaks:
            expires = self._opaque.get(token.strip())
            if expires is None or self.clock() >= expires:
                self.stats["auth_rejected"] += 1
                raise VendorError(401, "Invalid or expired token")
            return {"sub": DEMO_USER_ID, "token_use": "id"}
        try:
            claims = jwt.decode(token.strip(), self._secret, now=self.clock())
        except jwt.InvalidToken:
            self.stats["auth_rejected"] += 1
            raise VendorError(401, "Invalid or expired token") from None
        if claims.get("token_use") != "id" or claims.get("sub") != DEMO_USER_ID:
            self.stats["auth_rejected"] += 1
            raise VendorError(401, "Invalid token")
        return claims

    def _vendor(self, operation: str, handler: Handler, *, authenticated: bool = True) -> Handler:
        async def endpoint(request: Request) -> Response:
            self.stats["requests"] += 1
            self.stats[operation] += 1
            try:
                await self._apply_faults()
                if authenticated:
                    self._authenticate(request)
                return await handler(request)
            except VendorError as exc:
                return exc.response()

        return endpoint

    def _vendor_routes(self) -> list[BaseRoute]:
        return [
            Route(wire.LOGIN, self._vendor("login", self._login, authenticated=False), methods=["POST"]),
            Route(wire.ME, self._vendor("me", self._me), methods=["GET"]),
            Route(wire.DAILY, self._vendor("daily_consumption", self._daily), methods=["GET"]),
            Route(wire.DEVICES, self._vendor("devices", self._devices), methods=["GET"]),
            Route(wire.TELEMETRY, self._vendor("telemetry", self._telemetry), methods=["GET"]),
            Route(wire.FIELDS, self._vendor("fields", self._fields), methods=["GET"]),
            Route(wire.DEVICE, self._vendor("device", self._device), methods=["GET"]),
            Route(wire.AUDIT, self._vendor("changes", self._changes), methods=["GET"]),
        ]

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return VendorError(status, "Not found" if status == 404 else "Unsupported request").response()

    # --- parameters ------------------------------------------------------------------------------------
    @staticmethod
    def _time_param(request: Request, name: str) -> datetime:
        text = request.query_params.get(name)
        if not text:
            raise VendorError(400, f"{name} is required")
        try:
            return wire.parse_query_time(text)
        except ValueError:
            raise VendorError(400, f"{name} must be a UTC ISO-8601 timestamp, e.g. 2026-05-18T22:00:00.000Z") from None

    @staticmethod
    def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
        text = request.query_params.get(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise VendorError(400, f"{name} must be an integer") from None
        if not low <= value <= high:
            raise VendorError(400, f"{name} must be between {low} and {high}")
        return value

    def _readable_org(self, request: Request) -> str:
        org_id = str(request.path_params["org_id"]).lower()
        org = self.data.organizations.get(org_id)
        if org is None:
            raise VendorError(404, "Organization not found")
        if not org.accessible:
            raise VendorError(403, "You cannot read this organization")
        return org_id

    def _readable_device(self, request: Request) -> str:
        device = self.data.devices.get(str(request.path_params["device_id"]).lower())
        if device is None or not self.data.organizations[device.record.organization_id].accessible:
            raise VendorError(404, "Device not found")
        return device.id

    # --- vendor endpoints ------------------------------------------------------------------------------
    def _json(self, payload: Any, status_code: int = 200) -> JSONResponse:
        return JSONResponse(_upper_ids(payload) if "upper_ids" in self.breaks else payload, status_code=status_code)

    async def _login(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            username, password = body["username"], body["password"]
            if not isinstance(username, str) or not isinstance(password, str):
                raise TypeError("strings expected")
        except (ValueError, KeyError, TypeError):
            raise VendorError(400, "Body must be {username, password}") from None
        user_ok = hmac.compare_digest(username.encode(), self._username.encode())
        password_ok = hmac.compare_digest(password.encode(), self._password.encode())
        if not (user_ok and password_ok):
            raise VendorError(401, "Incorrect username or password")
        self.stats["tokens_issued"] += 1
        if "opaque_token" in self.breaks:
            token = base64.urlsafe_b64encode(self._rng.randbytes(24)).decode().rstrip("=")
            self._opaque[token] = self.clock() + self.token_ttl
        else:
            token = self._issue("id", self.token_ttl)
        return self._json(
            {
                "token": token,
                "accessToken": self._issue("access", self.token_ttl),
                "refreshToken": base64.urlsafe_b64encode(self._rng.randbytes(32)).decode().rstrip("="),
                "user": self._user(),
            }
        )

    def _user(self) -> dict[str, Any]:
        memberships = [
            {"organization_id": org.id, "role": org.role} for org in self.data.organizations.values() if org.accessible
        ]
        return {"id": DEMO_USER_ID, "email": DEMO_EMAIL, "organizations": memberships}

    async def _me(self, request: Request) -> Response:
        readable = [org for org in self.data.organizations.values() if org.accessible]
        accessible: list[Any] = (
            [org.id for org in readable]
            if "plain_org_ids" in self.breaks
            else [{"organization_id": org.id, "name": org.name} for org in readable]
        )
        return self._json({"user": self._user(), "accessible_organizations": accessible})

    async def _devices(self, request: Request) -> Response:
        org_id = self._readable_org(request)
        limit = self._int_param(request, "limit", DEVICES_MAX_LIMIT, 1, DEVICES_MAX_LIMIT)
        offset = self._int_param(request, "offset", 0, 0, 10**9)
        if "offset_ignored" in self.breaks:
            offset = 0
        devices = self.devices(org_id)
        page = [d.to_wire() for d in devices[offset : offset + limit]]
        return self._json({"data": page, "total": len(devices)})

    async def _device(self, request: Request) -> Response:
        return self._json(self.device(self._readable_device(request)).to_wire())

    async def _fields(self, request: Request) -> Response:
        return self._json(self.data.fields(self._readable_device(request)).to_wire())

    async def _telemetry(self, request: Request) -> Response:
        device_id = self._readable_device(request)
        start = self._time_param(request, "startDate")
        end = self._time_param(request, "endDate")
        if end <= start:
            raise VendorError(400, "endDate must be after startDate")
        text = request.query_params.get("fields")
        wanted = [name.strip() for name in text.split(",") if name.strip()] if text else None
        points = [p.to_wire() for p in self.telemetry(device_id, start, end, wanted)]
        if "nested_telemetry" in self.breaks:
            points = [_nested(point) for point in points]
        return self._json({"deviceId": device_id, "data": points})

    async def _daily(self, request: Request) -> Response:
        org_id = self._readable_org(request)
        start = self._time_param(request, "startDate")
        end = self._time_param(request, "endDate")
        resolution = request.query_params.get("resolution")
        if resolution not in wire.RESOLUTIONS:
            raise VendorError(400, "resolution must be one of day, week, month, year")
        if end <= start:
            raise VendorError(400, "endDate must be after startDate")
        try:
            rows = [row.to_wire() for row in self.daily_buckets(org_id, start, end, resolution)]
        except ValueError as exc:
            raise VendorError(400, f"Unsupported date range: {exc}") from None
        return self._json(rows if "daily_bare" in self.breaks else {"data": rows})

    async def _changes(self, request: Request) -> Response:
        org_id = self._readable_org(request)
        since = self._time_param(request, "since")
        limit = self._int_param(request, "limit", AUDIT_DEFAULT_LIMIT, 1, AUDIT_MAX_LIMIT)
        cursor = request.query_params.get("cursor")
        after = _decode_audit_cursor(cursor) if cursor else None
        rows = self.data.changes(org_id, since, after)
        page = rows[:limit]
        next_cursor = _encode_audit_cursor(page[-1]) if len(rows) > limit else None
        if "audit_no_cursor" in self.breaks:
            next_cursor = None
        return self._json({"data": [row.to_wire() for row in page], "next_cursor": next_cursor})

    # --- control endpoints (no auth, no faults) ---------------------------------------------------------
    async def _get_faults(self, request: Request) -> Response:
        return JSONResponse(asdict(self.faults))

    async def _put_faults(self, request: Request) -> Response:
        try:
            changes = json.loads(await request.body())
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            self.faults.update(changes)
        except ValueError as exc:
            return VendorError(400, str(exc)).response()
        return JSONResponse(asdict(self.faults))

    async def _get_stats(self, request: Request) -> Response:
        return JSONResponse(dict(self.stats))

    async def _reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"faults": asdict(self.faults), "stats": dict(self.stats)})

    async def _post_correction(self, request: Request) -> Response:
        """`{"device_id", "timestamp", "new_value", "actor"}` -> 201 with the new audit row."""
        try:
            body = json.loads(await request.body())
            device_id = body["device_id"]
            timestamp = parse_rfc3339(body["timestamp"])
            new_value = body["new_value"]
            actor = body.get("actor", "user")
            if isinstance(new_value, bool) or not isinstance(new_value, int | float):
                raise ValueError("new_value must be a number")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return VendorError(400, f"Body must be {{device_id, timestamp, new_value, actor}}: {exc}").response()
        if device_id not in self.data.devices:
            return VendorError(404, "Device not found").response()
        try:
            change = self.correct(device_id, timestamp, float(new_value), actor)
        except ValueError as exc:
            return VendorError(400, str(exc)).response()
        return JSONResponse(change.to_wire(), status_code=201)


_ID_KEYS = frozenset({"id", "organization_id", "device_id", "deviceId"})


def _upper_ids(payload: Any) -> Any:
    """The `upper_ids` variant: every id value in upper case."""
    if isinstance(payload, list):
        return [_upper_ids(item) for item in payload]
    if isinstance(payload, dict):
        return {
            key: value.upper() if key in _ID_KEYS and isinstance(value, str) else _upper_ids(value)
            for key, value in payload.items()
        }
    return payload


def _nested(point: dict[str, Any]) -> dict[str, Any]:
    """The `nested_telemetry` variant: `{"meter.value.processed": 1}` as `{"meter": {"value": {"processed": 1}}}`."""
    out: dict[str, Any] = {}
    for key, value in point.items():
        if key == "timestamp":
            out[key] = value
            continue
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _encode_audit_cursor(row: wire.AuditChange) -> str:
    raw = json.dumps([wire.wire_time(row.changed_at), row.changed_at.microsecond, row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_audit_cursor(text: str) -> tuple[datetime, str]:
    try:
        stamp, micro, change_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        at = parse_rfc3339(stamp).replace(microsecond=int(micro))
        if not isinstance(change_id, str):
            raise TypeError("id")
    except (ValueError, TypeError, binascii.Error):
        raise VendorError(400, "cursor is not valid") from None
    return at, change_id


def create_emulator(clock: Callable[[], float] = time.time, *, seed: int = 7, **options: Any) -> Emulator:
    """The sandbox with demo data relative to `clock()` now. Options: `token_ttl` (seconds, default
    86400), `username`, `password`, `sleep` (for the latency knob), `breaks` (variants, see `BREAKS`)."""
    return Emulator(clock, seed=seed, **options)
