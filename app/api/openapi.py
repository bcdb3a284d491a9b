"""The OpenAPI document served on `/openapi.json` (and written to openapi/openapi.json by `make openapi`).

FastAPI's generated spec, post-processed so Swagger UI's "Try it out" and client generators get what
the service really does:

- every error is `application/problem+json` with a true example per status, made from the same error
  classes and bodies the service answers with (`app.infra.errors`, `app.api.middleware.client_auth`);
- parameters carry parameter-level `example`s (Swagger UI ignores `schema.examples`) that exist in the
  sandbox; optional parameters are plain typed schemas (no `anyOf [..., null]`), so `start` and `end`
  get the same type in a generated client;
- explicit schema names (`MeterPage`, ...), one shared `BackendName` enum, `format: date-time` on
  response timestamps;
- the response headers (`ETag`, `Cache-Control`, `Age`, `X-Cache`, `X-Request-ID`, `Retry-After`,
  `WWW-Authenticate`) and the 304 of cached GETs are declared.

In sandbox mode the date examples are moved into the emulators' data window (the last 90 days), so
"Try it out" with the defaults answers with data; the checked-in spec (live mode) keeps fixed dates.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.api.middleware.client_auth import OPEN_PATHS, UNAUTHORIZED_DETAIL
from app.api.problems import PROBLEM_JSON
from app.domain import models
from app.domain.models import Problem
from app.infra.errors import (
    FacadeError,
    InvalidRequest,
    NotFound,
    NotSupported,
    Overloaded,
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

_GENERIC_NAME = re.compile(r"^(?P<generic>[A-Za-z]+)_(?P<arg>[A-Za-z]+)_$")
"""FastAPI's name of a generic model, `Page_Meter_`; clients see `MeterPage`."""

NO_STORE_PATHS = frozenset({"/backends", "/healthz", "/readyz"})
"""Answered with `Cache-Control: no-store`. Every other JSON GET goes through the response cache
(`app.api.http_cache.render`): `ETag`, `Cache-Control`, `Age`, `X-Cache`, and a 304 on `If-None-Match`."""

HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": "Strong validator of the body; send it back as `If-None-Match` to get a 304.",
        "schema": {"type": "string"},
        "example": '"5d41402abc4b2a76b9719d911017c592"',
    },
    "Cache-Control": {
        "description": "`private, max-age=<seconds>`: how long the answer stays fresh (0 when a backend failed); "
        "`no-store` on health and backend status.",
        "schema": {"type": "string"},
        "example": "private, max-age=300",
    },
    "Age": {
        "description": "Seconds since the data was fetched from the vendor.",
        "schema": {"type": "integer", "minimum": 0},
        "example": 12,
    },
    "X-Cache": {
        "description": "`HIT` (stored answer), `MISS` (fetched now) or `STALE` (expired, served while the vendor "
        "fails).",
        "schema": {"type": "string", "enum": ["HIT", "MISS", "STALE"]},
        "example": "HIT",
    },
    "X-Request-ID": {
        "description": "The caller's `X-Request-ID` (`[A-Za-z0-9._:-]{1,128}`) or a generated one; also in the "
        "logs and forwarded to the vendor.",
        "schema": {"type": "string"},
        "example": "3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e6c",
    },
    "Retry-After": {
        "description": "Seconds to wait before asking again.",
        "schema": {"type": "integer", "minimum": 1},
        "example": 30,
    },
    "Link": {
        "description": 'On a list with more to come: `<the same query with the next cursor>; rel="next"` (RFC 8288).',
        "schema": {"type": "string"},
        "example": '</meters?limit=100&cursor=eyJhZnRlciI6Ii4uLiJ9.c2ln>; rel="next"',
    },
    "WWW-Authenticate": {
        "description": "The auth scheme: `Bearer`.",
        "schema": {"type": "string"},
        "example": 'Bearer realm="meter-facade"',
    },
}

_STATUS_DESCRIPTIONS = {
    401: "Missing or wrong API key.",
    404: "No such resource (unknown id or prefix).",
    422: "Invalid parameters; `errors` names each bad field.",
    501: "The backend has no such operation.",
    502: "The vendor failed, rejected our credentials, or sent a bad payload.",
    503: "The vendor throttles us or its circuit is open; see `Retry-After`.",
    504: "The vendor or the request deadline timed out.",
}


