"""Waltero's error table mapped once onto the facade's error tree.

| Waltero answer (after retries)          | facade error                          |
|-----------------------------------------|---------------------------------------|
| 401 (after one re-login and resend)     | `UpstreamAuthFailed` (502)            |
| 403 / 404 on a device                   | `NotFound` for the device asked       |
| 403 / 404 on an organization            | `UpstreamAuthFailed` (502), see below |
| 400                                     | `UpstreamBadResponse` (502: our bad request) |
| 429                                     | `UpstreamRateLimited(retry_after)` (503) |
| 5xx                                     | `UpstreamBadResponse` (502)           |
| timeout                                 | `UpstreamTimeout` (504)               |
| connection error                        | `UpstreamUnavailable` (503)           |

Organizations come from `WALTERO_ORGANIZATIONS` or `/api/auth/me`, never from a facade caller, so a
403/404 on one is a configuration or permission problem (a 502 naming the setting), not a missing
resource the caller asked for.

Messages never carry the vendor's body, a token or a credential; they name the status and the code.
"""

from __future__ import annotations

import json

import httpx

from app.backends.http import parse_retry_after
from app.backends.waltero.shapes import BACKEND
from app.infra.errors import (
    FacadeError,
    NotFound,
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

_SAFE_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ_")


def vendor_code(response: httpx.Response) -> str | None:
    """The `code` of a Waltero error body when it is one of the plain upper-case codes, else None."""
    try:
        payload = json.loads(response.content)
    except (ValueError, httpx.ResponseNotRead):
        return None
    code = payload.get("code") if isinstance(payload, dict) else None
    if isinstance(code, str) and 0 < len(code) <= 40 and set(code) <= _SAFE_CODE_CHARS:
        return code
    return None


def error_for_response(
    response: httpx.Response, *, resource: str, now: float, organization_scoped: bool = False
) -> FacadeError:
    """The facade error for a non-2xx Waltero answer. `resource` names what was asked (for a 404);
    `organization_scoped` marks calls addressed to an organization (devices, daily, data-audit)."""
    status = response.status_code
    code = vendor_code(response)
    said = f"{status} {code}" if code else str(status)
    if status == 401:
        return UpstreamAuthFailed(f"Waltero rejected our token for {resource} ({said})", backend=BACKEND)
    if status in (403, 404) and organization_scoped:
        return UpstreamAuthFailed(
            f"Waltero does not let these credentials read {resource} ({said}); check WALTERO_ORGANIZATIONS",
            backend=BACKEND,
        )
    if status in (403, 404):
        return NotFound(f"Waltero has no {resource} ({said})", backend=BACKEND)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        return UpstreamRateLimited(
            f"Waltero kept answering {said} for {resource}", backend=BACKEND, retry_after=retry_after
        )
    if status == 400:
        return UpstreamBadResponse(f"Waltero refused our request for {resource} as malformed ({said})", backend=BACKEND)
    if status >= 500:
        return UpstreamBadResponse(f"Waltero failed on {resource} ({said})", backend=BACKEND)
    return UpstreamBadResponse(f"Waltero answered {said} for {resource}", backend=BACKEND)


def error_for_transport(exc: httpx.TransportError, *, resource: str) -> FacadeError:
    """The facade error for a request that got no answer."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"Waltero did not answer in time for {resource}", backend=BACKEND)
    return UpstreamUnavailable(f"Waltero could not be reached for {resource} ({type(exc).__name__})", backend=BACKEND)
