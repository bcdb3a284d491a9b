"""The doctor's Waltero probes: each pinned assumption of docs/vendors/waltero.md asked of the real service.

Read-only: a login and GETs. The raw JSON is looked at before any tolerance, so a shape the adapter
copes with but does not pin still shows as a FAIL naming the place where the pin lives. The token is
kept for the calls and handed to the report only so that it can be blanked, never shown.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx

from app.backends.waltero import settings_of as wa_settings
from app.backends.waltero import shapes
from app.backends.waltero.token import token_expiry
from app.doctor.report import Finding, failed, passed, unknown
from app.infra.config import Settings
from app.infra.timeutil import Clock, from_epoch, parse_rfc3339

VENDOR = "waltero"
SHAPES = "app/backends/waltero/shapes.py"
CHECKS = (
    "login",
    "organizations",
    "devices_shape",
    "device_paging",
    "id_case",
    "telemetry_keys",
    "processed",
    "daily_shape",
    "daily_vs_telemetry",
    "daily_buckets",
    "audit_paging",
    # issue 21: what can shift a number
    "telemetry_time",
    "daily_label",
    "device_organization",
    "device_lookup",
)
DEVICE_KEYS = ("id", "serial_number", "meter_type", "unit", "multiplier")
"""Checked by `devices_shape`; `organization_id` has a check of its own (`device_organization`)."""
DAILY_KEYS = ("deviceId", "deviceName", "serialNumber", "consumption")
AUDIT_KEYS = ("id", "device_id", "timestamp", "previous_value", "new_value", "actor", "changed_at")


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


class Probe:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.token: str | None = None
        self.secrets: list[str] = []

    def url(self, path: str) -> str:
        return shapes.join_url(wa_settings(self.settings).url, path)

    async def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = await self.http.get(self.url(path), params=params or {}, headers=headers)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None


def _said(status: int, body: Any) -> str:
    code = body.get("code") if isinstance(body, dict) else None
    return f"HTTP {status}" + (f" {code}" if isinstance(code, str) and code.isupper() else "")


def _data(body: Any) -> tuple[list[Any] | None, bool]:
    """(the rows, whether they came wrapped in `{"data": [...]}`)."""
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return body["data"], True
    if isinstance(body, list):
        return body, False
    return None, False


def _flat(point: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                walk(name, value)
            else:
                out[name] = value

    walk("", point)
    return out


def _wire(value: datetime) -> str:
    return shapes.format_wire_time(value)


async def check(
    settings: Settings, http: httpx.AsyncClient, clock: Clock, findings: list[Finding], secrets: list[str]
) -> None:
    """Append one finding per check to `findings`, in order, and every token seen to `secrets` (for
    the report to blank); partial results survive an exception."""
    probe = Probe(settings, http)
    probe.secrets = secrets
    vendor = wa_settings(settings)
    password = vendor.password.get_secret_value() if vendor.password else ""
    response = await http.post(probe.url(shapes.LOGIN_PATH), json={"username": vendor.username, "password": password})
    try:
        body = response.json()
    except ValueError:
        body = None
    token = body.get("token") if isinstance(body, dict) else None
    if isinstance(body, dict):
        probe.secrets += [str(body.get(k)) for k in ("token", "accessToken", "refreshToken") if body.get(k)]
    if response.status_code != 200 or not isinstance(token, str) or not token:
        if response.status_code in (401, 403):
            fix = "WALTERO_USERNAME / WALTERO_PASSWORD (the settings)"
        else:
            fix = f"{SHAPES} (LoginResponse)"
        findings.append(failed(VENDOR, "login", f"login: {_said(response.status_code, body)}, no `token`", fix))
        findings.extend(unknown(VENDOR, n, "not probed: no token") for n in CHECKS[1:])
        return
    probe.token = token
    expires = token_expiry(token)
    keys = ", ".join(sorted(body)) if isinstance(body, dict) else ""
    if expires is None:
        findings.append(
            failed(
                VENDOR,
                "login",
                f"`token` is not a JWT with a readable `exp` (answer keys: {keys}); the adapter assumes 24 h",
                "app/backends/waltero/token.py (token_expiry)",
            )
        )
    else:
        hours = (expires - clock()) / 3600
        findings.append(passed(VENDOR, "login", f"`token` is a JWT ending in {hours:.1f} h (answer keys: {keys})"))

    status, me = await probe.get(shapes.ME_PATH)
    accessible = me.get("accessible_organizations") if isinstance(me, dict) else None
    orgs: list[str] = list(wa_settings(settings).organizations)
    if isinstance(accessible, list) and all(
        isinstance(o, dict) and isinstance(o.get("organization_id"), str) for o in accessible
    ):
        findings.append(passed(VENDOR, "organizations", f"{len(accessible)} accessible organizations as objects"))
        orgs = orgs or [o["organization_id"] for o in accessible]
    elif isinstance(accessible, list) and all(isinstance(o, str) for o in accessible):
        findings.append(
            failed(
                VENDOR,
                "organizations",
                f"`accessible_organizations` is {len(accessible)} plain ids, not objects (tolerated; correct the pin)",
                f"{SHAPES} (AccessibleOrganization)",
            )
        )
        orgs = orgs or list(accessible)
    else:
        findings.append(
            failed(
                VENDOR,
                "organizations",
                f"/api/auth/me: {_said(status, me)}, no `accessible_organizations` list",
                f"{SHAPES} (MeResponse)",
            )
        )
    if not orgs:
        findings.extend(unknown(VENDOR, n, "not probed: no organization") for n in CHECKS[2:])
        return

    user = me.get("user") if isinstance(me, dict) else None
    ids: list[str] = list(orgs) + ([user["id"]] if isinstance(user, dict) and isinstance(user.get("id"), str) else [])
    devices, org = await _devices(probe, orgs, findings, ids)
    if devices and org is not None:
        findings.append(_device_organization(devices, org, me))
        findings.append(await _device_lookup(probe, devices[0]))
    upper = [i for i in ids if i != i.lower()]
    if upper:
        findings.append(
            failed(
                VENDOR,
                "id_case",
                f"{len(upper)} of {len(ids)} user, organization and device ids are not lower case "
                "(the adapter lower-cases them; correct the pin)",
                f"{SHAPES} (WireId)",
            )
        )
    else:
        findings.append(passed(VENDOR, "id_case", f"all {len(ids)} user, organization and device ids lower case"))
    if not devices or org is None:
        done = {f.check for f in findings if f.vendor == VENDOR}
        findings.extend(unknown(VENDOR, n, "not probed: no device") for n in CHECKS[5:] if n not in done)
        return

    now = from_epoch(clock())
    device = await _telemetry(probe, devices, now, findings)
    await _daily(probe, org, device, now, findings)
    findings.append(await _audit(probe, org, now))
    findings.append(await _daily_label(probe, org, device, now))


async def _devices(
    probe: Probe, orgs: list[str], findings: list[Finding], ids: list[str]
) -> tuple[list[dict[str, Any]], str | None]:
    """The first organization with devices: its devices (shape and paging checked)."""
    for org in orgs:
        status, body = await probe.get(shapes.devices_path(org), {"limit": "100", "offset": "0"})
        rows, wrapped = _data(body)
        if rows is None:
            findings.append(
                failed(
                    VENDOR,
                    "devices_shape",
                    f"device list: {_said(status, body)}, no `data` list",
                    f"{SHAPES} (DevicesPage)",
                )
            )
            findings.append(unknown(VENDOR, "device_paging", "not probed: no device list"))
            return [], None
        if not rows:
            continue
        problems = []
        if not wrapped:
            problems.append("a bare list, not `{data, total}`")
        elif not isinstance(body.get("total"), int):
            problems.append("no integer `total`")
        missing = sorted({k for row in rows for k in DEVICE_KEYS if not isinstance(row, dict) or k not in row})
        if missing:
            problems.append("devices lack " + ", ".join(missing))
        if problems:
            findings.append(failed(VENDOR, "devices_shape", "; ".join(problems), f"{SHAPES} (Device / DevicesPage)"))
        else:
            findings.append(
                passed(
                    VENDOR,
                    "devices_shape",
                    f"`{{data, total}}` with {len(rows)} devices carrying {', '.join(DEVICE_KEYS)}",
                )
            )
        devices = [row for row in rows if isinstance(row, dict) and isinstance(row.get("id"), str)]
        ids += [d["id"] for d in devices]
        if len(devices) < 2:
            findings.append(unknown(VENDOR, "device_paging", "fewer than 2 devices: offset cannot be told"))
        else:
            _, first = await probe.get(shapes.devices_path(org), {"limit": "1", "offset": "0"})
            _, second = await probe.get(shapes.devices_path(org), {"limit": "1", "offset": "1"})
            a, _ = _data(first)
            b, _ = _data(second)
            first_id = a[0].get("id") if a and isinstance(a[0], dict) else None
            second_id = b[0].get("id") if b and isinstance(b[0], dict) else None
            if first_id is not None and first_id == second_id:
                findings.append(
                    failed(
                        VENDOR,
                        "device_paging",
                        "`offset=1` answered the same device as `offset=0` "
                        "(offset ignored; the adapter stops and warns)",
                        "app/backends/waltero/client.py (WalteroClient.all_devices)",
                    )
                )
            else:
                findings.append(passed(VENDOR, "device_paging", "`limit=1&offset=1` answers the second device"))
        return devices, org
    findings.append(unknown(VENDOR, "devices_shape", "no organization has a device"))
    findings.append(unknown(VENDOR, "device_paging", "no organization has a device"))
    return [], None


async def _telemetry(
    probe: Probe, devices: list[dict[str, Any]], now: datetime, findings: list[Finding]
) -> dict[str, Any] | None:
    """Telemetry keys and processed vs raw x multiplier, on a device with a multiplier other than 1."""

    def multiplier(d: dict[str, Any]) -> float:
        m = d.get("multiplier")
        return float(m) if isinstance(m, int | float) and not isinstance(m, bool) else 1.0

    fields = f"{shapes.PROCESSED},{shapes.RAW}"
    for device in sorted(devices, key=lambda d: (multiplier(d) == 1.0, str(d["id"]))):
        params = {"startDate": _wire(now - timedelta(days=3)), "endDate": _wire(now), "fields": fields}
        _, body = await probe.get(shapes.telemetry_path(device["id"]), params)
        rows, _ = _data(body)
        points = [p for p in rows or [] if isinstance(p, dict)]
        if not points:
            continue
        nested = any(isinstance(v, dict) for p in points for k, v in p.items() if k != "timestamp")
        if nested:
            findings.append(
                failed(
                    VENDOR,
                    "telemetry_keys",
                    "telemetry fields come nested (`meter: {value: {processed}}`), not as the page's dotted keys "
                    "(tolerated; correct the pin)",
                    f"{SHAPES} (TelemetryPoint)",
                )
            )
        else:
            names = sorted({k for p in points for k in p})
            findings.append(
                passed(VENDOR, "telemetry_keys", f"{len(points)} points with flat keys: {', '.join(names)}")
            )
        findings.append(_telemetry_time(body, points))
        factor = multiplier(device)
        pairs = [
            (float(p[shapes.PROCESSED]), float(p[shapes.RAW]))
            for p in map(_flat, points)
            if isinstance(p.get(shapes.PROCESSED), int | float) and isinstance(p.get(shapes.RAW), int | float)
        ]
        if not pairs:
            findings.append(unknown(VENDOR, "processed", "no point carries both processed and raw"))
        elif factor == 1.0:
            findings.append(
                unknown(VENDOR, "processed", "every device has multiplier 1: processed and raw agree either way")
            )
        elif all(_close(float(p), float(r) * factor) for p, r in pairs):
            findings.append(
                passed(VENDOR, "processed", f"processed = raw x multiplier ({factor:g}) on {len(pairs)} points")
            )
        elif all(_close(float(p), float(r)) for p, r in pairs):
            findings.append(
                failed(
                    VENDOR,
                    "processed",
                    f"processed = raw on {len(pairs)} points although the multiplier is {factor:g} "
                    "(the page's intro: apply the multiplier yourself)",
                    "app/backends/waltero/adapter.py (WalteroBackend.readings: scale PROCESSED by the multiplier)",
                )
            )
        else:
            findings.append(
                failed(
                    VENDOR,
                    "processed",
                    f"processed is neither raw x {factor:g} nor raw",
                    "app/backends/waltero/adapter.py (WalteroBackend.readings)",
                )
            )
        return device
    findings.append(unknown(VENDOR, "telemetry_keys", "no device has telemetry in the last 3 days"))
    findings.append(unknown(VENDOR, "processed", "no device has telemetry in the last 3 days"))
    findings.append(unknown(VENDOR, "telemetry_time", "no device has telemetry in the last 3 days"))
    return None


def _telemetry_time(body: Any, points: list[dict[str, Any]]) -> Finding:
    """`telemetry_time`: the answer is `{deviceId, data: [...]}` and each point's time is `timestamp`
    (pinned; the page shows no telemetry answer). Another time key is read by the adapter, but named."""
    wrapper = sorted(body) if isinstance(body, dict) else ["(a bare list)"]
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or "deviceId" not in body:
        return failed(
            VENDOR,
            "telemetry_time",
            f"the telemetry answer is not `{{deviceId, data}}` (keys: {', '.join(wrapper)})",
            f"{SHAPES} (TelemetryResponse)",
        )
    keys = {shapes.time_key(p) for p in points}
    if keys == {"timestamp"}:
        return passed(VENDOR, "telemetry_time", f"`{{deviceId, data}}`; all {len(points)} points carry `timestamp`")
    found = sorted(str(k) for k in keys)
    return failed(
        VENDOR,
        "telemetry_time",
        f"points carry their time as {', '.join(f'`{k}`' for k in found)}, not `timestamp` "
        "(the adapter reads the usual time keys; correct the pin)",
        f"{SHAPES} (TelemetryPoint / TIME_KEYS)",
    )


async def _daily(probe: Probe, org: str, device: dict[str, Any] | None, now: datetime, findings: list[Finding]) -> None:
    """The v3 daily shape, its value against telemetry register differences, and the bucket rule
    (asked at a UTC midnight and at noon: 48 h from noon is 2 rolling buckets, or 3 calendar ones)."""
    midnight = datetime.combine(now.date() - timedelta(days=3), time(0), UTC)
    path = shapes.daily_consumption_path(org)
    status, body = await probe.get(
        path, {"startDate": _wire(midnight), "endDate": _wire(midnight + timedelta(days=1)), "resolution": "day"}
    )
    rows, wrapped = _data(body)
    if rows is None:
        findings.append(
            failed(
                VENDOR,
                "daily_shape",
                f"daily consumption: {_said(status, body)}, no rows",
                f"{SHAPES} (DailyConsumptionResponse)",
            )
        )
        findings.append(unknown(VENDOR, "daily_vs_telemetry", "no daily rows"))
        findings.append(unknown(VENDOR, "daily_buckets", "no daily rows"))
        return
    missing = sorted({k for row in rows for k in DAILY_KEYS if not isinstance(row, dict) or k not in row})
    if not wrapped:
        findings.append(
            failed(
                VENDOR,
                "daily_shape",
                "daily consumption is a bare list, not `{data: [...]}` (tolerated; correct the pin)",
                f"{SHAPES} (DailyConsumptionResponse)",
            )
        )
    elif missing:
        findings.append(
            failed(VENDOR, "daily_shape", "rows lack " + ", ".join(missing), f"{SHAPES} (DailyConsumptionRow)")
        )
    else:
        findings.append(
            passed(VENDOR, "daily_shape", f"`{{data: [...]}}`, {len(rows)} rows with {', '.join(DAILY_KEYS)}, date")
        )

    if device is None:
        findings.append(unknown(VENDOR, "daily_vs_telemetry", "no device with telemetry"))
    else:
        findings.append(await _daily_vs_telemetry(probe, rows, device, midnight))

    status, body = await probe.get(
        path,
        {
            "startDate": _wire(midnight + timedelta(hours=12)),
            "endDate": _wire(midnight + timedelta(hours=60)),
            "resolution": "day",
        },
    )
    shifted, _ = _data(body)
    per_device: dict[str, set[str]] = {}
    for row in shifted or []:
        if isinstance(row, dict) and isinstance(row.get("date"), str):
            per_device.setdefault(str(row.get("deviceId")).lower(), set()).add(row["date"])
    # A device silent for part of the window has fewer dated buckets: the most any device has tells.
    most = max((len(dates) for dates in per_device.values()), default=0)
    if most == 2:
        rule = "rolling"
    elif most == 3:
        rule = "utc-calendar"
    else:
        findings.append(unknown(VENDOR, "daily_buckets", f"48 h from 12:00Z gave at most {most} dated buckets"))
        return
    explained = (
        "2 buckets per device: 24 h windows from startDate"
        if rule == "rolling"
        else "3 buckets per device: UTC calendar days cut to the range"
    )
    configured = wa_settings(probe.settings).daily_buckets
    evidence = f"48 h from 12:00Z gave {explained} (vendor: {rule})"
    if rule == configured:
        findings.append(passed(VENDOR, "daily_buckets", evidence + f" = WALTERO_DAILY_BUCKETS={configured}"))
    else:
        findings.append(
            failed(
                VENDOR,
                "daily_buckets",
                evidence + f", but WALTERO_DAILY_BUCKETS={configured}",
                f"WALTERO_DAILY_BUCKETS={rule} (app/infra/config.py Settings.waltero_daily_buckets)",
            )
        )


async def _daily_vs_telemetry(probe: Probe, rows: list[Any], device: dict[str, Any], midnight: datetime) -> Finding:
    device_id = str(device["id"])
    row = next((r for r in rows if isinstance(r, dict) and str(r.get("deviceId")).lower() == device_id.lower()), None)
    value = row.get("consumption") if row else None
    end = midnight + timedelta(days=1)
    register = await _register_at(probe, device_id, [midnight, end])
    if not isinstance(value, int | float) or midnight not in register or end not in register:
        return unknown(
            VENDOR, "daily_vs_telemetry", f"device {device_id}: no daily value or no points at both midnights"
        )
    difference = register[end] - register[midnight]
    multiplier = device.get("multiplier")
    if _close(float(value), difference):
        return passed(
            VENDOR, "daily_vs_telemetry", f"device {device_id}: daily {value:g} = processed register difference"
        )
    if (
        isinstance(multiplier, int | float)
        and multiplier not in (0, 1)
        and _close(float(value) * multiplier, difference)
    ):
        return failed(
            VENDOR,
            "daily_vs_telemetry",
            f"device {device_id}: daily {value:g} x multiplier {multiplier:g} = the register difference "
            f"{difference:g}: daily is in raw units, not the display unit",
            "app/backends/waltero/adapter.py (WalteroBackend.daily_consumption: scale by the multiplier)",
        )
    return failed(
        VENDOR,
        "daily_vs_telemetry",
        f"device {device_id}: daily {value:g} ≠ processed register difference {difference:g}",
        "app/backends/waltero/adapter.py (WalteroBackend.daily_consumption)",
    )


async def _audit(probe: Probe, org: str, now: datetime) -> Finding:
    path = shapes.changes_path(org)
    since = _wire(now - timedelta(days=120))
    status, body = await probe.get(path, {"since": since, "limit": "1"})
    rows, _ = _data(body)
    if rows is None:
        return failed(
            VENDOR, "audit_paging", f"data-audit: {_said(status, body)}, no `data` list", f"{SHAPES} (AuditChangesPage)"
        )
    if not rows:
        return unknown(VENDOR, "audit_paging", "no change in the last 120 days: paging cannot be told")
    missing = sorted({k for k in AUDIT_KEYS if not isinstance(rows[0], dict) or k not in rows[0]})
    if missing:
        return failed(VENDOR, "audit_paging", "audit rows lack " + ", ".join(missing), f"{SHAPES} (AuditChange)")
    cursor = body.get("next_cursor") if isinstance(body, dict) else None
    if isinstance(cursor, str) and cursor:
        _, following = await probe.get(path, {"since": since, "limit": "1", "cursor": cursor})
        more, _ = _data(following)
        if more and isinstance(more[0], dict) and more[0].get("id") != rows[0].get("id"):
            return passed(VENDOR, "audit_paging", "a full page carries `next_cursor`, and it leads to the next change")
        return failed(
            VENDOR,
            "audit_paging",
            "following `next_cursor` repeated the first change",
            "app/backends/waltero/adapter.py (WalteroBackend._org_feed)",
        )
    _, again = await probe.get(path, {"since": str(rows[0].get("changed_at")), "limit": "2"})
    more, _ = _data(again)
    newer = [r for r in more or [] if isinstance(r, dict) and r.get("id") != rows[0].get("id")]
    if newer:
        return failed(
            VENDOR,
            "audit_paging",
            "a full page came without `next_cursor` although more changes follow: the feed pages by `since` "
            "(the adapter advances `since`; correct the pin)",
            "app/backends/waltero/adapter.py (WalteroBackend._org_feed)",
        )
    return unknown(VENDOR, "audit_paging", "only one change in 120 days: paging cannot be told")


DAILY_LABELS = "app/backends/waltero/daily.py (local_days_of_call: the bucket a row's `date` claims)"


async def _register_at(probe: Probe, device_id: str, times: list[datetime]) -> dict[datetime, float]:
    """The device's processed register at `times` (those it has a point at)."""
    params = {
        "startDate": _wire(times[0]),
        "endDate": _wire(times[-1] + timedelta(minutes=1)),
        "fields": shapes.PROCESSED,
    }
    _, body = await probe.get(shapes.telemetry_path(device_id), params)
    points, _ = _data(body)
    register: dict[datetime, float] = {}
    for point in map(_flat, [p for p in points or [] if isinstance(p, dict)]):
        stamp, processed = point.get(shapes.time_key(point) or "timestamp"), point.get(shapes.PROCESSED)
        if isinstance(stamp, str) and isinstance(processed, int | float):
            try:
                register[parse_rfc3339(stamp)] = float(processed)
            except ValueError:
                continue
    return {t: register[t] for t in times if t in register}


