from collections.abc import AsyncIterator

import httpx
import pytest

from app.backends.waltero.emulator import SANDBOX_SETTINGS, Emulator, create_emulator
from tests.support.clock import FakeClock

CREDENTIALS = {"username": SANDBOX_SETTINGS["WALTERO_USERNAME"], "password": SANDBOX_SETTINGS["WALTERO_PASSWORD"]}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()  # 2026-05-17T06:40:00Z


@pytest.fixture
def emulator(clock: FakeClock) -> Emulator:
    return create_emulator(clock)


@pytest.fixture
async def raw(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """An unauthenticated client on the emulator."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator.app), base_url="http://w") as client:
        yield client


@pytest.fixture
async def api(raw: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same client, logged in."""
    response = await raw.post("/api/auth/login", json=CREDENTIALS)
    assert response.status_code == 200
    raw.headers["Authorization"] = f"Bearer {response.json()['token']}"
    return raw
