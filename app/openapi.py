"""The OpenAPI document as clients see it: problem+json for every error, the security schemes for
Swagger's Authorize button, the open paths marked as needing no key, and the `backend` values taken
from the vendor registry (one enum, defined once)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.middleware.client_auth import OPEN_PATHS
from app.models import Problem


def build_openapi(app: FastAPI, backends: Sequence[str]) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas["BackendName"] = {
        "type": "string",
        "enum": list(backends),
        "description": "A backend (vendor) configured in this service; the prefix of its ids.",
    }
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
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
    problem_ref = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            if path in OPEN_PATHS:
                operation["security"] = []
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "backend":
                    old = parameter["schema"]
                    parameter["schema"] = {
                        "anyOf": [{"$ref": "#/components/schemas/BackendName"}, {"type": "null"}],
                        **{k: old[k] for k in ("description", "examples", "title") if k in old},
                    }
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {
                    "description": "Invalid parameters; `errors` names each bad field.",
                    "content": problem_ref,
                }
            if path not in OPEN_PATHS and "401" not in responses:
                responses["401"] = {"description": "Missing or wrong API key.", "content": problem_ref}
    _backend_fields(schemas)
    app.openapi_schema = spec
    return spec


def _backend_fields(schemas: dict[str, Any]) -> None:
    """Every model field named `backend` refers to the one `BackendName` enum."""
    for schema in schemas.values():
        props = schema.get("properties", {})
        if "backend" in props:
            nullable = "anyOf" in props["backend"]
            ref = {"$ref": "#/components/schemas/BackendName"}
            props["backend"] = {"anyOf": [ref, {"type": "null"}]} if nullable else ref
