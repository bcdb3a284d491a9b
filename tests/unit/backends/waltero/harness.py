"""Build a Waltero backend wired to the sandbox emulator (ASGI or loopback), with a FakeClock."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.backends.waltero import create_backend
from app.backends.waltero.adapter import WalteroBackend
from app.backends.waltero.emulator import SANDBOX_SETTINGS, Emulator, create_emulator
from app.factory import backend_context
from app.infra.config import Settings
from tests.support.clock import FakeClock

BASE_URL = "http://waltero.test/prod"


def waltero_settings(url: str = BASE_URL, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "WALTERO_URL": url,
        "WALTERO_USERNAME": SANDBOX_SETTINGS["WALTERO_USERNAME"],
        "WALTERO_PASSWORD": SANDBOX_SETTINGS["WALTERO_PASSWORD"],
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Rig:
    emulator: Emulator
    clock: FakeClock
    http: httpx.AsyncClient
    backend: WalteroBackend
    retries: list[tuple[str, str]] = field(default_factory=list)

    @property
    def logins(self) -> int:
        return self.emulator.stats["login"]


@contextlib.asynccontextmanager
async def waltero_rig(
    clock: FakeClock | None = None,
    *,
    emulator: Emulator | None = None,
    url: str = BASE_URL,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 5.0,
    token_ttl: float = 86400,
    **settings: Any,
) -> AsyncIterator[Rig]:
    """The backend over `httpx.ASGITransport(emulator.app)` unless a transport is given."""
    clock = clock or FakeClock()
    emulator = emulator or create_emulator(clock, token_ttl=token_ttl)
    transport = transport or httpx.ASGITransport(app=emulator.app)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as http:
        retries: list[tuple[str, str]] = []
        configured = waltero_settings(url, **settings)
        ctx = backend_context(
            configured,
            http,
            clock=clock,
            sleep=clock.sleep,
            rng=random.Random(3),
            mode="sandbox",
            on_retry=lambda backend, reason: retries.append((backend, reason)),
        )
        backend = create_backend(ctx, configured.vendor_settings("waltero"))
        yield Rig(emulator, clock, http, backend, retries)