async def _daily_label(probe: Probe, org: str, device: dict[str, Any] | None, now: datetime) -> Finding:
    """`daily_label`: the `date` of a 24 h bucket starting at 22:00Z (as the page's own example window
    does) is the UTC day it starts on (pinned), not the day it ends on. Which bucket a label names is
    confirmed with the telemetry register of the same device, else with a request shifted by a day."""
    start = datetime.combine(now.date() - timedelta(days=5), time(22), UTC)
    path = shapes.daily_consumption_path(org)
    ask = {"startDate": _wire(start), "endDate": _wire(start + timedelta(hours=48)), "resolution": "day"}
    status, body = await probe.get(path, ask)
    rows = [r for r in _data(body)[0] or [] if isinstance(r, dict) and isinstance(r.get("date"), str)]
    if not rows:
        return unknown(VENDOR, "daily_label", f"48 h from {_wire(start)}: {_said(status, body)}, no dated row")
    first = min(str(r["date"]) for r in rows)
    how = await _confirm_first_bucket(probe, path, start, rows, first, device)
    pinned, ending = start.date().isoformat(), (start.date() + timedelta(days=1)).isoformat()
    evidence = f"the bucket from {_wire(start)} is labelled {first} ({how})"
    if first == pinned:
        return passed(VENDOR, "daily_label", evidence + ": the day it starts on, as pinned")
    if first == ending:
        return failed(
            VENDOR,
            "daily_label",
            evidence + ": the day it ends on, so every local day east of UTC would shift by one",
            DAILY_LABELS,
        )
    return failed(VENDOR, "daily_label", evidence + f": neither {pinned} nor {ending}", DAILY_LABELS)


