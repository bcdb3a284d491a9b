"""`create_app(settings)`: the whole service, wired.

Built eagerly (pure, in memory): metrics, the response cache, the middleware stack, the routes.
Built in the lifespan (I/O): one httpx client per backend, the backends, the service, and the
corrections poller; closed in reverse order on shutdown, after in-flight requests finish (uvicorn
drains them before the lifespan ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

import httpx
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

from app import problems
from app.backends.base import CHANGES, Backend
from app.backends.http import Sleep
from app.backends.registry import BackendContext, configured_vendors, create_backend
from app.config import Settings
from app.cursors import CursorCodec
from app.http_cache import ResponseCache
from app.live import demo as live_demo
from app.live.metrics import LiveMetrics
from app.live.wiring import create_hub
from app.metrics import Metrics
from app.middleware.client_auth import OPEN_PATHS, ClientAuth
from app.middleware.hit_path import HitPath
from app.middleware.observe import Observe
from app.models import Problem
from app.routes import changes, consumption, devices, live, meters, ops, readings
from app.service import MeterService
from app.timeutil import Clock, from_epoch
from app.upstream import build_client

log = logging.getLogger("app")

DESCRIPTION = """
One normalized API for smart-meter data from **IOmeter** (electricity, GraphQL) and **Waltero**
(water, gas, heat, electricity sensors, REST). Ids are `<backend>:<upstream id>`; energy is in kWh,
power in W, volume in m3; times are RFC 3339 UTC. Errors are RFC 9457 `application/problem+json`.

Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>` (the **Authorize** button).
Successful GETs carry `ETag`, `Cache-Control`, `Age` and `X-Cache: HIT|MISS|STALE`.
"""


def create_app(
    settings: Settings,
    *,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    emulators: Mapping[str, Any] | None = None,
    backend_factories: Mapping[str, Callable[[BackendContext], Backend]] | None = None,
) -> ServiceApp:
    """The ASGI app. Raises `ConfigurationError` (saying what to set) when `settings` cannot work.

    `transports` replaces the network transport per backend (tests); in sandbox mode the emulators'
    ASGI apps are the transports (`emulators` may be passed in to share them with a test).
    `backend_factories` replaces the registry's vendors (tests with fake backends)."""
    settings.validate_startup()
    transports = dict(transports or {})
    if settings.sandbox:
        from app import sandbox

        emulators = dict(emulators or sandbox.create_emulators(clock))
        settings = sandbox.sandbox_settings(settings)
        for name, emulator in emulators.items():
            transports.setdefault(name, httpx.ASGITransport(app=emulator.app))
    mode: Literal["live", "sandbox"] = "sandbox" if settings.sandbox else "live"
    metrics = Metrics()
    responses = ResponseCache(settings.cache_size("responses"), clock)
    secret = settings.cursor_secret.get_secret_value().encode() if settings.cursor_secret else None
    cursors = CursorCodec(secret)
    rng = rng or random.Random()
    live_metrics = LiveMetrics(metrics.registry)  # live readings (issue 13)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients: list[httpx.AsyncClient] = []
        backends: dict[str, Backend] = {}
        names = list(backend_factories) if backend_factories is not None else configured_vendors(settings)
        for name in names:
            client = build_client(name, settings, metrics, transports.get(name))
            clients.append(client)
            ctx = BackendContext(
                settings=settings,
                http=client,
                clock=clock,
                sleep=sleep,
                rng=rng,
                mode=mode,
                on_retry=lambda backend, reason: metrics.upstream_retries.labels(backend, reason).inc(),
            )
            if backend_factories is not None:
                backends[name] = backend_factories[name](ctx)
            else:
                backends[name] = create_backend(name, ctx)
        service = MeterService(backends, settings=settings, clock=clock, metrics=metrics, cursors=cursors)
        app.state.service = service
        # --- live readings (issue 13): the hub binds to the service only through app/live/wiring.py
        app.state.live = create_hub(
            settings,
            service,
            clock=clock,
            metrics=live_metrics,
            rng=rng,
            emulators=emulators if mode == "sandbox" else None,
        )
        # --- end live readings
        poller = None
        if settings.changes_poll > 0 and any(CHANGES in b.capabilities for b in backends.values()):
            poller = asyncio.create_task(_poll_corrections(service, settings.changes_poll, clock))
        log.info("started", extra={"fields": {"mode": mode, "backends": sorted(backends)}})
        try:
            yield
        finally:
            if poller:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            await app.state.live.aclose()  # live readings (issue 13)
            await service.aclose()
            for backend in backends.values():
                await backend.aclose()
            for client in clients:
                await client.aclose()
            responses.clear()

    app = FastAPI(
        title="Meter facade",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        openapi_tags=[
            {"name": "meters", "description": "Meters of both vendors"},
            {"name": "readings", "description": "Register readings"},
            {"name": "consumption", "description": "Daily consumption"},
            {"name": "devices", "description": "Device health"},
            {"name": "changes", "description": "Corrections feed"},
            {"name": "operations", "description": "Health, readiness, backends, metrics"},
        ],
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.metrics = metrics
    app.state.responses = responses
    app.state.readiness = {}
    app.state.emulators = emulators
    problems.install(app)
    for module in (meters, live, readings, consumption, devices, changes, ops):
        app.include_router(module.router)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    keys = [k.get_secret_value() for k in settings.api_keys]
    hits = metrics.cache_lookups.labels("responses", "hit")
    # The pure-ASGI front sits outside FastAPI: a cached answer never pays for FastAPI's own middleware
    # and routing (PERF-NOTES.md: that, not the cache, is what a hit costs).
    authed: ASGIApp = ClientAuth(
        HitPath(app, responses=responses, clock=clock, on_hit=lambda route: hits.inc()), keys=keys
    )
    if settings.sandbox:
        authed = live_demo.LiveDemo(authed)  # live readings (issue 13): `/live-demo`, sandbox only, no key
    front = Observe(authed, metrics=metrics)
    return ServiceApp(app, front)


class ServiceApp:
    """The ASGI app uvicorn serves: `Observe` → `ClientAuth` → `HitPath` → FastAPI.

    Everything else (`state`, `router`, `openapi()`, ...) is the FastAPI app's, so tests and tools use
    it as they would the FastAPI app itself."""

    def __init__(self, api: FastAPI, front: ASGIApp) -> None:
        self.api = api
        self._front = front

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


async def _poll_corrections(service: MeterService, every: float, clock: Clock) -> None:
    """Evict cached readings and daily consumption of meters the vendors corrected."""
    watermark = from_epoch(clock())
    while True:
        await asyncio.sleep(every)
        try:
            watermark = await service.poll_changes_once(watermark)
        except Exception as exc:  # keep polling: an outage must not end invalidation for good
            log.warning("corrections poll failed", extra={"fields": {"error": type(exc).__name__}})


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The spec, with problem+json for every error, the security schemes for Swagger's Authorize
    button, and the open paths marked as needing no key."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key from FACADE_API_KEYS."},
        "apiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key from FACADE_API_KEYS.",
        },
    }
    spec["security"] = [{"bearer": []}, {"apiKey": []}]
    problem_ref = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            if path in OPEN_PATHS:
                operation["security"] = []
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {
                    "description": "Invalid parameters; `errors` names each bad field.",
                    "content": problem_ref,
                }
            if path not in OPEN_PATHS and "401" not in responses:
                responses["401"] = {"description": "Missing or wrong API key.", "content": problem_ref}
    app.openapi_schema = spec
    return spec
