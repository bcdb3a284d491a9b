"""The SSE wire format of `/readings/live`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from app.domain.models import Reading
from app.live import sse


def test_a_readings_event_is_one_instant_with_its_time_as_id() -> None:
    t = datetime(2026, 3, 28, 10, 15, tzinfo=UTC)
    items = [
        Reading(meter_id="iometer:m", time=t, quantity="energy_import", obis="1-0:1.8.0", value=12.5, unit="kWh"),
        Reading(meter_id="iometer:m", time=t, quantity="power", obis="1-0:16.7.0", value=300.0, unit="W"),
    ]
    text = sse.readings_event("iometer:m", t, items).decode()
    assert text.endswith("\n\n")
    assert text.count("\n") == 4
    event, ident, data = text.rstrip("\n").split("\n")
    assert event == "event: readings"
    assert ident == "id: 2026-03-28T10:15:00Z"
    assert json.loads(data.removeprefix("data: ")) == {
        "meter_id": "iometer:m",
        "time": "2026-03-28T10:15:00Z",
        "items": [
            {
                "meter_id": "iometer:m",
                "time": "2026-03-28T10:15:00Z",
                "quantity": "energy_import",
                "obis": "1-0:1.8.0",
                "value": 12.5,
                "unit": "kWh",
            },
            {
                "meter_id": "iometer:m",
                "time": "2026-03-28T10:15:00Z",
                "quantity": "power",
                "obis": "1-0:16.7.0",
                "value": 300.0,
                "unit": "W",
            },
        ],
    }


def test_status_has_no_id_and_ping_is_a_comment() -> None:
    assert sse.status_event("reconnecting") == b'event: status\ndata: {"upstream":"reconnecting"}\n\n'
    assert sse.PING == b": ping\n\n"
    assert sse.retry_hint(3000) == b"retry: 3000\n\n"
