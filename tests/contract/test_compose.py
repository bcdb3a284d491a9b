"""`deploy/compose.yaml` (no container engine runs here): parsed with PyYAML and checked for what a
fleet needs, and its Redis command run for real, so the ACL it grants is proven to be enough for
every shared-tier operation."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, NoPermissionError, ResponseError

from app.core.corrections import encode_mark
from app.core.fleet import CACHE_KINDS, Fleet
from app.domain.cursors import CursorCodec
from app.infra.metrics import Metrics
from app.shared.cursor_key import shared_cursor_secret
from app.shared.entries import SharedEntry
from app.shared.lease import SharedWatermark
from app.shared.tier import SharedUnavailable
from app.shared.tokens import SharedToken
from tests.support.redis_server import RedisServer
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def replicas(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in doc["services"].items() if "FACADE_REDIS_URL" in s.get("environment", {})}


def test_redis_two_replicas_and_prometheus():
    doc = compose()
    services = doc["services"]
    assert {"redis", "prometheus"} <= set(services)
    fleet = replicas(doc)
    assert len(fleet) == 2
    urls = {s["environment"]["FACADE_REDIS_URL"] for s in fleet.values()}
    prefixes = {s["environment"]["FACADE_REDIS_PREFIX"] for s in fleet.values()}
    assert len(urls) == 1  # one shared tier
    assert len(prefixes) == 1  # one key space
    url = urls.pop()
    assert re.fullmatch(r"rediss?://facade:\$\{REDIS_FACADE_PASSWORD:\?[^}]+\}@redis:6379/0", url)
    for service in fleet.values():
        assert service["build"]["dockerfile"] == "Dockerfile"
        assert (DEPLOY / service["build"]["context"] / "Dockerfile").is_file()
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["env_file"] == "facade.env"
        assert "FACADE_CURSOR_SECRET" not in service["environment"]  # the fleet shares its key via Redis
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:")
            assert port.endswith(":8000")
    assert "test" in services["redis"]["healthcheck"]


def strings(node: Any, key: str = "") -> list[tuple[str, str]]:
    """Every (key, string value) in a parsed YAML document; list items carry their list's key."""
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in strings(v, str(k))]
    if isinstance(node, list):
        return [kv for v in node for kv in strings(v, key)]
    return [(key, node)] if isinstance(node, str) else []


def test_no_secret_is_written_down():
    for key, value in strings(compose()):
        if re.search("PASSWORD|SECRET|KEYS", key):
            assert value.startswith("${"), (key, value)  # taken from the environment, never written here
        assert not re.search(r"://[^:/@]+:(?!\$\{)[^@]+@", value), value  # no literal password in a URL
        if value.startswith(">"):  # nor in the ACL rule
            assert value.startswith(">${"), value
    example = (DEPLOY / "facade.env.example").read_text()
    for line in example.splitlines():
        if line.strip() and not line.startswith("#") and re.search(r"(SECRET|PASSWORD|KEYS)=", line):
            assert line.endswith("="), line
    assert "deploy/facade.env" in (ROOT / ".gitignore").read_text().splitlines()


