"""The Acme backend: Acme's REST API (see `emulator/__init__.py` for the page it reads) as a `Backend`.

Pinned assumptions (each checked by `doctor.py`): the register is in kWh; readings are epoch seconds.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx

from app.backends.base import METERS, READINGS, AuthState, ChangesPage
from app.backends.http import upstream_operation
from app.domain.models import Change, DailyConsumption, DeviceStatus, Meter, Reading
from app.infra.errors import NotFound, NotSupported, UpstreamAuthFailed, UpstreamBadResponse, UpstreamUnavailable
from app.infra.timeutil import from_epoch

NAME = "acme"
_ID = re.compile(r"m-[0-9]{1,6}")


class AcmeBackend:
    name = NAME
    capabilities = frozenset({METERS, READINGS})
    daily_grain: Literal["meter", "backend"] = "meter"

    def __init__(self, http: httpx.AsyncClient, url: str, user: str, token: str, *, mode: Any) -> None:
        self._http = http
        self._url = url.rstrip("/")
        self._headers = {"X-Acme-User": user, "Authorization": f"Token {token}"}
        self.mode = mode

    def is_valid_id(self, upstream_id: str) -> bool:
        return _ID.fullmatch(upstream_id) is not None

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        response = await self._http.get(self._url + path, params=params, headers=self._headers)
        if response.status_code == 401:
            raise UpstreamAuthFailed("Acme rejected the credentials.", backend=NAME)
        if response.status_code == 404:
            raise NotFound("Acme does not know this meter.", backend=NAME)
        if response.status_code >= 500:
            raise UpstreamUnavailable(f"Acme answered {response.status_code}.", backend=NAME)
        try:
            return response.json()
        except ValueError:
            raise UpstreamBadResponse("Acme sent something that is not JSON.", backend=NAME) from None

    def _meter(self, raw: dict[str, Any]) -> Meter:
        return Meter(
            id=f"{NAME}:{raw['id']}",
            backend=NAME,
            serial_number=raw["serial"],
            name=raw.get("label"),
            medium="electricity",
            unit="kWh",
            site_id=None,
            device_id=None,
        )

    async def list_meters(self) -> list[Meter]:
        with upstream_operation("meters"):
            return [self._meter(m) for m in (await self._get("/v1/meters"))["meters"]]

    async def get_meter(self, upstream_id: str) -> Meter:
        with upstream_operation("meter"):
            return self._meter(await self._get(f"/v1/meters/{upstream_id}"))

    async def readings(
        self, upstream_meter_id: str, start: datetime, end: datetime, quantities: frozenset[str] | None, limit: int
    ) -> list[Reading]:
        if quantities is not None and "energy_import" not in quantities:
            return []
        params = {"from": str(start.timestamp()), "to": str(end.timestamp())}
        with upstream_operation("readings"):
            points = (await self._get(f"/v1/meters/{upstream_meter_id}/readings", params))["readings"]
        meter_id = f"{NAME}:{upstream_meter_id}"
        return [
            Reading(
                meter_id=meter_id,
                time=from_epoch(p["t"]),
                quantity="energy_import",
                obis="1-0:1.8.0",
                value=float(p["v"]),
                unit="kWh",
            )
            for p in points
        ]

    async def daily_consumption(
        self, upstream_meter_ids: frozenset[str] | None, start: date, end: date, tz: ZoneInfo
    ) -> list[DailyConsumption]:
        raise NotSupported("Acme has no daily consumption.", backend=NAME)

    async def device_status(self, upstream_device_id: str) -> DeviceStatus:
        raise NotSupported("Acme has no devices.", backend=NAME)

    async def changes(self, since: datetime, limit: int, cursor: str | None) -> ChangesPage:
        raise NotSupported("Acme has no corrections feed.", backend=NAME)

    async def auth_state(self) -> AuthState:
        return AuthState(authenticated=None)

    async def check_ready(self) -> None:
        await self._get("/v1/meters")

    async def aclose(self) -> None:
        return None


__all__ = ["AcmeBackend", "Change"]
