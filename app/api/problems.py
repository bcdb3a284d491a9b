"""RFC 9457 `application/problem+json` for every error the service answers.

Handlers are installed on the app for: `FacadeError` (the tree in `app.infra.errors`), FastAPI's request
validation (422 with `errors`, one per bad field), Starlette's `HTTPException` (404 for unknown paths,
405, ...), and any other exception (500, logged with its traceback, never shown to the caller).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.infra.errors import FacadeError, InvalidRequest, NotFound

log = logging.getLogger("app.api.problems")
PROBLEM_JSON = "application/problem+json"

_HTTP_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    501: "Not implemented",
    503: "Service unavailable",
}


def problem_body(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str | None = None,
    backend: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> bytes:
    body: dict[str, Any] = {"type": type_ or "about:blank", "title": title, "status": status, "detail": detail}
    if backend:
        body["backend"] = backend
    if errors is not None:
        body["errors"] = errors
    return json.dumps(body, separators=(",", ":")).encode()


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str | None = None,
    backend: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        problem_body(status, title, detail, type_=type_, backend=backend, errors=errors),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def facade_error_response(exc: FacadeError) -> Response:
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if exc.status == 503 or retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after or 1)))
    errors = None
    if isinstance(exc, InvalidRequest):
        errors = [{"field": exc.field or "request", "message": exc.detail}]
    return problem_response(
        exc.status, exc.title, exc.detail, type_=exc.type, backend=exc.backend, errors=errors, headers=headers
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("query", "path", "header", "body")]
    return ".".join(parts) or "request"


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"field": _field_name(tuple(err.get("loc", ()))), "message": message})
    return out


def _log_fields(request: Request, fields: list[str]) -> None:
    """Hand a 422's field names (never their values) to the access log line."""
    request.scope.setdefault("facade", {})["invalid_fields"] = sorted(set(fields))[:20]


def install(app: FastAPI) -> None:
    @app.exception_handler(FacadeError)
    async def _facade(request: Request, exc: FacadeError) -> Response:
        if isinstance(exc, InvalidRequest):
            _log_fields(request, [exc.field or "request"])
        return facade_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(exc)
        _log_fields(request, [e["field"] for e in errors])
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(422, "Invalid request", detail, type_="/problems/invalid-request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        title = _HTTP_TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404:  # an unknown route is a 404 like an unknown id: one problem type
            title, detail = NotFound.title, "No such path. The API's paths are listed on /docs."
            return problem_response(404, title, detail, type_=NotFound("").type, headers=dict(exc.headers or {}))
        return problem_response(exc.status_code, title, detail, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s", request.scope.get("path"), exc_info=exc)
        return problem_response(500, "Internal error", "The service failed unexpectedly; it has been logged.")