def test_prometheus_scrapes_every_replica():
    doc = compose()
    volumes = doc["services"]["prometheus"]["volumes"]
    volume = next(v for v in volumes if v.endswith("/etc/prometheus/prometheus.yml:ro"))
    config = yaml.safe_load((DEPLOY / volume.split(":")[0]).read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert sorted(job["static_configs"][0]["targets"]) == sorted(f"{n}:8000" for n in replicas(doc))
    for rules in config["rule_files"]:  # mounted where the config expects them, from files that exist
        assert f"./{rules}:/etc/prometheus/{rules}:ro" in volumes
        assert (DEPLOY / rules).is_file()
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: install the Debian package prometheus", pytrace=False)
    done = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_the_acl_user_of_the_compose_redis_can_do_every_shared_operation(tmp_path):
    """Run redis-server with the compose file's own arguments; drive every shared-tier operation as
    its `facade` user; and check that user can touch nothing outside its prefix."""
    password = "compose-test-pw-0123"
    args = [
        a.replace("${REDIS_FACADE_PASSWORD:?set REDIS_FACADE_PASSWORD}", password)
        for a in compose()["services"]["redis"]["command"][1:]
    ]
    server = RedisServer(tmp_path, args=args)
    server.start()
    now = 1_779_000_000.0
    fleet = Fleet(
        f"redis://facade:{password}@127.0.0.1:{server.port}/0",
        prefix="facade",
        timeout=1.0,
        clock=lambda: now,
        metrics=Metrics(),
        budget=5,
    )
    evicted: list[set[str]] = []
    fleet.attach(evict_local=evicted.append, drop_local=lambda: None, cursors=CursorCodec())
    try:
        await fleet.start()
        assert fleet.status == "up"
        async with asyncio.timeout(5):
            await fleet.broadcast.wait_subscribed()
        kind = CACHE_KINDS["meters"]

        async def make() -> SharedEntry[Any]:
            return SharedEntry([], now, now + 60, now + 60, frozenset({"waltero:m"}))

        assert (await fleet.flight.load(kind, ("waltero", "all"), make, budget=5))[1] == "loaded"
        assert (await fleet.flight.load(kind, ("waltero", "all"), make, budget=5))[1] == "shared"
        assert fleet._evictions is not None
        assert await fleet._evictions.evict({"waltero:m"}, local=False) is True  # bump + stream event
        assert evicted == [{"waltero:m"}]  # dropped here again once written
        assert await fleet.entries.get(kind, ("waltero", "all")) is None
        store = fleet.token_store("account", "vendor-password")
        assert store is not None

        async def login() -> SharedToken:
            return SharedToken("jwt", now + 100, now + 90)

        assert (await store.renew(None, login, budget=5))[1] == "login"
        assert await store.invalidate("jwt") is True
        assert await fleet.leadership.is_leader() is True
        mark = (datetime(2026, 5, 19, 6, 0, tzinfo=UTC), "change-1")
        await fleet.watermarks.set("waltero", mark)
        assert await SharedWatermark(fleet.lease, "corrections:waltero").get() == encode_mark(mark)
        assert await shared_cursor_secret(fleet.tier) is not None
        await fleet.tier.client.xadd(fleet._evictions.key, {"o": "other", "t": '["waltero:m"]'})
        async with asyncio.timeout(5):  # read by the fleet's own reader (its own event was not applied)
            while len(evicted) < 2:
                await asyncio.sleep(0.01)
        assert evicted == [{"waltero:m"}, {"waltero:m"}]
        assert await fleet.broadcast.publish("filled", b"facade:e:{x}") == 1
        # ... and nothing outside its prefix, nothing administrative
        with pytest.raises(NoPermissionError):
            await fleet.tier.client.get("other:key")
        with pytest.raises(NoPermissionError):
            await fleet.tier.client.flushall()
        assert fleet.tier.describe() == {"status": "up", "mode": "standalone", "last_error": None}
    finally:
        await fleet.aclose()
        server.stop()


def _args(command: list[str], password: str, **hosts: str) -> list[str]:
    out = []
    for a in command[1:]:
        a = a.replace("${REDIS_FACADE_PASSWORD:?set REDIS_FACADE_PASSWORD}", password)
        out.append(hosts.get(a, a))
    return out


async def test_the_sentinel_profile_runs_and_fails_over_with_its_own_acl_users(tmp_path):
    """Run the profile's primary, replica and Sentinel with the compose file's own arguments (hosts
    mapped to 127.0.0.1), drive the shared tier through Sentinel as the `facade` user, and fail over:
    the Sentinel and replication users are proven to be allowed what they need."""
    doc = compose()
    services = doc["services"]
    assert {s for s, v in services.items() if "sentinel" in v.get("profiles", [])} == {
        "redis-primary",
        "redis-replica",
        "sentinel",
    }
    env = services["facade-1"]["environment"]
    assert env["FACADE_REDIS_MODE"] == "${FACADE_REDIS_MODE:-standalone}"
    assert env["FACADE_REDIS_SENTINELS"] == "${FACADE_REDIS_SENTINELS:-}"
    password = "compose-sentinel-pw-0123"
    primary = RedisServer(tmp_path / "primary", args=_args(services["redis-primary"]["command"], password))
    primary.start()
    replica_args = _args(services["redis-replica"]["command"], password, **{"redis-primary": "127.0.0.1"})
    replica_args[replica_args.index("127.0.0.1") + 1] = str(primary.port)
    replica = RedisServer(tmp_path / "replica", args=replica_args)
    replica.start()
    script = services["sentinel"]["command"][2]
    conf_text = script.split("printf '", 1)[1].split("' ", 1)[0].replace("\\n", "\n").replace("%s", password)
    port = free_port()
    conf_text = (
        conf_text.replace("port 26379", f"port {port}\nbind 127.0.0.1")
        .replace("redis-primary 6379", f"127.0.0.1 {primary.port}")
        .replace("down-after-milliseconds mymaster 5000", "down-after-milliseconds mymaster 1000")
    )
    conf = tmp_path / "sentinel.conf"
    conf.write_text(conf_text)
    sentinel = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fleet = Fleet(
        f"redis://facade:{password}@mymaster/0",
        mode="sentinel",
        sentinels=f"127.0.0.1:{port}",
        prefix="facade",
        timeout=1.0,
        clock=lambda: 1_779_000_000.0,
        metrics=Metrics(),
        budget=5,
    )
    admin = Redis(host="127.0.0.1", port=port)
    try:
        async with asyncio.timeout(20):  # the Sentinel knows the replica (replication user works)
            while True:
                with contextlib.suppress(ConnectionError):
                    if int((await admin.sentinel_master("mymaster")).get("num-slaves", 0)) >= 1:
                        break
                await asyncio.sleep(0.2)
        await fleet.start(lead=False)
        assert fleet.tier.describe() == {"status": "up", "mode": "sentinel", "last_error": None}
        await fleet.tier.call("set", lambda r: r.set("facade:probe", b"1"))
        as_sentinel = Redis(host="127.0.0.1", port=replica.port, username="sentinel", password=password)
        async with asyncio.timeout(30):  # the replica has synced (full sync waits for diskless delay)
            while (await as_sentinel.info("replication")).get("master_link_status") != "up":
                await asyncio.sleep(0.2)
        await as_sentinel.aclose()
        async with asyncio.timeout(20):  # Sentinel sees the synced replica as promotable
            while True:
                try:
                    await admin.sentinel_failover("mymaster")  # done as the profile's sentinel user
                    break
                except ResponseError:
                    await asyncio.sleep(0.5)
        async with asyncio.timeout(20):
            while True:
                addr = await admin.sentinel_get_master_addr_by_name("mymaster")
                if int(addr[1]) == replica.port:
                    break
                await asyncio.sleep(0.2)
        new_primary = Redis(host="127.0.0.1", port=replica.port, username="facade", password=password)
        try:
            async with asyncio.timeout(20):  # the fleet follows the failover: its writes reach the new primary
                while True:
                    with contextlib.suppress(SharedUnavailable):
                        await fleet.tier.call("set", lambda r: r.set("facade:after", b"1"))
                    if await new_primary.get("facade:after") == b"1":
                        break
                    await asyncio.sleep(0.1)
        finally:
            await new_primary.aclose()
    finally:
        await fleet.aclose()
        await admin.aclose()
        sentinel.terminate()
        sentinel.wait(timeout=10)
        replica.stop()
        primary.stop()
