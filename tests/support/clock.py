"""A clock tests move by hand, and a sleep that advances it instead of waiting."""

from __future__ import annotations

from datetime import datetime


class FakeClock:
    def __init__(self, start: float | datetime = 1_779_000_000.0) -> None:
        self.now = start.timestamp() if isinstance(start, datetime) else float(start)
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
