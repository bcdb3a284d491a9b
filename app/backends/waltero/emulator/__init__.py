"""Waltero sandbox emulator (see `emulator.py` for the rules it enforces, `data.py` for the demo data).

    emulator = create_emulator(clock, seed=7, token_ttl=86400)
    emulator.app       # ASGI app serving the vendor paths at its root (and under /prod)
    emulator.faults    # Faults(latency, error_rate, rate_limit_rate, retry_after, outage, hang, fail_next)
    emulator.stats     # Counter: "requests" plus one key per vendor operation, "tokens_issued", ...

`SANDBOX_SETTINGS` are the env-style settings with the demo credentials (no URL).
"""

from __future__ import annotations

from app.backends.waltero.emulator.data import (
    EMPTY_NAME_DEVICE,
    GAPPY_DEVICES,
    ORG_NORTH,
    ORG_OTHER,
    ORG_SOUTH,
    SILENT_DEVICE,
)
from app.backends.waltero.emulator.emulator import DEMO_PASSWORD, DEMO_USERNAME, Emulator, create_emulator
from app.sandbox.faults import Faults

SANDBOX_SETTINGS: dict[str, str] = {"WALTERO_USERNAME": DEMO_USERNAME, "WALTERO_PASSWORD": DEMO_PASSWORD}

__all__ = [
    "EMPTY_NAME_DEVICE",
    "GAPPY_DEVICES",
    "ORG_NORTH",
    "ORG_OTHER",
    "ORG_SOUTH",
    "SANDBOX_SETTINGS",
    "SILENT_DEVICE",
    "Emulator",
    "Faults",
    "create_emulator",
]
