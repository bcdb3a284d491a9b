"""IOmeter Partner API emulator (sandbox mode and tests). See `app.Emulator` and `data.DemoData`.

`create_emulator(clock, seed=7, page_size=None, window_days=90)` returns an `Emulator` with `.app`
(serving `POST|GET /api/v1/query` and `/_sandbox/{faults,stats,reset,data}`), `.faults`, `.stats` and
`.data`. `SANDBOX_SETTINGS` holds the demo partner's credentials (the caller picks `IOMETER_AUTH`).
"""

from __future__ import annotations

from app.backends.iometer.emulator.app import QUERY_PATH, Emulator, create_emulator
from app.backends.iometer.emulator.data import DEMO_PARTNER_ID, DEMO_PARTNER_SECRET, DemoData
from app.sandbox.faults import Faults

SANDBOX_SETTINGS: dict[str, str] = {
    "IOMETER_PARTNER_ID": DEMO_PARTNER_ID,
    "IOMETER_PARTNER_SECRET": DEMO_PARTNER_SECRET,
}

__all__ = ["QUERY_PATH", "SANDBOX_SETTINGS", "DemoData", "Emulator", "Faults", "create_emulator"]
