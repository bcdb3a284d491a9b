"""The Acme emulator: Acme's (imaginary) REST API as its own page would describe it, served from
deterministic data. It imports nothing of the Acme adapter, so the two can disagree.

Acme's page, as this emulator reads it:
- every request carries `X-Acme-User: <user>` and `Authorization: Token <token>`; anything else is 401;
- `GET /v1/meters` → `{"meters": [{"id", "serial", "label", "unit"}]}` (ids `m-<n>`);
- `GET /v1/meters/{id}` → one meter, 404 `{"error": "no such meter"}` when unknown;
- `GET /v1/meters/{id}/readings?from=<epoch s>&to=<epoch s>` → `{"readings": [{"t": <epoch s>, "v": <kWh>}]}`,
  the cumulative register every 15 minutes with `from <= t < to`, ascending.

Variants (`BREAKS`), each breaking one assumption the adapter pins: `wh_units` (the register in Wh).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.sandbox.faults import Faults

DEMO_USER = "acme-demo"
DEMO_TOKEN = "acme-demo-token"
STEP = 900
RATE_KWH_PER_HOUR = 1.0
"""Each meter's register rises by exactly this much per hour: consumption tests know the answer."""
BREAKS: dict[str, str] = {"wh_units": "the register is sent in Wh, not kWh"}
METERS = [{"id": f"m-{n}", "serial": f"ACME-{n:04d}", "label": f"Acme meter {n}"} for n in (1, 2)]


@dataclass
class Emulator:
    clock: Callable[[], float]
    breaks: set[str] = field(default_factory=set)
    faults: Faults = field(default_factory=Faults)
    stats: Counter[str] = field(default_factory=Counter)
    app: Any = None

    def register(self, meter_id: str, t: float) -> float:
        """The meter's register (kWh) at epoch `t`."""
        base = 1000.0 * int(meter_id.split("-")[1])
        return base + RATE_KWH_PER_HOUR * t / 3600.0

    def unit(self) -> str:
        return "Wh" if "wh_units" in self.breaks else "kWh"


def create_emulator(
    clock: Callable[[], float] = time.time, *, seed: int = 7, breaks: set[str] | None = None
) -> Emulator:
    emulator = Emulator(clock, set(breaks or ()))
    scale = 1000.0 if "wh_units" in emulator.breaks else 1.0

    def authorized(request: Request) -> bool:
        return (
            request.headers.get("x-acme-user") == DEMO_USER
            and request.headers.get("authorization") == f"Token {DEMO_TOKEN}"
        )

    def meter_json(meter: dict[str, str]) -> dict[str, str]:
        return {**meter, "unit": emulator.unit()}

    async def meters(request: Request) -> JSONResponse:
        emulator.stats["requests"] += 1
        emulator.stats["meters"] += 1
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, 401)
        return JSONResponse({"meters": [meter_json(m) for m in METERS]})

    async def meter(request: Request) -> JSONResponse:
        emulator.stats["requests"] += 1
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, 401)
        found = [m for m in METERS if m["id"] == request.path_params["meter_id"]]
        return JSONResponse(meter_json(found[0])) if found else JSONResponse({"error": "no such meter"}, 404)

    async def readings(request: Request) -> JSONResponse:
        emulator.stats["requests"] += 1
        emulator.stats["readings"] += 1
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, 401)
        meter_id = request.path_params["meter_id"]
        if meter_id not in {m["id"] for m in METERS}:
            return JSONResponse({"error": "no such meter"}, 404)
        try:
            start, end = float(request.query_params["from"]), float(request.query_params["to"])
        except (KeyError, ValueError):
            return JSONResponse({"error": "from and to are epoch seconds"}, 400)
        end = min(end, emulator.clock())
        first = math.ceil(start / STEP) * STEP
        points = [
            {"t": t, "v": round(emulator.register(meter_id, t) * scale, 6)}
            for t in range(int(first), math.ceil(end), STEP)
            if start <= t < end
        ]
        return JSONResponse({"readings": points})

    emulator.app = Starlette(
        routes=[
            Route("/v1/meters", meters),
            Route("/v1/meters/{meter_id}", meter),
            Route("/v1/meters/{meter_id}/readings", readings),
        ]
    )
    return emulator
