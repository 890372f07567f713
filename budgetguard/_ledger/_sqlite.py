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

import json
import operator
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

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

SCHEMA_VERSION = 5
_PURGE_EVERY = 5.0  # seconds between deletions of expired holds made here (by a range of ids)
_SWEEP_EVERY = 300.0  # seconds between deletions of every expired row (a scan of the table)
_KINDS: tuple[LimitKind, ...] = ("usd", "tokens", "requests")
_PAGE_SIZE = 1024  # bytes, for new files (see _connection)
_CHECKPOINT_BYTES = 4 << 20  # WAL written between automatic checkpoints
_TOTAL = ""  # the counters row of a budget's all-time spend has this window key

# One row per hold, live (done = 0) or finished (done = 1: settled or released, kept until
# ``until`` so a repeat is ignored). Finishing a hold updates its row in place, and ids made here
# start with their expiry, so a call's rows land on the same few pages: fewer pages written per
# commit, and so fewer WAL frames to write and checkpoint. Only live holds are indexed, with
# every column a reserve sums (the index alone answers it) and the owner (for the reaper).
_HOLDS = """
CREATE TABLE {name} (
    id TEXT PRIMARY KEY,
    budget TEXT NOT NULL,
    picos INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    until REAL NOT NULL,
    owner TEXT NOT NULL,
    done INTEGER NOT NULL
) WITHOUT ROWID"""
_HOLDS_LIVE = (
    "CREATE INDEX holds_live ON holds (budget, until, picos, tokens, requests, owner) WHERE done = 0"
)
_HOLD_COLUMNS = "id, budget, picos, tokens, requests, until, owner, done"

# Upgrades from each older version: statements run in one transaction, in order.
_UPGRADES: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE records ADD COLUMN unpriced_requests INTEGER NOT NULL DEFAULT 0",),
    2: (
        "ALTER TABLE records ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE records ADD COLUMN web_search_requests INTEGER NOT NULL DEFAULT 0",
    ),
    3: ("ALTER TABLE records ADD COLUMN file_search_requests INTEGER NOT NULL DEFAULT 0",),
    # Version 5: the ids of finished holds (table ``finished``) become finished rows of ``holds``;
    # the index of records by time alone goes (reports read by budget, or everything).
    4: (
        _HOLDS.format(name="holds_v5"),
        f"INSERT INTO holds_v5 ({_HOLD_COLUMNS}) SELECT id, '', 0, 0, 0, until, '', 1 FROM finished",
        f"INSERT OR IGNORE INTO holds_v5 ({_HOLD_COLUMNS}) "
        "SELECT id, budget, picos, tokens, requests, until, owner, 0 FROM holds",
        "DROP TABLE holds",
        "DROP TABLE finished",
        "ALTER TABLE holds_v5 RENAME TO holds",
        _HOLDS_LIVE,
        "DROP INDEX IF EXISTS records_time",
    ),
}

_SCHEMA = f"""{_HOLDS.format(name="holds")};
{_HOLDS_LIVE};
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
CREATE INDEX records_budget_time ON records (budget, time);
"""

# The statements of the hot path, spelled once (sqlite3 caches each text's prepared statement).
# Spent and reserved in one statement (one round through the sqlite3 module, and cheaper than a
# join of two aggregates): settled spend in the live buckets (tagged 0), then live holds (1).
_SPENT_AND_RESERVED = (
    "SELECT 0, COALESCE(SUM(picos), 0), COALESCE(SUM(tokens), 0), COALESCE(SUM(requests), 0) "
    "FROM counters WHERE budget = ?1 AND window_key = ?3 AND bucket >= ?4 AND bucket < ?5 "
    "UNION ALL SELECT 1, COALESCE(SUM(picos), 0), COALESCE(SUM(tokens), 0), COALESCE(SUM(requests), 0) "
    "FROM holds WHERE budget = ?1 AND done = 0 AND until > ?2"
)
_INSERT_HOLD = f"INSERT INTO holds ({_HOLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0)"
# A finished hold the ledger no longer knows (it expired and was purged): remember it anyway.
_INSERT_DONE = f"INSERT OR IGNORE INTO holds ({_HOLD_COLUMNS}) VALUES (?, ?, 0, 0, 0, ?, '', 1)"
_MARK_DONE = "UPDATE holds SET done = 1 WHERE id = ? AND done = 0"
_MARK_DONE_UNTIL = "UPDATE holds SET done = 1, until = max(until, ?) WHERE id = ? AND done = 0"
# Holds made here whose first expiry has passed lie before the id prefix of the present (see
# ``_new_hold_id``): a range of the table rather than all of it. The sweep gets the others
# (lease ids, and finished holds remembered past their first expiry).
_PURGE = "DELETE FROM holds WHERE id < ? AND until <= ?"
_SWEEP = "DELETE FROM holds WHERE until <= ?"
_ADD = (
    "UPDATE counters SET picos = picos + ?, tokens = tokens + ?, requests = requests + ? "
    "WHERE budget = ? AND window_key = ? AND bucket = ?"
)
_NEW_COUNTER = (
    "INSERT INTO counters (picos, tokens, requests, budget, window_key, bucket) VALUES (?, ?, ?, ?, ?, ?)"
)
_DROP_OLD_BUCKETS = "DELETE FROM counters WHERE budget = ? AND window_key = ? AND bucket < ?"
_INSERT_RECORD = (
    f"INSERT INTO records (ledger_budget, picos, tokens, requests_amount, {', '.join(RECORD_FIELDS)}) "
    f"VALUES ({', '.join('?' * (4 + len(RECORD_FIELDS)))})"
)
_usage_ints = operator.attrgetter(*USAGE_INT_FIELDS)
_P = ParamSpec("_P")
_T = TypeVar("_T")


