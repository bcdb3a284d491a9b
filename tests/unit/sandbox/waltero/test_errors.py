"""The vendor's error table: status + `{"code", "message"}`."""

import httpx
import pytest

from app.backends.waltero.emulator import ORG_NORTH, ORG_OTHER, Emulator

DAILY = f"/api/organizations/{ORG_NORTH}/applications/metering/v3/data/device-daily-consumption"
DEVICE = "11111111-1111-1111-1111-111111111101"
TELEMETRY = f"/api/devices/{DEVICE}/telemetry"
CHANGES = f"/api/organizations/{ORG_NORTH}/data-audit/changes"
GOOD = {"startDate": "2026-05-10T22:00:00.000Z", "endDate": "2026-05-12T22:00:00.000Z", "resolution": "day"}


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == code
    assert body["message"]


@pytest.mark.parametrize(
    "path",
    [
        f"/api/organizations/{ORG_OTHER}/devices",
        f"/api/organizations/{ORG_OTHER}/data-audit/changes?since=2026-01-01T00:00:00Z",
        f"/api/organizations/{ORG_OTHER}/applications/metering/v3/data/device-daily-consumption"
        "?startDate=2026-05-10T22:00:00.000Z&endDate=2026-05-12T22:00:00.000Z&resolution=day",
    ],
)
async def test_an_organization_the_user_cannot_read_is_403(api: httpx.AsyncClient, path: str) -> None:
    _assert_error(await api.get(path), 403, "FORBIDDEN")


@pytest.mark.parametrize(
    "path",
    [
        "/api/organizations/00000000-0000-0000-0000-000000000099/devices",
        "/api/devices/11111111-1111-1111-1111-111111111199",
        "/api/devices/33333333-3333-3333-3333-333333333301",  # exists, but not yours
        "/api/devices/33333333-3333-3333-3333-333333333301/fields",
        "/api/devices/nonsense/telemetry?startDate=2026-05-10T22:00:00Z&endDate=2026-05-11T22:00:00Z",
        "/api/no/such/path",
        f"/api/organizations/{ORG_NORTH}/applications/metering/data/device-daily-consumption",  # unversioned
    ],
)
async def test_unknown_things_are_404(api: httpx.AsyncClient, path: str) -> None:
    _assert_error(await api.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "params",
    [
        {**GOOD, "resolution": "hour"},
        {**GOOD, "resolution": ""},
        {k: v for k, v in GOOD.items() if k != "resolution"},
        {k: v for k, v in GOOD.items() if k != "startDate"},
        {**GOOD, "startDate": "2026-05-11T00:00:00+02:00"},
        {**GOOD, "startDate": "2026-05-10"},
        {**GOOD, "endDate": GOOD["startDate"]},
        {**GOOD, "endDate": "2026-05-01T00:00:00.000Z"},
        {**GOOD, "startDate": "2020-01-01T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"},  # > 1000 buckets
    ],
)
async def test_bad_daily_queries_are_400(api: httpx.AsyncClient, params: dict[str, str]) -> None:
    _assert_error(await api.get(DAILY, params=params), 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (f"/api/organizations/{ORG_NORTH}/devices", {"limit": "101"}),
        (f"/api/organizations/{ORG_NORTH}/devices", {"limit": "0"}),
        (f"/api/organizations/{ORG_NORTH}/devices", {"offset": "-1"}),
        (f"/api/organizations/{ORG_NORTH}/devices", {"limit": "ten"}),
        (TELEMETRY, {"startDate": "2026-05-10T22:00:00Z"}),
        (TELEMETRY, {"startDate": "2026-05-10T22:00:00Z", "endDate": "2026-05-10T21:00:00Z"}),
        (CHANGES, {}),
        (CHANGES, {"since": "2026-01-01T00:00:00Z", "limit": "1001"}),
        (CHANGES, {"since": "2026-01-01T00:00:00Z", "cursor": "garbage!"}),
    ],
)
async def test_bad_parameters_are_400(api: httpx.AsyncClient, path: str, params: dict[str, str]) -> None:
    _assert_error(await api.get(path, params=params), 400, "BAD_REQUEST")


async def test_401_without_a_token(raw: httpx.AsyncClient) -> None:
    _assert_error(await raw.get(f"/api/organizations/{ORG_NORTH}/devices"), 401, "UNAUTHENTICATED")


async def test_429_carries_retry_after(api: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.retry_after = 7
    emulator.faults.fail_next = [429]
    response = await api.get("/api/auth/me")
    _assert_error(response, 429, "RATE_LIMITED")
    assert response.headers["retry-after"] == "7"


async def test_500_is_internal_error(api: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.fail_next = [500]
    _assert_error(await api.get("/api/auth/me"), 500, "INTERNAL_ERROR")
    assert (await api.get("/api/auth/me")).status_code == 200


async def test_wrong_method_answers_in_the_vendor_shape(api: httpx.AsyncClient) -> None:
    response = await api.delete(f"/api/devices/{DEVICE}")
    assert response.status_code == 405
    assert response.json()["code"] == "BAD_REQUEST"
