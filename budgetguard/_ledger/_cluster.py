"""Redis Cluster ledger: the Redis ledger's scripts and keys, spread over the slots of a cluster.

``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` for TLS) names
a few nodes of the cluster; the rest are discovered. Every key of a budget ``B`` carries the hash
tag ``{B}`` (``budgetguard:{B}:holds``, ``...:reserved``, ``...:total``, ``...:w:<window>:<bucket>``),
so each Lua script touches exactly one slot, and budgets spread over the primaries. Records, which
go to one stream on a single server, go to one stream per budget, ``budgetguard:{B}:records``
(each capped at about ``records_cap`` entries); ``records()`` finds the streams with ``SCAN ... TYPE
stream`` on every primary and merges them by time.

Failover. Redis replicates asynchronously, so a write a primary acknowledged just before it died
may be missing on the replica that replaces it. After each script the ledger sends ``WAIT`` on
the same connection for ``wait_replicas`` replicas (default 1; never more than the slot has) and
``WAIT_MS`` milliseconds, so a reserve or settle it returned from is on a replica too: when a
primary dies, no hold, spend or record it acknowledged is lost. (A replica that does not answer
in time is not waited for again for a few seconds, and the call goes on: the write is on the
primary.) While a dead primary's slots are unserved (Redis's ``cluster-node-timeout`` plus an
election: about 2 s with a 1 s node timeout, 15 to 20 s with Redis's default of 15 s) an operation
on them is retried, with the topology refreshed, for up to ``failover_wait`` seconds (default 10);
every script is idempotent (a hold id is applied once), so a retry whose first attempt did reach
the old primary counts once. If the slots are still unserved after ``failover_wait``, the
fail-open/closed rule decides: fail-closed (the default) raises ``StoreError`` (the call is not
sent; a settle's error is raised after the other budgets recorded the call), fail-open grants the
reservation locally with a warning and warns that a settle was not recorded.

A hold in flight when its primary dies is on the replica (it was acknowledged by ``WAIT``), so it
keeps counting, and its settle, retried through the gap, replaces it with the spend as usual.
With ``wait_replicas=0`` a hold written in the last moments may be lost: it then stops counting
at once instead of at its TTL (the cap may be passed by that much while it is in flight), and its
settle still counts the spend (an unknown hold is settled all the same).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from budgetguard._errors import ConfigError
from budgetguard._ledger._base import SpendRecord
from budgetguard._ledger._codec import record_from_fields
from budgetguard._ledger._redis import RedisLedger, _import_redis, redact_url

__all__ = ["RedisClusterLedger"]

#: How long WAIT blocks for replicas' acknowledgements before the call goes on without them.
WAIT_MS = 500
# A node whose replicas did not acknowledge in time is not waited for again for this long.
_DEGRADED_FOR = 5.0
# The topology is fetched again at most this often while a slot is unserved.
_REFRESH_EVERY = 0.2
_MAX_REDIRECTS = 16
_GLOB_SPECIAL = "*?[]\\"


def _parse_nodes(uri: str) -> tuple[str, str | None, str | None, list[tuple[str, int]]]:
    """(scheme, username, password, [(host, port), ...]) of a cluster URI; ConfigError if malformed."""
    scheme, sep, rest = uri.partition("://")
    shape = f"expected {scheme.lower()}://host:port[,host:port...]"
    if not sep:
        raise ConfigError(f"invalid Redis Cluster store URI {uri!r}: {shape}")
    location, _, path = rest.partition("/")
    if "?" in location or "#" in location or path.strip("/") not in ("", "0"):
        raise ConfigError(
            f"invalid Redis Cluster store URI {uri!r}: a cluster has only database 0 and this URI "
            f"takes no query string; {shape}"
        )
    auth, at, hosts = location.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, tail = item[1:].partition("]")
            port_text = tail[1:] if tail.startswith(":") else ""
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not host:
            raise ConfigError(f"invalid Redis Cluster store URI {uri!r}: a node without a host; {shape}")
        if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
            raise ConfigError(f"invalid Redis Cluster store URI {uri!r}: bad port {port_text!r}; {shape}")
        nodes.append((host, int(port_text) if port_text else 6379))
    if not nodes:
        raise ConfigError(f"invalid Redis Cluster store URI {uri!r}: no node; {shape}")
    return scheme.lower(), username, password, nodes


class RedisClusterLedger(RedisLedger):
    """A ledger in a Redis Cluster (``redis+cluster://host:port,host:port``, ``rediss+cluster://``
    for TLS).

    Options by URI: those of ``RedisLedger`` (``prefix``, ``fail_open``, ``records_cap``, per
    budget stream here, ``socket_timeout``) and ``wait_replicas`` (replica acknowledgements each
    write waits for, default 1; 0 never waits), ``failover_wait`` (seconds an operation on an
    unserved slot is retried, default 10).
    """

    schemes = ("redis+cluster", "rediss+cluster")
    uri_examples = ("redis+cluster://host:6379,host:6380",)
    uri_options = RedisLedger.uri_options | {"wait_replicas", "failover_wait"}

    @classmethod
    def check_uri(cls, uri: str) -> str:
        _parse_nodes(uri)
        return uri.rstrip("/")

    @classmethod
    def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> RedisClusterLedger:
        return cls(cls.check_uri(uri), clock=clock, **options)

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        prefix: str = "budgetguard:",
        fail_open: bool = False,
        records_cap: int = 100_000,
        socket_timeout: float = 5.0,
        wait_replicas: int = 1,
        failover_wait: float = 10.0,
        client: Any = None,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigError(f"the prefix of a Redis Cluster ledger cannot contain braces: {prefix!r}")
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int) or wait_replicas < 0:
            raise ConfigError(f"wait_replicas must be a whole number >= 0, got {wait_replicas!r}")
        if isinstance(failover_wait, bool) or not isinstance(failover_wait, int | float) or failover_wait < 0:
            raise ConfigError(f"failover_wait must be a number of seconds >= 0, got {failover_wait!r}")
        self.wait_replicas = wait_replicas
        self.failover_wait = float(failover_wait)
        redis = _import_redis()
        exceptions = redis.exceptions
        self._moved: type[BaseException] = exceptions.MovedError
        self._ask: type[BaseException] = exceptions.AskError
        self._response_error: type[BaseException] = exceptions.ResponseError
        # Errors that mean "this slot has no primary that answers right now": wait, refresh, retry.
        self._unserved: tuple[type[BaseException], ...] = (
            exceptions.ConnectionError,
            exceptions.TimeoutError,
            exceptions.ClusterDownError,
            exceptions.TryAgainError,
            exceptions.ReadOnlyError,
            exceptions.SlotNotCoveredError,
        )
        self._refresh_lock = threading.Lock()
        self._next_refresh = 0.0
        self._degraded: dict[str, float] = {}
        self._key_slot: Callable[[bytes], int] = redis.crc.key_slot
        super().__init__(
            url,
            clock=clock,
            prefix=prefix,
            fail_open=fail_open,
            records_cap=records_cap,
            socket_timeout=socket_timeout,
            client=client,
        )

    def _connect(self, url: str, socket_timeout: float) -> Any:
        redis = _import_redis()
        from redis.cluster import ClusterNode, RedisCluster

        scheme, username, password, nodes = _parse_nodes(url)
        options: dict[str, Any] = {
            "startup_nodes": [ClusterNode(host, port) for host, port in nodes],  # type: ignore[no-untyped-call]
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "decode_responses": True,
        }
        if username:
            options["username"] = username
        if password:
            options["password"] = password
        if scheme.startswith("rediss"):
            options["ssl"] = True
        try:
            return RedisCluster(**options)
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException):
            # The cluster does not answer now: each operation tries again, and fails (open or
            # closed) as an operation on a single server that does not answer would.
            return _Unconnected(lambda: RedisCluster(**options))

    # -- plumbing ---------------------------------------------------------------------------

    def _records_key(self, budget: str) -> str:
        """A stream per budget, in the budget's slot: no script crosses slots."""
        return self._key(budget, "records")

    def _cluster(self) -> Any:
        client = self._client
        if isinstance(client, _Unconnected):
            self._client = client = client.connect()
        return client

    def _refresh(self, *, force: bool = False) -> None:
        """Fetch the slot map again (at most every ``_REFRESH_EVERY`` seconds unless forced)."""
        now = time.monotonic()
        with self._refresh_lock:
            if not force and now < self._next_refresh:
                return
            self._next_refresh = now + _REFRESH_EVERY
        with contextlib.suppress(*self._redis_errors):
            self._cluster().nodes_manager.initialize()

    def _run(self, name: str, keys: Sequence[str], args: Sequence[object]) -> Any:
        """EVALSHA on the primary of the keys' slot (then WAIT for replicas on the same
        connection), following the cluster through redirections and failovers."""
        script = self._scripts[name]
        slot = self._key_slot(keys[0].encode("utf-8"))
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        deadline: float | None = None
        redirects = 0
        ask_node: Any = None
        while True:
            node: Any = None
            try:
                client = self._cluster()
                if ask_node is not None:
                    node, ask_node = ask_node, None
                    commands: list[tuple[object, ...]] = [("ASKING",), evalsha]
                    replicas = 0
                else:
                    nodes = client.nodes_manager.slots_cache.get(slot)
                    if not nodes:
                        raise _import_redis().exceptions.SlotNotCoveredError(f"slot {slot} is not covered")
                    node, replicas = nodes[0], len(nodes) - 1
                    commands = [evalsha]
                waiting = min(self.wait_replicas, replicas)
                if waiting and self._degraded.get(node.name, 0.0) > time.monotonic():
                    waiting = 0
                if waiting:
                    commands.append(("WAIT", waiting, WAIT_MS))
                replies = self._send(client.get_redis_connection(node), commands)
                reply = replies[len(commands) - (2 if waiting else 1)]
                if isinstance(reply, BaseException):
                    raise reply
                acked = replies[-1]
                if waiting and (isinstance(acked, BaseException) or int(acked) < waiting):
                    # A replica did not acknowledge in time: go on, and stop waiting on it for a
                    # while (it may be dead; the topology will say so).
                    self._degraded[node.name] = time.monotonic() + _DEGRADED_FOR
                    self._refresh()
                return reply
            except self._noscript:
                # This node does not know the script (a new primary, a restart): load it, retry.
                redirects += 1
                if redirects > _MAX_REDIRECTS:
                    raise
                self._send(self._cluster().get_redis_connection(node), [("SCRIPT", "LOAD", script.source)])
            except self._moved:
                redirects += 1
                if redirects > _MAX_REDIRECTS:
                    raise
                self._refresh(force=True)
            except self._ask as exc:
                redirects += 1
                if redirects > _MAX_REDIRECTS:
                    raise
                client = self._cluster()
                ask_node = client.nodes_manager.get_node(host=exc.host, port=exc.port)  # type: ignore[attr-defined]
                if ask_node is None:
                    self._refresh(force=True)
            except self._unserved:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.failover_wait
                if now >= deadline:
                    raise
                if node is not None and node.redis_connection is not None:
                    # Idle connections to a node that failed are dropped (ones in use by other
                    # threads are theirs: they find out on their own).
                    with contextlib.suppress(Exception):
                        node.redis_connection.connection_pool.disconnect(inuse_connections=False)
                time.sleep(min(0.1, max(0.0, deadline - now)))
                self._refresh()

    def _send(self, redis_node: Any, commands: Sequence[tuple[object, ...]]) -> list[Any]:
        """Send ``commands`` on one connection of ``redis_node`` (so WAIT follows the write it
        waits for) and return each reply, an error reply as its exception."""
        pool = redis_node.connection_pool
        try:
            connection = pool.get_connection()
        except TypeError:  # redis-py < 5.3 names the command
            connection = pool.get_connection(str(commands[0][0]))
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            for command in commands:
                try:
                    replies.append(redis_node.parse_response(connection, str(command[0])))
                except self._response_error as exc:
                    replies.append(exc)
            return replies
        except (OSError, ValueError) as exc:
            # The socket failed under the parser (closed, reset): the node did not answer.
            connection.disconnect()
            where = f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"
            raise _import_redis().exceptions.ConnectionError(f"connection to {where} failed: {exc}") from exc
        except BaseException:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)

    # -- records ----------------------------------------------------------------------------

    def records(
        self, *, budget: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[SpendRecord]:
        """Every budget's records, from every stream on every primary, oldest first."""
        deadline = time.monotonic() + self.failover_wait
        while True:
            try:
                return self._read_records(budget, since, until)
            except self._unserved as exc:
                if time.monotonic() >= deadline:
                    raise self._store_error("reading records", exc) from exc
                time.sleep(0.1)
                self._refresh()
            except self._redis_errors as exc:
                raise self._store_error("reading records", exc) from exc

    def _read_records(
        self, budget: str | None, since: float | None, until: float | None
    ) -> list[SpendRecord]:
        client = self._cluster()
        pattern = "".join("\\" + c if c in _GLOB_SPECIAL else c for c in self.prefix) + "{*}:records"
        streams: set[str] = set()
        for node in client.get_primaries():
            connection = client.get_redis_connection(node)
            streams.update(connection.scan_iter(match=pattern, count=1000, _type="stream"))
        out: list[SpendRecord] = []
        for stream in sorted(streams):
            start = "-"
            while True:
                page = client.xrange(stream, min=start, max="+", count=1000)
                for _entry_id, data in page:
                    record = record_from_fields(data)
                    if (
                        (budget is None or record.budget == budget)
                        and (since is None or record.time >= since)
                        and (until is None or record.time < until)
                    ):
                        out.append(record)
                if len(page) < 1000:
                    break
                start = "(" + page[-1][0]
        out.sort(key=lambda r: r.time)
        return out

    def close(self) -> None:
        if not isinstance(self._client, _Unconnected):
            super().close()

    def __repr__(self) -> str:
        return f"RedisClusterLedger({redact_url(self.url)!r})"


class _Unconnected:
    """A cluster client not created yet (the cluster was unreachable when a fail-open ledger opened)."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self.connect = connect
