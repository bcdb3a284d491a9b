"""`FleetLock` on redis-py's `Lock`, against the real Redis of each mode: exclusive, renewed by its
holder, released only by its owner, and adoptable after a script took it with the lock's token."""

from __future__ import annotations

import asyncio

from app.shared.locks import FleetLock


async def test_one_holder_at_a_time_and_release_frees_it(make_tier):
    tier = await make_tier()
    first, second = FleetLock(tier, "k:lock", ttl=5), FleetLock(tier, "k:lock", ttl=5)
    assert await first.acquire()
    assert not await second.acquire()
    assert await tier.client.get("k:lock") == first.token.encode()
    await first.release()
    assert await tier.client.get("k:lock") is None
    assert await second.acquire()
    await second.release()


async def test_a_holder_whose_lock_expired_and_was_taken_never_releases_the_new_owners(make_tier):
    tier = await make_tier()
    old, new = FleetLock(tier, "k:lock", ttl=0.1), FleetLock(tier, "k:lock", ttl=5)
    assert await old.acquire()
    await asyncio.sleep(0.3)  # expired
    assert await new.acquire()
    await old.release()  # no error, and the new owner keeps it
    assert await tier.client.get("k:lock") == new.token.encode()
    await new.release()


async def test_renewed_keeps_the_lock_past_its_ttl_and_releases_it_after(make_tier):
    tier = await make_tier()
    lock, rival = FleetLock(tier, "k:lock", ttl=0.3), FleetLock(tier, "k:lock", ttl=5)
    assert await lock.acquire()
    async with lock.renewed():
        await asyncio.sleep(1.0)  # three lifetimes
        assert not await rival.acquire()
        assert 0 < await tier.client.pttl("k:lock") <= 300
    assert await tier.client.get("k:lock") is None


async def test_a_lock_taken_by_a_script_with_the_token_is_renewed_and_released_once_adopted(make_tier):
    tier = await make_tier()
    lock = FleetLock(tier, "k:lock", ttl=0.3)
    await tier.client.set("k:lock", lock.token, nx=True, px=lock.ttl_ms)  # what the flight's lookup does
    lock.adopt()
    async with lock.renewed():
        await asyncio.sleep(0.8)
        assert await tier.client.get("k:lock") == lock.token.encode()
    assert await tier.client.get("k:lock") is None


async def test_release_without_acquiring_touches_nothing(make_tier):
    tier = await make_tier()
    owner, bystander = FleetLock(tier, "k:lock", ttl=5), FleetLock(tier, "k:lock", ttl=5)
    assert await owner.acquire()
    await bystander.release()
    assert await tier.client.get("k:lock") == owner.token.encode()
    await owner.release()
