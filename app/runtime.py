"""The runtime: what the lifespan builds with I/O and closes on shutdown, apart from the HTTP front.

`build_runtime(wiring)` owns, in one `AsyncExitStack` closed in reverse order (after uvicorn drained
in-flight requests): the fleet (Redis, when set), one httpx client and one backend per vendor, the
data caches and the guards around each backend, the service, the corrections poller and the live hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from app.backends import registry as vendors
from app.backends.base import Backend, IndexStore
from app.backends.http import Sleep
from app.backends.registry import BackendContext, Emulator
from app.core.caches import Caches, build_caches
from app.core.corrections import CorrectionsPoller
from app.core.fleet import Fleet
from app.core.service import MeterService
from app.domain.cursors import CursorCodec
from app.domain.models import Change
from app.guard.circuit import CircuitBreaker
from app.guard.guarded import GuardedBackend
from app.infra import tolerance
from app.infra.config import Settings
from app.infra.metrics import Metrics
from app.infra.timeutil import Clock
from app.infra.upstream import build_client
from app.live.hub import Hub
from app.live.metrics import LiveMetrics
from app.live.wiring import create_hub
from app.shared.indexes import SharedIndexes
from app.shared.tokens import SharedTokenStore

log = logging.getLogger("app")

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


@dataclass(frozen=True, slots=True)
class Wiring:
    """Everything `build_runtime` needs, decided before any I/O by `create_app`."""

    settings: Settings
    clock: Clock
    sleep: Sleep
    rng: random.Random
    mode: Literal["live", "sandbox"]
    metrics: Metrics
    live_metrics: LiveMetrics
    cursors: CursorCodec
    names: list[str]
    """The backends to build: the configured vendors, or the test's `backend_factories`."""
    transports: Mapping[str, httpx.AsyncBaseTransport]
    emulators: Mapping[str, Emulator]
    backend_factories: Mapping[str, BackendFactory] | None = None
    on_close: tuple[Callable[[], None], ...] = ()
    """Called (last first) when the runtime closes: the emulators' loop, the response cache."""


@contextlib.asynccontextmanager
async def build_runtime(w: Wiring) -> AsyncIterator[Runtime]:
    settings, metrics, clock = w.settings, w.metrics, w.clock
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(tolerance.recording(metrics.wire_shapes))  # for the background tasks started here
        for callback in w.on_close:
            stack.callback(callback)
        deadline = backend_deadline(settings)
        fleet = _fleet(settings, clock, metrics, deadline)
        if fleet is not None:
            stack.push_async_callback(fleet.aclose)
        built: dict[str, Backend] = {}
        for name in w.names:
            client = build_client(name, settings, metrics, w.transports.get(name))
            stack.push_async_callback(client.aclose)
            built[name] = backend = _build_backend(w, name, client, fleet)
            stack.push_async_callback(backend.aclose)
        caches = build_caches(settings, clock, metrics, fleet.cache_tier if fleet is not None else None)
        guarded = {name: _guard(settings, metrics, clock, caches, backend) for name, backend in built.items()}
        service = MeterService(
            guarded, caches=caches, settings=settings, clock=clock, metrics=metrics, cursors=w.cursors
        )
        stack.push_async_callback(service.aclose)
        evict: Callable[[Iterable[Change]], dict[str, int]] = service.evict_for_changes
        if fleet is not None:
            fleet.attach(
                evict_local=service.evict_meters,
                drop_local=functools.partial(_drop_correctable, caches),
                cursors=None if settings.cursor_secret else w.cursors,
            )
            evict = functools.partial(_evict_everywhere, service, fleet)
        poller = CorrectionsPoller(
            list(guarded.values()),
            evict,
            every=settings.changes_poll,
            clock=clock,
            sleep=w.sleep,
            watermarks=fleet.watermarks if fleet is not None else None,
            leadership=fleet.leadership if fleet is not None else None,
            lookback=settings.corrections_lookback,
        )
        if fleet is not None:
            await fleet.start(lead=poller.active)
        hub = create_hub(
            settings, service, clock=clock, metrics=w.live_metrics, rng=w.rng, emulators=w.emulators or None
        )
        stack.push_async_callback(hub.aclose)
        runtime = Runtime(
            service=service, backends=built, poller=poller if poller.active else None, live=hub, fleet=fleet
        )
        if runtime.poller is not None:
            task = asyncio.create_task(runtime.poller.run())
            stack.push_async_callback(_cancel, task)
        log.info("started", extra={"fields": {"mode": w.mode, "backends": sorted(built)}})
        yield runtime


def _build_backend(w: Wiring, name: str, http: httpx.AsyncClient, fleet: Fleet | None) -> Backend:
    ctx = backend_context(
        w.settings,
        http,
        clock=w.clock,
        sleep=w.sleep,
        rng=w.rng,
        mode=w.mode,
        on_retry=lambda backend, reason: w.metrics.upstream_retries.labels(backend, reason).inc(),
        token_store=fleet.token_store if fleet is not None else None,
        # an index is loaded inside a vendor call whose own fleet wait already spent up to half the
        # deadline: waiting on a peer's index load gets half of what is left, then lists here
        index_store=SharedIndexes(fleet.flight, budget=backend_deadline(w.settings) / 2, clock=w.clock)
        if fleet is not None
        else None,
    )
    if w.backend_factories is not None:
        return w.backend_factories[name](ctx)
    return vendors.vendors()[name].create_backend(ctx, vendors.vendor_settings(w.settings, name))


def _guard(settings: Settings, metrics: Metrics, clock: Clock, caches: Caches, backend: Backend) -> GuardedBackend:
    name = backend.name
    metrics.circuit_state.labels(name).set(0)
    metrics.start_backend(name)
    return GuardedBackend(
        backend,
        caches=caches,
        breaker=CircuitBreaker(
            name,
            failure_threshold=settings.circuit_failures,
            reset_after=settings.circuit_reset,
            clock=clock,
            on_change=metrics.circuit_state.labels(name).set,
        ),
        deadline=backend_deadline(settings),
        max_loads=settings.max_loads,
        slots=settings.upstream_concurrency,
    )


def backend_deadline(settings: Settings) -> float:
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


def _drop_correctable(caches: Caches) -> None:
    """After a gap in the eviction broadcast: drop what a missed correction could have touched."""
    for cache in caches.correctable():
        cache.clear()


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
    index_store: Callable[[str], IndexStore | None] | None = None,
) -> BackendContext:
    """What a vendor's `create_backend` gets, from the service settings."""
    return BackendContext(
        http=http,
        clock=clock,
        sleep=sleep,
        rng=rng,
        mode=mode,
        deadline=backend_deadline(settings),
        max_gap=settings.max_gap,
        upstream_concurrency=settings.upstream_concurrency,
        retry_attempts=settings.retry_attempts,
        on_retry=on_retry,
        token_store=token_store,
        index_store=index_store,
    )


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
