"""RFC 9457 `application/problem+json` for every error the service answers.

Handlers are installed on the app for: `FacadeError` (the tree in `app.infra.errors`), FastAPI's request
validation (422 with `errors`, one per bad field), Starlette's `HTTPException` (404 for unknown paths,
405, ...), and any other exception (500, logged with its traceback, never shown to the caller).

Every problem's `type` is one of `PROBLEM_TYPES`, `/problems/<slug>`, never `about:blank`, and resolves
to a page the service serves without a key (`GET /problems/<slug>`): HTML for a browser, JSON or plain
text otherwise, saying when the problem happens, its fields and what to do.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from html import escape
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from app.infra.context import request_info
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


@dataclass(frozen=True, slots=True)
class ProblemType:
    """One kind of problem: what its `/problems/<slug>` page says."""

    slug: str
    status: int
    title: str
    when: str
    action: str
    fields: tuple[str, ...] = ()
    """Members beyond `type`, `title`, `status` and `detail` (and headers worth knowing)."""

    @property
    def uri(self) -> str:
        return f"/problems/{self.slug}"


_BACKEND = "`backend`: the vendor to blame (`iometer`, `waltero`), when one is"
_RETRY = "`Retry-After` header: seconds to wait before retrying"
PROBLEM_TYPES: dict[str, ProblemType] = {
    t.slug: t
    for t in (
        ProblemType(
            "invalid-request",
            422,
            "Invalid request",
            "A parameter is missing, malformed or out of range (an id, a time, a window too wide, a cursor "
            "from another query, an unknown `format`).",
            "Fix the request: each `errors` entry names the field and says what is accepted.",
            ("`errors`: a list of `{field, message}`, one per bad field", _BACKEND),
        ),
        ProblemType(
            "not-found",
            404,
            "Not found",
            "The id has an unknown prefix or names nothing the vendor has, or the path does not exist.",
            "Check the id: use ids exactly as `GET /meters` hands them out; the paths are listed on /docs.",
            (_BACKEND,),
        ),
        ProblemType(
            "not-supported",
            501,
            "Not supported by this backend",
            "The backend has no such operation (`/changes?backend=iometer`).",
            "Don't ask that backend for it; `GET /backends` lists each backend's capabilities.",
            (_BACKEND,),
        ),
        ProblemType(
            "unauthorized",
            401,
            "Unauthorized",
            "The request carries no API key, or one the service does not know.",
            "Send a valid key as `Authorization: Bearer <key>` or `X-API-Key: <key>`; ask the operators for one.",
            ("`WWW-Authenticate: Bearer` header",),
        ),
        ProblemType(
            "upstream-error",
            502,
            "Upstream error",
            "A vendor call failed.",
            "Retry later; tell the operators if it lasts.",
            (_BACKEND,),
        ),
        ProblemType(
            "upstream-auth",
            502,
            "Upstream rejected our credentials",
            "The vendor rejected the facade's own credentials (not yours).",
            "Tell the operators: the configured vendor credentials need fixing (`make doctor` checks them).",
            (_BACKEND,),
        ),
        ProblemType(
            "upstream-bad-response",
            502,
            "Bad upstream response",
            "The vendor answered with an error (5xx, GraphQL errors) or a payload the facade cannot read.",
            "Retry later; tell the operators if it lasts.",
            (_BACKEND,),
        ),
        ProblemType(
            "upstream-rate-limited",
            503,
            "Upstream rate limit",
            "The vendor still throttles the facade after its retries.",
            "Wait `Retry-After` seconds, then retry.",
            (_BACKEND, _RETRY),
        ),
        ProblemType(
            "upstream-unavailable",
            503,
            "Upstream unavailable",
            "The vendor cannot be reached, or its circuit is open after repeated failures.",
            "Wait `Retry-After` seconds, then retry.",
            (_BACKEND, _RETRY),
        ),
        ProblemType(
            "overloaded",
            503,
            "Overloaded",
            "Too many vendor calls are in flight on this replica; the request was shed rather than queued.",
            "Wait `Retry-After` seconds, then retry.",
            (_BACKEND, _RETRY),
        ),
        ProblemType(
            "upstream-timeout",
            504,
            "Upstream timeout",
            "The vendor did not answer within the request deadline.",
            "Retry later, or ask for a smaller window.",
            (_BACKEND,),
        ),
        ProblemType(
            "not-ready",
            503,
            "Not ready",
            "`/readyz`: a configured vendor cannot authenticate or its circuit is open.",
            "Send no traffic to this replica until `/readyz` answers 200; wait `Retry-After` seconds.",
            (_RETRY,),
        ),
        ProblemType(
            "internal",
            500,
            "Internal error",
            "The service failed unexpectedly; the failure is logged with your `X-Request-ID`.",
            "Retry; if it lasts, report it to the operators with the `X-Request-ID` of the answer.",
        ),
        ProblemType(
            "bad-request",
            400,
            "Bad request",
            "The HTTP request itself is malformed.",
            "Fix the request.",
        ),
        ProblemType(
            "forbidden",
            403,
            "Forbidden",
            "The request is not allowed.",
            "Don't send it.",
        ),
        ProblemType(
            "method-not-allowed",
            405,
            "Method not allowed",
            "The path exists but does not take this method (the API is read-only: `GET` and `HEAD`).",
            "Use a method from the `Allow` header.",
            ("`Allow` header: the methods the path takes",),
        ),
        ProblemType(
            "not-acceptable",
            406,
            "Not acceptable",
            "No representation the path has matches `Accept`.",
            "Accept `application/json` (or a form the guide lists for the path).",
        ),
        ProblemType(
            "payload-too-large",
            413,
            "Payload too large",
            "The request carries a body larger than the service takes.",
            "Send no body: every operation is a `GET`.",
        ),
        ProblemType(
            "unsupported-media-type",
            415,
            "Unsupported media type",
            "The request's body has a type the service does not read.",
            "Send no body: every operation is a `GET`.",
        ),
        ProblemType(
            "too-many-requests",
            429,
            "Too many requests",
            "The client sent too many requests.",
            "Wait `Retry-After` seconds, then retry.",
            (_RETRY,),
        ),
        ProblemType(
            "request-headers-too-large",
            431,
            "Request header fields too large",
            "The request's header block is larger than the service takes.",
            "Send fewer or shorter headers (cookies, long custom headers).",
        ),
        ProblemType(
            "http-error",
            400,
            "HTTP error",
            "An HTTP-level error with no more specific type; `status` says which.",
            "Read `detail`; fix the request or retry as the status suggests.",
        ),
    )
}
_TYPE_BY_STATUS: dict[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "invalid-request",
    429: "too-many-requests",
    431: "request-headers-too-large",
    500: "internal",
    501: "not-supported",
    502: "upstream-error",
    503: "upstream-unavailable",
    504: "upstream-timeout",
}
PROBLEM_PATHS = frozenset({"/problems", *(t.uri for t in PROBLEM_TYPES.values())})
"""The problem pages: open paths (no key), like the docs."""


def type_for_status(status: int) -> str:
    """The problem type of a status when nothing more specific is known (framework answers)."""
    return f"/problems/{_TYPE_BY_STATUS.get(status, 'http-error')}"


def problem_body(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str | None = None,
    backend: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "type": type_ or type_for_status(status),
        "title": title,
        "status": status,
        "detail": detail,
    }
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
        errors = exc.errors or [{"field": exc.field or "request", "message": exc.detail}]
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
    request_info(request.scope).invalid_fields = sorted(set(fields))[:20]


def install(app: FastAPI) -> None:
    @app.exception_handler(FacadeError)
    async def _facade(request: Request, exc: FacadeError) -> Response:
        if isinstance(exc, InvalidRequest):
            _log_fields(request, [str(e["field"]) for e in exc.errors] if exc.errors else [exc.field or "request"])
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

    install_pages(app)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s", request.scope.get("path"), exc_info=exc)
        return problem_response(500, "Internal error", "The service failed unexpectedly; it has been logged.")


# --- the pages `type` resolves to ------------------------------------------------------------------

_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept


def _as_json(t: ProblemType) -> dict[str, Any]:
    return {
        "type": t.uri,
        "title": t.title,
        "status": t.status,
        "when": t.when,
        "fields": ["`type`, `title`, `status`, `detail`", *t.fields],
        "what_to_do": t.action,
    }


def _as_text(t: ProblemType) -> str:
    fields = "\n".join(f"- {f}" for f in ("`type`, `title`, `status`, `detail`", *t.fields))
    return f"{t.uri}: {t.title} ({t.status})\n\nWhen: {t.when}\n\nFields:\n{fields}\n\nWhat to do: {t.action}\n"


def _as_html(types: list[ProblemType]) -> str:
    sections = []
    for t in types:
        fields = "".join(f"<li>{escape(f)}</li>" for f in ("`type`, `title`, `status`, `detail`", *t.fields))
        sections.append(
            f"<section id='{escape(t.slug)}'><h2><code>{escape(t.uri)}</code>: {escape(t.title)} ({t.status})</h2>"
            f"<p><b>When:</b> {escape(t.when)}</p><p><b>Fields:</b></p><ul>{fields}</ul>"
            f"<p><b>What to do:</b> {escape(t.action)}</p></section>"
        )
    title = escape(types[0].title) if len(types) == 1 else "Problem types"
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;padding:0 1em}</style></head>"
        f"<body><h1>{title}</h1>{''.join(sections)}"
        "<p>Every error of this API is an RFC 9457 <code>application/problem+json</code> answer; the API guide "
        "and <a href='/docs'>/docs</a> describe the operations.</p></body></html>"
    )


def install_pages(app: FastAPI) -> None:
    """`GET /problems` (every type) and `GET /problems/<slug>` (one): HTML for a browser (`Accept:
    text/html`), `text/plain` when asked for, JSON otherwise. No key needed; not in the spec."""
    headers = {"cache-control": "public, max-age=86400", "vary": "Accept"}

    def page(request: Request, types: list[ProblemType]) -> Response:
        if _wants_html(request):
            return HTMLResponse(_as_html(types), headers={**headers, "content-security-policy": _PAGE_CSP})
        if "text/plain" in request.headers.get("accept", ""):
            return PlainTextResponse("\n".join(_as_text(t) for t in types), headers=headers)
        body = _as_json(types[0]) if len(types) == 1 else {"items": [_as_json(t) for t in types]}
        return JSONResponse(body, headers=headers)

    @app.get("/problems", include_in_schema=False)
    async def problem_types(request: Request) -> Response:
        return page(request, list(PROBLEM_TYPES.values()))

    @app.get("/problems/{slug}", include_in_schema=False)
    async def problem_type(request: Request, slug: str) -> Response:
        found = PROBLEM_TYPES.get(slug)
        if found is None:
            raise NotFound(f"No problem type {slug[:64]!r}; GET /problems lists them all.")
        return page(request, [found])
