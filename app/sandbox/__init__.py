"""The sandbox: faithful emulators of both vendors, served in-process behind `httpx.ASGITransport`.

Only the app factory imports this package, and only when `FACADE_SANDBOX=true`. The adapters run
unchanged against it: they get demo credentials and URLs on hosts that only the emulators answer.
"""

from __future__ import annotations

import importlib
from typing import Any

from app.config import Settings
from app.timeutil import Clock

SANDBOX_URLS = {
    "iometer": ("IOMETER_URL", "http://iometer.sandbox/api/v1/query"),
    "waltero": ("WALTERO_URL", "http://waltero.sandbox"),
}


def create_emulators(clock: Clock, *, seed: int = 7) -> dict[str, Any]:
    """One emulator per vendor, all on the same injected clock."""
    return {
        name: importlib.import_module(f"app.sandbox.{name}").create_emulator(clock, seed=seed) for name in SANDBOX_URLS
    }


def sandbox_settings(settings: Settings) -> Settings:
    """`settings` with every vendor pointed at its emulator and its demo credentials."""
    overrides: dict[str, Any] = {}
    for name, (url_var, url) in SANDBOX_URLS.items():
        module = importlib.import_module(f"app.sandbox.{name}")
        overrides.update(module.SANDBOX_SETTINGS)
        overrides[url_var] = url
    overrides["WALTERO_ORGANIZATIONS"] = []
    return Settings.model_validate({**settings.model_dump(by_alias=True), **overrides})
