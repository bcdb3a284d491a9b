"""Operational endpoints: liveness, readiness, backends, metrics. They need no API key except
`/backends`, which says which vendors are wired and when their tokens end (never a token)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, PlainTextResponse, Response

from app.backends.base import Backend
from app.deps import ServiceDep, problem_responses
from app.errors import FacadeError
from app.models import BackendInfo, BackendList
from app.problems import problem_response

router = APIRouter(tags=["operations"])
READY_CACHE_SECONDS = 10.0
"""A readiness probe every few seconds must not log in to a vendor each time."""


def _status(circuit: str, authenticated: bool | None) -> str:
    if circuit == "open" or authenticated is False:
        return "down"
    if circuit == "half_open":
        return "degraded"
    return "unknown" if authenticated is None else "ok"


@router.get(
    "/backends",
    operation_id="listBackends",
    response_model=BackendList,
    summary="The configured backends and their health",
    responses=problem_responses(401),
)
async def backends(service: ServiceDep) -> Response:
    items = []
    for name, backend in service.backends.items():
        breaker = service.breakers[name]
        auth = await backend.auth_state()
        items.append(
            BackendInfo(
                name=name,  # type: ignore[arg-type]
                mode=backend.mode,
                capabilities=sorted(backend.capabilities),
                status=_status(breaker.state, auth.authenticated),  # type: ignore[arg-type]
                circuit=breaker.state,
                circuit_retry_after=breaker.retry_after(),
                token_expires_at=auth.token_expires_at,
                cache={n: c.count_backend(name) for n, c in service.caches.items()},
            )
        )
    body = BackendList(items=items).model_dump_json().encode()
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/healthz", operation_id="getHealth", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def _check(backend: Backend, service_breaker_state: str, seconds: float) -> str:
    if service_breaker_state == "open":
        return "circuit open"
    try:
        async with asyncio.timeout(seconds):
            await backend.check_ready()
    except FacadeError as exc:
        return exc.title
    except TimeoutError:
        return "timed out"
    return "ok"


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="Readiness: every configured backend can authenticate and its circuit is closed",
    responses={200: {"description": "Ready"}, **problem_responses(503)},
)
async def readyz(request: Request) -> Response:
    service = request.app.state.service
    memo = request.app.state.readiness
    now = time.monotonic()
    if memo.get("at", -1e9) + READY_CACHE_SECONDS < now:
        names = list(service.backends)
        results = await asyncio.gather(*(_check(service.backends[n], service.breakers[n].state, 5.0) for n in names))
        memo.update(at=now, checks=dict(zip(names, results, strict=True)))
    checks = {
        n: ("circuit open" if service.breakers[n].state == "open" else memo["checks"].get(n, "unknown"))
        for n in service.backends
    }
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "backends": checks}, headers={"Cache-Control": "no-store"})
    failing = ", ".join(f"{n}: {v}" for n, v in checks.items() if v != "ok")
    response = problem_response(
        503,
        "Not ready",
        f"Not ready ({failing}).",
        type_="/problems/not-ready",
        headers={"Retry-After": "5", "Cache-Control": "no-store"},
    )
    return response


@router.get(
    "/metrics",
    operation_id="getMetrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}
    },
)
async def metrics(request: Request) -> Response:
    service = request.app.state.service
    m = request.app.state.metrics
    for name, cache in service.caches.items():
        m.cache_entries.labels(name).set(len(cache))
    m.cache_entries.labels("responses").set(len(request.app.state.responses))
    for name, backend in service.backends.items():
        auth = await backend.auth_state()
        m.token_expiry.labels(name).set(auth.token_expires_at.timestamp() if auth.token_expires_at else 0)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
