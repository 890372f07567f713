"""A throwaway Redis Cluster for tests and benchmarks: three primaries and three replicas on loopback.

Six real ``redis-server`` processes from Debian's package in cluster mode (``--cluster-enabled
yes``, no persistence) on free ports whose cluster-bus ports (port + 10000) are free too, joined
with ``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes``. The node timeout is one
second, so a primary that dies is replaced by its replica within a few seconds.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from _redis_server import INSTALL_HINT, find_redis_server

try:  # the benchmarks use the helpers without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]


def _session_fixture(function: Callable[..., Any]) -> Any:
    """``pytest.fixture(scope="session")``, or the plain function where pytest is not installed."""
    return function if pytest is None else pytest.fixture(scope="session")(function)


__all__ = ["RedisCluster", "find_redis_cli", "redis_cluster", "redis_cluster_url", "start_redis_cluster"]

NODE_TIMEOUT_MS = 1000


def find_redis_cli() -> str | None:
    found = shutil.which("redis-cli")
    if found:
        return found
    server = find_redis_server()
    if server is not None:
        sibling = os.path.join(os.path.dirname(server), "redis-cli")
        if os.access(sibling, os.X_OK):
            return sibling
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` ports whose cluster-bus ports (port + 10000) are free as well."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 < 65536 and port not in ports and _port_free(port + 10000):
            ports.append(port)
    return ports


def _client(port: int) -> Any:
    import redis

    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
    )


def _ask(port: int, *args: str) -> Any:
    """One command to one node; None when it does not answer."""
    import redis

    client = _client(port)
    try:
        return client.execute_command(*args)
    except (redis.exceptions.RedisError, OSError):
        return None
    finally:
        client.close()


def _info(port: int, section: str) -> dict[str, str]:
    text = _ask(port, "CLUSTER", "INFO") if section == "cluster" else _ask(port, "INFO", section)
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    out: dict[str, str] = {}
    for line in str(text or "").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


@dataclass
class RedisCluster:
    """Six nodes; ``processes[port]`` is each node's server process."""

    ports: list[int]
    directory: str
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:3])

    def role(self, port: int) -> str:
        return _info(port, "replication").get("role", "")

    def primaries(self) -> list[int]:
        return [port for port in self.ports if self.running(port) and self.role(port) == "master"]

    def running(self, port: int) -> bool:
        process = self.processes.get(port)
        return process is not None and process.poll() is None

    def primary_of(self, key: str) -> int:
        """The port of the primary that serves ``key`` now."""
        for port in self.ports:
            if not self.running(port):
                continue
            reply = _ask(port, "CLUSTER", "KEYSLOT", key)
            if reply is not None:
                slot = int(reply)
                break
        else:
            raise RuntimeError("no cluster node answers")
        for port in self.primaries():
            if _owns_slot(port, slot):
                return port
        raise RuntimeError(f"no primary serves slot {slot}")

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crash would."""
        process = self.processes[port]
        process.kill()
        process.wait(timeout=10)

    def wait_failover(self, *, timeout: float = 30.0) -> None:
        """Until three running nodes are primaries: a killed primary's replica has taken over."""
        _wait(lambda: len(self.primaries()) == 3, timeout, "a replica to replace the dead primary")

    def restart(self, port: int, *, timeout: float = 30.0) -> None:
        """Start a killed node again on its port and config file: it rejoins as a replica.

        Not before its replica has replaced it: a primary without persistence that came back
        first would come back empty, and its replica would copy the emptiness."""
        self.wait_failover(timeout=timeout)
        self.processes[port] = _spawn(port, self.directory)
        _wait(lambda: bool(_ask(port, "PING")), timeout, f"node {port} to answer")
        self.wait_healthy(timeout=timeout)

    def wait_healthy(self, *, timeout: float = 30.0) -> None:
        """Until every running node sees the cluster ok with three primaries, every replica's link
        is up, and every node's CLUSTER SLOTS lists a replica for each primary whose replica runs
        (clients learn the replicas from it)."""

        def healthy() -> bool:
            running = [port for port in self.ports if self.running(port)]
            if not all(_info(port, "cluster").get("cluster_state") == "ok" for port in running):
                return False
            primaries = [port for port in running if self.role(port) == "master"]
            replicas = [port for port in running if self.role(port) == "slave"]
            if len(primaries) != 3 or len(primaries) + len(replicas) != len(running):
                return False
            if not all(_info(port, "replication").get("master_link_status") == "up" for port in replicas):
                return False
            for port in primaries:
                _touch(port)  # a replica is listed once its replication offset is known to be nonzero
            for port in running:
                ranges = _ask(port, "CLUSTER", "SLOTS") or []
                listed = sum(len(entry) - 3 for entry in ranges)
                if len(ranges) != 3 or listed != len(replicas):
                    return False
            return True

        _wait(healthy, timeout, "the cluster to be healthy")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _owns_slot(port: int, slot: int) -> bool:
    """Whether the node on ``port`` serves ``slot`` (per its own CLUSTER NODES line)."""
    table = _ask(port, "CLUSTER", "NODES")
    for line in str(table or "").splitlines():
        parts = line.split()
        if len(parts) < 8 or "myself" not in parts[2]:
            continue
        for piece in parts[8:]:
            if piece.startswith("["):
                continue
            low, _, high = piece.partition("-")
            if int(low) <= slot <= int(high or low):
                return True
    return False


