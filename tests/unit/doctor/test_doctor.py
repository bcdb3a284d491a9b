"""`python -m app.doctor` against the emulators on loopback sockets: every check PASSes against the
normal sandbox, and each emulator variant (one broken pinned assumption) yields exactly its one FAIL,
naming the place to change, while every other check still PASSes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.backends.iometer import emulator as iometer_sandbox
from app.backends.iometer.emulator.app import BREAKS as IOMETER_BREAKS
from app.backends.waltero import emulator as waltero_sandbox
from app.backends.waltero.emulator.emulator import BREAKS as WALTERO_BREAKS
from app.doctor import run
from app.doctor.report import Finding, render
from app.infra.config import Settings
from tests.support.servers import serve_in_thread

IOMETER_CHECKS = {
    "auth",
    "schema",
    "obis_format",
    "obis_default_form",
    "pagination",
    "readings_order",
    "cursor",
    "id_case",
}
WALTERO_CHECKS = {
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
}

# variant -> (the check that must FAIL, the place the FAIL must name)
IOMETER_VARIANTS = {
    "schema_drift": ("schema", "app/backends/iometer/schema.graphql"),
    "obis_format_upper": ("obis_format", "app/backends/iometer/schema.graphql (enum ObisFormat)"),
    "pagination_first_after": ("pagination", "app/backends/iometer/schema.graphql (input Pagination)"),
    "receive_order": ("readings_order", "app/backends/iometer/adapter.py (IometerBackend._reading_pages)"),
    "cursor_ignored": ("cursor", "app/backends/iometer/adapter.py (IometerBackend._reading_pages)"),
    "hex_default": ("obis_default_form", "app/backends/iometer/payloads.py (parse_obis)"),
    "upper_ids": ("id_case", "app/backends/iometer/adapter.py (_id)"),
}
WALTERO_VARIANTS = {
    "opaque_token": ("login", "app/backends/waltero/token.py (token_expiry)"),
    "plain_org_ids": ("organizations", "app/backends/waltero/shapes.py (AccessibleOrganization)"),
    "upper_ids": ("id_case", "app/backends/waltero/shapes.py (WireId)"),
    "offset_ignored": ("device_paging", "app/backends/waltero/client.py (WalteroClient.all_devices)"),
    "nested_telemetry": ("telemetry_keys", "app/backends/waltero/shapes.py (TelemetryPoint)"),
    "processed_is_raw": ("processed", "app/backends/waltero/adapter.py (WalteroBackend.readings"),
    "daily_bare": ("daily_shape", "app/backends/waltero/shapes.py (DailyConsumptionResponse)"),
    "daily_raw_units": ("daily_vs_telemetry", "app/backends/waltero/adapter.py (WalteroBackend.daily_consumption"),
    "utc_calendar": ("daily_buckets", "WALTERO_DAILY_BUCKETS=utc-calendar"),
    "audit_no_cursor": ("audit_paging", "app/backends/waltero/adapter.py (WalteroBackend._org_feed)"),
}


def test_every_variant_has_a_doctor_case() -> None:
    assert set(IOMETER_VARIANTS) | {"no_introspection"} == set(IOMETER_BREAKS)
    assert set(WALTERO_VARIANTS) == set(WALTERO_BREAKS)


def iometer_settings(url: str, **extra: Any) -> dict[str, Any]:
    return {**iometer_sandbox.SANDBOX_SETTINGS, "IOMETER_URL": url + iometer_sandbox.QUERY_PATH, **extra}


def waltero_settings(url: str, **extra: Any) -> dict[str, Any]:
    return {**waltero_sandbox.SANDBOX_SETTINGS, "WALTERO_URL": url + "/prod", **extra}


def findings_of(values: dict[str, Any], vendor: str) -> dict[str, Finding]:
    import asyncio

    findings, _ = asyncio.run(run(Settings(**values)))
    return {f.check: f for f in findings if f.vendor == vendor}


@pytest.fixture(scope="module")
def normal() -> Iterator[tuple[str, str]]:
    io = iometer_sandbox.create_emulator(time.time)
    wa = waltero_sandbox.create_emulator(time.time)
    with serve_in_thread(io.app) as io_url, serve_in_thread(wa.app) as wa_url:
        yield io_url, wa_url


def test_the_normal_sandbox_passes_every_check(normal: tuple[str, str]) -> None:
    io_url, wa_url = normal
    import asyncio

    findings, secrets = asyncio.run(run(Settings(**iometer_settings(io_url), **waltero_settings(wa_url))))
    statuses = {(f.vendor, f.check): f.status for f in findings}
    expected = {("iometer", c): "PASS" for c in IOMETER_CHECKS} | {("waltero", c): "PASS" for c in WALTERO_CHECKS}
    assert statuses == expected, [f for f in findings if f.status != "PASS"]
    assert iometer_sandbox.SANDBOX_SETTINGS["IOMETER_PARTNER_SECRET"] in secrets
    assert any(s.count(".") == 2 for s in secrets)  # the Waltero token it logged in with, to be blanked


@pytest.mark.parametrize("variant", sorted(IOMETER_VARIANTS))
def test_each_iometer_variant_fails_exactly_its_check(variant: str) -> None:
    check, place = IOMETER_VARIANTS[variant]
    emulator = iometer_sandbox.create_emulator(time.time, breaks={variant})
    with serve_in_thread(emulator.app) as url:
        found = findings_of(iometer_settings(url), "iometer")
    assert set(found) == IOMETER_CHECKS
    assert {name for name, f in found.items() if f.status != "PASS"} == {check}, found
    assert found[check].status == "FAIL"
    assert found[check].fix is not None
    assert found[check].fix.startswith(place)


@pytest.mark.parametrize("variant", sorted(WALTERO_VARIANTS))
def test_each_waltero_variant_fails_exactly_its_check(variant: str) -> None:
    check, place = WALTERO_VARIANTS[variant]
    emulator = waltero_sandbox.create_emulator(time.time, breaks={variant})
    with serve_in_thread(emulator.app) as url:
        found = findings_of(waltero_settings(url), "waltero")
    assert set(found) == WALTERO_CHECKS
    assert {name for name, f in found.items() if f.status != "PASS"} == {check}, found
    assert found[check].status == "FAIL"
    assert found[check].fix is not None
    assert found[check].fix.startswith(place)


def test_without_introspection_the_schema_is_unknown_not_failed() -> None:
    emulator = iometer_sandbox.create_emulator(time.time, breaks={"no_introspection"})
    with serve_in_thread(emulator.app) as url:
        found = findings_of(iometer_settings(url), "iometer")
    assert found["schema"].status == "UNKNOWN"
    assert "introspection" in found["schema"].evidence
    assert {name for name, f in found.items() if f.status != "PASS"} == {"schema"}


def test_the_configured_bucket_rule_is_what_the_doctor_compares_with() -> None:
    """Against a calendar-day vendor, WALTERO_DAILY_BUCKETS=utc-calendar passes (and rolling fails above)."""
    emulator = waltero_sandbox.create_emulator(time.time, breaks={"utc_calendar"})
    with serve_in_thread(emulator.app) as url:
        found = findings_of(waltero_settings(url, WALTERO_DAILY_BUCKETS="utc-calendar"), "waltero")
    assert found["daily_buckets"].status == "PASS"
    assert "utc-calendar" in found["daily_buckets"].evidence


def test_rejected_credentials_fail_auth_and_leave_the_rest_unknown(normal: tuple[str, str]) -> None:
    io_url, wa_url = normal
    io = findings_of(iometer_settings(io_url, IOMETER_PARTNER_SECRET="not-the-secret"), "iometer")
    wa = findings_of(waltero_settings(wa_url, WALTERO_PASSWORD="not-the-password"), "waltero")
    assert io["auth"].status == "FAIL"
    assert io["auth"].fix
    assert "IOMETER_PARTNER_SECRET" in io["auth"].fix
    assert wa["login"].status == "FAIL"
    assert wa["login"].fix
    assert "WALTERO_PASSWORD" in wa["login"].fix
    assert {f.status for name, f in io.items() if name != "auth"} == {"UNKNOWN"}
    assert {f.status for name, f in wa.items() if name != "login"} == {"UNKNOWN"}


def doctor_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IOMETER_", "WALTERO_", "FACADE_"))}
    return subprocess.run(
        [sys.executable, "-m", "app.doctor", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_exits_zero_and_prints_no_secret(normal: tuple[str, str]) -> None:
    io_url, wa_url = normal
    done = doctor_process({**iometer_settings(io_url), **waltero_settings(wa_url)})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("iometer ", "waltero "))]
    assert len(lines) == len(IOMETER_CHECKS) + len(WALTERO_CHECKS)
    assert all(" PASS " in line for line in lines)
    assert "19 PASS, 0 FAIL, 0 UNKNOWN" in done.stdout
    output = done.stdout + done.stderr
    assert iometer_sandbox.SANDBOX_SETTINGS["IOMETER_PARTNER_SECRET"] not in output
    assert waltero_sandbox.SANDBOX_SETTINGS["WALTERO_PASSWORD"] not in output
    assert "eyJ" not in output  # no JWT (every JWT starts with a base64 `{"`)


def test_the_command_exits_non_zero_on_a_fail_and_names_the_place() -> None:
    emulator = waltero_sandbox.create_emulator(time.time, breaks={"utc_calendar"})
    with serve_in_thread(emulator.app) as url:
        done = doctor_process(waltero_settings(url))
    assert done.returncode == 1, done.stdout + done.stderr
    fail = [line for line in done.stdout.splitlines() if " FAIL " in line]
    assert len(fail) == 1
    assert fail[0].startswith("waltero  daily_buckets")
    assert "fix: WALTERO_DAILY_BUCKETS=utc-calendar" in done.stdout


def test_sandbox_mode_serves_the_emulators_itself() -> None:
    """`FACADE_SANDBOX=true make doctor`: the in-process emulators on loopback, all PASS."""
    done = doctor_process({"FACADE_SANDBOX": "true"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "19 PASS, 0 FAIL, 0 UNKNOWN" in done.stdout
    variant = doctor_process({}, "--sandbox", "--break", "iometer:cursor_ignored")
    assert variant.returncode == 1
    assert [line.split()[1] for line in variant.stdout.splitlines() if " FAIL " in line] == ["cursor"]


def test_nothing_configured_is_exit_two_saying_what_to_set() -> None:
    done = doctor_process({})
    assert done.returncode == 2
    assert "IOMETER_PARTNER_ID" in done.stderr
    assert "FACADE_SANDBOX=true make doctor" in done.stderr


@pytest.mark.parametrize(
    "answer",
    [
        {"data": {"partner": None}},
        {"data": {"partner": {"id": "p"}, "installations": "nope", "readings": 3}},
        ["not", "an", "object"],
    ],
)
async def test_a_vendor_answering_nonsense_is_unknown_never_a_crash(answer: object) -> None:
    def iometer_server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer)

    def waltero_server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/api/auth/login"):
            return httpx.Response(200, json={"token": "a.b.c"})
        return httpx.Response(200, json=answer)

    def server(request: httpx.Request) -> httpx.Response:
        return iometer_server(request) if request.url.host == "io.test" else waltero_server(request)

    settings = Settings(
        IOMETER_PARTNER_ID="p",
        IOMETER_PARTNER_SECRET="s3cret-value",
        IOMETER_URL="http://io.test/api/v1/query",
        WALTERO_USERNAME="u",
        WALTERO_PASSWORD="pa55word",
        WALTERO_URL="http://wa.test/prod",
    )
    findings, secrets = await run(settings, transport=httpx.MockTransport(server))
    assert {f.vendor for f in findings} == {"iometer", "waltero"}
    assert all(f.status in ("PASS", "FAIL", "UNKNOWN") for f in findings)
    assert {"s3cret-value", "pa55word", "a.b.c"} <= set(secrets)
    text = render(findings, secrets)
    assert "s3cret-value" not in text
    assert "pa55word" not in text
    assert "a.b.c" not in text


async def test_an_unreachable_vendor_is_unknown() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    settings = Settings(IOMETER_PARTNER_ID="p", IOMETER_PARTNER_SECRET="s", IOMETER_URL="http://io.test/q")
    findings, _ = await run(settings, transport=httpx.MockTransport(server))
    io = [f for f in findings if f.vendor == "iometer"]
    assert [(f.check, f.status) for f in io] == [("reachable", "UNKNOWN")]
