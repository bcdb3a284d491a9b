import base64
import json

import httpx
import pytest

from app.backends.waltero.emulator import Emulator, create_emulator, jwt
from tests.support.clock import FakeClock

from .conftest import CREDENTIALS


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_jwt_round_trip_and_rules() -> None:
    token = jwt.encode({"sub": "u", "exp": 100}, b"k")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert jwt.decode(token, b"k", now=99.9)["sub"] == "u"
    with pytest.raises(jwt.InvalidToken, match="expired"):
        jwt.decode(token, b"k", now=100)
    with pytest.raises(jwt.InvalidToken, match="signature"):
        jwt.decode(token, b"other", now=0)
    with pytest.raises(jwt.InvalidToken):
        jwt.decode("a.b", b"k", now=0)
    with pytest.raises(jwt.InvalidToken, match="exp"):
        jwt.decode(jwt.encode({"sub": "u"}, b"k"), b"k", now=0)


async def test_login_answers_the_pinned_shape(raw: httpx.AsyncClient, clock: FakeClock) -> None:
    response = await raw.post("/api/auth/login", json=CREDENTIALS)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "accessToken", "refreshToken", "user"}
    claims = _claims(body["token"])
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 86400
    assert claims["sub"] == body["user"]["id"]
    assert body["token"].count(".") == 2
    assert body["accessToken"].count(".") == 2
    assert body["user"]["organizations"][0]["organization_id"] == "00000000-0000-0000-0000-000000000001"


async def test_token_expires_after_its_lifetime() -> None:
    clock = FakeClock()
    emulator = create_emulator(clock, token_ttl=5)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator.app), base_url="http://w") as client:
        token = (await client.post("/api/auth/login", json=CREDENTIALS)).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        clock.advance(4.9)
        assert (await client.get("/api/auth/me", headers=headers)).status_code == 200
        clock.advance(0.1)
        expired = await client.get("/api/auth/me", headers=headers)
        assert expired.status_code == 401
        assert expired.json()["code"] == "UNAUTHENTICATED"
        assert emulator.stats["auth_rejected"] == 1


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer not.a.token", "Bearer e30.e30.c2ln"],
)
async def test_missing_or_bad_bearer_is_401(raw: httpx.AsyncClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = await raw.get("/api/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHENTICATED"


async def test_tampered_token_is_401(api: httpx.AsyncClient) -> None:
    header, payload, signature = api.headers["Authorization"].split()[1].split(".")
    claims = _claims(f"h.{payload}.s")
    claims["exp"] = int(claims["exp"]) + 10**6
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    response = await api.get("/api/auth/me", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"})
    assert response.status_code == 401


async def test_only_the_token_is_the_bearer_value(raw: httpx.AsyncClient) -> None:
    body = (await raw.post("/api/auth/login", json=CREDENTIALS)).json()
    assert (
        await raw.get("/api/auth/me", headers={"Authorization": f"Bearer {body['accessToken']}"})
    ).status_code == 401
    assert (await raw.get("/api/auth/me", headers={"Authorization": f"Bearer {body['token']}"})).status_code == 200


async def test_another_emulators_token_is_rejected(raw: httpx.AsyncClient, clock: FakeClock) -> None:
    other = create_emulator(clock, seed=8).issue_token()
    assert (await raw.get("/api/auth/me", headers={"Authorization": f"Bearer {other}"})).status_code == 401


async def test_revoked_tokens_are_rejected(api: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.revoke_tokens()
    assert (await api.get("/api/auth/me")).status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": CREDENTIALS["username"], "password": "nope"}, 401),
        ({"username": "someone@else", "password": CREDENTIALS["password"]}, 401),
        ({"username": "x"}, 400),
        ("not json", 400),
    ],
)
async def test_bad_logins(raw: httpx.AsyncClient, body: object, status: int, emulator: Emulator) -> None:
    if isinstance(body, str):
        response = await raw.post("/api/auth/login", content=body)
    else:
        response = await raw.post("/api/auth/login", json=body)
    assert response.status_code == status
    assert response.json()["code"] == ("UNAUTHENTICATED" if status == 401 else "BAD_REQUEST")
    assert emulator.stats["tokens_issued"] == 0


async def test_me_lists_accessible_organizations_only(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/auth/me")).json()
    assert [o["organization_id"] for o in body["accessible_organizations"]] == [
        "00000000-0000-0000-0000-000000000001",
        "00000000-0000-0000-0000-000000000002",
    ]
    assert all(set(o) == {"organization_id", "name"} for o in body["accessible_organizations"])
    assert set(body["user"]) == {"id", "email", "organizations"}
