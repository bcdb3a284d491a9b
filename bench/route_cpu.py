"""CPU per request of a data route whose data the service already holds: `/readings` of one sandbox meter,
each query different (so the front's response cache cannot answer) and its chunk in the service's cache
(so no vendor call). What is left is the facade's request path: the front, FastAPI/Starlette routing,
the route's parameter parsing, the route, the service's cache lookup and the answer's rendering. Driven
in-process on uvloop with no socket; prints three runs (µs of `time.process_time` per request).

    .venv/bin/python bench/route_cpu.py [--requests 1000]

Compare two checkouts by running each one's copy alternately (the figures drift with the machine's load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.factory import create_app
from app.infra.config import Settings
from app.infra.logs import configure_logging
from bench.asgi import InProcess


async def measure(requests: int, runs: int = 3) -> list[float]:
    configure_logging("INFO", stream=open(os.devnull, "w"))
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0, FACADE_API_KEYS="bench"))
    client = InProcess(app, "bench")
    async with app.router.lifespan_context(app):
        status, _, body = await client.get("/meters", "backend=waltero&limit=1")
        assert status == 200, body
        meter = json.loads(body)["items"][0]["id"]

        def query(i: int) -> str:  # one hour of one day, a different end (and limit) each time
            end = f"2026-11-30T01:{i % 60:02d}:{(i // 60) % 60:02d}Z"
            return f"meter_id={meter}&start=2026-11-30T00:00:00Z&end={end}&limit={1 + i // 3600}"

        for i in range(50):  # warm: the chunk, the clients
            assert (await client.get("/readings", query(10**6 + i)))[0] == 200
        per_request = []
        for run in range(runs):
            cpu = time.process_time()
            for i in range(run * requests, (run + 1) * requests):
                assert (await client.get("/readings", query(i)))[0] == 200
            per_request.append((time.process_time() - cpu) / requests * 1e6)
    return per_request


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runs = runner.run(measure(args.requests))
    print(f"CPU per request: {sorted(runs)[1]:.0f} µs (median of {[round(r) for r in runs]})")
