"""The one place that lists backends. Adding a vendor = a package under `app/backends/` exposing
`is_configured(settings)` and `create_backend(ctx)`, plus one line in `VENDORS`."""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from app.backends.base import Backend
from app.backends.http import Sleep
from app.config import Settings
from app.timeutil import Clock

VENDORS: tuple[str, ...] = ("iometer", "waltero")


@dataclass(frozen=True, slots=True)
class BackendContext:
    """What a vendor package gets to build its backend. The httpx client is shared and owned by the
    app (pool sized to the upstream concurrency, timeouts set); the backend must not close it."""

    settings: Settings
    http: httpx.AsyncClient
    clock: Clock
    sleep: Sleep
    rng: random.Random
    mode: Literal["live", "sandbox"]
    on_retry: Callable[[str, str], None] = lambda backend, reason: None
    """Metrics hook: called with (backend name, reason) before each upstream retry."""


def vendor_module(name: str) -> object:
    return importlib.import_module(f"app.backends.{name}")


def configured_vendors(settings: Settings) -> list[str]:
    return [name for name in VENDORS if vendor_module(name).is_configured(settings)]  # type: ignore[attr-defined]


def create_backend(name: str, ctx: BackendContext) -> Backend:
    backend: Backend = vendor_module(name).create_backend(ctx)  # type: ignore[attr-defined]
    return backend
