"""The facade's exception tree. Each maps to one RFC 9457 problem (see `app.api.problems`).

    FacadeError
    ├── InvalidRequest            422  a parameter is wrong (cursor, range, id, ...)
    ├── NotFound                  404  the resource does not exist (or the vendor said 404/403)
    ├── NotSupported              501  the backend has no such operation
    └── UpstreamError             a vendor call failed; carries `backend`
        ├── UpstreamAuthFailed    502  the vendor rejected our credentials
        ├── UpstreamBadResponse   502  vendor 5xx, GraphQL errors, unparseable payload, our bad request
        ├── UpstreamRateLimited   503  still 429 after the retry budget; has `retry_after`
        ├── UpstreamUnavailable   503  circuit open / connection refused; has `retry_after`
        ├── Overloaded            503  too many vendor loads in flight here; has `retry_after`
        └── UpstreamTimeout       504  the vendor or the request deadline ran out

Vendor clients map lower-layer errors (httpx, gql) into this tree once, `raise ... from exc`,
and never put credentials, tokens or raw vendor bodies into the message.
"""

from __future__ import annotations


class FacadeError(Exception):
    status: int = 500
    title: str = "Internal error"
    slug: str = "internal"

    def __init__(self, detail: str, *, backend: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.backend = backend

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}"


class InvalidRequest(FacadeError):
    status, title, slug = 422, "Invalid request", "invalid-request"

    def __init__(self, detail: str, *, field: str | None = None, backend: str | None = None) -> None:
        super().__init__(detail, backend=backend)
        self.field = field


class NotFound(FacadeError):
    status, title, slug = 404, "Not found", "not-found"


class NotSupported(FacadeError):
    status, title, slug = 501, "Not supported by this backend", "not-supported"


class UpstreamError(FacadeError):
    status, title, slug = 502, "Upstream error", "upstream-error"
    retry_after: float | None = None
    counts_as_failure = True
    """Whether the circuit breaker counts it: a vendor 404 does not, an outage does."""


class UpstreamAuthFailed(UpstreamError):
    status, title, slug = 502, "Upstream rejected our credentials", "upstream-auth"


class UpstreamBadResponse(UpstreamError):
    status, title, slug = 502, "Bad upstream response", "upstream-bad-response"


class _RetryLater(UpstreamError):
    def __init__(self, detail: str, *, backend: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail, backend=backend)
        self.retry_after = retry_after if retry_after is not None else 1.0


class UpstreamRateLimited(_RetryLater):
    status, title, slug = 503, "Upstream rate limit", "upstream-rate-limited"


class UpstreamUnavailable(_RetryLater):
    status, title, slug = 503, "Upstream unavailable", "upstream-unavailable"


class Overloaded(_RetryLater):
    """The backend's cap of vendor loads in flight is reached: we shed load rather than queue it. Says
    nothing about the vendor's health, so the circuit breaker does not count it."""

    status, title, slug = 503, "Overloaded", "overloaded"
    counts_as_failure = False


class UpstreamTimeout(UpstreamError):
    status, title, slug = 504, "Upstream timeout", "upstream-timeout"


class ConfigurationError(Exception):
    """The settings cannot make a working service; the message says what to set."""
