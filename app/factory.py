"""`create_app(settings)`: the whole service, wired.

Built eagerly (pure, in memory): metrics, the response cache, the routes, and the pure-ASGI front
(`Observe` → `HeadAsGet` → `ClientAuth` → `HitPath`), which `FacadeApp.build_middleware_stack` puts
outside FastAPI's own stack so a cached answer never pays for FastAPI's routing.
Built in the lifespan (I/O), owned by one `AsyncExitStack` and closed in reverse order on shutdown
(after uvicorn drained in-flight requests): one httpx client per backend, the backends, their guards,
the service and the corrections poller, handed to the routes as a typed `Runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import docs_ui, openapi, problems
from app.api.http_cache import ResponseCache
from app.api.middleware.client_auth import ClientAuth
from app.api.middleware.head import HeadAsGet
from app.api.middleware.hit_path import Answered, HitPath
from app.api.middleware.observe import Observe
from app.api.routes import changes, consumption, devices, live, meters, ops, readings
from app.backends import registry as vendors
from app.backends.base import Backend
from app.backends.http import Sleep
from app.backends.registry import BackendContext, Emulator
from app.core.corrections import CorrectionsPoller
from app.core.fleet import Fleet
from app.core.service import MeterService
from app.domain.cursors import CursorCodec
from app.domain.models import Change
from app.guard.cache import SingleFlightCache
from app.guard.circuit import CircuitBreaker
from app.guard.guarded import GuardedBackend, build_caches
from app.infra.config import Settings
from app.infra.metrics import Metrics
from app.infra.timeutil import Clock
from app.infra.upstream import build_client
from app.live.demo import LiveDemo
from app.live.hub import Hub
from app.live.metrics import LiveMetrics
from app.live.wiring import create_hub
from app.shared.tokens import SharedTokenStore

log = logging.getLogger("app")

DESCRIPTION = """
One normalized API for smart-meter data from **IOmeter** (electricity, GraphQL) and **Waltero**
(water, gas, heat, electricity sensors, REST). Ids are `<backend>:<upstream id>`; energy is in kWh,
power in W, volume in m3; times are RFC 3339 UTC. Errors are RFC 9457 `application/problem+json`.

Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>` (the **Authorize** button).
Successful GETs carry `ETag`, `Cache-Control`, `Age` and `X-Cache: HIT|MISS|STALE`.
"""

BackendFactory = Callable[[BackendContext], Backend]


@dataclass(slots=True)
class Runtime:
    """What the lifespan builds and the routes use."""

    service: MeterService
    backends: dict[str, Backend]
    poller: CorrectionsPoller | None = None
    live: Hub | None = None
    readiness: dict[str, Any] = field(default_factory=dict)
    fleet: Fleet | None = None
    """What the replicas share through Redis (`FACADE_REDIS_URL`); None when unset."""


class FacadeApp(FastAPI):
    """FastAPI with the pure-ASGI front outside its own middleware stack, and typed state."""

    settings: Settings
    metrics: Metrics
    responses: ResponseCache
    clock: Clock
    mode: Literal["live", "sandbox"]
    emulators: Mapping[str, Emulator]
    _runtime: Runtime | None = None
    hit_path: HitPath | None = None

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
        # HTTP goes straight to the front: FastAPI's own `__call__` wraps every request in its native
        # telemetry hooks, which this service does not use and which cost a sixth of a cache hit.
        if scope["type"] == "http":
            if self.middleware_stack is None:
                self.middleware_stack = self.build_middleware_stack()
            scope["app"] = self
            await self.middleware_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        keys = self.settings.client_keys()
        self.hit_path = hit_path = HitPath(inner, responses=self.responses, clock=self.clock)
        auth = ClientAuth(hit_path, keys=keys)
        authed: ASGIApp = auth
        if self.settings.sandbox:
            authed = LiveDemo(authed)  # `/live-demo`, sandbox only, no key

        def hit(scope: Scope) -> Answered | None:
            # A cached answer, checked in the same order as the layers below (key, then store), but
            # without going through them: a hit is most of the traffic, and each layer costs.
            return hit_path.answer(scope) if auth.admit(scope) else None

        return Observe(HeadAsGet(authed), metrics=self.metrics, hit=hit)


def create_app(
    settings: Settings,
    *,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    emulators: Mapping[str, Emulator] | None = None,
    backend_factories: Mapping[str, BackendFactory] | None = None,
) -> FacadeApp:
    """The ASGI app. Raises `ConfigurationError` (saying what to set) when `settings` cannot work.

    `transports` replaces the network transport per backend (tests); in sandbox mode the emulators'
    ASGI apps are the transports (`emulators` may be passed in to share them with a test).
    `backend_factories` replaces the registry's vendors (tests with fake backends)."""
    settings.validate_startup()
    transports = dict(transports or {})
    emulator_loop = None
    if settings.sandbox:
        from app import sandbox
        from app.sandbox.threaded import EmulatorLoop, ThreadedASGITransport

        settings = sandbox.sandbox_settings(settings)
        if emulators is None:  # the sandbox proper: emulators on a loop of their own, like remote vendors
            emulators = sandbox.create_emulators(clock)
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
    names = list(backend_factories) if backend_factories is not None else settings.configured_vendors()
    backend_deadline = _backend_deadline(settings)
    live_metrics = LiveMetrics(metrics.registry)

    def build_backend(name: str, http: httpx.AsyncClient, fleet: Fleet | None) -> Backend:
        ctx = backend_context(
            settings,
            http,
            clock=clock,
            sleep=sleep,
            rng=rng,
            mode=mode,
            on_retry=lambda backend, reason: metrics.upstream_retries.labels(backend, reason).inc(),
            token_store=fleet.token_store if fleet is not None else None,
        )
        if backend_factories is not None:
            return backend_factories[name](ctx)
        return vendors.vendors()[name].create_backend(ctx, settings.vendor_settings(name))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Runtime]]:
        async with contextlib.AsyncExitStack() as stack:
            if emulator_loop is not None:
                stack.callback(emulator_loop.close)
            fleet = _fleet(settings, clock, metrics, backend_deadline)
            if fleet is not None:
                stack.push_async_callback(fleet.aclose)
            built: dict[str, Backend] = {}
            for name in names:
                client = build_client(name, settings, metrics, transports.get(name))
                stack.push_async_callback(client.aclose)
                built[name] = backend = build_backend(name, client, fleet)
                stack.push_async_callback(backend.aclose)
            caches = build_caches(settings, clock, metrics, fleet.cache_tier if fleet is not None else None)
            guarded = {
                name: GuardedBackend(
                    backend,
                    caches=caches,
                    breaker=CircuitBreaker(
                        name,
                        failure_threshold=settings.circuit_failures,
                        reset_after=settings.circuit_reset,
                        clock=clock,
                        on_change=metrics.circuit_state.labels(name).set,
                    ),
                    deadline=backend_deadline,
                    max_loads=settings.max_loads,
                    slots=settings.upstream_concurrency,
                )
                for name, backend in built.items()
            }
            for name in guarded:
                metrics.circuit_state.labels(name).set(0)
            service = MeterService(
                guarded, caches=caches, settings=settings, clock=clock, metrics=metrics, cursors=cursors
            )
            stack.push_async_callback(service.aclose)
            stack.callback(facade.responses.clear)
            evict: Callable[[Iterable[Change]], dict[str, int]] = service.evict_for_changes
            if fleet is not None:
                fleet.attach(
                    evict_local=service.evict_meters,
                    drop_local=functools.partial(_drop_correctable, caches),
                    cursors=None if settings.cursor_secret else cursors,
                )
                evict = functools.partial(_evict_everywhere, service, fleet)
            poller = CorrectionsPoller(
                list(guarded.values()),
                evict,
                every=settings.changes_poll,
                clock=clock,
                sleep=sleep,
                watermarks=fleet.watermarks if fleet is not None else None,
                leadership=fleet.leadership if fleet is not None else None,
                lookback=settings.corrections_lookback,
            )
            if fleet is not None:
                await fleet.start(lead=poller.active)
            hub = create_hub(
                settings, service, clock=clock, metrics=live_metrics, rng=rng, emulators=facade.emulators or None
            )
            stack.push_async_callback(hub.aclose)
            runtime = Runtime(
                service=service, backends=built, poller=poller if poller.active else None, live=hub, fleet=fleet
            )
            if runtime.poller is not None:
                task = asyncio.create_task(runtime.poller.run())
                stack.push_async_callback(_cancel, task)
            facade._runtime = runtime
            stack.callback(setattr, facade, "_runtime", None)
            log.info("started", extra={"fields": {"mode": mode, "backends": sorted(built)}})
            yield {"runtime": runtime}

    facade = FacadeApp(
        title="Meter facade",
        version="0.2.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "meters", "description": "Meters of every backend"},
            {"name": "readings", "description": "Register readings"},
            {"name": "consumption", "description": "Daily consumption"},
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
        settings.cache_size("responses"),
        clock,
        max_bytes=settings.cache_bytes("responses"),
        max_entry_bytes=settings.cache_max_entry_bytes,
    )
    problems.install(facade)
    docs_ui.install(facade)
    modules = (meters, live, readings, consumption, devices, changes, ops)
    for module in modules:
        facade.include_router(module.router)
    facade.responses.params_by_path = {  # response-cache keys hold a route's own parameters, nothing else
        route.path: frozenset(p.alias for p in route.dependant.query_params)
        for module in modules
        for route in module.router.routes
        if isinstance(route, APIRoute) and "{" not in route.path
    }
    backend_names = list(names)
    facade.openapi = lambda: openapi.build(facade, backend_names or vendors.names())  # type: ignore[method-assign]
    return facade


def _backend_deadline(settings: Settings) -> float:
    """A little inside the request's, so a slow vendor is its own error entry, not the whole list's 504."""
    return max(0.05, settings.request_deadline * 0.9)


def _fleet(settings: Settings, clock: Clock, metrics: Metrics, budget: float) -> Fleet | None:
    """The shared tier when FACADE_REDIS_URL is set. Sandbox replicas each run their own emulators,
    whose vendor tokens mean nothing to another replica's: they keep their tokens to themselves."""
    if settings.redis_url is None:
        return None
    return Fleet(
        settings.redis_url.get_secret_value(),
        mode=settings.redis_mode,
        sentinels=settings.redis_sentinels,
        service=settings.redis_service,
        prefix=settings.redis_prefix,
        timeout=settings.redis_timeout,
        connect_timeout=settings.redis_connect_timeout,
        max_connections=settings.redis_pool_size,
        clock=clock,
        metrics=metrics,
        budget=budget,
        share_tokens=not settings.sandbox,
        max_entry_bytes=settings.cache_max_entry_bytes,
    )


def _evict_everywhere(service: MeterService, fleet: Fleet, changes: Iterable[Change]) -> dict[str, int]:
    """The poller's eviction with a shared tier: here at once, then every other replica and Redis."""
    changes = list(changes)
    evicted = service.evict_for_changes(changes)
    fleet.evict_everywhere(changes)
    return evicted


def _drop_correctable(caches: Mapping[str, SingleFlightCache]) -> None:
    """After a gap in the eviction broadcast: drop what a missed correction could have touched."""
    caches["readings"].clear()
    caches["daily"].clear()


def backend_context(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    clock: Clock,
    sleep: Sleep,
    rng: random.Random,
    mode: Literal["live", "sandbox"],
    on_retry: Callable[[str, str], None] = lambda backend, reason: None,
    token_store: Callable[[str, str | None], SharedTokenStore | None] | None = None,
) -> BackendContext:
    """What a vendor's `create_backend` gets, from the service settings."""
    return BackendContext(
        http=http,
        clock=clock,
        sleep=sleep,
        rng=rng,
        mode=mode,
        deadline=_backend_deadline(settings),
        max_gap=settings.max_gap,
        upstream_concurrency=settings.upstream_concurrency,
        retry_attempts=settings.retry_attempts,
        on_retry=on_retry,
        token_store=token_store,
    )


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
