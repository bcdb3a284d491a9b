"""The doctor's IOmeter probes: each pinned assumption of UPSTREAMS.md asked of the real server.

Read-only: only queries (never a mutation), a handful of small requests. The raw JSON is looked at
before any tolerance, so a shape the adapter copes with but does not pin still shows as a FAIL naming
the place where the pin lives.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    build_client_schema,
    build_schema,
    get_introspection_query,
)

from app.backends.iometer import settings_of as io_settings
from app.backends.iometer.auth import BasicAuth, WsseAuth
from app.backends.iometer.documents import schema_sdl
from app.doctor.report import Finding, failed, passed, unknown
from app.infra.config import Settings
from app.infra.timeutil import Clock, format_rfc3339_seconds, from_epoch

VENDOR = "iometer"
SDL_FILE = "app/backends/iometer/schema.graphql"
READINGS_WALK = "app/backends/iometer/adapter.py (IometerBackend._reading_pages)"
DECIMAL = re.compile(r"\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}")
OWN_CHECKS = frozenset({"ObisFormat", "Pagination"})
"""Types with a check of their own (left out of the schema diff, so one mistake is one FAIL)."""
CHECKS = (
    "auth",
    "schema",
    "obis_format",
    "obis_default_form",
    "pagination",
    "readings_order",
    "cursor",
    "id_case",
)


class Probe:
    """Posts GraphQL documents with the partner's auth; remembers nothing secret."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, clock: Clock) -> None:
        partner_id, secret = io_settings(settings).partner_id or "", io_settings(settings).partner_secret
        assert secret is not None
        self.url = io_settings(settings).url
        self.mode = io_settings(settings).auth
        self.auth: httpx.Auth = (
            WsseAuth(partner_id, secret, clock=clock)
            if io_settings(settings).auth == "wsse"
            else BasicAuth(partner_id, secret)
        )
        self.http = http

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        name = re.search(r"(?:query|subscription)\s+(\w+)", query)
        body: dict[str, Any] = {"query": query, "variables": variables or {}}
        if name:
            body["operationName"] = name.group(1)
        response = await self.http.post(self.url, json=body, auth=self.auth)
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        return response.status_code, payload if isinstance(payload, dict) else {}


def _error(status: int, payload: dict[str, Any]) -> str:
    """HTTP status and the first error's code and message (the server's words, never our input)."""
    errors = payload.get("errors") or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    code = (first.get("extensions") or {}).get("code") if isinstance(first.get("extensions"), dict) else None
    message = str(first.get("message", ""))[:160]
    return f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")


def _ok(status: int, payload: dict[str, Any]) -> bool:
    return status == 200 and not payload.get("errors") and isinstance(payload.get("data"), dict)


async def check(settings: Settings, http: httpx.AsyncClient, clock: Clock, findings: list[Finding]) -> None:
    """Append one finding per check to `findings`, in order (partial results survive an exception)."""
    probe = Probe(settings, http, clock)

    status, payload = await probe.post("query DoctorPartner { partner { id name } }")
    if not _ok(status, payload):
        findings.append(
            failed(
                VENDOR,
                "auth",
                f"`partner {{ id }}` with {probe.mode.upper()} auth: {_error(status, payload)}",
                "IOMETER_PARTNER_ID / IOMETER_PARTNER_SECRET / IOMETER_AUTH (the settings)",
            )
        )
        findings.extend(unknown(VENDOR, name, "not probed: authentication failed") for name in CHECKS[1:])
        return
    partner = payload["data"]["partner"]
    findings.append(passed(VENDOR, "auth", f"{probe.mode.upper()} accepted; partner {partner['id']}"))

    findings.append(await _schema(probe))
    findings.extend(await _obis(probe, clock))
    findings.append(await _pagination(probe))
    findings.extend(await _readings(probe, clock))
    findings.append(await _id_case(probe))


# --- schema -----------------------------------------------------------------------------------------


def _describe(named: GraphQLNamedType) -> dict[str, str]:
    """A comparable summary of one type: field → printed type and arguments (or enum values)."""
    if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        return {
            name: f"{field.type}(" + ", ".join(f"{a}: {arg.type}" for a, arg in sorted(field.args.items())) + ")"
            for name, field in named.fields.items()
        }
    if isinstance(named, GraphQLInputObjectType):
        return {name: str(field.type) for name, field in named.fields.items()}
    if isinstance(named, GraphQLEnumType):
        return dict.fromkeys(named.values, "value")
    return {"kind": type(named).__name__}


