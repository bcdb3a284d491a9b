"""The fault knobs both emulators obey (`emulator.faults`, `GET|PUT /_sandbox/faults`).

Each emulator decides the order in which they apply and answers in its own vendor's error shape;
the knobs themselves, and the checking of a `PUT`, are the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Faults:
    """Knobs that make an emulator misbehave; every vendor path obeys them, `/_sandbox/*` does not."""

    latency: float = 0.0
    """Max seconds of added delay (uniform 0..latency)."""
    error_rate: float = 0.0
    """Fraction of requests answered 500."""
    rate_limit_rate: float = 0.0
    """Fraction of requests answered 429 with `Retry-After`."""
    retry_after: int = 1
    """`Retry-After` seconds on 429 (and 503) answers."""
    outage: bool = False
    """Every request 503."""
    hang: bool = False
    """Never answer while set (clearing it releases held requests)."""
    fail_next: list[int] = field(default_factory=list)
    """Statuses answered, in order, to the next requests."""

    def reset(self) -> None:
        """Back to no faults, in place (tests may hold a reference to this object)."""
        default = Faults()
        for spec in fields(self):
            setattr(self, spec.name, getattr(default, spec.name))

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a JSON subset; raises `ValueError` (and changes nothing) for an unknown knob or a value
        of the wrong type."""
        known = {spec.name for spec in fields(self)}
        staged: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}")
            if name in ("outage", "hang"):
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
            elif name == "fail_next":
                if not (isinstance(value, list) and all(isinstance(v, int) and 400 <= v <= 599 for v in value)):
                    raise ValueError("fail_next must be a list of HTTP error statuses")
                value = list(value)
            elif name == "retry_after":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError("retry_after must be a non-negative integer")
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"{name} must be a non-negative number")
                if name != "latency" and value > 1:
                    raise ValueError(f"{name} is a fraction between 0 and 1")
                value = float(value)
            staged[name] = value
        for name, value in staged.items():
            setattr(self, name, value)
