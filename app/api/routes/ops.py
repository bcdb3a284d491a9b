"""Operational endpoints: liveness, readiness, backends, metrics. They need no API key except
`/backends`, which says which vendors are wired and when their tokens end (never a token)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, PlainTextResponse, Response

from app.api.deps import ServiceDep, problem_responses
from app.api.problems import problem_response
from app.core.service import MeterService
from app.domain.models import BackendInfo, BackendList, SharedCacheInfo
from app.infra.errors import FacadeError

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
async def backends(service: ServiceDep, request: Request) -> Response:
    items = [
        BackendInfo(
            name=h.name,
            mode=h.mode,  # type: ignore[arg-type]
            capabilities=sorted(h.capabilities),
            status=_status(h.circuit, h.auth.authenticated),  # type: ignore[arg-type]
            circuit=h.circuit,  # type: ignore[arg-type]
            circuit_retry_after=h.circuit_retry_after,
            token_expires_at=h.auth.token_expires_at,
            cache=h.cache_entries,
        )
        for h in await service.health()
    ]
    fleet = request.app.runtime.fleet
    shared = (
        SharedCacheInfo(**fleet.tier.describe())
        if fleet is not None
        else SharedCacheInfo(status="off", mode=request.app.settings.redis_mode)
    )
    body = BackendList(items=items, shared_cache=shared).model_dump_json().encode()
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/healthz", operation_id="getHealth", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def _check(service: MeterService, name: str, circuit: str, seconds: float) -> str:
    if circuit == "open":
        return "circuit open"
    try:
        async with asyncio.timeout(seconds):
            await service.check_ready(name)
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
    service: MeterService = request.app.service
    memo = request.app.runtime.readiness
    now = time.monotonic()
    circuits = {h.name: h.circuit for h in await service.health()}
    if memo.get("at", -1e9) + READY_CACHE_SECONDS < now:
        names = list(circuits)
        results = await asyncio.gather(*(_check(service, n, circuits[n], 5.0) for n in names))
        memo.update(at=now, checks=dict(zip(names, results, strict=True)))
    checks = {n: ("circuit open" if c == "open" else memo["checks"].get(n, "unknown")) for n, c in circuits.items()}
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
    service: MeterService = request.app.service
    m = request.app.metrics
    for name, (entries, size) in service.cache_sizes().items():
        m.cache_entries.labels(name).set(entries)
        m.cache_bytes.labels(name).set(size)
    responses = request.app.responses
    hit_path = request.app.hit_path
    if hit_path is not None:  # hits are counted as a plain int on the hot path; publish them now
        m.cache_lookups.labels("responses", "hit").inc(hit_path.take_hits())
    m.cache_entries.labels("responses").set(len(responses))
    m.cache_bytes.labels("responses").set(responses.bytes)
    for h in await service.health():
        expiry = h.auth.token_expires_at
        m.token_expiry.labels(h.name).set(expiry.timestamp() if expiry else 0)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
