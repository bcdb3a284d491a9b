"""Waltero Metering REST API backend (`waltero:` ids).

Layers: `shapes` (every pinned path and wire shape; the sandbox has its own), `token`
(login and Bearer renewal as an `httpx.Auth`), `client` (retries and error mapping, one method per
vendor call), `mapping`/`daily`/`feed` (pure translation to the normalized models) and `adapter`
(the `Backend`).
"""

from __future__ import annotations

from app.backends.registry import BackendContext
from app.backends.waltero.adapter import WalteroBackend
from app.backends.waltero.client import WalteroClient, waltero_retry_policy
from app.backends.waltero.token import TokenManager
from app.config import Settings
from app.errors import ConfigurationError

__all__ = ["TokenManager", "WalteroBackend", "WalteroClient", "create_backend", "is_configured"]


def is_configured(settings: Settings) -> bool:
    """Both `WALTERO_USERNAME` and `WALTERO_PASSWORD` are set."""
    return settings.waltero_enabled


def create_backend(ctx: BackendContext) -> WalteroBackend:
    """The Waltero backend over the app's shared httpx client, clock, sleep and randomness."""
    settings = ctx.settings
    if not (settings.waltero_username and settings.waltero_password):
        raise ConfigurationError("Waltero needs WALTERO_USERNAME and WALTERO_PASSWORD.")
    policy = waltero_retry_policy(max_attempts=settings.retry_attempts, deadline=settings.request_deadline)

    def on_retry(reason: str) -> None:
        ctx.on_retry("waltero", reason)

    tokens = TokenManager(
        ctx.http,
        settings.waltero_url,
        settings.waltero_username,
        settings.waltero_password,
        clock=ctx.clock,
        policy=policy,
        sleep=ctx.sleep,
        rng=ctx.rng,
        on_retry=on_retry,
    )
    client = WalteroClient(
        ctx.http,
        settings.waltero_url,
        tokens,
        clock=ctx.clock,
        policy=policy,
        sleep=ctx.sleep,
        rng=ctx.rng,
        on_retry=on_retry,
        concurrency=settings.upstream_concurrency,
    )
    return WalteroBackend(
        client,
        clock=ctx.clock,
        mode=ctx.mode,
        organizations=list(settings.waltero_organizations),
        daily_buckets=settings.waltero_daily_buckets,
    )
