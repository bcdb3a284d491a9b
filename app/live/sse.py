"""Server-Sent Events on the wire (WHATWG HTML, "server-sent events").

An event is `event:`/`id:`/`data:` lines and a blank line; a line starting with `:` is a comment
(our keep-alive). JSON never contains a raw newline, so one `data:` line always suffices.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from app.domain.models import Reading
from app.infra.timeutil import format_rfc3339

MEDIA_TYPE = "text/event-stream"
PING = b": ping\n\n"
UpstreamState = Literal["live", "reconnecting", "overflow"]


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def readings_event(meter_id: str, time: datetime, items: Iterable[Reading]) -> bytes:
    """`event: readings` for one instant; its `id` is the instant (what `Last-Event-ID` resumes after)."""
    stamp = format_rfc3339(time)
    data = {"meter_id": meter_id, "time": stamp, "items": [r.model_dump(mode="json") for r in items]}
    return f"event: readings\nid: {stamp}\ndata: {_dumps(data)}\n\n".encode()


def status_event(state: UpstreamState) -> bytes:
    """`event: status` without an `id`, so a client's resume point stays its last instant."""
    return f"event: status\ndata: {_dumps({'upstream': state})}\n\n".encode()


def retry_hint(milliseconds: int) -> bytes:
    """How long a browser's `EventSource` waits before it reconnects."""
    return f"retry: {milliseconds}\n\n".encode()