async def _confirm_first_bucket(
    probe: Probe, path: str, start: datetime, rows: list[dict[str, Any]], first: str, device: dict[str, Any] | None
) -> str:
    """How we know `first` names the bucket from `start`: the device's value there equals its register
    difference over `[start, start + 24 h)`, or a request from `start + 24 h` does not carry `first`."""
    if device is not None:
        device_id = str(device["id"]).lower()
        row = next((r for r in rows if str(r.get("deviceId")).lower() == device_id and r["date"] == first), None)
        moments = [start, start + timedelta(hours=24)]
        register = await _register_at(probe, device_id, moments)
        value = row.get("consumption") if row else None
        multiplier = device.get("multiplier")
        factors = [1.0] + ([float(multiplier)] if isinstance(multiplier, int | float) and multiplier else [])
        if isinstance(value, int | float) and len(register) == 2:
            difference = register[moments[1]] - register[moments[0]]
            if any(_close(float(value) * f, difference) for f in factors):
                return f"device {device_id}: its value is the register difference over that bucket"
    shifted = start + timedelta(hours=24)
    ask = {"startDate": _wire(shifted), "endDate": _wire(shifted + timedelta(hours=24)), "resolution": "day"}
    _, body = await probe.get(path, ask)
    later = {str(r.get("date")) for r in _data(body)[0] or [] if isinstance(r, dict) and r.get("date")}
    if later and first not in later:
        return f"a request from {_wire(shifted)} is labelled {min(later)}"
    return "not confirmed by telemetry or a shifted request"


