"""The Waltero HTTP client: auth, retries, error mapping, and one typed method per vendor call.

Retry policy (`waltero_retry_policy`), following the vendor's guidance:
- 429: wait `Retry-After` (seconds or HTTP date) when given, else exponential backoff with full
  jitter; bounded attempts and a total waiting deadline; a `Retry-After` beyond the policy's
  `max_retry_after` is not waited out (the caller gets a 503 carrying it at once);
- 500: retried once ("retry once, then escalate");
- 502/503/504 and connection errors: bounded retries with backoff (every data call is a GET);
- 400/403/404: never retried; 401 is handled by the `TokenManager` (one re-login, one resend).
Each retry calls `on_retry(reason)`. After the budget, answers map through `errors.error_for_response`.

Every method returns a validated `shapes` model; a payload that does not fit raises
`UpstreamBadResponse`, never a `KeyError`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel

from app.backends.http import Retrier, RetryHook, RetryPolicy, Sleep
from app.backends.waltero import shapes
from app.backends.waltero.errors import error_for_response, error_for_transport
from app.backends.waltero.token import TokenManager
from app.infra import tolerance
from app.infra.timeutil import Clock
from app.infra.upstream import HotAnswer, UpstreamClient

M = TypeVar("M", bound=BaseModel)


def waltero_retry_policy(max_attempts: int = 4, deadline: float = 8.0) -> RetryPolicy:
    """Waltero's policy: 429 up to `max_attempts - 1` retries, 500 once, 502/503/504 bounded."""
    retries = max(0, max_attempts - 1)
    return RetryPolicy(
        max_attempts=max_attempts,
        deadline=deadline,
        retries_per_status={
            429: retries,
            500: min(1, retries),
            502: min(2, retries),
            503: min(2, retries),
            504: min(2, retries),
        },
        retry_transport_errors=True,
    )


