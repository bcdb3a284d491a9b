"""Reference servers for the benchmark: the same bytes served by (a) a bare FastAPI route returning a
precomputed `Response` and (b) a bare ASGI app. Both read the body from $BENCH_BODY_FILE.

    uvicorn bench.reference:fastapi_app   /   uvicorn bench.reference:bare_app
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response

BODY = Path(os.environ.get("BENCH_BODY_FILE", "/dev/null")).read_bytes()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

fastapi_app = FastAPI()
_precomputed = Response(BODY, media_type="application/json")


@fastapi_app.get("/{path:path}")
async def precomputed(path: str) -> Response:
    return _precomputed


async def bare_app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})
