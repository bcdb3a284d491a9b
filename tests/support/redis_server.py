"""Real Redis deployments on 127.0.0.1 for tests, started on free ports and stopped by their PIDs.

- `RedisServer`: one `redis-server`. `kill()`, `restart()`, `pause()` and `resume()` let a test cut
  Redis off, bring it back on the same port, or make it hang (SIGSTOP: every command times out).
- `RedisClusterNodes`: a 3-node Redis Cluster (`--cluster-enabled yes`, then `redis-cli --cluster
  create`), every slot covered, no replicas.
- `RedisSentinelSet`: a primary, a replica and one `redis-server --sentinel` watching them as
  `mymaster` (quorum 1, so a test can force a failover with `SENTINEL FAILOVER`).
- `RedisDeployment`: any of the three behind one shape (the settings a replica needs), for tests
  parametrized over `FACADE_REDIS_MODE`.

The binaries come from the Debian package `redis-server` (`make test` installs it). Without them the
tests fail saying so; they never skip. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.servers import free_port

MISSING = "redis-server is not installed: install the Debian package redis-server (apt-get install redis-server)"


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if found is None:
        pytest.fail(MISSING, pytrace=False)
    return found


class RedisServer:
    def __init__(
        self, workdir: Path, *, password: str | None = None, port: int | None = None, args: list[str] | None = None
    ) -> None:
        self.binary = redis_server_binary()
        self.args = list(args or [])
        self.workdir = workdir
        self.password = password
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary,
            *self.args,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"redis-server exited with {code}")
            if self._answers_as_ours():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not come up")

    def _answers_as_ours(self) -> bool:
        """Whether the server on our port is up and is our process (`INFO server`'s `process_id`): a
        free port picked a moment ago may have been taken meanwhile by another test's server, whose
        PONG alone would pass for ours while ours exits, unable to bind."""
        assert self.proc is not None
        auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
        seen = b""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(auth + b"INFO server\r\n")
                while b"process_id:" not in seen or not seen.endswith(b"\r\n"):
                    chunk = s.recv(65536)
                    if not chunk or len(seen) > 1 << 20:
                        break
                    seen += chunk
                    if seen.startswith(b"-") and seen.endswith(b"\r\n"):
                        break  # refused (an ACL without a default user): up, whoever it is
        except OSError:
            if not seen:
                return False
        if b"process_id:" in seen:
            owner = seen.split(b"process_id:", 1)[1].split(b"\r\n", 1)[0]
            return owner.strip() == str(self.proc.pid).encode()
        # A server that refuses INFO to strangers: ours if it answered and ours still runs a moment later
        # (a server that could not bind its port exits at once).
        if not seen.startswith((b"-", b"+")):
            return False
        time.sleep(0.1)
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL by PID: connections drop at once, nothing is saved."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused server must be able to die
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the socket stays open and nothing answers (a Redis that is "slow")."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def running_redis(workdir: Path, *, password: str | None = None) -> Iterator[RedisServer]:
    server = RedisServer(workdir, password=password)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def redis_cli_binary() -> str:
    found = shutil.which("redis-cli") or ("/usr/bin/redis-cli" if os.access("/usr/bin/redis-cli", os.X_OK) else None)
    if found is None:
        pytest.fail(MISSING.replace("redis-server is", "redis-cli is"), pytrace=False)
    return found


def _command(port: int, *args: str, password: str | None = None, timeout: float = 10) -> str:
    argv = [redis_cli_binary(), "-h", "127.0.0.1", "-p", str(port)]
    if password:
        argv += ["--no-auth-warning", "-a", password]
    done = subprocess.run([*argv, *args], capture_output=True, timeout=timeout, check=False)
    return done.stdout.decode(errors="replace")


def _wait_for(what: str, check: Callable[[], bool], *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", port + 10000))
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterNodes:
    """Three primaries sharing the 16384 slots; `url` names one node (the client finds the others)."""

    def __init__(self, workdir: Path, *, password: str | None = None) -> None:
        self.password = password
        self.nodes = [
            RedisServer(
                workdir / f"node{i}",
                password=password,
                port=free_cluster_port(),
                args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
            )
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        created = _command(
            self.nodes[0].port,
            "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas", "0", "--cluster-yes",
            password=self.password, timeout=60,
        )  # fmt: skip
        if "All 16384 slots covered" not in created:
            raise RuntimeError(f"redis-cli --cluster create failed: {created[-500:]}")
        for node in self.nodes:
            _wait_for(
                "cluster_state:ok",
                lambda n=node: "cluster_state:ok" in _command(n.port, "cluster", "info", password=self.password),
            )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


SENTINEL_CONF = """port {port}
bind 127.0.0.1
daemonize no
dir {dir}
sentinel monitor {service} 127.0.0.1 {primary} 1
sentinel down-after-milliseconds {service} 1000
sentinel failover-timeout {service} 5000
sentinel parallel-syncs {service} 1
"""


class RedisSentinelSet:
    """A primary and its replica watched by one Sentinel (`sentinels` is `host:port`)."""

    def __init__(self, workdir: Path, *, password: str | None = None, service: str = "mymaster") -> None:
        self.workdir = workdir
        self.password = password
        self.service = service
        self.primary = RedisServer(workdir / "primary", password=password)
        self.replica = RedisServer(workdir / "replica", password=password)
        self.sentinel_port = free_port()
        self.sentinel_proc: subprocess.Popen[bytes] | None = None

    @property
    def sentinels(self) -> str:
        return f"127.0.0.1:{self.sentinel_port}"

    @property
    def url(self) -> str:
        """The data nodes' credentials and database; the host is the service name (Sentinel finds it)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.service}/0"

    def start(self) -> None:
        self.primary.start()
        self.replica.args = ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.replica.start()
        _wait_for(
            "the replica to sync",
            lambda: (
                "master_link_status:up" in _command(self.replica.port, "info", "replication", password=self.password)
            ),
        )
        conf = self.workdir / "sentinel.conf"
        text = SENTINEL_CONF.format(
            port=self.sentinel_port, dir=self.workdir, service=self.service, primary=self.primary.port
        )
        if self.password:
            text += f"sentinel auth-pass {self.service} {self.password}\n"
        conf.write_text(text)
        self.sentinel_proc = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for("the sentinel to see the replica", lambda: self.replicas_known() >= 1)

    def replicas_known(self) -> int:
        out = _command(self.sentinel_port, "sentinel", "master", self.service)
        lines = out.splitlines()
        for i, line in enumerate(lines[:-1]):
            if line == "num-slaves":
                return int(lines[i + 1])
        return 0

    def primary_port(self) -> int:
        out = _command(self.sentinel_port, "sentinel", "get-master-addr-by-name", self.service).split()
        return int(out[1]) if len(out) == 2 else 0

    def failover(self) -> int:
        """Promote the replica (SENTINEL FAILOVER); the new primary's port once Sentinel reports it."""
        before = self.primary_port()
        _command(self.sentinel_port, "sentinel", "failover", self.service)
        _wait_for("the failover", lambda: self.primary_port() not in (0, before))
        return self.primary_port()

    def stop(self) -> None:
        if self.sentinel_proc is not None:
            _stop_process(self.sentinel_proc)
            self.sentinel_proc = None
        self.replica.stop()
        self.primary.stop()


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


MODES = ("standalone", "cluster", "sentinel")


@dataclass
class RedisDeployment:
    """One Redis deployment of a given `FACADE_REDIS_MODE`, with the settings a replica needs."""

    mode: str
    url: str
    sentinels: str = ""
    stop: Callable[[], None] = field(default=lambda: None, repr=False)
    server: RedisServer | None = None
    """The standalone server (standalone mode only)."""
    cluster: RedisClusterNodes | None = None
    sentinel_set: RedisSentinelSet | None = None

    @property
    def settings(self) -> dict[str, str]:
        values = {"FACADE_REDIS_URL": self.url, "FACADE_REDIS_MODE": self.mode}
        if self.sentinels:
            values["FACADE_REDIS_SENTINELS"] = self.sentinels
        return values

    def direct_url(self) -> str:
        """A URL of a data node a test can read with a plain client (the primary, node 0)."""
        if self.sentinel_set is not None:
            return RedisServer(self.sentinel_set.workdir, port=self.sentinel_set.primary_port()).url
        return self.url


def start_deployment(mode: str, workdir: Path, *, password: str | None = None) -> RedisDeployment:
    """Start a deployment of `mode` (see `MODES`); call its `stop()` after."""
    if mode == "standalone":
        server = RedisServer(workdir / "standalone", password=password)
        server.start()
        return RedisDeployment(mode, server.url, stop=server.stop, server=server)
    if mode == "cluster":
        cluster = RedisClusterNodes(workdir / "cluster", password=password)
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        return RedisDeployment(mode, cluster.url, stop=cluster.stop, cluster=cluster)
    if mode == "sentinel":
        sentinel_set = RedisSentinelSet(workdir / "sentinel", password=password)
        try:
            sentinel_set.start()
        except BaseException:
            sentinel_set.stop()
            raise
        return RedisDeployment(
            mode, sentinel_set.url, sentinels=sentinel_set.sentinels, stop=sentinel_set.stop, sentinel_set=sentinel_set
        )
    raise ValueError(mode)


@pytest.fixture(params=MODES)
def redis_deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisDeployment]:
    """A real Redis of each `FACADE_REDIS_MODE`, one per test."""
    deployment = start_deployment(str(request.param), tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="session")