def _device_organization(devices: list[dict[str, Any]], org: str, me: Any) -> Finding:
    """`device_organization`: each listed device names its organization (`organization_id`, pinned but
    not on the page); where none does, the adapter takes the organization it listed them under, or for a
    single lookup the login's organizations (`user.organizations`)."""
    named = [d for d in devices if isinstance(d.get("organization_id"), str)]
    user = me.get("user") if isinstance(me, dict) else None
    memberships = user.get("organizations") if isinstance(user, dict) else None
    members = len(memberships) if isinstance(memberships, list) else 0
    if len(named) == len(devices):
        wrong = [d for d in named if str(d["organization_id"]).lower() != org.lower()]
        if not wrong:
            return passed(
                VENDOR,
                "device_organization",
                f"all {len(devices)} devices name `organization_id` = the organization listed",
            )
        return failed(
            VENDOR,
            "device_organization",
            f"{len(wrong)} of {len(devices)} devices listed under one organization name another",
            f"{SHAPES} (Device.organization_id)",
        )
    return failed(
        VENDOR,
        "device_organization",
        f"{len(devices) - len(named)} of {len(devices)} devices carry no `organization_id`; the adapter takes the "
        f"organization they are listed under, or the login's `user.organizations` ({members}) (correct the pin)",
        f"{SHAPES} (Device.organization_id)",
    )