def _id_prefix(at: float) -> str:
    return f"{max(0, int(at * 1_000_000)):014x}"


def _new_hold_id(expires_at: float) -> str:
    # The expiry (microseconds, ledger clock) first: holds taken one after another sit side by
    # side in the table, and expired ones form a range of ids. 64 random bits make ids unique.
    return f"{_id_prefix(expires_at)}{os.urandom(8).hex()}"


def _fetch_all(conn: sqlite3.Connection, query: str, params: Sequence[object]) -> list[Any]:
    return conn.execute(query, params).fetchall()


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
        self._owner = f"{self._host}:{self._pid}"
        self._conn: sqlite3.Connection | None = None
        self._next_purge = self._next_sweep = 0.0
        self._transaction("open", "BEGIN IMMEDIATE", self._reap)

    # -- connection and transactions -------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A connection must not cross fork(): the child abandons the parent's and opens its own.
        self._pid = os.getpid()
        self._owner = f"{self._host}:{self._pid}"
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            try:
                if self.path != ":memory:":
                    # Only a new file takes it. A call writes a few rows to a handful of pages, and
                    # every page written is a whole WAL frame, flushed to disk at the checkpoint:
                    # small pages write a quarter of the bytes of 4 KiB ones.
                    conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
                    conn.execute("PRAGMA journal_mode=WAL")
                    # A checkpoint syncs the WAL and the database (two fsyncs, a fixed cost each):
                    # every 4 MiB of WAL rather than every 1000 pages (SQLite's default).
                    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                    conn.execute(f"PRAGMA wal_autocheckpoint = {max(1000, _CHECKPOINT_BYTES // page_size)}")
                conn.execute("PRAGMA synchronous=NORMAL")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite ledger {self.path}: open failed: {exc}") from exc
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

    def _transaction(
        self,
        action: str,
        begin: str,
        body: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """``body(conn, *args, **kwargs)`` in one transaction, under the connection's lock.

        A plain function rather than a context manager: every reserve and settle pays for it.
        """
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(begin)
                try:
                    result = body(conn, *args, **kwargs)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # a failed COMMIT may have ended it already
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite ledger {self.path}: {action} failed: {exc}") from exc
            return result

    def _reap(self, conn: sqlite3.Connection) -> None:
        """Drop expired holds and the live holds of dead processes on this host."""
        now = self.clock()
        conn.execute(_SWEEP, (now,))
        self._next_sweep = now + _SWEEP_EVERY
        for (owner,) in conn.execute("SELECT DISTINCT owner FROM holds WHERE done = 0").fetchall():
            host, _, pid = str(owner).rpartition(":")
            if host == self._host and pid.isdigit() and not _pid_running(int(pid)):
                conn.execute("DELETE FROM holds WHERE owner = ? AND done = 0", (owner,))

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete expired holds, live or finished, every few seconds (queries skip them anyway)."""
        if now >= self._next_sweep:
            conn.execute(_SWEEP, (now,))
            self._next_sweep = now + _SWEEP_EVERY
        else:
            conn.execute(_PURGE, (_id_prefix(now), now))
        self._next_purge = now + _PURGE_EVERY

    # -- queries ----------------------------------------------------------------------------

    @staticmethod
    def _spent_and_reserved(
        conn: sqlite3.Connection, budget: str, window: Window | None, now: float
    ) -> tuple[int, int, int, int, int, int]:
        """Spent in the window's live buckets (picos, tokens, requests), then reserved by live holds."""
        if window is None:
            key, start, stop = _TOTAL, 0, 1
        else:
            live = window.buckets(now)
            key, start, stop = window.key, live.start, live.stop
        spent, reserved = conn.execute(_SPENT_AND_RESERVED, (budget, now, key, start, stop)).fetchall()
        if spent[0]:  # the rows of a compound select come in no promised order
            spent, reserved = reserved, spent
        return spent[1], spent[2], spent[3], reserved[1], reserved[2], reserved[3]

    # -- the Ledger interface ----------------------------------------------------------------

    def reserve(
        self, budget: str, amount: Amount, limits: Limits, window: Window | None, *, ttl: float = 600.0
    ) -> Hold | Refused:
        _check_ttl(ttl)
        return self._transaction(
            "reserve", "BEGIN IMMEDIATE", self._reserve, budget, amount, limits, window, ttl
        )

    def _reserve(
        self,
        conn: sqlite3.Connection,
        budget: str,
        amount: Amount,
        limits: Limits,
        window: Window | None,
        ttl: float,
    ) -> Hold | Refused:
        now = self.clock()
        if now >= self._next_purge:
            self._purge(conn, now)
        if not limits.unlimited:  # a soft cap checks nothing: no need to sum
            s_picos, s_tokens, s_requests, r_picos, r_tokens, r_requests = self._spent_and_reserved(
                conn, budget, window, now
            )
            kind = limits.first_exceeded_at(
                s_picos + r_picos + amount.picos,
                s_tokens + r_tokens + amount.tokens,
                s_requests + r_requests + amount.requests,
            )
            if kind is not None:
                spent, reserved = Amount(s_picos, s_tokens, s_requests), Amount(r_picos, r_tokens, r_requests)
                return Refused(kind, limits.get(kind) or 0, spent, reserved, amount)
        expires_at = now + ttl
        hold = Hold(_new_hold_id(expires_at), budget, amount, expires_at, window)
        conn.execute(
            _INSERT_HOLD,
            (hold.id, budget, amount.picos, amount.tokens, amount.requests, hold.expires_at, self._owner),
        )
        return hold

    def _finish(
        self, conn: sqlite3.Connection, hold_id: str, budget: str, expires_at: float, now: float
    ) -> bool:
        """Mark a hold finished; False if it already was (a repeated settle or release)."""
        if now >= self._next_purge:
            self._purge(conn, now)
        remember = now + DONE_GRACE  # at least this long, and until the hold would have expired
        if expires_at >= remember:
            marked = conn.execute(_MARK_DONE, (hold_id,)).rowcount
        else:
            marked = conn.execute(_MARK_DONE_UNTIL, (remember, hold_id)).rowcount
        if marked:
            return True
        # Not live here: finished already (ignored), or expired and purged (still counts, once).
        inserted: int = conn.execute(_INSERT_DONE, (hold_id, budget, max(expires_at, remember))).rowcount
        return inserted == 1

    @staticmethod
    def _add(conn: sqlite3.Connection, budget: str, window: str, bucket: int, actual: Amount) -> bool:
        """Add to a counter; True if the counter was created by this call."""
        values = (actual.picos, actual.tokens, actual.requests, budget, window, bucket)
        if conn.execute(_ADD, values).rowcount:
            return False
        conn.execute(_NEW_COUNTER, values)
        return True

    def settle(self, hold: Hold, actual: Amount, record: SpendRecord | None = None) -> None:
        self._transaction("settle", "BEGIN IMMEDIATE", self._settle, hold, actual, record)

    def _settle(
        self, conn: sqlite3.Connection, hold: Hold, actual: Amount, record: SpendRecord | None
    ) -> None:
        now = self.clock()
        budget = hold.budget
        # An empty id is spend charged without a reservation: every such settle counts.
        if hold.id and not self._finish(conn, hold.id, budget, hold.expires_at, now):
            return
        self._add(conn, budget, _TOTAL, 0, actual)
        window = hold.window
        if window is not None and self._add(conn, budget, window.key, window.bucket(now), actual):
            # A new bucket: buckets that can never count again are dropped.
            conn.execute(_DROP_OLD_BUCKETS, (budget, window.key, window.buckets(now).start))
        if record is not None:
            self._insert_record(conn, budget, actual, record, now)

    @staticmethod
    def _insert_record(
        conn: sqlite3.Connection, ledger_budget: str, actual: Amount, record: SpendRecord, now: float
    ) -> None:
        usage = record.usage
        extra = record.extra
        conn.execute(
            _INSERT_RECORD,
            (
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
                *_usage_ints(usage),
                str(usage.cost_usd),
                str(record.reserved_usd),
                int(record.estimated),
                record.price_source,
                record.request_id,
                json.dumps(extra, sort_keys=True, separators=(",", ":")) if extra else "{}",
            ),
        )

    def renew_lease(self, renewal: LeaseRenewal) -> LeaseGrant:
        """The lease protocol's round trip (see ``LeaseRenewal``) in one transaction."""
        return self._transaction("lease", "BEGIN IMMEDIATE", self._renew_lease, renewal)

    def _renew_lease(self, conn: sqlite3.Connection, renewal: LeaseRenewal) -> LeaseGrant:
        budget, window, limits = renewal.budget, renewal.window, renewal.limits
        now = self.clock()
        if now >= self._next_purge:
            self._purge(conn, now)
        again = conn.execute(
            "SELECT picos, tokens, requests, done FROM holds WHERE id = ?", (renewal.new_id,)
        ).fetchone()
        if again is not None:
            held = Amount() if again[3] else Amount(int(again[0]), int(again[1]), int(again[2]))
            return LeaseGrant(held, applied=False)
        old: Amount | None = None
        if renewal.old_id:
            row = conn.execute(
                "SELECT picos, tokens, requests FROM holds WHERE id = ? AND done = 0 AND until > ?",
                (renewal.old_id, now),
            ).fetchone()
            old = None if row is None else Amount(int(row[0]), int(row[1]), int(row[2]))
            self._finish(conn, renewal.old_id, budget, 0.0, now)
        flushed = Amount()
        for bucket, amount in renewal.flush:
            flushed = flushed + amount
            if (
                bucket is not None
                and window is not None
                and self._add(conn, budget, window.key, bucket, amount)
            ):
                conn.execute(_DROP_OLD_BUCKETS, (budget, window.key, window.buckets(now).start))
        if flushed != Amount():
            self._add(conn, budget, _TOTAL, 0, flushed)
        for record, amount, at in renewal.records:
            self._insert_record(conn, budget, amount, record, at)
        keep, carry, want, target = renewal.keep, renewal.carry, renewal.want, renewal.target
        credit = [
            max(0, min(carry.get(kind), old.get(kind) - keep.get(kind))) if old is not None else 0
            for kind in _KINDS
        ]
        if limits.unlimited:
            spent = reserved = Amount()
        else:
            sums = self._spent_and_reserved(conn, budget, window, now)
            spent, reserved = Amount(*sums[:3]), Amount(*sums[3:])
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
            conn.execute(_INSERT_DONE, (renewal.new_id, budget, now + DONE_GRACE))
        else:
            conn.execute(
                _INSERT_HOLD,
                (
                    renewal.new_id,
                    budget,
                    lease.picos,
                    lease.tokens,
                    lease.requests,
                    renewal.expires_at,
                    self._owner,
                ),
            )
        return LeaseGrant(lease, refused)

    def release(self, hold: Hold) -> None:
        if hold.id:
            self._transaction("release", "BEGIN IMMEDIATE", self._release, hold)

    def _release(self, conn: sqlite3.Connection, hold: Hold) -> None:
        self._finish(conn, hold.id, hold.budget, hold.expires_at, self.clock())

    def snapshot(self, budget: str, window: Window | None) -> Snapshot:
        return self._transaction("snapshot", "BEGIN", self._snapshot, budget, window)

    def _snapshot(self, conn: sqlite3.Connection, budget: str, window: Window | None) -> Snapshot:
        sums = self._spent_and_reserved(conn, budget, window, self.clock())
        return Snapshot(Amount(*sums[:3]), Amount(*sums[3:]))

    def records(
        self, *, budget: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[SpendRecord]:
        clauses, params = [], []
        for clause, value in (("budget = ?", budget), ("time >= ?", since), ("time < ?", until)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._transaction(
            "read records",
            "BEGIN",
            _fetch_all,
            f"SELECT {', '.join(RECORD_FIELDS)} FROM records{where} ORDER BY time, id",
            params,
        )
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
