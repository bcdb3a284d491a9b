from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.backends.iometer.auth import basic_header, wsse_created, wsse_header
from app.backends.iometer.emulator import SANDBOX_SETTINGS, Emulator, create_emulator
from tests.support.clock import FakeClock

PARTNER = SANDBOX_SETTINGS["IOMETER_PARTNER_ID"]
SECRET = SANDBOX_SETTINGS["IOMETER_PARTNER_SECRET"]
PATH = "/api/v1/query"


def wsse(
    clock: FakeClock,
    *,
    partner: str = PARTNER,
    secret: str = SECRET,
    nonce: str | None = None,
    created: str | None = None,
) -> str:
    return wsse_header(partner, secret, nonce=nonce or os.urandom(16).hex(), created=created or wsse_created(clock()))


def basic(partner: str = PARTNER, secret: str = SECRET) -> str:
    return basic_header(partner, secret)


class Caller:
    """Posts GraphQL to the emulator with a fresh WSSE header (or the given Authorization)."""

    def __init__(self, http: httpx.AsyncClient, clock: FakeClock) -> None:
        self.http = http
        self.clock = clock

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, authorization: str | None = None, **extra: Any
    ) -> httpx.Response:
        body: dict[str, Any] = {"query": query, **extra}
        if variables is not None:
            body["variables"] = variables
        return await self.http.post(PATH, json=body, headers={"Authorization": authorization or wsse(self.clock)})

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        response = await self.post(query, variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return body["data"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> Emulator:
    return create_emulator(clock, page_size=7)


@pytest.fixture
async def http(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(emulator.app), base_url="http://iometer.test") as client:
        yield client


@pytest.fixture
def caller(http: httpx.AsyncClient, clock: FakeClock) -> Caller:
    return Caller(http, clock)
