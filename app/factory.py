"""`create_app(settings)`: the whole service, wired in two parts.

- The front, built eagerly and in memory: metrics, the response cache, the routes, and the pure-ASGI
  front (`app.api.front`) composed around FastAPI's own stack so a cached answer never pays for
  FastAPI's routing.
- The runtime, built in the lifespan (I/O) by `app.runtime.build_runtime`: httpx clients, backends,
  guards, service, poller, live hub and fleet, handed to the routes as a typed `Runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from typing import Literal

import httpx
from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from app import __version__
from app.api import docs_ui, openapi, problems
from app.api.deps import known_parameters_only
from app.api.front import Front, compose_front
from app.api.http_cache import ResponseCache
from app.api.middleware.hit_path import HitPath
from app.api.routes import changes, consumption, devices, live, meters, ops, readings
from app.backends import registry as vendors
from app.backends.http import Sleep
from app.backends.registry import Emulator
from app.core.service import MeterService
from app.domain.cursors import CursorCodec
from app.infra.config import Settings
from app.infra.metrics import Metrics
from app.infra.timeutil import Clock
from app.live.metrics import LiveMetrics
from app.runtime import BackendFactory, Runtime, Wiring, build_runtime

log = logging.getLogger("app")

DESCRIPTION = """
One normalized API for smart-meter data from **IOmeter** (electricity, GraphQL) and **Waltero**
(water, gas, heat, electricity sensors, REST). Ids are `<backend>:<upstream id>`; energy is in kWh,
power in W, volume in m3; times are RFC 3339 UTC. Errors are RFC 9457 `application/problem+json`.

Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>` (the **Authorize** button).
Successful GETs carry `ETag`, `Cache-Control`, `Age` and `X-Cache: HIT|MISS|STALE`.
"""


class FacadeApp(FastAPI):
    """FastAPI with the pure-ASGI front outside its own middleware stack, and typed state."""

    settings: Settings
    metrics: Metrics
    responses: ResponseCache
    clock: Clock
    mode: Literal["live", "sandbox"]
    emulators: Mapping[str, Emulator]
    _runtime: Runtime | None = None
    front: Front | None = None
    route_parameters: dict[int, frozenset[str]]
    """The query parameters each API route (by `id`) declares; any other is a 422 (`deps.known_parameters_only`)."""

    @property
    def runtime(self) -> Runtime:
        """Set by the lifespan; a route never runs without it."""
        if self._runtime is None:
            raise RuntimeError("the app's lifespan has not started")
        return self._runtime

    @property
    def service(self) -> MeterService:
        return self.runtime.service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HTTP goes to the front, composed once around FastAPI's own middleware stack (FastAPI's
        # `__call__` would also wrap every request in telemetry hooks this service does not use).
        if scope["type"] == "http":
            front = self.front
            if front is None:
                self.middleware_stack = self.build_middleware_stack()
                front = self.front = compose_front(
                    self.middleware_stack,
                    settings=self.settings,
                    metrics=self.metrics,
                    responses=self.responses,
                    clock=self.clock,
                )
            scope["app"] = self
            await front.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    @property
    def hit_path(self) -> HitPath | None:
        """The front's response-cache layer, once the first request composed the front."""
        return self.front.hit_path if self.front is not None else None


def create_app(
    settings: Settings,
    *,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    emulators: Mapping[str, Emulator] | None = None,
    backend_factories: Mapping[str, BackendFactory] | None = None,
    freeze_gc: bool = False,
) -> FacadeApp:
    """The ASGI app. Raises `ConfigurationError` (saying what to set) when `settings` cannot work.

    `transports` replaces the network transport per backend (tests); in sandbox mode the emulators'
    ASGI apps are the transports (`emulators` may be passed in to share them with a test).
    `backend_factories` replaces the registry's vendors (tests with fake backends).
    `freeze_gc` (the served process, `app.main`): once started, what exists is frozen out of the garbage
    collector's generations (`gc.freeze()`, undone at shutdown)."""
    vendors.validate_startup(settings)
    transports = dict(transports or {})
    emulator_loop = None
    if settings.sandbox:
        from app.sandbox.threaded import EmulatorLoop, ThreadedASGITransport

        settings = vendors.sandbox_settings(settings)
        if emulators is None:  # the sandbox proper: emulators on a loop of their own, like remote vendors
            emulators = vendors.create_emulators(clock)
            emulator_loop = EmulatorLoop()
            for name, emulator in emulators.items():
                transports.setdefault(name, ThreadedASGITransport(emulator.app, emulator_loop))
        else:  # a test's own emulators, in-process, so its fake clock and knobs act at once
            for name, emulator in emulators.items():
                transports.setdefault(name, httpx.ASGITransport(app=emulator.app))
    mode: Literal["live", "sandbox"] = "sandbox" if settings.sandbox else "live"
    metrics = Metrics()
    rng = rng or random.Random()
    secret = settings.cursor_secret.get_secret_value().encode() if settings.cursor_secret else None
    cursors = CursorCodec(secret)
    names = list(backend_factories) if backend_factories is not None else vendors.configured_vendors(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Runtime]]:
        wiring = Wiring(
            settings=settings,
            clock=clock,
            sleep=sleep,
            rng=rng,
            mode=mode,
            metrics=metrics,
            live_metrics=LiveMetrics(metrics.registry),
            cursors=cursors,
            names=names,
            transports=transports,
            emulators=facade.emulators,
            backend_factories=backend_factories,
            on_close=(emulator_loop.close,) if emulator_loop is not None else (),
        )
        async with build_runtime(wiring) as runtime:
            facade._runtime = runtime
            if freeze_gc:
                # Everything built so far (modules, the app, its runtime: some 100k objects) lives as
                # long as the process: moved out of the collector's generations, a full collection set
                # off by a large vendor answer no longer walks it (README "Performance", long windows).
                gc.collect()
                gc.freeze()
            try:
                yield {"runtime": runtime}
            finally:
                if freeze_gc:
                    gc.unfreeze()
                facade._runtime = None
                facade.responses.clear()

    facade = FacadeApp(
        title="Meter facade",
        version=__version__,  # pyproject.toml, through the package metadata
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "meters", "description": "Meters of every backend"},
            {"name": "readings", "description": "Register readings"},
            {"name": "consumption", "description": "Consumption per local day, hour, quarter-hour or month"},
            {"name": "devices", "description": "Device health"},
            {"name": "changes", "description": "Corrections feed"},
            {"name": "operations", "description": "Health, readiness, backends, metrics"},
        ],
    )
    facade.settings = settings
    facade.metrics = metrics
    facade.clock = clock
    facade.mode = mode
    facade.emulators = dict(emulators or {})
    facade.responses = ResponseCache(
        settings.cache_maxsize_responses,
        clock,
        max_bytes=settings.responses_cache_bytes(),
        max_entry_bytes=settings.cache_max_entry_bytes,
    )
    problems.install(facade)
    docs_ui.install(facade)
    modules = (meters, live, readings, consumption, devices, changes, ops)
    for module in modules:  # every API route refuses query parameters it does not declare (422)
        facade.include_router(module.router, dependencies=[Depends(known_parameters_only)])
    facade.route_parameters = {
        id(route): _query_parameters(route.dependant)
        for route in [*facade.routes, *(r for module in modules for r in module.router.routes)]
        if isinstance(route, APIRoute)  # `scope["route"]` is the module's own route object
    }
    facade.responses.params_by_path = {  # response-cache keys hold a route's own parameters, nothing else
        route.path: frozenset(p.alias for p in route.dependant.query_params)
        for module in modules
        for route in module.router.routes
        if isinstance(route, APIRoute) and "{" not in route.path
    }
    backend_names = list(names)
    facade.openapi = lambda: openapi.build(facade, backend_names or vendors.names())  # type: ignore[method-assign]
    return facade


def _query_parameters(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route declares, its dependencies' included."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_parameters(sub)
    return frozenset(names)


__all__ = ["FacadeApp", "Runtime", "create_app"]