def _problem(exc: FacadeError, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": exc.type, "title": exc.title, "status": exc.status, "detail": exc.detail}
    if exc.backend:
        body["backend"] = exc.backend
    body.update(extra)
    return body


def _example(summary: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "value": value}


def error_examples() -> dict[int, dict[str, dict[str, Any]]]:
    """Named examples per status, built from the error classes the service raises."""
    invalid = InvalidRequest("x", field="limit")
    return {
        401: {
            "missingKey": _example(
                "No API key sent",
                {
                    "type": "/problems/unauthorized",
                    "title": "Unauthorized",
                    "status": 401,
                    "detail": UNAUTHORIZED_DETAIL,
                },
            )
        },
        404: {
            "unknownMeter": _example(
                "The vendor has no such meter",
                _problem(NotFound("IOmeter meter 00000000-0000-4000-8000-000000000000 not found", backend="iometer")),
            ),
            "unknownPrefix": _example(
                "An id with an unknown backend prefix",
                _problem(NotFound("No meter 'acme:42' exists.")),
            ),
        },
        422: {
            "invalidParameter": _example(
                "A parameter out of range; `errors` names each bad field",
                {
                    "type": invalid.type,
                    "title": invalid.title,
                    "status": 422,
                    "detail": "limit: Input should be less than or equal to 1000",
                    "errors": [{"field": "limit", "message": "Input should be less than or equal to 1000"}],
                },
            )
        },
        501: {
            "noChangeFeed": _example(
                "IOmeter has no corrections feed",
                _problem(NotSupported("iometer has no changes.", backend="iometer")),
            )
        },
        502: {
            "badPayload": _example(
                "The vendor failed or sent a bad payload",
                _problem(UpstreamBadResponse("Waltero answered 500 after 2 attempts.", backend="waltero")),
            ),
            "credentialsRejected": _example(
                "The vendor rejected the facade's credentials",
                _problem(UpstreamAuthFailed("IOmeter rejected the partner credentials.", backend="iometer")),
            ),
        },
        503: {
            "circuitOpen": _example(
                "The vendor's circuit is open (see Retry-After)",
                _problem(
                    UpstreamUnavailable(
                        "waltero is failing; its circuit is open, retry in 30 s.", backend="waltero", retry_after=30
                    )
                ),
            ),
            "rateLimited": _example(
                "The vendor still throttles after retries (see Retry-After)",
                _problem(UpstreamRateLimited("Waltero kept answering 429 after 4 attempts.", backend="waltero")),
            ),
            "overloaded": _example(
                "Too many vendor calls in flight here (see Retry-After; not the vendor's fault)",
                _problem(
                    Overloaded(
                        "waltero: 32 vendor calls are already in flight; try again shortly.",
                        backend="waltero",
                        retry_after=1,
                    )
                ),
            ),
        },
        504: {
            "deadline": _example(
                "No answer within the request deadline",
                _problem(UpstreamTimeout("No answer from the vendor within the 10 s request deadline.")),
            )
        },
    }


def build(app: FastAPI, backends: Sequence[str]) -> dict[str, Any]:
    """The app's spec, built once and kept on `app.openapi_schema`. `backends`: the `BackendName` enum
    (the configured vendors, from the registry)."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    spec = _rename_schemas(spec)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    enum = list(backends)
    schemas["Problem"] = _problem_schema(enum)
    schemas["FieldError"] = {
        "type": "object",
        "title": "FieldError",
        "description": "One refused parameter of a 422.",
        "properties": {
            "field": {"type": "string", "description": "The parameter's name.", "examples": ["limit"]},
            "message": {
                "type": "string",
                "description": "What is wrong and how to fix it.",
                "examples": ["Input should be less than or equal to 1000"],
            },
        },
        "required": ["field", "message"],
    }
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["BackendName"] = {
        "type": "string",
        "enum": enum,
        "title": "BackendName",
        "description": "A vendor configured in this service; the prefix of its ids.",
    }
    components["headers"] = copy.deepcopy(HEADERS)
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key from FACADE_API_KEYS."},
        "apiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key from FACADE_API_KEYS.",
        },
    }
    spec["security"] = [{"bearer": []}, {"apiKey": []}]
    timestamps = _datetime_fields()
    for name, schema in schemas.items():
        _timestamp_formats(name, schema, timestamps)
        _always_sent(schema)
    examples = error_examples()
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            _parameters(operation)
            _backend_parameter(operation)
            _responses(path, operation, examples)
    for schema in schemas.values():
        _backend_field(schema)
    spec = dict(_share_backend_enum(spec, enum))
    settings = getattr(app, "settings", None)
    if settings is not None and settings.sandbox:
        sandbox_dates(spec, datetime.fromtimestamp(app.clock(), UTC))  # type: ignore[attr-defined]
    app.openapi_schema = spec
    return spec


_BACKEND_REF = {"$ref": "#/components/schemas/BackendName"}


def _backend_parameter(operation: dict[str, Any]) -> None:
    """The `backend` filter takes a `BackendName` (a plain string in the route: the registry decides)."""
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == "backend":
            kept = {k: v for k, v in parameter["schema"].items() if k in ("description", "examples")}
            parameter["schema"] = {**_BACKEND_REF, **kept}


def _backend_field(schema: dict[str, Any]) -> None:
    """Every model field named `backend` (a `str` in the models) is a `BackendName`."""
    props = schema.get("properties", {})
    field = props.get("backend")
    if field is not None and field.get("type") == "string" and "enum" not in field:
        kept = {k: v for k, v in field.items() if k in ("description", "examples")}
        props["backend"] = {**_BACKEND_REF, **kept}


def _always_sent(schema: dict[str, Any]) -> None:
    """`next_cursor` (every list) and `shared_cache` (`/backends`) are always in the body, even when
    null or off: say so, although the models give them defaults."""
    for key in ("next_cursor", "shared_cache"):
        if key in schema.get("properties", {}) and key not in schema.setdefault("required", []):
            schema["required"].append(key)


def _problem_schema(enum: list[str]) -> dict[str, Any]:
    """`Problem`, with `backend` and `errors` as the service sends them: left out when they do not apply
    (never null), `errors` a list of `FieldError`."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    props = schema["properties"]
    props["backend"] = {
        "type": "string",
        "enum": enum,  # shared as BackendName below
        "description": "The vendor to blame, when one is.",
        "examples": ["waltero"],
    }
    props["errors"] = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/FieldError"},
        "description": "Each refused parameter (422 only).",
    }
    schema["description"] = (
        "RFC 9457 problem details, `application/problem+json`. Branch on `type`; `detail` is for people."
    )
    return schema


