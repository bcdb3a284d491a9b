import asyncio
import logging
import time

import pytest

from app.infra.config import parse_sentinels
from app.shared.tier import MIN_VERSION, RedisTier, SharedUnavailable, shared_status, version_of
from tests.support.redis_server import running_redis
from tests.unit.shared.conftest import Recorder


async def test_commands_answer_and_are_counted(make_tier):
    rec = Recorder()
    tier = await make_tier(record=rec)
    assert tier.status == "up"
    await tier.call("set", lambda r: r.set(tier.key("x"), b"1"))
    got = await tier.call("get", lambda r: r.get(tier.key("x")), classify=lambda v: "hit" if v else "miss")
    missing = await tier.call("get", lambda r: r.get(tier.key("y")), classify=lambda v: "hit" if v else "miss")
    assert (got, missing) == (b"1", None)
    assert rec.value("get", "hit") == 1.0
    assert rec.value("get", "miss") == 1.0
    assert rec.value("set", "ok") == 1.0
    assert rec.value("version", "ok") == 1.0  # INFO server at startup: Redis >= 7
    assert shared_status(tier) == {"status": "up", "mode": tier.mode, "last_error": None}
    assert shared_status(None) == {"status": "off", "mode": None, "last_error": None}


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it kills or pauses the server
async def test_killed_redis_is_one_outage_then_recovers_by_itself(make_tier, redis_server, caplog):
    caplog.set_level(logging.INFO, logger="app.shared")
    rec = Recorder()
    tier = await make_tier(record=rec)
    seen = []
    tier.on_status(seen.append)
    await asyncio.gather(*(tier.call("get", lambda r: r.get("k")) for _ in range(20)))  # a pool of connections
    redis_server.kill()
    started = time.monotonic()
    for _ in range(50):
        with pytest.raises(SharedUnavailable):
            await tier.call("get", lambda r: r.get("k"))
    # The first failure costs at most the timeout; the other 49 are skipped without a round trip (the
    # counters below prove it; the clock bound is generous for a loaded machine, far below 50 timeouts).
    assert time.monotonic() - started < 5.0
    assert tier.status == "down"
    assert rec.value("get", "error") == 1.0
    assert rec.value("get", "skipped") == 49.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()

    redis_server.start()
    async with asyncio.timeout(5):
        while tier.status != "up":
            await asyncio.sleep(0.02)
    # the connections pooled before the outage are not a new outage after it
    await asyncio.gather(*(tier.call("get", lambda r: r.get("k")) for _ in range(20)))
    assert tier.status == "up"
    assert seen == ["down", "up"]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert any("reachable again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it kills or pauses the server
async def test_hung_redis_never_holds_a_caller_past_the_timeout(make_tier, redis_server):
    rec = Recorder()
    tier = await make_tier(record=rec, timeout=0.08, down_after=0.2)
    redis_server.pause()
    try:
        calls = 0
        while tier.available and calls < 10:
            started = time.monotonic()
            with pytest.raises(SharedUnavailable):
                await tier.call("get", lambda r: r.get("k"))
            assert time.monotonic() - started < 2.0  # generous (timeout 0.08 s): a paused Redis never answers
            calls += 1
        # Timeouts that go on (not one slow burst) are an outage: from then on nobody waits at all.
        assert tier.status == "down"
        assert rec.value("get", "timeout") == calls >= 3
        started = time.monotonic()
        with pytest.raises(SharedUnavailable):
            await tier.call("get", lambda r: r.get("k"))
        assert time.monotonic() - started < 1.0  # generous: the counter below proves there was no round trip
        assert rec.value("get", "skipped") == 1.0
    finally:
        redis_server.resume()
    async with asyncio.timeout(5):
        while tier.status != "up":
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "redis_mode", ["standalone"]
)  # the tier's own logic; a cancelled BLPOP upsets a cluster node's connection
async def test_a_burst_of_slow_answers_is_not_an_outage(make_tier):
    rec = Recorder()
    tier = await make_tier(record=rec, timeout=0.05)
    # Redis answers; only these commands are slow (a blocking pop), the ones around them are quick.
    for _ in range(5):
        with pytest.raises(SharedUnavailable):
            await tier.call("slow", lambda r: r.blpop([tier.key("never")], timeout=1))
    assert rec.value("slow", "timeout") == 5.0, tier.last_error
    # not an outage (commands are still tried), but honest: most recent commands failed
    assert tier.available
    assert tier.describe()["status"] == "degraded"
    assert tier.last_error == "TimeoutError"
    await tier.call("ping", lambda r: r.ping())


