"""A throwaway ``redis-server`` for tests and benchmarks: a free port, a temp dir, no persistence.

The real server from Debian's ``redis-server`` package (``apt-get install -y redis-server``), never
a fake: the Redis ledger's Lua scripts must run where they will run in production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

try:  # the benchmarks use the helpers without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]


def _session_fixture(function: Callable[..., Any]) -> Any:
    """``pytest.fixture(scope="session")``, or the plain function where pytest is not installed."""
    return function if pytest is None else pytest.fixture(scope="session")(function)


__all__ = ["INSTALL_HINT", "RedisServer", "find_redis_server", "redis_url", "start_redis_server"]

INSTALL_HINT = "install Debian's package: apt-get install -y redis-server"


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    directory: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_redis_server(*, timeout: float = 15.0, attempts: int = 3) -> RedisServer:
    """Start ``redis-server`` on a free loopback port and wait until it answers PING."""
    binary = find_redis_server()
    if binary is None:
        raise FileNotFoundError(f"redis-server not found on PATH; {INSTALL_HINT}")
    last_log = ""
    for _ in range(attempts):
        port = _free_port()  # another process may take it before the server binds: then retry
        directory = tempfile.mkdtemp(prefix="budgetguard-redis-")
        log = os.path.join(directory, "redis.log")
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
                "--daemonize",
                "no",
                "--logfile",
                log,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = RedisServer(process, port, directory)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _ping(port):
                return server
            time.sleep(0.05)
        try:
            with open(log, encoding="utf-8", errors="replace") as handle:
                last_log = handle.read()[-2000:]
        except OSError:
            last_log = ""
        server.stop()
    raise RuntimeError(
        f"redis-server did not start after {attempts} attempts; its log ended with:\n{last_log}"
    )


_shared: RedisServer | None = None
_users = 0


@_session_fixture
def redis_url() -> Iterator[str]:
    """The URL of a real redis-server started for this test session on a free port.

    Import it into a test module (``from _redis_server import redis_url``); every module that does
    shares one server, stopped when the last of them is done. Skipped with a clear message when
    ``redis-server`` is not installed, except under CI (``CI`` set), where that fails the run.
    """
    global _shared, _users
    if find_redis_server() is None:
        message = f"redis-server is not installed; {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if _shared is None:
        _shared = start_redis_server()
    _users += 1
    try:
        yield _shared.url
    finally:
        _users -= 1
        if _users == 0:
            _shared.stop()
            _shared = None