def schema_differences(pinned: GraphQLSchema, server: GraphQLSchema) -> list[str]:
    """Where the server's schema differs from the pinned SDL on the pinned types (not on types or
    fields the server adds: the adapter never asks for those)."""
    differences: list[str] = []
    for name, pinned_type in sorted(pinned.type_map.items()):
        if name.startswith("__") or name in OWN_CHECKS or name in ("String", "Int", "Float", "Boolean", "ID"):
            continue
        server_type = server.type_map.get(name)
        if server_type is None:
            differences.append(f"type {name} is missing")
            continue
        ours, theirs = _describe(pinned_type), _describe(server_type)
        for field, shape in sorted(ours.items()):
            if field not in theirs:
                differences.append(f"{name}.{field} is missing")
            elif theirs[field] != shape:
                differences.append(f"{name}.{field} is {theirs[field]}, pinned {shape}")
    return differences


async def _schema(probe: Probe) -> Finding:
    status, payload = await probe.post(get_introspection_query(descriptions=False))
    if not _ok(status, payload):
        return unknown(VENDOR, "schema", f"introspection not allowed ({_error(status, payload)}); nothing to diff")
    try:
        server = build_client_schema(payload["data"])  # type: ignore[arg-type]
    except (TypeError, KeyError, ValueError) as exc:
        return unknown(VENDOR, "schema", f"introspection answer unreadable ({type(exc).__name__})")
    pinned = build_schema(schema_sdl())
    differences = schema_differences(pinned, server)
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        return failed(VENDOR, "schema", f"introspection differs from the pinned SDL: {shown}", SDL_FILE)
    checked = len([n for n in pinned.type_map if not n.startswith("__")]) - len(OWN_CHECKS) - 5
    return passed(VENDOR, "schema", f"introspection matches the pinned SDL on all {checked} pinned types")


# --- OBIS codes ---------------------------------------------------------------------------------------


async def _obis(probe: Probe, clock: Clock) -> list[Finding]:
    since = format_rfc3339_seconds(from_epoch(clock()) - timedelta(days=2))
    status, payload = await probe.post(
        "query DoctorObisFormat($t: DateTime) { readings(startTime: $t, limit: 1) "
        "{ readings { values { obisCode(format: decimal) } } } }",
        {"t": since},
    )
    findings: list[Finding] = []
    if not _ok(status, payload):
        findings.append(
            failed(
                VENDOR,
                "obis_format",
                f"`obisCode(format: decimal)` refused: {_error(status, payload)}",
                f"{SDL_FILE} (enum ObisFormat)",
            )
        )
    else:
        codes = _codes(payload)
        if not codes:
            findings.append(unknown(VENDOR, "obis_format", "`format: decimal` validated, but no reading in 2 days"))
        elif all(DECIMAL.fullmatch(c) for c in codes):
            findings.append(passed(VENDOR, "obis_format", f"`format: decimal` accepted, e.g. {codes[0]}"))
        else:
            findings.append(
                failed(
                    VENDOR,
                    "obis_format",
                    f"`format: decimal` answered {codes[0]!r}, not the decimal form",
                    f"{SDL_FILE} (enum ObisFormat)",
                )
            )
    status, payload = await probe.post(
        "query DoctorObisDefault($t: DateTime) { readings(startTime: $t, limit: 1) "
        "{ readings { values { obisCode } } } }",
        {"t": since},
    )
    codes = _codes(payload) if _ok(status, payload) else []
    if not codes:
        findings.append(unknown(VENDOR, "obis_default_form", f"no OBIS code to look at ({_error(status, payload)})"))
    elif all(DECIMAL.fullmatch(c) for c in codes):
        findings.append(
            passed(VENDOR, "obis_default_form", f"without `format:` the server answers decimal ({codes[0]})")
        )
    else:
        findings.append(
            failed(
                VENDOR,
                "obis_default_form",
                f"without `format:` the server answers {codes[0]!r}, not decimal as pinned "
                "(the adapter normalizes it; correct the pin)",
                "app/backends/iometer/payloads.py (parse_obis)",
            )
        )
    return findings


def _codes(payload: dict[str, Any]) -> list[str]:
    try:
        rows = payload["data"]["readings"]["readings"]
        return [str(v["obisCode"]) for row in rows for v in row["values"]]
    except (KeyError, TypeError):
        return []


# --- pagination ------------------------------------------------------------------------------------------


