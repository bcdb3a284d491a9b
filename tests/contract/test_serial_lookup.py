"""Finding a meter by the number printed on it, in each adapter, against the emulators."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.backends.iometer.emulator import create_emulator as create_iometer
from tests.contract.test_iometer_adapter import Rig as IometerRig
from tests.contract.test_iometer_adapter import expected_meters
from tests.support.clock import FakeClock
from tests.unit.backends.waltero.harness import Rig as WalteroRig
from tests.unit.backends.waltero.harness import waltero_rig


@pytest.fixture
async def iometer() -> AsyncIterator[IometerRig]:
    clock = FakeClock()
    emulator = create_iometer(clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(emulator.app)) as http:
        yield IometerRig(emulator, clock, http)


@pytest.fixture
async def waltero() -> AsyncIterator[WalteroRig]:
    async with waltero_rig() as rig:
        yield rig


async def test_iometer_finds_each_meter_by_its_number(iometer: IometerRig) -> None:
    meters = expected_meters(iometer.emulator)
    numbers = {m.serial_number for m in meters}
    for number in numbers:
        found = await iometer.backend.meters_by_serial(number)
        assert len(found) == 1
        assert found[0].serial_number == number
        # The vendor's `meter(number:)` answers the most recent meter carrying the number.
        assert found[0] in [m for m in meters if m.serial_number == number]
    before = iometer.emulator.stats.get("requests", 0)
    assert await iometer.backend.meters_by_serial("NO-SUCH-NUMBER") == []
    assert await iometer.backend.meters_by_serial(next(iter(numbers)).lower() + "x") == []
    assert iometer.emulator.stats["requests"] == before + 2  # one `meter(number:)` query per lookup


async def test_waltero_finds_devices_by_serial_number_from_the_cached_directory(waltero: WalteroRig) -> None:
    devices = waltero.emulator.devices()
    listed = {m.id: m for m in await waltero.backend.list_meters()}
    calls = waltero.emulator.stats["devices"]
    for device in devices:
        if device.organization_id not in {m.site_id.removeprefix("waltero:") for m in listed.values() if m.site_id}:
            continue
        found = await waltero.backend.meters_by_serial(device.serial_number or "")
        assert [m.id for m in found] == sorted(m.id for m in listed.values() if m.serial_number == device.serial_number)
        assert found[0] == listed[f"waltero:{device.id}"]
    assert await waltero.backend.meters_by_serial("WS0000000000") == []
    assert waltero.emulator.stats["devices"] == calls  # every lookup served by the directory
