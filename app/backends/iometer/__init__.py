"""IOmeter Partner API backend (GraphQL). See `adapter.IometerBackend` and UPSTREAMS.md."""

from __future__ import annotations

import httpx

from app.backends.base import Backend
from app.backends.http import RetryPolicy
from app.backends.iometer.adapter import IometerBackend
from app.backends.iometer.auth import BasicAuth, WsseAuth
from app.backends.iometer.client import IometerClient, PartnerTransport
from app.backends.registry import BackendContext
from app.config import Settings

__all__ = ["IometerBackend", "create_backend", "is_configured"]


def is_configured(settings: Settings) -> bool:
    """Both `IOMETER_PARTNER_ID` and `IOMETER_PARTNER_SECRET` are set."""
    return settings.iometer_enabled


def create_backend(ctx: BackendContext) -> Backend:
    """The IOmeter backend over `ctx.http`, with WSSE or Basic auth per `IOMETER_AUTH`."""
    settings = ctx.settings
    partner_id, secret = settings.iometer_partner_id, settings.iometer_partner_secret
    if not partner_id or secret is None:
        raise ValueError("IOmeter is not configured: set IOMETER_PARTNER_ID and IOMETER_PARTNER_SECRET")
    auth: httpx.Auth = (
        WsseAuth(partner_id, secret, clock=ctx.clock)
        if settings.iometer_auth == "wsse"
        else BasicAuth(partner_id, secret)
    )
    transport = PartnerTransport(
        settings.iometer_url,
        http=ctx.http,
        auth=auth,
        policy=RetryPolicy(max_attempts=settings.retry_attempts),
        sleep=ctx.sleep,
        clock=ctx.clock,
        rng=ctx.rng,
        on_retry=lambda reason: ctx.on_retry("iometer", reason),
    )
    return IometerBackend(
        IometerClient(transport),
        mode=ctx.mode,
        clock=ctx.clock,
        max_gap=settings.max_gap,
        concurrency=min(4, settings.upstream_concurrency),
    )
