"""IOmeter Partner API backend (GraphQL). See `adapter.IometerBackend` and docs/vendors/iometer.md."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from app.backends import registry as vendors
from app.backends.base import Backend
from app.backends.http import RetryPolicy
from app.backends.iometer.adapter import IometerBackend
from app.backends.iometer.auth import BasicAuth, WsseAuth
from app.backends.iometer.client import IometerClient, PartnerTransport
from app.backends.live import LiveContext, LiveSource
from app.backends.registry import BackendContext, Emulator, Vendor, VendorSettings
from app.doctor.report import DoctorContext
from app.infra.timeutil import Clock

__all__ = ["VENDOR", "IometerBackend", "IometerSettings", "create_backend"]

DEFAULT_URL = "https://partner.prod.iometer.cloud/api/v1/query"


class IometerSettings(VendorSettings):
    """`IOMETER_URL`, `IOMETER_PARTNER_ID`, `IOMETER_PARTNER_SECRET`, `IOMETER_AUTH` (`wsse` or `basic`)."""

    model_config = SettingsConfigDict(env_prefix="IOMETER_", env_file=None, extra="ignore")
    enabled_by: ClassVar[tuple[str, ...]] = ("partner_id", "partner_secret")

    url: str = DEFAULT_URL
    partner_id: str | None = None
    partner_secret: SecretStr | None = None
    auth: Literal["wsse", "basic"] = "wsse"
    # issue 21: late data
    late_window: float = Field(172800, ge=0)
    """`IOMETER_LATE_WINDOW`, seconds: how far past a window's end (in the vendor's listing) a read goes
    for readings uploaded late; a window is not settled (cached as past) until this long after its end."""

    @field_validator("auth", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def create_backend(ctx: BackendContext, settings: IometerSettings) -> Backend:
    """The IOmeter backend over `ctx.http`, with WSSE or Basic auth per `IOMETER_AUTH`."""
    partner_id, secret = settings.partner_id, settings.partner_secret
    if not partner_id or secret is None:
        raise ValueError("IOmeter is not configured: set IOMETER_PARTNER_ID and IOMETER_PARTNER_SECRET")
    auth: httpx.Auth = (
        WsseAuth(partner_id, secret, clock=ctx.clock) if settings.auth == "wsse" else BasicAuth(partner_id, secret)
    )
    transport = PartnerTransport(
        settings.url,
        http=ctx.http,
        auth=auth,
        policy=RetryPolicy(max_attempts=ctx.retry_attempts, deadline=ctx.deadline),
        sleep=ctx.sleep,
        clock=ctx.clock,
        rng=ctx.rng,
        on_retry=lambda reason: ctx.on_retry("iometer", reason),
    )
    return IometerBackend(
        IometerClient(transport),
        mode=ctx.mode,
        clock=ctx.clock,
        max_gap=ctx.max_gap,
        concurrency=min(4, ctx.upstream_concurrency),
        late_window=settings.late_window,
        indexes=ctx.index_store(f"iometer\0{settings.url}\0{partner_id}") if ctx.index_store else None,
    )


def _emulator(clock: Clock, seed: int, variants: frozenset[str]) -> Emulator:
    from app.backends.iometer.emulator import create_emulator

    emulator: Any = create_emulator(clock, seed=seed, breaks=set(variants))
    return emulator  # type: ignore[no-any-return]


def _sandbox_settings(base_url: str) -> dict[str, str]:
    from app.backends.iometer.emulator import QUERY_PATH, SANDBOX_SETTINGS

    return {**SANDBOX_SETTINGS, "IOMETER_URL": base_url + QUERY_PATH}


def _live_source(ctx: LiveContext) -> LiveSource:
    """A GraphQL subscription over WebSocket (or over Server-Sent Events when the vendor refuses the
    WebSocket), authenticated like every partner request; in the sandbox both go to the in-process
    emulator."""
    from app.backends.iometer.live_source import IometerLiveSource, httpx_event_stream, websockets_connect

    settings: IometerSettings = ctx.settings
    partner, secret = settings.partner_id or "", settings.partner_secret
    if secret is None:
        raise ValueError("IOmeter is not configured: set IOMETER_PARTNER_ID and IOMETER_PARTNER_SECRET")
    header = (
        WsseAuth(partner, secret, clock=ctx.clock).header
        if settings.auth == "wsse"
        else BasicAuth(partner, secret).header
    )
    connect: Any = websockets_connect
    events: Any = httpx_event_stream
    if ctx.emulator is not None:
        from app.backends.iometer.asgi_events import AsgiEventStreamConnector
        from app.sandbox.asgi_websocket import AsgiWebSocketConnector

        connect = AsgiWebSocketConnector(ctx.emulator.app)
        events = AsgiEventStreamConnector(ctx.emulator.app)
    return IometerLiveSource(settings.url, header, connect=connect, events=events)


async def _doctor(ctx: DoctorContext) -> None:
    from app.backends.iometer import doctor

    await doctor.check(ctx.settings, ctx.http, ctx.clock, ctx.findings)


def _variants() -> frozenset[str]:
    from app.backends.iometer.emulator.app import BREAKS

    return frozenset(BREAKS)


VENDOR = Vendor(
    name="iometer",
    settings=IometerSettings,
    create_backend=create_backend,
    create_emulator=_emulator,
    emulator_variants=_variants(),
    sandbox_settings=_sandbox_settings,
    create_live_source=_live_source,
    doctor=_doctor,
    setup_hint="IOMETER_PARTNER_ID and IOMETER_PARTNER_SECRET",
)


def settings_of(settings: Any) -> IometerSettings:
    """This vendor's settings out of the service's `Settings`."""
    return vendors.settings_of(settings, "iometer", IometerSettings)
