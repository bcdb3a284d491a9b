"""IOmeter Partner API backend (GraphQL). See `adapter.IometerBackend` and UPSTREAMS.md."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import httpx
from pydantic import SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from app.backends import registry as vendors
from app.backends.base import Backend
from app.backends.http import RetryPolicy
from app.backends.iometer.adapter import IometerBackend
from app.backends.iometer.auth import BasicAuth, WsseAuth
from app.backends.iometer.client import IometerClient, PartnerTransport
from app.backends.registry import BackendContext, Emulator, Vendor, VendorSettings
from app.infra.timeutil import Clock

__all__ = ["VENDOR", "IometerBackend", "IometerSettings", "create_backend"]

DEFAULT_URL = "https://partner.prod.iometer.cloud/api/v1/query"
SANDBOX_URL = "http://iometer.sandbox/api/v1/query"


class IometerSettings(VendorSettings):
    """`IOMETER_URL`, `IOMETER_PARTNER_ID`, `IOMETER_PARTNER_SECRET`, `IOMETER_AUTH` (`wsse` or `basic`)."""

    model_config = SettingsConfigDict(env_prefix="IOMETER_", env_file=None, extra="ignore")
    enabled_by: ClassVar[tuple[str, ...]] = ("partner_id", "partner_secret")

    url: str = DEFAULT_URL
    partner_id: str | None = None
    partner_secret: SecretStr | None = None
    auth: Literal["wsse", "basic"] = "wsse"

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
    )


def _emulator(clock: Clock, seed: int) -> Emulator:
    from app.backends.iometer.emulator import create_emulator

    emulator: Any = create_emulator(clock, seed=seed)
    return emulator  # type: ignore[no-any-return]


def _sandbox_settings() -> dict[str, str]:
    from app.backends.iometer.emulator import SANDBOX_SETTINGS

    return {**SANDBOX_SETTINGS, "IOMETER_URL": SANDBOX_URL}


VENDOR = Vendor(
    name="iometer",
    settings=IometerSettings,
    create_backend=create_backend,
    create_emulator=_emulator,
    sandbox_settings=_sandbox_settings,
    setup_hint="IOMETER_PARTNER_ID and IOMETER_PARTNER_SECRET",
)


def settings_of(settings: Any) -> IometerSettings:
    """This vendor's settings out of the service's `Settings`."""
    return vendors.settings_of(settings, "iometer", IometerSettings)