class WalteroClient:
    """Calls Waltero through the shared `http` client. Paths are joined onto `base_url` (which may end
    in `/prod`); every request carries the `TokenManager` as its auth. At most `concurrency` requests
    are in flight at once (httpx's pool degrades with many concurrent connections).

    Every call here is an idempotent GET: when the client has hot GETs (`UpstreamClient.hot`, the aiohttp
    socket layer) they go straight on its aiohttp session with the same retries, auth flow (one re-login
    on a 401), metrics and error mapping; otherwise (`FACADE_UPSTREAM_TRANSPORT=httpx`, an injected
    transport) through httpx."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        tokens: TokenManager,
        *,
        clock: Clock,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        on_retry: RetryHook | None = None,
        concurrency: int = 8,
    ) -> None:
        self._http = http
        self._base_url = base_url
        self.tokens = tokens
        self._clock = clock
        self._retrier = Retrier(policy or waltero_retry_policy(), sleep, clock, rng or random.Random(), on_retry)
        self._slots = asyncio.Semaphore(concurrency)
        self._hot = http.hot if isinstance(http, UpstreamClient) else None

    def url(self, path: str) -> str:
        return shapes.join_url(self._base_url, path)

    async def _get(
        self, path: str, params: dict[str, str], model: type[M], *, resource: str, organization_scoped: bool = False
    ) -> M:
        body = await self._get_body(path, params, resource=resource, organization_scoped=organization_scoped)
        return shapes.parse_json(body, model, resource)

    async def _get_body(
        self, path: str, params: dict[str, str], *, resource: str, organization_scoped: bool = False
    ) -> bytes:
        send: Callable[[], Awaitable[HotAnswer | httpx.Response]]
        hot = self._hot
        if hot is not None and hot.ready:  # straight on the aiohttp session, no httpx model per call
            target = self.url(path)
            if params:
                target += "?" + urlencode(params)  # httpx's encoding of `params` (quote_plus)

            def send_hot(authorization: str) -> Awaitable[HotAnswer]:
                return hot.get(target, {"Authorization": authorization})

            async def send() -> HotAnswer | httpx.Response:
                async with self._slots:
                    return await self.tokens.authorize(send_hot)

        else:
            url = httpx.URL(self.url(path), params=params)  # parsed once, not again on each retry

            async def send() -> HotAnswer | httpx.Response:
                async with self._slots:
                    return await self._http.get(url, auth=self.tokens)

        try:
            answer = await self._retrier.send(send, idempotent=True)
        except httpx.TransportError as exc:
            raise error_for_transport(exc, resource=resource) from exc
        if not answer.is_success:
            response = answer.as_httpx() if isinstance(answer, HotAnswer) else answer
            raise error_for_response(
                response, resource=resource, now=self._clock(), organization_scoped=organization_scoped
            )
        return answer.content

    # --- platform-api --------------------------------------------------------------------------------
    async def me(self) -> shapes.MeResponse:
        return await self._get(shapes.ME_PATH, {}, shapes.MeResponse, resource="user record")

    async def devices_page(self, org_id: str, *, limit: int, offset: int) -> shapes.DevicesPage:
        params = {shapes.LIMIT: str(limit), shapes.OFFSET: str(offset)}
        return await self._get(
            shapes.devices_path(org_id),
            params,
            shapes.DevicesPage,
            resource=f"organization {org_id}",
            organization_scoped=True,
        )

    async def all_devices(self, org_id: str) -> list[shapes.Device]:
        """Every device of an organization, following `limit`/`offset` until `total` (or, without a
        `total`, until a short or empty page). A page that repeats devices already listed means the
        server ignores `offset`: the listing stops there (recorded as `device_paging=offset_ignored`,
        warned once) instead of repeating devices or paging forever."""
        devices: list[shapes.Device] = []
        seen: set[str] = set()
        offset = 0
        while True:
            page = await self.devices_page(org_id, limit=shapes.DEVICES_MAX_LIMIT, offset=offset)
            fresh = [device.in_organization(org_id) for device in page.data if device.id not in seen]
            if page.data and len(fresh) < len(page.data):
                tolerance.record(shapes.BACKEND, "device_paging", "offset_ignored", pinned=False)
                devices.extend(fresh)
                return devices
            seen.update(device.id for device in fresh)
            devices.extend(fresh)
            offset += len(page.data)
            if page.total is None:
                tolerance.record(shapes.BACKEND, "device_paging", "no_total", pinned=False)
                if len(page.data) < shapes.DEVICES_MAX_LIMIT:
                    return devices
            elif not page.data or offset >= page.total:
                return devices

    async def device(self, device_id: str) -> shapes.Device:
        return await self._get(shapes.device_path(device_id), {}, shapes.Device, resource=f"device {device_id}")

    async def telemetry(
        self, device_id: str, start: datetime, end: datetime, fields: Sequence[str]
    ) -> shapes.TelemetryResponse:
        """Points with `start <= timestamp < end`, ascending; only the named fields."""
        params = {
            shapes.START_DATE: shapes.format_wire_time(start),
            shapes.END_DATE: shapes.format_wire_time(end),
            shapes.FIELDS: ",".join(fields),
        }
        return await self._get(
            shapes.telemetry_path(device_id), params, shapes.TelemetryResponse, resource=f"device {device_id}"
        )

    async def telemetry_values(
        self, device_id: str, start: datetime, end: datetime, field: str
    ) -> list[shapes.TimedValue]:
        """One field of `telemetry`: (time, number or None) per point, in the answer's order, decoded in
        one pass (`shapes.parse_telemetry_values`)."""
        params = {
            shapes.START_DATE: shapes.format_wire_time(start),
            shapes.END_DATE: shapes.format_wire_time(end),
            shapes.FIELDS: field,
        }
        resource = f"device {device_id}"
        body = await self._get_body(shapes.telemetry_path(device_id), params, resource=resource)
        return shapes.parse_telemetry_values(body, field, resource)

    async def changes(
        self, org_id: str, *, since: datetime, limit: int, cursor: str | None = None
    ) -> shapes.AuditChangesPage:
        params = {shapes.SINCE: shapes.format_wire_time(since), shapes.LIMIT: str(limit)}
        if cursor is not None:
            params[shapes.CURSOR] = cursor
        return await self._get(
            shapes.changes_path(org_id),
            params,
            shapes.AuditChangesPage,
            resource=f"organization {org_id}",
            organization_scoped=True,
        )

    # --- metering application (always /v3/) ---------------------------------------------------------
    async def daily_consumption(
        self, org_id: str, start: datetime, end: datetime, resolution: str = "day"
    ) -> shapes.DailyConsumptionResponse:
        """Rows per (device, bucket): buckets are consecutive 24 h windows from `start` (UTC)."""
        params = {
            shapes.START_DATE: shapes.format_wire_time(start),
            shapes.END_DATE: shapes.format_wire_time(end),
            shapes.RESOLUTION: resolution,
        }
        return await self._get(
            shapes.daily_consumption_path(org_id),
            params,
            shapes.DailyConsumptionResponse,
            resource=f"organization {org_id}",
            organization_scoped=True,
        )
