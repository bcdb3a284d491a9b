"""`python -m app.doctor --sandbox`: both emulators (optionally a variant) on loopback sockets.

The doctor then talks to them over real HTTP exactly as it talks to the vendors, with the real clock
(WSSE's `Created` must be near the server's clock)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

from app.infra.config import Settings
from app.sandbox.loopback import serve_in_thread


@contextlib.contextmanager
def loopback_emulators(settings: Settings, breaks: Sequence[str] = ()) -> Iterator[Settings]:
    """`settings` pointed at both emulators served on loopback. `breaks`: `vendor:variant` names.
    Raises `ValueError` for an unknown variant."""
    from app.backends.iometer import emulator as iometer_sandbox
    from app.backends.iometer.emulator.app import BREAKS as IOMETER_BREAKS
    from app.backends.waltero import emulator as waltero_sandbox
    from app.backends.waltero.emulator.emulator import BREAKS as WALTERO_BREAKS

    chosen: dict[str, set[str]] = {"iometer": set(), "waltero": set()}
    known = {"iometer": IOMETER_BREAKS, "waltero": WALTERO_BREAKS}
    for item in breaks:
        vendor, _, variant = item.partition(":")
        if vendor not in known or variant not in known[vendor]:
            names = ", ".join(f"{v}:{n}" for v in known for n in sorted(known[v]))
            raise ValueError(f"unknown variant {item!r}; known: {names}")
        chosen[vendor].add(variant)
    io = iometer_sandbox.create_emulator(time.time, breaks=chosen["iometer"])
    wa = waltero_sandbox.create_emulator(time.time, breaks=chosen["waltero"])
    with serve_in_thread(io.app, lifespan="off") as io_url, serve_in_thread(wa.app, lifespan="off") as wa_url:
        values = {
            **settings.model_dump(by_alias=True),
            **iometer_sandbox.SANDBOX_SETTINGS,
            **waltero_sandbox.SANDBOX_SETTINGS,
            "IOMETER_URL": io_url + iometer_sandbox.QUERY_PATH,
            "WALTERO_URL": wa_url + "/prod",
            "WALTERO_ORGANIZATIONS": [],
        }
        yield Settings.model_validate(values)
