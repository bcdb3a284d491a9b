"""Build the app for tests with `create_app(settings)`, run its lifespan, and talk to it in-process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from app.factory import create_app
from app.infra.config import Settings

API_KEY = "test-key-0123456789"


def live_settings(**overrides: Any) -> Settings:
    """A live configuration with both vendors 'configured' (for fake backends) and one API key."""
    values: dict[str, Any] = {
        "IOMETER_PARTNER_ID": "partner",
        "IOMETER_PARTNER_SECRET": "partner-secret-value",
        "WALTERO_USERNAME": "user@example.com",
        "WALTERO_PASSWORD": "waltero-password-value",
        "FACADE_API_KEYS": API_KEY,
        "FACADE_CHANGES_POLL": 0,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running(app: FastAPI, *, key: str | None = API_KEY) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, and a client that sends `key`."""
    headers = {"X-API-Key": key} if key else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facade.test", headers=headers) as client:
            yield client


def fake_app(backends: dict[str, Any], clock: Any = None, **settings: Any) -> FastAPI:
    kwargs: dict[str, Any] = {"backend_factories": {name: (lambda ctx, b=b: b) for name, b in backends.items()}}
    if clock is not None:
        kwargs["clock"] = clock
    return create_app(live_settings(**settings), **kwargs)
