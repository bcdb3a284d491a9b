"""The emulator enforces UPSTREAMS.md's auth rules."""

from __future__ import annotations

import base64

import httpx
import pytest

from app.backends.iometer.auth import wsse_created
from app.backends.iometer.emulator import Emulator
from app.backends.iometer.emulator.auth import NonceStore
from tests.support.clock import FakeClock
from tests.unit.sandbox.iometer.conftest import PARTNER, Caller, basic, wsse

QUERY = "query PartnerId { partner { id } }"


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401
    body = response.json()
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    assert isinstance(body["errors"][0]["message"], str)
    assert "data" not in body


async def test_wsse_is_accepted(caller: Caller) -> None:
    assert await caller.data(QUERY) == {"partner": {"id": PARTNER}}


async def test_basic_is_accepted(caller: Caller) -> None:
    response = await caller.post(QUERY, authorization=basic())
    assert response.status_code == 200
    assert response.json() == {"data": {"partner": {"id": PARTNER}}}


@pytest.mark.parametrize("skew", [-301, 301, 3600])
async def test_created_more_than_300_s_away_is_refused(caller: Caller, clock: FakeClock, skew: int) -> None:
    header = wsse(clock, created=wsse_created(clock() + skew))
    assert_unauthenticated(await caller.post(QUERY, authorization=header))


@pytest.mark.parametrize("skew", [-300, -5, 0, 299])
async def test_created_within_300_s_is_accepted(caller: Caller, clock: FakeClock, skew: int) -> None:
    header = wsse(clock, created=wsse_created(clock() + skew))
    assert (await caller.post(QUERY, authorization=header)).status_code == 200


async def test_a_replayed_nonce_is_refused_within_the_window(
    caller: Caller, clock: FakeClock, emulator: Emulator
) -> None:
    nonce = "0123456789abcdef0123456789abcdef"
    first = wsse(clock, nonce=nonce)
    assert (await caller.post(QUERY, authorization=first)).status_code == 200
    assert_unauthenticated(await caller.post(QUERY, authorization=first))
    clock.advance(60)
    assert_unauthenticated(await caller.post(QUERY, authorization=wsse(clock, nonce=nonce)))  # new Created, same nonce
    assert emulator.stats["auth:replay"] == 2


async def test_a_header_created_ahead_of_the_clock_cannot_be_replayed_while_still_valid(
    caller: Caller, clock: FakeClock
) -> None:
    header = wsse(clock, nonce="fedcba9876543210fedcba9876543210", created=wsse_created(clock() + 299))
    assert (await caller.post(QUERY, authorization=header)).status_code == 200
    clock.advance(301)  # Created is still within 300 s of the clock: the nonce must still be known
    assert_unauthenticated(await caller.post(QUERY, authorization=header))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: h.replace('PasswordDigest="', 'PasswordDigest="x'),
        lambda h: h.replace(PARTNER, "00000000-0000-4000-8000-000000000000"),
        lambda h: h.replace("UsernameToken ", "UsernameToken"),
        lambda h: h.replace(", Created=", " Created="),
        lambda h: h.split(", Created=")[0],
        lambda h: h.replace('Nonce="', 'Nonce="A'),
        lambda h: "Bearer abc",
        lambda h: "",
    ],
)
async def test_bad_wsse_headers_are_refused(caller: Caller, clock: FakeClock, mutate) -> None:  # type: ignore[no-untyped-def]
    assert_unauthenticated(await caller.post(QUERY, authorization=mutate(wsse(clock)) or " "))


async def test_wrong_secret_is_refused(caller: Caller, clock: FakeClock) -> None:
    assert_unauthenticated(await caller.post(QUERY, authorization=wsse(clock, secret="wrong")))
    assert_unauthenticated(await caller.post(QUERY, authorization=basic(secret="wrong")))
    assert_unauthenticated(await caller.post(QUERY, authorization=basic(partner="nobody")))
    assert_unauthenticated(await caller.post(QUERY, authorization="Basic !!!"))
    assert_unauthenticated(await caller.post(QUERY, authorization="Basic " + base64.b64encode(b"no-colon").decode()))


async def test_missing_header_is_refused(http: httpx.AsyncClient) -> None:
    assert_unauthenticated(await http.post("/api/v1/query", json={"query": QUERY}))


async def test_the_parameters_may_come_in_any_order(caller: Caller, clock: FakeClock) -> None:
    header = wsse(clock)
    params = header.removeprefix("UsernameToken ").split(", ")
    reordered = "UsernameToken " + ", ".join(reversed(params))
    assert (await caller.post(QUERY, authorization=reordered)).status_code == 200


async def test_the_other_partner_authenticates_as_itself(caller: Caller, clock: FakeClock, emulator: Emulator) -> None:
    other = emulator.data.other_partner
    response = await caller.post(QUERY, authorization=wsse(clock, partner=other.id, secret=other.secret))
    assert response.json() == {"data": {"partner": {"id": other.id}}}


def test_nonce_store_expires_with_the_window_and_is_bounded() -> None:
    store = NonceStore(window=300, max_entries=3)
    store.add("a", 0)
    assert store.seen("a", 299)
    assert not store.seen("a", 300.5)
    assert len(store) == 0
    for i, nonce in enumerate("bcdef"):
        store.add(nonce, 10 + i)
    assert len(store) == 3
    assert not store.seen("b", 20)
    assert store.seen("f", 20)
