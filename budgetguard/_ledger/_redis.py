"""Redis ledger: budgets shared by processes on many hosts.

Each operation is one Lua script (``budgetguard/_ledger/lua/*.lua``, sent with EVALSHA and
loaded again when the server answers NOSCRIPT), so a cap check and the hold it grants cannot
interleave with another client. Keys, for a budget ``B`` under the prefix (default
``budgetguard:``): ``{B}:holds`` (hold id -> amount, or ``done``), ``{B}:expiry`` (hold id ->
expiry), ``{B}:reserved`` and ``{B}:total`` (hashes ``p``/``t``/``r``: picodollars, tokens,
requests) and ``{B}:w:<window>:<bucket>`` (a window bucket's spend, with a Redis TTL of the
window's retention so old buckets delete themselves). Holds expire by the ledger's clock: every
reserve purges the budget's expired holds, so a crashed process's reservations stop counting
after their TTL. Records go to one stream, ``records``, capped at about ``records_cap`` entries
(``XADD MAXLEN ~``: the oldest are trimmed). ``renew_lease`` (``lua/lease.lua``) is the store's half
of the lease protocol (``budgetguard._ledger._lease``): a lease is a hold like any other.

Times are the ledger's clock (``time.time`` unless injected), so the hosts sharing a Redis must
have synchronised clocks (NTP), as calendar windows need anyway. This class talks to one Redis
server (or a primary with replicas); ``RedisClusterLedger`` (``redis+cluster://``, in
``_cluster``) keeps the same keys in a Redis Cluster, with one records stream per budget. Every
script is passed only the keys it uses, all under the budget's hash tag. Caps are compared in
the scripts as Lua numbers: exact below 2^53 picodollars (about $9,007 per budget), within a
few picodollars above; the stored counters are 64-bit integers and always exact.

A store error is raised as ``StoreError`` naming the URI (fail-closed, the default). With
``fail_open=True`` a reservation the store cannot answer is granted locally with a
``BudgetGuardWarning``, and a settle the store cannot record is warned about, not raised.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from budgetguard._errors import BudgetGuardWarning, ConfigError, StoreError
from budgetguard._ledger._base import (
    DONE_GRACE,
    Amount,
    Hold,
    LeaseGrant,
    LeaseRenewal,
    Ledger,
    LimitKind,
    Limits,
    Refused,
    Snapshot,
    SpendRecord,
    Window,
    _check_ttl,
)
from budgetguard._ledger._codec import record_field_pairs, record_from_fields

__all__ = ["RedisLedger", "redact_url"]

_KINDS: tuple[LimitKind, ...] = ("usd", "tokens", "requests")
_LOCAL_PREFIX = "local-"  # holds granted without the store (fail-open)


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise ImportError(
            "the Redis ledger needs the redis package: pip install 'budgetguard-sdk[redis]'"
        ) from exc
    return redis


@dataclass(frozen=True, slots=True)
class _Script:
    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str) -> _Script:
        folder = resources.files("budgetguard._ledger").joinpath("lua")
        # Every script starts with the shared hold bookkeeping (Lua scripts cannot import).
        source = (
            folder.joinpath("_holds.lua").read_text("utf-8")
            + "\n"
            + folder.joinpath(f"{name}.lua").read_text("utf-8")
        )
        return cls(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


class RedisLedger(Ledger):
    """A ledger in a Redis server (``redis://[:password@]host:port/db`` or ``rediss://`` for TLS).

    Options by URI: ``prefix``, ``fail_open``, ``records_cap``, ``socket_timeout``.
    """

    schemes = ("redis", "rediss")
    uri_examples = ("redis://host:6379/0",)
    uri_options = frozenset({"prefix", "fail_open", "records_cap", "socket_timeout"})
    supports_leases = True
    _SCRIPTS = ("reserve", "settle", "release", "snapshot", "lease")

    @classmethod
    def check_uri(cls, uri: str) -> str:
        try:
            parts = urlsplit(uri)
            port = parts.port
            db = parts.path.strip("/")
        except ValueError as exc:
            raise ConfigError(f"invalid Redis store URI {uri!r}: {exc}") from exc
        if not parts.hostname:
            raise ConfigError(f"invalid Redis store URI {uri!r}: expected redis://host:port/db")
        if db and not db.isdigit():
            raise ConfigError(
                f"invalid Redis store URI {uri!r}: the database must be a number "
                f"(redis://host:{port or 6379}/0)"
            )
        return uri

    @classmethod
    def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> RedisLedger:
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
        client: Any = None,
    ) -> None:
        redis = _import_redis()
        self.clock = clock
        self.url = url
        self.prefix = prefix
        self.fail_open = fail_open
        self.records_cap = records_cap
        self._redis_errors: tuple[type[BaseException], ...] = (
            redis.exceptions.RedisError,
            redis.exceptions.RedisClusterException,
        )
        self._noscript: type[BaseException] = redis.exceptions.NoScriptError
        self._client = client if client is not None else self._connect(url, socket_timeout)
        self._scripts = {name: _Script.load(name) for name in self._SCRIPTS}

    def _connect(self, url: str, socket_timeout: float) -> Any:
        return _import_redis().Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            decode_responses=True,
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _key(self, budget: str, suffix: str) -> str:
        # The braces are a hash tag: a budget's keys live in one cluster slot.
        return f"{self.prefix}{{{budget}}}:{suffix}"

    def _run(self, name: str, keys: Sequence[str], args: Sequence[object]) -> Any:
        script = self._scripts[name]
        try:
            return self._client.evalsha(script.sha, len(keys), *keys, *args)
        except self._noscript:
            # The server forgot the script (restart, SCRIPT FLUSH): load it and try once more.
            self._client.script_load(script.source)
            return self._client.evalsha(script.sha, len(keys), *keys, *args)

    def _store_error(self, action: str, exc: BaseException) -> StoreError:
        return StoreError(f"Redis ledger {redact_url(self.url)}: {action} failed: {exc}")

    def _records_key(self, budget: str) -> str:
        """The stream a budget's records go to: one for the whole server."""
        return self.prefix + "records"

    @staticmethod
    def _record_fields(budget: str, actual: Amount, record: SpendRecord, at: float) -> list[str]:
        """A stream entry's fields: the ledger's budget and amount, then the record at time ``at``."""
        return [
            "ledger_budget",
            budget,
            "picos",
            str(actual.picos),
            "tokens",
            str(actual.tokens),
            "requests_amount",
            str(actual.requests),
            *record_field_pairs(record, at),
        ]

    def _counter_keys(self, budget: str, window: Window | None, now: float) -> list[str]:
        if window is None:
            return [self._key(budget, "total")]
        return [self._key(budget, f"w:{window.key}:{b}") for b in window.buckets(now)]

    def _hold_keys(self, budget: str) -> list[str]:
        return [self._key(budget, "holds"), self._key(budget, "expiry"), self._key(budget, "reserved")]

    @staticmethod
    def _amounts(raw: Sequence[Any]) -> list[Amount]:
        values = [int(v) for v in raw]
        return [Amount(*values[i : i + 3]) for i in range(0, len(values), 3)]

    @staticmethod
    def _sum(amounts: Sequence[Amount]) -> Amount:
        total = Amount()
        for amount in amounts:
            total = total + amount
        return total

    # -- the Ledger interface ----------------------------------------------------------------

    def reserve(
        self, budget: str, amount: Amount, limits: Limits, window: Window | None, *, ttl: float = 600.0
    ) -> Hold | Refused:
        _check_ttl(ttl)
        now = self.clock()
        hold = Hold(os.urandom(12).hex(), budget, amount, now + ttl, window)
        counters = [] if limits.unlimited else self._counter_keys(budget, window, now)
        caps = ["" if limits.get(kind) is None else str(limits.get(kind)) for kind in _KINDS]
        try:
            reply = self._run(
                "reserve",
                [*self._hold_keys(budget), *counters],
                [
                    repr(now),
                    hold.id,
                    repr(hold.expires_at),
                    amount.picos,
                    amount.tokens,
                    amount.requests,
                    *caps,
                ],
            )
        except self._redis_errors as exc:
            if not self.fail_open:
                raise self._store_error(f"reserve for budget {budget!r}", exc) from exc
            warnings.warn(
                f"Redis ledger {redact_url(self.url)} is unavailable ({exc}); budget {budget!r} fails open: "
                "this call was allowed without checking the shared cap",
                BudgetGuardWarning,
                stacklevel=2,
            )
            return Hold(_LOCAL_PREFIX + hold.id, budget, amount, hold.expires_at, window)
        if int(reply[0]) == 1:
            return hold
        kind = _KINDS[int(reply[1]) - 1]
        reserved, *spent = self._amounts(reply[2:])
        return Refused(kind, limits.get(kind) or 0, self._sum(spent), reserved, amount)

    def settle(self, hold: Hold, actual: Amount, record: SpendRecord | None = None) -> None:
        now = self.clock()
        window = hold.window
        keys = [*self._hold_keys(hold.budget), self._key(hold.budget, "total")]
        bucket_ttl = ""
        if window is not None:
            keys.append(self._key(hold.budget, f"w:{window.key}:{window.bucket(now)}"))
            bucket_ttl = str(math.ceil(window.retention) + 60)
        fields: list[str] = []
        if record is not None:
            keys.append(self._records_key(hold.budget))
            fields = self._record_fields(hold.budget, actual, record, now)
        # Spend without a reservation gets an id of its own: a settle retried after a lost reply
        # (the client retries connection errors) is then counted once like any other.
        hold_id = hold.id or "u" + os.urandom(12).hex()
        args: list[object] = [
            hold_id,
            repr(max(hold.expires_at, now + DONE_GRACE)),
            actual.picos,
            actual.tokens,
            actual.requests,
            bucket_ttl,
            self.records_cap,
            *fields,
        ]
        try:
            self._run("settle", keys, args)
        except self._redis_errors as exc:
            if not self.fail_open:
                raise self._store_error(f"settle for budget {hold.budget!r}", exc) from exc
            warnings.warn(
                f"Redis ledger {redact_url(self.url)} is unavailable ({exc}): the spend of a call on "
                f"budget {hold.budget!r} (${actual.usd}) was not recorded in the shared ledger",
                BudgetGuardWarning,
                stacklevel=2,
            )

    def release(self, hold: Hold) -> None:
        if not hold.id or hold.id.startswith(_LOCAL_PREFIX):
            return  # no reservation, or granted without the store: nothing was stored
        now = self.clock()
        try:
            self._run(
                "release",
                self._hold_keys(hold.budget),
                [hold.id, repr(max(hold.expires_at, now + DONE_GRACE))],
            )
        except self._redis_errors as exc:
            if not self.fail_open:
                raise self._store_error(f"release for budget {hold.budget!r}", exc) from exc
            # The hold stays reserved in the store until its TTL passes.
            warnings.warn(
                f"Redis ledger {redact_url(self.url)} is unavailable ({exc}): a hold on budget "
                f"{hold.budget!r} could not be released and will count until it expires",
                BudgetGuardWarning,
                stacklevel=2,
            )

    def snapshot(self, budget: str, window: Window | None) -> Snapshot:
        now = self.clock()
        try:
            reply = self._run(
                "snapshot", [*self._hold_keys(budget), *self._counter_keys(budget, window, now)], [repr(now)]
            )
        except self._redis_errors as exc:
            if not self.fail_open:
                raise self._store_error(f"snapshot of budget {budget!r}", exc) from exc
            warnings.warn(
                f"Redis ledger {redact_url(self.url)} is unavailable ({exc}): "
                f"budget {budget!r} shows no spend",
                BudgetGuardWarning,
                stacklevel=2,
            )
            return Snapshot(Amount(), Amount())
        reserved, *spent = self._amounts(reply)
        return Snapshot(self._sum(spent), reserved)

    def renew_lease(self, renewal: LeaseRenewal) -> LeaseGrant:
        now = self.clock()
        budget, window, limits = renewal.budget, renewal.window, renewal.limits
        flushed = Amount()
        bucket_keys: list[str] = []
        bucket_args: list[object] = []
        for bucket, amount in renewal.flush:
            flushed = flushed + amount
            if bucket is not None and window is not None:
                bucket_keys.append(self._key(budget, f"w:{window.key}:{bucket}"))
                bucket_args.extend((amount.picos, amount.tokens, amount.requests))
        counters = [] if limits.unlimited else self._counter_keys(budget, window, now)
        record_args = [
            json.dumps(self._record_fields(budget, amount, record, at), separators=(",", ":"))
            for record, amount, at in renewal.records
        ]
        keys = [*self._hold_keys(budget), self._key(budget, "total"), *bucket_keys, *counters]
        if renewal.records:
            keys.append(self._records_key(budget))
        args: list[object] = [
            repr(now),
            renewal.old_id,
            renewal.new_id,
            repr(renewal.expires_at),
            repr(now + DONE_GRACE),
            math.ceil(window.retention) + 60 if window is not None else 0,
            self.records_cap,
            len(bucket_keys),
            flushed.picos,
            flushed.tokens,
            flushed.requests,
            *bucket_args,
        ]
        for amount in (renewal.keep, renewal.carry, renewal.want, renewal.target):
            args.extend((amount.picos, amount.tokens, amount.requests))
        args.extend("" if limits.get(kind) is None else str(limits.get(kind)) for kind in _KINDS)
        args.append(len(renewal.records))
        args.extend(record_args)
        try:
            reply = self._run("lease", keys, args)
        except self._redis_errors as exc:
            raise self._store_error(f"lease for budget {budget!r}", exc) from exc
        status = int(reply[0])
        [lease] = self._amounts(reply[1:4])
        if status == 2:
            return LeaseGrant(lease, applied=False)
        if status == 1:
            return LeaseGrant(lease)
        kind = _KINDS[int(reply[4]) - 1]
        reserved, *spent = self._amounts(reply[5:])
        refused = Refused(kind, limits.get(kind) or 0, self._sum(spent), reserved, renewal.want)
        return LeaseGrant(lease, refused)

    def records(
        self, *, budget: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[SpendRecord]:
        out: list[SpendRecord] = []
        start = "-"
        try:
            while True:
                page = self._client.xrange(self.prefix + "records", min=start, max="+", count=1000)
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
        except self._redis_errors as exc:
            raise self._store_error("reading records", exc) from exc
        out.sort(key=lambda r: r.time)
        return out

    def close(self) -> None:
        with contextlib.suppress(*self._redis_errors):
            self._client.close()

    def __repr__(self) -> str:
        return f"RedisLedger({redact_url(self.url)!r})"