def shared_deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RedisDeployment]]:
    """A Redis Cluster and a Sentinel set started once for the session (on first use), for tests
    that separate themselves by key prefix; stopped at the end."""
    started: dict[str, RedisDeployment] = {}

    class Lazy(dict[str, RedisDeployment]):
        def __missing__(self, mode: str) -> RedisDeployment:
            started[mode] = self[mode] = start_deployment(mode, tmp_path_factory.mktemp(f"redis-{mode}"))
            return started[mode]

    try:
        yield Lazy()
    finally:
        for deployment in started.values():
            deployment.stop()


@pytest.fixture(params=MODES)
def redis_mode(request: pytest.FixtureRequest) -> str:
    """`FACADE_REDIS_MODE` of the test (parametrize `redis_mode` directly to run one mode only)."""
    return str(request.param)


@pytest.fixture
def any_redis(
    redis_mode: str, request: pytest.FixtureRequest, shared_deployments: dict[str, RedisDeployment]
) -> RedisDeployment:
    """A real Redis of `redis_mode`: the test's own standalone server (`redis_server`), or the
    session's cluster or Sentinel set (tests separate themselves with a key prefix of their own)."""
    if redis_mode == "standalone":
        server: RedisServer = request.getfixturevalue("redis_server")
        return RedisDeployment("standalone", server.url, server=server)
    return shared_deployments[redis_mode]
