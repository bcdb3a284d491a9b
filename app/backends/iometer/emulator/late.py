"""The `late_uploads` variant: readings listed in the order the vendor received them, with one late upload.

The vendor's page says reading time "is based on when readings were received, which might diverge
from the time the reading was taken". This variant reads that literally for `readings(...)`: the listing
is ordered by receive time, and one meter (`LATE_METER`, the fourth demo meter) went quiet on the local
day `LATE_DAY` days before today after its first `ON_TIME` readings, came back at the next local
midnight's second slot, and uploaded what it had buffered (92 readings of that 96-slot day and the next
midnight's) only `RECEIVED_AFTER` after that midnight. So the buffer is listed after everything received
before then: more than a day of the meter's later readings.

Every other reading is received when it is taken. A cursor then carries the receive position.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import timedelta

from app.backends.iometer.emulator.data import BERLIN, SLOT, DemoData, MeterRecord, ReadingRecord
from app.infra.timeutil import from_epoch, local_midnight

LATE_METER = 3
"""Index in `DemoData.meters` of the meter with the late upload (no gap, no swap)."""
LATE_DAY = 3
"""Local days before today of the day uploaded late."""
ON_TIME = 4
"""Readings of that day received on time (00:00 to 00:45 local)."""
RECEIVED_AFTER = 30 * 3600 + 450
"""Seconds after that day's end when the buffer arrived (off the 15-minute grid, so no key ties)."""

Position = tuple[float, int, float]
"""(receive time, meter order, reading time): the listing's sort key and a cursor's position."""


def late_upload(data: DemoData) -> tuple[MeterRecord, float, float, float]:
    """(meter, first late reading time, end of the buffered span (exclusive), receive time) of the upload."""
    day = data.today - timedelta(days=LATE_DAY)
    start = local_midnight(day, BERLIN).timestamp()
    end = local_midnight(day + timedelta(days=1), BERLIN).timestamp()
    return data.meters[LATE_METER], start + ON_TIME * SLOT, end + SLOT, end + RECEIVED_AFTER


def receive_ordered(
    data: DemoData, meters: list[MeterRecord], start: float, after: Position | None
) -> Iterator[tuple[Position, ReadingRecord]]:
    """Readings of `meters` with reading time `>= start`, ascending by receive position, after `after`."""
    meter, lo, hi, received = late_upload(data)
    late = any(m.id == meter.id for m in meters)

    def is_late(r: ReadingRecord) -> bool:
        return late and r.meter_id == meter.id and lo <= r.time < hi

    on_grid = after is not None and after[0] % SLOT == 0
    normal_from = start if after is None else max(start, after[0])
    normal = (
        ((r.time, data.meter_order(r.meter_id), r.time), r)
        for r in data.iter_readings(meters, normal_from, (after[0], after[1]) if on_grid and after else None)
        if not is_late(r)
    )
    streams: list[Iterator[tuple[Position, ReadingRecord]]] = [normal]
    if late and received <= data.clock():
        order = data.meter_order(meter.id)
        backlog = [
            ((received, order, r.time), r)
            for r in data.readings(meter.id, from_epoch(max(lo, start)), from_epoch(hi))
            if r.time >= lo
        ]
        streams.append(iter(backlog))
    for position, reading in heapq.merge(*streams, key=lambda item: item[0]):
        if after is None or position > after:
            yield position, reading
