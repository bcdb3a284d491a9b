"""Builds the live hub from the service, the backends and the settings: the one module that knows
what the hub's narrow callables are bound to.

- `resolve(meter_id)`: the service's id check (404/422 before any upstream call, 501 for a backend
  without live readings), then the meter itself (404 when the vendor does not know it) for its site;
- `history(meter_id, start, end)`: the backend's own `readings`, uncached: a resume or a catch-up
  must see what arrived a moment ago, which a cached recent window may not hold yet;
- one `LiveSource` per configured backend that can stream.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.backends import registry as vendors
from app.backends.base import READINGS
from app.backends.iometer import IometerSettings
from app.backends.live import LiveSource, LiveTarget
from app.core.service import MeterService
from app.domain.models import Reading
from app.infra.config import Settings
from app.infra.errors import NotSupported
from app.infra.timeutil import Clock
from app.live.hub import Hub
from app.live.metrics import LiveMetrics
from app.live.shutdown import on_exit_signal

HISTORY_LIMIT = 100_000
"""Readings asked of a backend for one replay window (24 h of one meter is a few hundred)."""


def live_sources(
    settings: Settings, service: MeterService, clock: Clock, emulators: Mapping[str, Any] | None
) -> dict[str, LiveSource]:
    """A `LiveSource` per configured backend that can stream; in sandbox mode IOmeter's WebSocket goes
    to the in-process emulator."""
    sources: dict[str, LiveSource] = {}
    iometer = service.backends.get("iometer")
    io_settings = settings.vendor_settings("iometer") if "iometer" in vendors.names() else None
    if iometer is not None and isinstance(io_settings, IometerSettings) and io_settings.configured():
        from app.backends.iometer.auth import BasicAuth, WsseAuth
        from app.backends.iometer.live_source import IometerLiveSource, websockets_connect

        partner, secret = io_settings.partner_id or "", io_settings.partner_secret
        assert secret is not None
        header = (
            WsseAuth(partner, secret, clock=clock).header
            if io_settings.auth == "wsse"
            else BasicAuth(partner, secret).header
        )
        connect: Any = websockets_connect
        if emulators and "iometer" in emulators:
            from app.live.asgi_websocket import AsgiWebSocketConnector

            connect = AsgiWebSocketConnector(emulators["iometer"].app)
        sources["iometer"] = IometerLiveSource(io_settings.url, header, connect=connect)
    waltero = service.backends.get("waltero")
    if waltero is not None:
        from app.backends.waltero.live_source import WalteroLiveSource

        guarded = waltero

        async def fetch(device_id: str, start: datetime, end: datetime) -> list[Reading]:
            # uncached (a poll must see the newest point) but guarded: load cap, breaker
            return await guarded.call(lambda: guarded.backend.readings(device_id, start, end, None, HISTORY_LIMIT))

        sources["waltero"] = WalteroLiveSource(fetch, interval=settings.live_poll, clock=clock)
    return sources


def create_hub(
    settings: Settings,
    service: MeterService,
    *,
    clock: Clock,
    metrics: LiveMetrics,
    rng: random.Random,
    emulators: Mapping[str, Any] | None = None,
) -> Hub:
    sources = live_sources(settings, service, clock, emulators)

    async def resolve(meter_id: str) -> LiveTarget:
        backend, fid = service.resolve(meter_id, field="meter_id", in_path=False, capability=READINGS)
        if backend.name not in sources:
            raise NotSupported(f"{backend.name} has no live readings.", backend=backend.name)
        meter = (await service.get_meter(meter_id)).value
        return LiveTarget(backend=backend.name, meter_id=meter.id, upstream_id=fid.upstream, site_id=meter.site_id)

    async def history(meter_id: str, start: datetime, end: datetime) -> list[Reading]:
        backend, fid = service.resolve(meter_id, field="meter_id", in_path=False, capability=READINGS)
        return await backend.call(lambda: backend.backend.readings(fid.upstream, start, end, None, HISTORY_LIMIT))

    hub = Hub(
        sources,
        resolve=resolve,
        history=history,
        clock=clock,
        metrics=metrics,
        max_clients=settings.live_max_clients,
        queue_size=settings.live_queue,
        ping_interval=settings.live_ping,
        linger=settings.live_linger,
        backoff=settings.live_backoff,
        overflow_grace=settings.live_overflow_grace,
        rng=rng,
    )
    hub.cleanups.append(on_exit_signal(hub.end_streams))
    return hub
