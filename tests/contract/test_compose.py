"""`deploy/compose.yaml` (no container engine runs here): parsed with PyYAML and checked for what a
fleet needs, and its Redis command run for real, so the ACL it grants is proven to be enough for
every shared-tier operation."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.exceptions import NoPermissionError

from app.corrections import encode_mark
from app.cursors import CursorCodec
from app.metrics import Metrics
from app.shared.cursor_key import shared_cursor_secret
from app.shared.entries import SharedEntry
from app.shared.fleet import CACHE_KINDS, Fleet
from app.shared.lease import SharedWatermark
from app.shared.tokens import SharedToken
from tests.support.redis_server import RedisServer

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
            while not evicted:
                await asyncio.sleep(0.01)
        assert evicted == [{"waltero:m"}]
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
