"""CPU time of IOmeter's daily derivation: a year of 15-minute register readings (35,040 per meter)
for N meters into local days (Europe/Berlin, so two DST days), excluding any upstream time."""

from __future__ import annotations

import math
import random
import time
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from app.backends.iometer.daily import daily_from_register
from app.infra.timeutil import local_midnight

READINGS_PER_YEAR = 365 * 96


def year_of_readings_cpu_seconds(meters: int = 10, seed: int = 1) -> float:
    rng = random.Random(seed)
    tz = ZoneInfo("Europe/Berlin")
    first = date(2025, 1, 1)
    boundaries = [local_midnight(first + timedelta(days=i), tz).timestamp() for i in range(366)]
    t0 = boundaries[0]
    series = []
    for _ in range(meters):
        times = [t0 + 900 * i for i in range(READINGS_PER_YEAR)]
        values, total = [], 1000.0
        for i in range(READINGS_PER_YEAR):
            total += max(0.0, 0.1 + 0.08 * math.sin(i / 96 * 2 * math.pi) + rng.uniform(-0.02, 0.02))
            values.append(total)
        series.append((times, values))
    started = time.process_time()
    for times, values in series:
        days = daily_from_register(times, values, boundaries, 21600)
        assert len(days) == 365
    return time.process_time() - started
