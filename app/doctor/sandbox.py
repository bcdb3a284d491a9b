"""`python -m app.doctor --sandbox`: every vendor's emulator (optionally a variant) on a loopback socket.

The doctor then talks to them over real HTTP exactly as it talks to the vendors, with the real clock
(WSSE's `Created` must be near the server's clock)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from app.backends import registry as vendors
from app.infra.config import Settings
from app.sandbox.loopback import serve_in_thread


@contextlib.contextmanager
def loopback_emulators(settings: Settings, breaks: Sequence[str] = ()) -> Iterator[Settings]:
    """`settings` pointed at every vendor's emulator served on loopback. `breaks`: `vendor:variant`
    names. Raises `ValueError` for an unknown variant."""
    known = {v.name: v.emulator_variants for v in vendors.iter_vendors() if v.create_emulator is not None}
    chosen: dict[str, set[str]] = {name: set() for name in known}
    for item in breaks:
        name, _, variant = item.partition(":")
        if name not in known or variant not in known[name]:
            names = ", ".join(f"{v}:{n}" for v in known for n in sorted(known[v]))
            raise ValueError(f"unknown variant {item!r}; known: {names}")
        chosen[name].add(variant)
    values: dict[str, Any] = settings.model_dump(by_alias=True)
    with contextlib.ExitStack() as stack:
        for vendor in vendors.iter_vendors():
            if vendor.create_emulator is None:
                continue
            emulator = vendor.create_emulator(time.time, 7, frozenset(chosen[vendor.name]))
            url = stack.enter_context(serve_in_thread(emulator.app, lifespan="off"))
            values.update(vendor.sandbox_settings(url))
        yield Settings.model_validate(values)
