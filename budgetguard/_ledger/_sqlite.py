"""SQLite ledger: persistent windows, shared by every process and thread on one host.

The database runs in WAL mode (readers never block the writer) with ``synchronous=NORMAL``: a
crashed process loses nothing, a power cut may lose the last transactions. ``reserve``,
``settle`` and ``release`` are each one ``BEGIN IMMEDIATE`` transaction, so the check of the
caps and the write of the hold cannot interleave with another process. Within a process one
connection is shared under a lock (a forked child opens its own).

Holds carry their owner (host and pid). They stop counting when their TTL passes, and opening
the ledger releases the holds of processes on this host that are no longer running, so a
process killed with SIGKILL frees its reservations at the next open or after the TTL, whichever
comes first. Every settled call with a record becomes a row of ``records`` (money as exact
Decimal text, plus integer picodollars for sums).

Schema changes bump ``PRAGMA user_version``; a database from a newer budgetguard is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from budgetguard._errors import ConfigError, StoreError
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
from budgetguard._ledger._codec import RECORD_FIELDS, USAGE_INT_FIELDS, record_from_fields

__all__ = ["SCHEMA_VERSION", "SQLiteLedger"]

SCHEMA_VERSION = 4
# Upgrades from each older version: statements run in one transaction, in order.
_UPGRADES: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE records ADD COLUMN unpriced_requests INTEGER NOT NULL DEFAULT 0",),
    2: (
        "ALTER TABLE records ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE records ADD COLUMN web_search_requests INTEGER NOT NULL DEFAULT 0",
    ),
    3: ("ALTER TABLE records ADD COLUMN file_search_requests INTEGER NOT NULL DEFAULT 0",),
}
_PURGE_EVERY = 5.0  # seconds between deletions of expired rows
_KINDS: tuple[LimitKind, ...] = ("usd", "tokens", "requests")
_TOTAL = ""  # the counters row of a budget's all-time spend has this window key

_SCHEMA = f"""
CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    budget TEXT NOT NULL,
    picos INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    until REAL NOT NULL,
    owner TEXT NOT NULL
);
CREATE INDEX holds_budget_until ON holds (budget, until);
CREATE INDEX holds_owner ON holds (owner);
-- ids of settled or released holds, remembered for a while so a repeat is ignored
CREATE TABLE finished (id TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE INDEX finished_until ON finished (until);
-- settled spend per budget, window and bucket (window '' bucket 0 is the all-time total)
CREATE TABLE counters (
    budget TEXT NOT NULL,
    window_key TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    picos INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (budget, window_key, bucket)
) WITHOUT ROWID;
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    ledger_budget TEXT NOT NULL,
    picos INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    requests_amount INTEGER NOT NULL,
    time REAL NOT NULL,
    budget TEXT NOT NULL,
    key TEXT,
    scope_path TEXT NOT NULL,
    model TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL" for name in USAGE_INT_FIELDS)},
    cost_usd TEXT NOT NULL,
    reserved_usd TEXT NOT NULL,
    estimated INTEGER NOT NULL,
    price_source TEXT NOT NULL,
    request_id TEXT,
    extra TEXT NOT NULL
);
CREATE INDEX records_time ON records (time);
CREATE INDEX records_budget_time ON records (budget, time);
"""

_INSERT_RECORD = (
    f"INSERT INTO records (ledger_budget, picos, tokens, requests_amount, {', '.join(RECORD_FIELDS)}) "
    f"VALUES ({', '.join('?' * (4 + len(RECORD_FIELDS)))})"
)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not waited for yet is a zombie: not running
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class SQLiteLedger(Ledger):
    """A ledger in one SQLite file (``":memory:"`` for a private in-memory database).

    By URI: ``sqlite:///relative/path.db`` (relative to the working directory),
    ``sqlite:////absolute/path.db``, ``sqlite:///~/path.db`` or ``sqlite:///:memory:``; option
    ``busy_timeout``.
    """

    schemes = ("sqlite",)
    uri_examples = ("sqlite:///relative/path.db", "sqlite:////absolute/path.db")
    uri_options = frozenset({"busy_timeout"})
    supports_leases = True

    @classmethod
    def check_uri(cls, uri: str) -> str:
        """The absolute path of the database (or ``:memory:``)."""
        rest = uri.partition("://")[2]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(
                f"invalid SQLite store URI {uri!r}: use sqlite:///relative/path.db (three slashes), "
                "sqlite:////absolute/path.db (four) or sqlite:///:memory:"
            )
        path = rest[1:]
        if "?" in path or "#" in path:
            raise ConfigError(f"invalid SQLite store URI {uri!r}: query strings are not supported")
        return path if path == ":memory:" else os.path.abspath(os.path.expanduser(path))

    @classmethod
    def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> SQLiteLedger:
        return cls(cls.check_uri(uri), clock=clock, **options)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 30.0,
    ) -> None:
        self.clock = clock
        self.path = str(path)
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        self._next_purge = 0.0
        with self._lock:
            conn = self._connection()
            with self._errors("open"):
                self._reap(conn)

    # -- connection and transactions -------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A connection must not cross fork(): the child abandons the parent's and opens its own.
        self._pid = os.getpid()
        with self._errors("open"):
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            try:
                if self.path != ":memory:":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
        self._conn = conn
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"SQLite ledger {self.path} has schema version {version}, written by a newer "
                f"budgetguard (this one understands version {SCHEMA_VERSION}); upgrade budgetguard-sdk"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
            if version == 0:
                tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
                if tables:
                    raise StoreError(
                        f"{self.path} is an SQLite database but not a budgetguard ledger "
                        "(it has tables and no budgetguard schema version); use another file"
                    )
                for statement in _SCHEMA.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
            else:
                for old in range(version, SCHEMA_VERSION):
                    for statement in _UPGRADES[old]:
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite ledger {self.path}: {action} failed: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self, action: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors(action):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _reap(self, conn: sqlite3.Connection) -> None:
        """Drop expired holds and the holds of dead processes on this host."""
        now = self.clock()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM holds WHERE until <= ?", (now,))
            conn.execute("DELETE FROM finished WHERE until <= ?", (now,))
            for (owner,) in conn.execute("SELECT DISTINCT owner FROM holds").fetchall():
                host, _, pid = str(owner).rpartition(":")
                if host == self._host and pid.isdigit() and not _pid_running(int(pid)):
                    conn.execute("DELETE FROM holds WHERE owner = ?", (owner,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- queries ----------------------------------------------------------------------------

    @staticmethod
    def _reserved(conn: sqlite3.Connection, budget: str, now: float) -> Amount:
        row = conn.execute(
            "SELECT COALESCE(SUM(picos), 0), COALESCE(SUM(tokens), 0), COALESCE(SUM(requests), 0) "
            "FROM holds WHERE budget = ? AND until > ?",
            (budget, now),
        ).fetchone()
        return Amount(int(row[0]), int(row[1]), int(row[2]))

    @staticmethod
    def _spent(conn: sqlite3.Connection, budget: str, window: Window | None, now: float) -> Amount:
        if window is None:
            key, live = _TOTAL, range(1)
        else:
            key, live = window.key, window.buckets(now)
        row = conn.execute(
            "SELECT COALESCE(SUM(picos), 0), COALESCE(SUM(tokens), 0), COALESCE(SUM(requests), 0) "
            "FROM counters WHERE budget = ? AND window_key = ? AND bucket >= ? AND bucket < ?",
            (budget, key, live.start, live.stop),
        ).fetchone()
        return Amount(int(row[0]), int(row[1]), int(row[2]))

    # -- the Ledger interface ----------------------------------------------------------------

    def reserve(
        self, budget: str, amount: Amount, limits: Limits, window: Window | None, *, ttl: float = 600.0
    ) -> Hold | Refused:
        _check_ttl(ttl)
        with self._transaction("reserve") as conn:
            now = self.clock()
            self._purge(conn, now)
            reserved = self._reserved(conn, budget, now)
            spent = self._spent(conn, budget, window, now) if not limits.unlimited else Amount()
            kind = limits.first_exceeded(spent + reserved, amount)
            if kind is not None:
                return Refused(kind, limits.get(kind) or 0, spent, reserved, amount)
            hold = Hold(os.urandom(12).hex(), budget, amount, now + ttl, window)
            conn.execute(
                "INSERT INTO holds (id, budget, picos, tokens, requests, until, owner) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    hold.id,
                    budget,
                    amount.picos,
                    amount.tokens,
                    amount.requests,
                    hold.expires_at,
                    f"{self._host}:{os.getpid()}",
                ),
            )
            return hold

    def _finish(self, conn: sqlite3.Connection, hold: Hold, now: float) -> bool:
        if not hold.id:
            return True  # spend charged without a reservation: every such settle counts
        self._purge(conn, now)
        inserted = conn.execute(
            "INSERT OR IGNORE INTO finished (id, until) VALUES (?, ?)",
            (hold.id, max(hold.expires_at, now + DONE_GRACE)),
        ).rowcount
        if not inserted:
            return False  # already settled or released
        conn.execute("DELETE FROM holds WHERE id = ?", (hold.id,))
        return True

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete expired holds and forgotten finished ids, every few seconds (queries skip them anyway)."""
        if now < self._next_purge:
            return
        conn.execute("DELETE FROM holds WHERE until <= ?", (now,))
        conn.execute("DELETE FROM finished WHERE until <= ?", (now,))
        self._next_purge = now + _PURGE_EVERY

    def _add(self, conn: sqlite3.Connection, budget: str, window: str, bucket: int, actual: Amount) -> bool:
        """Add to a counter; True if the counter was created by this call."""
        updated = conn.execute(
            "UPDATE counters SET picos = picos + ?, tokens = tokens + ?, requests = requests + ? "
            "WHERE budget = ? AND window_key = ? AND bucket = ?",
            (actual.picos, actual.tokens, actual.requests, budget, window, bucket),
        ).rowcount
        if updated:
            return False
        conn.execute(
            "INSERT INTO counters (budget, window_key, bucket, picos, tokens, requests) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (budget, window, bucket, actual.picos, actual.tokens, actual.requests),
        )
        return True

    def settle(self, hold: Hold, actual: Amount, record: SpendRecord | None = None) -> None:
        with self._transaction("settle") as conn:
            now = self.clock()
            if not self._finish(conn, hold, now):
                return
            self._add(conn, hold.budget, _TOTAL, 0, actual)
            window = hold.window
            if window is not None and self._add(conn, hold.budget, window.key, window.bucket(now), actual):
                # A new bucket: buckets that can never count again are dropped.
                conn.execute(
                    "DELETE FROM counters WHERE budget = ? AND window_key = ? AND bucket < ?",
                    (hold.budget, window.key, window.buckets(now).start),
                )
            if record is not None:
                self._insert_record(conn, hold.budget, actual, record, now)

    @staticmethod
    def _insert_record(
        conn: sqlite3.Connection, ledger_budget: str, actual: Amount, record: SpendRecord, now: float
    ) -> None:
        usage = record.usage
        values: list[object] = [
            ledger_budget,
            actual.picos,
            actual.tokens,
            actual.requests,
            now,
            record.budget,
            record.key,
            record.scope_path,
            record.model,
            record.endpoint,
        ]
        values.extend(getattr(usage, name) for name in USAGE_INT_FIELDS)
        values.extend(
            [
                str(usage.cost_usd),
                str(record.reserved_usd),
                int(record.estimated),
                record.price_source,
                record.request_id,
                json.dumps(record.extra, sort_keys=True, separators=(",", ":")),
            ]
        )
        conn.execute(_INSERT_RECORD, values)

    def renew_lease(self, renewal: LeaseRenewal) -> LeaseGrant:
        """The lease protocol's round trip (see ``LeaseRenewal``) in one transaction."""
        budget, window, limits = renewal.budget, renewal.window, renewal.limits
        with self._transaction("lease") as conn:
            now = self.clock()
            self._purge(conn, now)
            again = conn.execute(
                "SELECT picos, tokens, requests FROM holds WHERE id = ?", (renewal.new_id,)
            ).fetchone()
            if again is not None:
                return LeaseGrant(Amount(int(again[0]), int(again[1]), int(again[2])), applied=False)
            if conn.execute("SELECT 1 FROM finished WHERE id = ?", (renewal.new_id,)).fetchone():
                return LeaseGrant(Amount(), applied=False)
            old: Amount | None = None
            if renewal.old_id:
                row = conn.execute(
                    "SELECT picos, tokens, requests FROM holds WHERE id = ? AND until > ?",
                    (renewal.old_id, now),
                ).fetchone()
                old = None if row is None else Amount(int(row[0]), int(row[1]), int(row[2]))
                self._finish(conn, Hold(renewal.old_id, budget, Amount(), 0.0), now)
            flushed = Amount()
            for bucket, amount in renewal.flush:
                flushed = flushed + amount
                if (
                    bucket is not None
                    and window is not None
                    and self._add(conn, budget, window.key, bucket, amount)
                ):
                    conn.execute(
                        "DELETE FROM counters WHERE budget = ? AND window_key = ? AND bucket < ?",
                        (budget, window.key, window.buckets(now).start),
                    )
            if flushed != Amount():
                self._add(conn, budget, _TOTAL, 0, flushed)
            for record, amount, at in renewal.records:
                self._insert_record(conn, budget, amount, record, at)
            keep, carry, want, target = renewal.keep, renewal.carry, renewal.want, renewal.target
            credit = [
                max(0, min(carry.get(kind), old.get(kind) - keep.get(kind))) if old is not None else 0
                for kind in _KINDS
            ]
            reserved = self._reserved(conn, budget, now)
            spent = self._spent(conn, budget, window, now) if not limits.unlimited else Amount()
            refused: Refused | None = None
            extra = [0, 0, 0]
            for d, kind in enumerate(_KINDS):
                need = max(0, want.get(kind) - credit[d])
                top = max(need, target.get(kind) - credit[d])
                cap = limits.get(kind)
                if cap is None:
                    extra[d] = top
                    continue
                room = cap - spent.get(kind) - reserved.get(kind) - keep.get(kind) - credit[d]
                if need > 0 and need > room:
                    if refused is None:
                        refused = Refused(kind, cap, spent, reserved, want)
                else:
                    extra[d] = max(need, min(top, max(room, 0)))
            if refused is not None:
                extra = [0, 0, 0]
            lease = Amount(*(keep.get(kind) + credit[d] + extra[d] for d, kind in enumerate(_KINDS)))
            if lease == Amount():
                conn.execute(
                    "INSERT OR IGNORE INTO finished (id, until) VALUES (?, ?)",
                    (renewal.new_id, now + DONE_GRACE),
                )
            else:
                conn.execute(
                    "INSERT INTO holds (id, budget, picos, tokens, requests, until, owner) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        renewal.new_id,
                        budget,
                        lease.picos,
                        lease.tokens,
                        lease.requests,
                        renewal.expires_at,
                        f"{self._host}:{os.getpid()}",
                    ),
                )
            return LeaseGrant(lease, refused)

    def release(self, hold: Hold) -> None:
        with self._transaction("release") as conn:
            self._finish(conn, hold, self.clock())

    def snapshot(self, budget: str, window: Window | None) -> Snapshot:
        with self._transaction("snapshot", write=False) as conn:
            now = self.clock()
            return Snapshot(self._spent(conn, budget, window, now), self._reserved(conn, budget, now))

    def records(
        self, *, budget: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[SpendRecord]:
        clauses, params = [], []
        for clause, value in (("budget = ?", budget), ("time >= ?", since), ("time < ?", until)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._transaction("read records", write=False) as conn:
            cursor = conn.execute(
                f"SELECT {', '.join(RECORD_FIELDS)} FROM records{where} ORDER BY time, id", params
            )
            rows = cursor.fetchall()
        out = []
        for row in rows:
            data = {
                name: (None if value is None else str(value))
                for name, value in zip(RECORD_FIELDS, row, strict=True)
            }
            data["time"] = repr(float(row[0]))
            out.append(record_from_fields(data))
        return out

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.path!r})"