async def _pagination(probe: Probe) -> Finding:
    query = "query DoctorPagination($p: Pagination) { installations(pagination: $p) { id } }"
    pages = []
    for offset in (0, 1):
        status, payload = await probe.post(query, {"p": {"limit": 1, "offset": offset}})
        if not _ok(status, payload):
            return failed(
                VENDOR,
                "pagination",
                f"`Pagination {{limit, offset}}` refused: {_error(status, payload)}",
                f"{SDL_FILE} (input Pagination)",
            )
        pages.append([str(i.get("id")) for i in payload["data"].get("installations") or []])
    first, second = pages
    if len(first) > 1:
        return failed(
            VENDOR, "pagination", f"`limit: 1` answered {len(first)} installations", f"{SDL_FILE} (input Pagination)"
        )
    if first and second and first == second:
        return failed(
            VENDOR,
            "pagination",
            "`offset: 1` answered the same installation as `offset: 0` (offset ignored)",
            "app/backends/iometer/adapter.py (IometerBackend._installations)",
        )
    return passed(
        VENDOR, "pagination", f"`{{limit: 1, offset}}` pages: offset 0 → {len(first)}, offset 1 → {len(second)}"
    )


# --- readings -------------------------------------------------------------------------------------------

READINGS = (
    "query DoctorReadings($t: DateTime, $n: Int, $c: String) { readings(startTime: $t, limit: $n, cursor: $c) "
    "{ readings { meter { id } time } cursor } }"
)


async def _readings(probe: Probe, clock: Clock) -> list[Finding]:
    since = format_rfc3339_seconds(from_epoch(clock()) - timedelta(hours=6))
    status, payload = await probe.post(READINGS, {"t": since, "n": 200})
    if not _ok(status, payload):
        problem = _error(status, payload)
        return [
            unknown(VENDOR, "readings_order", f"partner readings refused: {problem}"),
            unknown(VENDOR, "cursor", f"partner readings refused: {problem}"),
        ]
    rows = _rows(payload)
    findings: list[Finding] = []
    keys = [(str(r["meter"]["id"]).lower(), str(r["time"])) for r in rows]
    times = [t for _, t in keys]
    duplicates = len(keys) - len(set(keys))
    ordered = times == sorted(times)  # RFC 3339 UTC `Z` strings sort as their instants
    if len(rows) < 2:
        findings.append(unknown(VENDOR, "readings_order", f"{len(rows)} reading(s) in the last 6 h: nothing to order"))
    elif ordered and not duplicates:
        findings.append(
            passed(VENDOR, "readings_order", f"{len(rows)} readings of the last 6 h ascending, no duplicates")
        )
    else:
        what = []
        if not ordered:
            what.append("not ascending by time")
        if duplicates:
            what.append(f"{duplicates} duplicated (meter, time)")
        findings.append(
            failed(
                VENDOR,
                "readings_order",
                f"a page of {len(rows)} readings is " + " and ".join(what) + " (the adapter sorts and de-duplicates)",
                READINGS_WALK,
            )
        )

    status, first = await probe.post(READINGS, {"t": since, "n": 3})
    cursor = first.get("data", {}).get("readings", {}).get("cursor") if _ok(status, first) else None
    if not isinstance(cursor, str):
        findings.append(unknown(VENDOR, "cursor", "a 3-reading page came without a cursor: too few readings to page"))
        return findings
    status, second = await probe.post(READINGS, {"t": since, "n": 3, "c": cursor})
    if not _ok(status, second):
        findings.append(
            failed(VENDOR, "cursor", f"following the cursor failed: {_error(status, second)}", READINGS_WALK)
        )
        return findings
    page1 = {(str(r["meter"]["id"]).lower(), str(r["time"])) for r in _rows(first)}
    page2 = {(str(r["meter"]["id"]).lower(), str(r["time"])) for r in _rows(second)}
    if page1 & page2:
        findings.append(
            failed(
                VENDOR,
                "cursor",
                f"page 2 repeats {len(page1 & page2)} of page 1's readings (the cursor is ignored)",
                READINGS_WALK,
            )
        )
    else:
        findings.append(passed(VENDOR, "cursor", f"the cursor continues: page 2 has {len(page2)} new readings"))
    return findings


def _rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        rows = payload["data"]["readings"]["readings"]
    except (KeyError, TypeError):
        return []
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("meter"), dict)]


async def _id_case(probe: Probe) -> Finding:
    status, payload = await probe.post(
        "query DoctorIds { installations { id meters { id } devices { id } } }",
    )
    if not _ok(status, payload):
        return unknown(VENDOR, "id_case", f"installations refused: {_error(status, payload)}")
    ids = []
    for inst in payload["data"].get("installations") or []:
        ids.append(str(inst.get("id")))
        ids += [str(m.get("id")) for m in inst.get("meters") or []]
        ids += [str(d.get("id")) for d in inst.get("devices") or []]
    upper = [i for i in ids if i != i.lower()]
    if upper:
        return failed(
            VENDOR,
            "id_case",
            f"{len(upper)} of {len(ids)} ids are not lower case (the adapter lower-cases them; correct the pin)",
            "app/backends/iometer/adapter.py (_id)",
        )
    return passed(VENDOR, "id_case", f"all {len(ids)} installation, meter and device ids lower case")
