"""Swagger UI on `/docs` and ReDoc on `/redoc`, every asset served by the service itself.

The UIs are vendored from the npm registry under `app/static/` (versions, licences and integrity in
`app/static/README.md`), served on versioned paths with a year-long `Cache-Control`. The pages name no
outside host, and their `Content-Security-Policy` keeps the browser from loading anything from one
(ReDoc's sidebar logo points at a CDN; blocked, ReDoc drops it), so both pages work on a network
without internet access. `GET /` redirects to `/docs`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

SWAGGER_UI_VERSION = "5.35.0"
REDOC_VERSION = "2.5.4"
STATIC = Path(__file__).resolve().parent / "static"

_SWAGGER = f"/docs/assets/swagger-ui-{SWAGGER_UI_VERSION}"
_REDOC = f"/docs/assets/redoc-{REDOC_VERSION}"
ASSETS: dict[str, tuple[Path, str]] = {
    f"{_SWAGGER}/swagger-ui-bundle.js": (STATIC / "swagger-ui" / "swagger-ui-bundle.js", "text/javascript"),
    f"{_SWAGGER}/swagger-ui.css": (STATIC / "swagger-ui" / "swagger-ui.css", "text/css"),
    f"{_SWAGGER}/favicon-32x32.png": (STATIC / "swagger-ui" / "favicon-32x32.png", "image/png"),
    f"{_REDOC}/redoc.standalone.js": (STATIC / "redoc" / "redoc.standalone.js", "text/javascript"),
    "/docs/assets/swagger-init.js": (STATIC / "swagger-init.js", "text/javascript"),
}
"""URL path → (file, media type). A fixed set, so these paths are also fixed metric labels."""

DOCS_PATHS = frozenset({"/", "/docs", "/redoc", *ASSETS})
"""Every path this module serves; none needs an API key."""

# Only this origin; `data:`/`blob:` for the UIs' inline icons and ReDoc's search worker; inline styles
# because both UIs set them. Nothing can be fetched from another host.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'self'; "
    "base-uri 'self'; form-action 'self'"
)
_PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
_ASSET_CACHE = "public, max-age=31536000, immutable"

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Swagger UI</title>
<link rel="icon" type="image/png" href="{root}{swagger}/favicon-32x32.png">
<link rel="stylesheet" href="{root}{swagger}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-spec-url="{root}/openapi.json"></div>
<script src="{root}{swagger}/swagger-ui-bundle.js"></script>
<script src="{root}/docs/assets/swagger-init.js"></script>
</body>
</html>
"""

_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - ReDoc</title>
<link rel="icon" type="image/png" href="{root}{swagger}/favicon-32x32.png">
<style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<redoc spec-url="{root}/openapi.json" hide-download-button="false"></redoc>
<script src="{root}{redoc}/redoc.standalone.js"></script>
</body>
</html>
"""


@functools.cache
def _asset_bytes(path: Path) -> bytes:
    return path.read_bytes()


def install(app: FastAPI) -> None:
    """Add `/`, `/docs`, `/redoc` and the asset routes (create the app with `docs_url=None, redoc_url=None`)."""

    def page(template: str, request: Request) -> HTMLResponse:
        root = escape(request.scope.get("root_path", "").rstrip("/"), quote=True)
        html = template.format(title=escape(app.title), root=root, swagger=_SWAGGER, redoc=_REDOC)
        return HTMLResponse(html, headers=_PAGE_HEADERS)

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + "/docs", status_code=307)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> Response:
        return page(_SWAGGER_PAGE, request)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> Response:
        return page(_REDOC_PAGE, request)

    for url_path, (file, media_type) in ASSETS.items():
        app.add_api_route(url_path, _asset_endpoint(file, media_type), methods=["GET"], include_in_schema=False)


def _asset_endpoint(file: Path, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def asset() -> Response:
        return Response(_asset_bytes(file), media_type=media_type, headers={"Cache-Control": _ASSET_CACHE})

    return asset
