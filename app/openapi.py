"""The OpenAPI document the app serves on `/openapi.json` (and `make openapi` writes to openapi/openapi.json)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.middleware.client_auth import OPEN_PATHS
from app.models import Problem


def build(app: FastAPI) -> dict[str, Any]:
    """The spec, with problem+json for every error, the security schemes for Swagger's Authorize
    button, and the open paths marked as needing no key."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
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
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {
                    "description": "Invalid parameters; `errors` names each bad field.",
                    "content": problem_ref,
                }
            if path not in OPEN_PATHS and "401" not in responses:
                responses["401"] = {"description": "Missing or wrong API key.", "content": problem_ref}
    app.openapi_schema = spec
    return spec