def _rename_schemas(spec: dict[str, Any]) -> dict[str, Any]:
    names = {}
    for old in spec.get("components", {}).get("schemas", {}):
        match = _GENERIC_NAME.match(old)
        if match:
            names[old] = match["arg"] + match["generic"]
    text = json.dumps(spec)
    for old, new in names.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    renamed: dict[str, Any] = json.loads(text)
    schemas = renamed.get("components", {}).get("schemas", {})
    for old, new in names.items():
        schemas[new] = {**schemas.pop(old), "title": new}
    return renamed


def _share_backend_enum(node: Any, enum: list[str]) -> Any:
    """Every inline backend enum becomes a `$ref` to `BackendName` (one enum in clients)."""
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("enum") == enum and node.get("title") != "BackendName":
            kept = {k: v for k, v in node.items() if k in ("description", "examples", "default")}
            return {"$ref": "#/components/schemas/BackendName", **kept}
        shared: dict[str, Any] = {k: _share_backend_enum(v, enum) for k, v in node.items()}
        return shared
    if isinstance(node, list):
        return [_share_backend_enum(v, enum) for v in node]
    return node


def _is_datetime(annotation: Any) -> bool:
    """`datetime`, or a union / `Annotated` holding one (not a list of them)."""
    if annotation is datetime:
        return True
    return get_origin(annotation) in (Union, UnionType, Annotated) and any(
        _is_datetime(arg) for arg in get_args(annotation)
    )


def _datetime_fields() -> dict[str, set[str]]:
    """Model name → fields typed `datetime` (alone or optional), from the models themselves."""
    out: dict[str, set[str]] = {}
    for name in dir(models):
        model = getattr(models, name)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for field, info in model.model_fields.items():
            if _is_datetime(info.annotation):
                out.setdefault(name, set()).add(field)
    return out


