import asyncio
import time

import pytest

from app.shared.tokens import SharedToken, SharedTokenStore, account_name
from tests.support.clock import FakeClock


class Vendor:
    """A login endpoint: each login issues a new token valid for `lifetime` seconds."""

    def __init__(self, clock: FakeClock, lifetime: float = 100.0, delay: float = 0.1) -> None:
        self.clock = clock
        self.logins = 0
        self.lifetime = lifetime
        self.delay = delay

    async def login(self) -> SharedToken:
        self.logins += 1
        await asyncio.sleep(self.delay)
        now = self.clock()
        return SharedToken(f"jwt-{self.logins}", now + self.lifetime, now + self.lifetime * 0.9)


async def stores(make_tier, clock, n=3, **kw):
    account = account_name("https://waltero.example/prod", "user@example.com")
    kw.setdefault("credential", "vendor-password-1")
    return [SharedTokenStore(await make_tier(), account, clock=clock, **kw) for _ in range(n)]


async def test_three_replicas_starting_together_log_in_once(make_tier):
    clock = FakeClock()
    replicas = await stores(make_tier, clock)
    vendor = Vendor(clock)
    results = await asyncio.gather(*(s.renew(None, vendor.login, budget=5) for s in replicas for _ in range(5)))
    assert vendor.logins == 1
    assert {t.token for t, _ in results} == {"jwt-1"}
    assert sorted(src for _, src in results).count("login") == 1


async def test_a_stall_while_replicas_start_together_is_still_one_login(make_tier):
    # The first reads of every replica are in flight when this process is held up for longer than the
    # tier's timeout (a long GC pause): they all time out, though Redis answered. Not an outage (a PING
    # says so), so the replicas ask again within their wait instead of each logging in.
    clock = FakeClock()
    account = account_name("https://waltero.example/prod", "user@example.com")
    replicas = [
        SharedTokenStore(await make_tier(timeout=0.1, down_after=0.2), account, clock=clock, credential="pw-1")
        for _ in range(3)
    ]
    vendor = Vendor(clock)

    async def stall() -> None:
        time.sleep(0.5)

    renewals = [s.renew(None, vendor.login, budget=5) for s in replicas for _ in range(5)]
    *results, _ = await asyncio.gather(*renewals, stall())
    assert vendor.logins == 1
    assert {t.token for t, _ in results} == {"jwt-1"}
    assert all(s.tier.available for s in replicas)


async def test_renewal_when_due_is_one_login_for_the_fleet(make_tier):
    clock = FakeClock()
    replicas = await stores(make_tier, clock)
    vendor = Vendor(clock)
    first, _ = await replicas[0].renew(None, vendor.login, budget=5)
    clock.advance(95)  # past renew_at (90), before expiry (100): everybody holds jwt-1 and renews
    results = await asyncio.gather(*(s.renew(first.token, vendor.login, budget=5) for s in replicas))
    assert vendor.logins == 2
    assert {t.token for t, _ in results} == {"jwt-2"}


async def test_a_401_invalidates_the_shared_token_once(make_tier):
    clock = FakeClock()
    replicas = await stores(make_tier, clock)
    vendor = Vendor(clock)
    token, _ = await replicas[0].renew(None, vendor.login, budget=5)
    # The vendor revoked jwt-1; every replica sees a 401 with it at about the same time.
    dropped = await asyncio.gather(*(s.invalidate(token.token) for s in replicas))
    assert sorted(dropped) == [False, False, True]
    results = await asyncio.gather(*(s.renew(token.token, vendor.login, budget=5) for s in replicas))
    assert vendor.logins == 2
    assert {t.token for t, _ in results} == {"jwt-2"}
    # A late 401 for the old token does not drop the new one.
    assert await replicas[2].invalidate(token.token) is False
    assert (await replicas[1].get()).token == "jwt-2"


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it kills or pauses the server
async def test_redis_down_means_each_replica_logs_in_itself(make_tier, redis_server):
    clock = FakeClock()
    replicas = await stores(make_tier, clock, n=2)
    vendor = Vendor(clock, delay=0)
    redis_server.kill()
    results = [await s.renew(None, vendor.login, budget=5) for s in replicas]
    assert [src for _, src in results] == ["local", "local"]
    assert vendor.logins == 2


async def test_a_dead_login_holder_does_not_block_the_others_past_their_budget(make_tier):
    clock = FakeClock()
    (store,) = await stores(make_tier, clock, n=1)
    await store.tier.client.set(store._lock_key, b"dead", px=60_000)
    vendor = Vendor(clock, delay=0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    _token, source = await store.renew(None, vendor.login, budget=4.0)
    assert source == "local"
    assert vendor.logins == 1
    # Waited its share (half of 4 s), then logged in itself: a budget this long leaves 2 s of slack on a
    # loaded machine between the share and the whole budget (the dead holder's lock lives 60 s).
    assert 1.9 < loop.time() - started < 4.0


async def test_the_token_is_never_in_a_repr():
    token = SharedToken("eyJ.secret.jwt", 2.0, 1.0)
    assert "secret" not in repr(token)


async def test_the_token_is_sealed_at_rest_and_only_its_credential_opens_it(make_tier):
    clock = FakeClock()
    (store,) = await stores(make_tier, clock, n=1)
    now = clock()
    await store.put(SharedToken("jwt-secret-token-value", now + 100, now + 90))
    raw = await store.tier.client.hgetall(store.key)
    assert b"jwt-secret-token-value" not in b"".join([*raw.keys(), *raw.values()])  # nothing readable in Redis
    assert (await store.get()).token == "jwt-secret-token-value"
    (other,) = await stores(make_tier, clock, n=1, credential="another-password")
    assert await other.get() is None  # another credential (another account's replicas) cannot open it
    tampered = dict(raw)
    sealed = bytearray(tampered[b"token"])
    sealed[30] ^= 1
    await store.tier.client.hset(store.key, b"token", bytes(sealed))
    assert await store.get() is None  # altered: refused, not a garbled token sent to the vendor
    assert await store.invalidate("jwt-secret-token-value") is True  # by fingerprint, never the token
