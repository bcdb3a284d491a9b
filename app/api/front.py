"""The pure-ASGI front, composed from outside the way Starlette's own middleware wrap an app:

    Observe(HeaderLimit(CancelOnDisconnect(HeadAsGet(ClientAuth(HitPath(fastapi_stack))))))
                                            (+ LiveDemo above ClientAuth in sandbox mode)

A cached answer is most of the traffic, and each layer costs, so `Observe` first asks the chain below
it for a stored answer through `answer(scope)`: each layer that can take part implements `Answers`
and adds its own condition (`ClientAuth`: the key; `HitPath`: the stored bytes) before asking the
layer below. The fast path is therefore the layers' own chain, never an order restated elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp

from app.api.http_cache import ResponseCache
from app.api.middleware.client_auth import ClientAuth
from app.api.middleware.disconnect import CancelOnDisconnect
from app.api.middleware.head import HeadAsGet
from app.api.middleware.header_limit import HeaderLimit
from app.api.middleware.hit_path import HitPath
from app.api.middleware.observe import Observe
from app.infra.config import Settings
from app.infra.metrics import Metrics
from app.infra.timeutil import Clock
from app.live.demo import LiveDemo


@dataclass(frozen=True, slots=True)
class Front:
    app: Observe
    """The ASGI entry for HTTP."""
    hit_path: HitPath
    """Its response-cache layer (hit counts are published at scrape time)."""


def compose_front(
    inner: ASGIApp, *, settings: Settings, metrics: Metrics, responses: ResponseCache, clock: Clock
) -> Front:
    """The front around `inner` (FastAPI's own middleware stack and router)."""
    hit_path = HitPath(inner, responses=responses, clock=clock)
    authed: ASGIApp = ClientAuth(hit_path, keys=settings.client_keys())
    if settings.sandbox:
        authed = LiveDemo(authed)  # `/live-demo`, sandbox only, no key
    limited = HeaderLimit(CancelOnDisconnect(HeadAsGet(authed)), settings.max_header_bytes)
    return Front(Observe(limited, metrics=metrics), hit_path)