def _timestamp_formats(name: str, schema: dict[str, Any], fields: dict[str, set[str]]) -> None:
    """`format: date-time` on the models' timestamps: they serialize their UTC datetimes as strings,
    which hides the format from the generated schema."""
    for field, prop in schema.get("properties", {}).items():
        if field not in fields.get(name, ()):
            continue
        for branch in prop.get("anyOf", [prop]):
            if branch.get("type") == "string":
                branch["format"] = "date-time"


def _parameters(operation: dict[str, Any]) -> None:
    for param in operation.get("parameters", []):
        schema = param["schema"]
        examples = schema.pop("examples", None)
        if examples and examples[0] is not None:
            param["example"] = examples[0]
        if not param.get("required") and "anyOf" in schema:
            # An optional query parameter is simply left out; `null` is no value a client can send.
            typed = [b for b in schema["anyOf"] if b.get("type") != "null"]
            if len(typed) == 1:
                rest = {k: v for k, v in schema.items() if k != "anyOf"}
                schema.clear()
                schema.update({**typed[0], **rest})
        schema.pop("description", None)  # said once, on the parameter


def _header_refs(*names: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _responses(path: str, operation: dict[str, Any], examples: dict[int, dict[str, dict[str, Any]]]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if path in OPEN_PATHS:
        operation["security"] = []
    else:
        responses.setdefault("401", {})
    for status in list(responses):
        code = int(status)
        if code < 400:
            continue
        response = responses[status]
        response["description"] = _STATUS_DESCRIPTIONS.get(code, response.get("description", "Error"))
        media: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Problem"}}
        if code in examples:
            media["examples"] = examples[code]
        if path == "/readyz" and code == 503:
            response["description"] = "Not ready: a backend cannot authenticate or its circuit is open."
            media["examples"] = {
                "notReady": _example(
                    "A backend cannot authenticate",
                    {
                        "type": "/problems/not-ready",
                        "title": "Not ready",
                        "status": 503,
                        "detail": "Not ready (waltero: circuit open).",
                    },
                )
            }
        response["content"] = {PROBLEM_JSON: media}
        headers = _header_refs("X-Request-ID")
        if code == 503:
            headers.update(_header_refs("Retry-After"))
        if code == 401:
            headers.update(_header_refs("WWW-Authenticate"))
        response["headers"] = headers
    ok = responses.get("200")
    if ok is not None:
        names = ["X-Request-ID"]
        if path not in NO_STORE_PATHS and "application/json" in ok.get("content", {}):
            names = ["ETag", "Cache-Control", "Age", "X-Cache", "X-Request-ID"]
            if "cursor" in {p.get("name") for p in operation.get("parameters", [])}:
                names.append("Link")
            responses["304"] = {
                "description": "Not modified: `If-None-Match` named the current `ETag`. No body.",
                "headers": _header_refs("ETag", "Cache-Control", "Age", "X-Cache", "X-Request-ID"),
            }
        elif path in NO_STORE_PATHS:
            names.append("Cache-Control")
        ok["headers"] = _header_refs(*names)
        ok["description"] = ok.get("description") if ok.get("description") != "Successful Response" else "OK"
    operation["responses"] = dict(sorted(responses.items()))


def sandbox_dates(spec: dict[str, Any], now: datetime) -> None:
    """Move the date and time examples into the sandbox's data window (the emulators hold the last 90
    days up to now): readings of two hours a day ago, a week of daily consumption, a month of changes."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    today = now.date()
    by_format = {
        ("date-time", "start"): hour - timedelta(days=1),
        ("date-time", "end"): hour - timedelta(days=1) + timedelta(hours=2),
        ("date-time", "since"): datetime.combine(today - timedelta(days=30), datetime.min.time(), UTC),
        ("date", "start"): today - timedelta(days=7),
        ("date", "end"): today,
    }
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                value = by_format.get((param["schema"].get("format", ""), param["name"]))
                if value is None:
                    continue
                if isinstance(value, datetime):
                    param["example"] = value.strftime("%Y-%m-%dT%H:%M:%SZ")
                else:
                    param["example"] = value.isoformat()
