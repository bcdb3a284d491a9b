"""The sandbox: faithful emulators of every registered vendor, served in-process.

Only the app factory imports this package, and only when `FACADE_SANDBOX=true`. The adapters run
unchanged against it: they get demo credentials and URLs on hosts that only the emulators answer.
"""

from __future__ import annotations

from typing import Any

from app.backends import registry as vendors
from app.backends.registry import Emulator
from app.infra.config import Settings
from app.infra.timeutil import Clock


def create_emulators(clock: Clock, *, seed: int = 7) -> dict[str, Emulator]:
    """One emulator per vendor that has one, all on the same injected clock."""
    return {v.name: v.create_emulator(clock, seed) for v in vendors.iter_vendors() if v.create_emulator is not None}


def sandbox_settings(settings: Settings) -> Settings:
    """`settings` with every vendor pointed at its emulator and its demo credentials."""
    overrides: dict[str, Any] = {}
    for vendor in vendors.iter_vendors():
        overrides.update(vendor.sandbox_settings())
    return Settings.model_validate({**settings.model_dump(by_alias=True), **overrides})