UNKNOWN_DEVICE = "00000000-0000-4000-8000-00000000dead"


async def _device_lookup(probe: Probe, listed: dict[str, Any]) -> Finding:
    """`device_lookup`: `GET /api/devices/{id}` answers the bare device record, with the same
    multiplier as the listing (the page: "multiplier (returned by GET /api/devices/{id})"), and an
    unknown id is 404 `NOT_FOUND`."""
    device_id = str(listed["id"])
    status, body = await probe.get(shapes.device_path(device_id))
    if status != 200 or not isinstance(body, dict):
        return failed(
            VENDOR, "device_lookup", f"GET /api/devices/{device_id}: {_said(status, body)}", f"{SHAPES} (Device)"
        )
    if set(body) == {"data"} and isinstance(body["data"], dict):
        return failed(
            VENDOR,
            "device_lookup",
            "GET /api/devices/{id} wraps the device in `{data}` (the adapter unwraps it; correct the pin)",
            f"{SHAPES} (Device)",
        )
    missing = [k for k in DEVICE_KEYS if k not in body]
    if missing:
        return failed(
            VENDOR, "device_lookup", "GET /api/devices/{id} lacks " + ", ".join(missing), f"{SHAPES} (Device)"
        )
    one, many = body.get("multiplier"), listed.get("multiplier")
    if not (isinstance(one, int | float) and isinstance(many, int | float) and _close(float(one), float(many))):
        return failed(
            VENDOR,
            "device_lookup",
            f"GET /api/devices/{{id}} says multiplier {one!r}, the listing {many!r}",
            "app/backends/waltero/adapter.py (WalteroBackend._device)",
        )
    status, missing_body = await probe.get(shapes.device_path(UNKNOWN_DEVICE))
    if status != 404:
        return failed(
            VENDOR,
            "device_lookup",
            f"an unknown device id answered {_said(status, missing_body)}, not 404 NOT_FOUND",
            "app/backends/waltero/errors.py",
        )
    return passed(
        VENDOR,
        "device_lookup",
        f"GET /api/devices/{{id}}: the bare record, multiplier {one:g} as listed; an unknown id is 404",
    )