def _touch(port: int) -> None:
    """A write on the primary ``port`` (a short-lived key in one of its slots)."""
    from redis.crc import key_slot

    for index in range(10_000):
        key = f"budgetguard-touch:{{{index}}}"
        if _owns_slot(port, key_slot(key.encode())):
            _ask(port, "SET", key, "1", "PX", "2000")
            return


def _spawn(port: int, directory: str) -> subprocess.Popen[bytes]:
    binary = find_redis_server()
    assert binary is not None
    return subprocess.Popen(
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", os.path.join(directory, f"nodes-{port}.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--appendonly", "no",
            "--repl-diskless-sync-delay", "0",
            "--save", "",
            "--dir", directory,
            "--dbfilename", f"dump-{port}.rdb",
            "--daemonize", "no",
            "--logfile", os.path.join(directory, f"redis-{port}.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_redis_cluster(*, timeout: float = 60.0, attempts: int = 3) -> RedisCluster:
    """Start six cluster-mode nodes on free loopback ports and join them: 3 primaries + 3 replicas."""
    if find_redis_server() is None:
        raise FileNotFoundError(f"redis-server not found on PATH; {INSTALL_HINT}")
    cli = find_redis_cli()
    if cli is None:
        raise FileNotFoundError(f"redis-cli not found on PATH; {INSTALL_HINT}")
    last_error = ""
    for _ in range(attempts):
        directory = tempfile.mkdtemp(prefix="budgetguard-cluster-")
        cluster = RedisCluster(_free_ports(6), directory)
        try:
            for port in cluster.ports:
                cluster.processes[port] = _spawn(port, directory)
            for port in cluster.ports:
                _wait(
                    lambda c=cluster, p=port: c.running(p) and bool(_ask(p, "PING")),  # type: ignore[misc]
                    15,
                    f"node {port} to answer",
                )
            created = subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports),
                 "--cluster-replicas", "1", "--cluster-yes"],
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
            cluster.wait_healthy(timeout=timeout)
            return cluster
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
            last_error = str(exc)
            logs = []
            for port in cluster.ports:
                try:
                    with open(os.path.join(directory, f"redis-{port}.log"), encoding="utf-8") as handle:
                        logs.append(f"-- {port}\n{handle.read()[-800:]}")
                except OSError:
                    pass
            last_error += "\n" + "\n".join(logs)
            cluster.stop()
    raise RuntimeError(f"the Redis Cluster did not start after {attempts} attempts: {last_error}")


def _skip_or_fail_without_redis() -> None:
    if find_redis_server() is None or find_redis_cli() is None:
        message = f"redis-server / redis-cli are not installed; {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


_shared: RedisCluster | None = None
_users = 0


@_session_fixture
def redis_cluster() -> Iterator[RedisCluster]:
    """A real Redis Cluster started for this test session; shared by every module that imports it.

    Tests that kill a node must bring it back (``cluster.restart(port)``) or use a cluster of their
    own (``start_redis_cluster()``).
    """
    global _shared, _users
    _skip_or_fail_without_redis()
    if _shared is None:
        _shared = start_redis_cluster()
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            _shared.stop()
            _shared = None


@_session_fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """The ``redis+cluster://`` URI of the session's cluster."""
    return redis_cluster.url
