"""The facade over HTTP against emulator variants whose vendor behaviour the adapters must tolerate
(issue 21, item 2): each answer equals the one against the faithful emulator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.backends.iometer.emulator import create_emulator as iometer_emulator
from app.backends.waltero.emulator import create_emulator as waltero_emulator
from app.factory import create_app
from app.infra.config import Settings
from tests.support.apps import running
from tests.support.clock import FakeClock

NOW = datetime(2026, 11, 20, 10, 7, tzinfo=UTC)


@contextlib.asynccontextmanager
async def facade(
    clock: FakeClock, *, iometer: dict[str, Any] | None = None, waltero: dict[str, Any] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    emulators = {
        "iometer": iometer_emulator(clock, **(iometer or {})),
        "waltero": waltero_emulator(clock, **(waltero or {})),
    }
    configured = Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0)
    app = create_app(configured, clock=clock, sleep=clock.sleep, emulators=emulators)
    async with running(app, key=None) as client:
        yield client, emulators


async def answers(client: httpx.AsyncClient, queries: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    out = []
    for path, params in queries:
        response = await client.get(path, params=params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        body = response.json()
        if isinstance(body, dict) and body.get("next_cursor"):
            body["next_cursor"] = "(signed with each app's own key)"
        out.append(body)
    return out


async def same_answers(clock: FakeClock, queries: Any, **variant: Any) -> tuple[list[Any], list[Any]]:
    async with facade(clock) as (client, emulators):
        expected = await answers(client, queries(emulators))
    async with facade(clock, **variant) as (client, emulators):
        got = await answers(client, queries(emulators))
    return expected, got


def waltero_queries(emulators: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    device = emulators["waltero"].devices()[1].id
    end = NOW.replace(minute=0)
    window = {"start": (end - timedelta(days=2)).isoformat(), "end": end.isoformat()}
    day = str(NOW.date() - timedelta(days=3))
    return [
        ("/meters", {"backend": "waltero"}),
        ("/readings", {"meter_id": f"waltero:{device}", **window}),
        ("/consumption", {"meter_id": f"waltero:{device}", "start": day, "end": str(NOW.date()), "resolution": "hour"}),
        (f"/devices/waltero:{device}/status", {}),
    ]


async def test_a_renamed_telemetry_time_key_is_read() -> None:
    """Telemetry points with `time` instead of `timestamp`: before, every Waltero read was a 502."""
    expected, got = await same_answers(FakeClock(NOW), waltero_queries, waltero={"breaks": {"time_key_renamed"}})
    assert len(expected[1]["items"]) > 10
    assert got == expected


def waltero_device_queries(emulators: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Single-device lookups first (no listing yet: `GET /api/devices/{id}` answers them), then the rest."""
    devices = emulators["waltero"].devices()
    first, second = devices[0].id, devices[-1].id
    day = str(NOW.date() - timedelta(days=3))
    daily = {"start": day, "end": str(NOW.date()), "tz": "Europe/Berlin"}
    return [
        (f"/meters/waltero:{first}", {}),
        ("/consumption/daily", {"meter_id": f"waltero:{second}", **daily}),
        ("/meters", {"backend": "waltero"}),
        ("/consumption/daily", {"backend": "waltero", **daily}),
        *waltero_queries(emulators),
    ]


async def test_devices_without_organization_id_take_it_from_the_listing_or_the_login() -> None:
    """Devices without `organization_id` (the page never shows one): before, every device read was a 502."""
    expected, got = await same_answers(FakeClock(NOW), waltero_device_queries, waltero={"breaks": {"no_device_org"}})
    assert expected[0]["site_id"].startswith("waltero:")
    assert {m["site_id"] for m in expected[2]["items"]} == {m["site_id"] for m in got[2]["items"]}
    assert got == expected


async def test_a_device_lookup_wrapped_in_data_is_read() -> None:
    """`GET /api/devices/{id}` answering `{"data": {...}}`: before, a meter looked up by id was a 502."""
    expected, got = await same_answers(FakeClock(NOW), waltero_device_queries, waltero={"breaks": {"device_wrapped"}})
    assert got == expected


def iometer_queries(emulators: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    meter = "iometer:" + emulators["iometer"].data.meters[2].id
    end = NOW.replace(minute=0)
    day = str(NOW.date() - timedelta(days=3))
    return [
        ("/meters", {"backend": "iometer"}),
        ("/readings", {"meter_id": meter, "start": (end - timedelta(hours=30)).isoformat(), "end": end.isoformat()}),
        ("/consumption/daily", {"meter_id": meter, "start": day, "end": str(NOW.date()), "tz": "Europe/Berlin"}),
        ("/consumption", {"meter_id": meter, "start": day, "end": str(NOW.date()), "resolution": "hour"}),
    ]


async def test_unit_strings_are_compared_case_insensitively() -> None:
    """Units in lower case (`wh`): before, daily consumption was null and readings `obis:` codes."""
    expected, got = await same_answers(FakeClock(NOW), iometer_queries, iometer={"breaks": {"lower_units"}})
    assert all(row["consumption"] is not None for row in expected[2]["items"])
    assert {r["quantity"] for r in expected[1]["items"]} >= {"energy_import", "power"}
    assert got == expected


def iometer_wide_queries(emulators: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every meter's daily consumption (one partner-wide chain of 1000-reading asks) and a long window."""
    meter = "iometer:" + emulators["iometer"].data.meters[0].id
    start, end = str(NOW.date() - timedelta(days=5)), str(NOW.date())
    return [
        ("/consumption/daily", {"backend": "iometer", "start": start, "end": end, "tz": "Europe/Berlin"}),
        ("/consumption", {"meter_id": meter, "start": start, "end": end, "resolution": "day"}),
        *iometer_queries(emulators),
    ]


async def test_a_vendor_capping_pages_below_the_ask_is_paged_by_cursor() -> None:
    """Pages capped at 250 readings whatever `limit` asks (the adapter asks up to 1000): every answer is
    the faithful vendor's, and the vendor was asked more pages."""
    clock = FakeClock(NOW)
    async with facade(clock) as (client, emulators):
        expected = await answers(client, iometer_wide_queries(emulators))
        pages = emulators["iometer"].stats["PartnerReadings"]
    async with facade(clock, iometer={"breaks": {"page_cap"}}) as (client, emulators):
        got = await answers(client, iometer_wide_queries(emulators))
        capped_pages = emulators["iometer"].stats["PartnerReadings"]
    assert capped_pages > pages >= 1
    assert got == expected
