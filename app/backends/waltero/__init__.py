"""Waltero Metering REST API backend (`waltero:` ids).

Layers: `shapes` (every pinned path and wire shape; the sandbox has its own), `token`
(login and Bearer renewal as an `httpx.Auth`), `client` (retries and error mapping, one method per
vendor call), `mapping`/`daily`/`feed` (pure translation to the normalized models) and `adapter`
(the `Backend`).
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from app.backends import registry as vendors
from app.backends.live import LiveContext, LiveSource
from app.backends.registry import BackendContext, Emulator, Vendor, VendorSettings
from app.backends.waltero.adapter import WalteroBackend
from app.backends.waltero.client import WalteroClient, waltero_retry_policy
from app.backends.waltero.token import TokenManager
from app.doctor.report import DoctorContext
from app.infra.config import split_commas
from app.infra.errors import ConfigurationError
from app.infra.timeutil import Clock
from app.shared.tokens import account_name

__all__ = ["VENDOR", "TokenManager", "WalteroBackend", "WalteroClient", "WalteroSettings", "create_backend"]

DEFAULT_URL = "https://qs0iya7cfk.execute-api.eu-central-1.amazonaws.com/prod"
logger = logging.getLogger(__name__)


class WalteroSettings(VendorSettings):
    """`WALTERO_URL`, `WALTERO_USERNAME`, `WALTERO_PASSWORD`, `WALTERO_ORGANIZATIONS` (comma-separated;
    default every organization the user can access)."""

    model_config = SettingsConfigDict(env_prefix="WALTERO_", env_file=None, extra="ignore")
    enabled_by: ClassVar[tuple[str, ...]] = ("username", "password")

    url: str = DEFAULT_URL
    username: str | None = None
    password: SecretStr | None = None
    organizations: Annotated[list[str], NoDecode] = []
    daily_buckets: Literal["rolling", "utc-calendar"] = "rolling"
    """`rolling`: 24 h windows from `startDate` (the pinned reading); `utc-calendar`: UTC days cut to the range."""

    live_poll: float = Field(60, gt=0)
    """`WALTERO_LIVE_POLL`: seconds between the shared telemetry polls of a watched device (live streams)."""

    @field_validator("organizations", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_commas(value)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_live_poll(cls, data: Any) -> Any:
        # FACADE_LIVE_POLL was the round-2 name; still read, with one log line a start-up.
        old = os.environ.get("FACADE_LIVE_POLL")
        if old is not None and isinstance(data, dict) and "live_poll" not in data:
            logger.warning("FACADE_LIVE_POLL is deprecated and will be removed: set WALTERO_LIVE_POLL instead")
            data = {**data, "live_poll": old}
        return data


def create_backend(ctx: BackendContext, settings: WalteroSettings) -> WalteroBackend:
    """The Waltero backend over the app's shared httpx client, clock, sleep and randomness."""
    if not (settings.username and settings.password):
        raise ConfigurationError("Waltero needs WALTERO_USERNAME and WALTERO_PASSWORD.")
    policy = waltero_retry_policy(max_attempts=ctx.retry_attempts, deadline=ctx.deadline)

    def on_retry(reason: str) -> None:
        ctx.on_retry("waltero", reason)

    tokens = TokenManager(
        ctx.http,
        settings.url,
        settings.username,
        settings.password,
        clock=ctx.clock,
        policy=policy,
        sleep=ctx.sleep,
        rng=ctx.rng,
        on_retry=on_retry,
        shared=ctx.token_store(
            account_name(settings.url, settings.username),
            settings.password.get_secret_value() if settings.password else None,
        )
        if ctx.token_store
        else None,
        shared_budget=ctx.deadline,
    )
    client = WalteroClient(
        ctx.http,
        settings.url,
        tokens,
        clock=ctx.clock,
        policy=policy,
        sleep=ctx.sleep,
        rng=ctx.rng,
        on_retry=on_retry,
        concurrency=ctx.upstream_concurrency,
    )
    return WalteroBackend(
        client,
        clock=ctx.clock,
        mode=ctx.mode,
        organizations=list(settings.organizations),
        daily_buckets=settings.daily_buckets,
        indexes=ctx.index_store(f"waltero\0{settings.url}\0{settings.username}") if ctx.index_store else None,
    )


def _emulator(clock: Clock, seed: int, variants: frozenset[str]) -> Emulator:
    from app.backends.waltero.emulator import create_emulator

    emulator: Any = create_emulator(clock, seed=seed, breaks=set(variants))
    return emulator  # type: ignore[no-any-return]


def _sandbox_settings(base_url: str) -> dict[str, str]:
    from app.backends.waltero.emulator import SANDBOX_SETTINGS

    return {**SANDBOX_SETTINGS, "WALTERO_URL": base_url + "/prod", "WALTERO_ORGANIZATIONS": ""}


def _live_source(ctx: LiveContext) -> LiveSource:
    from app.backends.waltero.live_source import WalteroLiveSource

    return WalteroLiveSource(ctx.fetch, interval=ctx.settings.live_poll, clock=ctx.clock)


async def _doctor(ctx: DoctorContext) -> None:
    from app.backends.waltero import doctor

    await doctor.check(ctx.settings, ctx.http, ctx.clock, ctx.findings, ctx.secrets)


def _variants() -> frozenset[str]:
    from app.backends.waltero.emulator.emulator import BREAKS

    return frozenset(BREAKS)


VENDOR = Vendor(
    name="waltero",
    settings=WalteroSettings,
    create_backend=create_backend,
    create_emulator=_emulator,
    emulator_variants=_variants(),
    sandbox_settings=_sandbox_settings,
    create_live_source=_live_source,
    doctor=_doctor,
    setup_hint="WALTERO_USERNAME and WALTERO_PASSWORD",
)


def settings_of(settings: Any) -> WalteroSettings:
    """This vendor's settings out of the service's `Settings`."""
    return vendors.settings_of(settings, "waltero", WalteroSettings)