@pytest.mark.parametrize("redis_mode", ["standalone"])  # the tier's own logic; see the burst test on BLPOP
async def test_a_stalled_loop_is_not_an_outage(make_tier, caplog):
    # Commands in flight while this replica's own loop is held up (a long GC pause, a host that did not
    # schedule the process) all time out together, though Redis answered in time. A PING decides: Redis
    # answers, so it is not down, and no warning says it is.
    caplog.set_level(logging.WARNING, logger="app.shared")
    rec = Recorder()
    tier = await make_tier(record=rec, timeout=0.4, down_after=0.2)
    # Each command is answered by Redis after 0.15 s (an empty blocking pop), well within the timeout;
    # the loop is blocked from 0.05 s to 0.85 s, so each answer is read after its deadline.
    asyncio.get_running_loop().call_later(0.05, time.sleep, 0.8)
    outcomes = await asyncio.gather(
        *(tier.call("pop", lambda r: r.blpop([tier.key("never")], timeout=0.15)) for _ in range(6)),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes] == ["SharedUnavailable"] * 6
    assert all(o.timed_out for o in outcomes)  # type: ignore[union-attr]
    async with asyncio.timeout(5):
        while tier._verifying is None or not tier._verifying.done():
            await asyncio.sleep(0.01)
    assert tier.available
    assert await tier.call("get", lambda r: r.get(tier.key("k"))) is None
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]


@pytest.mark.parametrize("redis_mode", ["standalone", "sentinel"])  # a cluster client reconnects by itself
async def test_connections_closed_while_idle_are_not_an_outage(make_tier, caplog):
    # A server's or a proxy's idle timeout (or a load balancer's reset) closes pooled connections: the
    # next command on each meets a closed socket, is sent again on a new connection, and answers. The
    # same server answers, so nobody is told to catch up.
    caplog.set_level(logging.INFO, logger="app.shared")
    rec = Recorder()
    tier = await make_tier(record=rec)
    seen: list[str] = []
    tier.on_status(seen.append)
    await asyncio.gather(*(tier.call("set", lambda r: r.set(tier.key("k"), b"v")) for _ in range(8)))
    pooled = len(tier.client.connection_pool._available_connections)
    assert pooled >= 2
    killed = await tier.client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")
    assert killed >= pooled
    answers = await asyncio.gather(*(tier.call("get", lambda r: r.get(tier.key("k"))) for _ in range(8)))
    assert answers == [b"v"] * 8
    assert tier.status == "up"
    assert rec.value("get", "error") == 0.0
    assert seen == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or "another server" in r.getMessage()]


@pytest.mark.parametrize("redis_mode", ["standalone"])  # it restarts the server
async def test_a_redis_restarted_between_commands_is_noticed(make_tier, redis_server):
    # Redis restarts (no persistence: it lost everything) while no command is in flight: the next
    # command answers on a new connection, and the listeners are told to catch up as after an outage.
    rec = Recorder()
    tier = await make_tier(record=rec)
    seen: list[str] = []
    tier.on_status(seen.append)
    await asyncio.gather(*(tier.call("set", lambda r: r.set(tier.key("k"), b"v")) for _ in range(4)))
    redis_server.restart()
    assert await tier.call("get", lambda r: r.get(tier.key("k"))) is None
    assert tier.status == "up"
    assert seen == ["up"]
    assert await tier.call("get", lambda r: r.get(tier.key("k"))) is None
    assert seen == ["up"]  # once per server


async def test_unreachable_at_startup_is_down_not_an_error(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="app.shared")
    with running_redis(tmp_path) as server:
        url = server.url
    tier = RedisTier(url, probe_every=0.05)
    try:
        await tier.start()
        assert tier.status == "down"
        assert len(caplog.records) == 1
    finally:
        await tier.aclose()


async def test_password_never_in_logs_or_repr(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with running_redis(tmp_path, password="s3cret-redis-pw") as server:
        good = RedisTier(server.url)
        bad = RedisTier(server.url.replace("s3cret-redis-pw", "wrong-pw-1234"))
        try:
            await good.start()
            await bad.start()
            assert (good.status, bad.status) == ("up", "down")
            assert bad.last_error == "AuthenticationError"  # refused, said so, not an outage retried twice a second
            text = caplog.text + repr(good) + repr(bad)
            assert "s3cret-redis-pw" not in text
            assert "wrong-pw-1234" not in text
        finally:
            await good.aclose()
            await bad.aclose()


def test_only_redis_urls():
    with pytest.raises(ValueError, match="redis://"):
        RedisTier("http://127.0.0.1:6379")


def test_the_server_version_is_read_from_info_and_the_oldest_node_counts():
    assert version_of({"redis_version": "7.2.4"}) == (7, 2)
    assert version_of({"a:1": {"redis_version": "7.0.15"}, "b:2": {"redis_version": "6.2.1"}}) == (6, 2)
    assert version_of({"redis_version": "6.2.14"}) < MIN_VERSION


def test_sentinels_are_host_port_pairs():
    assert parse_sentinels("10.0.0.1:26379, sentinel-b:26380") == [("10.0.0.1", 26379), ("sentinel-b", 26380)]
    for wrong in ("", "host", "host:port", "host:70000"):
        with pytest.raises(ValueError):
            parse_sentinels(wrong)
