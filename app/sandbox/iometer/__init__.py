"""IOmeter Partner API emulator (sandbox mode and tests). See `app.Emulator` and `data.DemoData`.

`create_emulator(clock, seed=7, page_size=None, window_days=90)` returns an `Emulator` with `.app`
(serving `POST|GET /api/v1/query` and `/_sandbox/{faults,stats,reset,data}`), `.faults`, `.stats` and
`.data`. `SANDBOX_SETTINGS` holds the demo partner's credentials (the caller picks `IOMETER_AUTH`).
"""

from __future__ import annotations

from app.sandbox.faults import Faults
from app.sandbox.iometer.app import QUERY_PATH, Emulator, create_emulator
from app.sandbox.iometer.data import DEMO_PARTNER_ID, DEMO_PARTNER_SECRET, DemoData

SANDBOX_SETTINGS: dict[str, str] = {
    "IOMETER_PARTNER_ID": DEMO_PARTNER_ID,
    "IOMETER_PARTNER_SECRET": DEMO_PARTNER_SECRET,
}

__all__ = ["QUERY_PATH", "SANDBOX_SETTINGS", "DemoData", "Emulator", "Faults", "create_emulator"]
