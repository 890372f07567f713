"""Choosing a store by URI, and what is particular to SQLite files and Redis servers."""

from __future__ import annotations

import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from _redis_server import _free_port, redis_url  # noqa: F401 - redis_url is the fixture

from budgetguard._errors import BudgetGuardWarning, ConfigError, StoreError
from budgetguard._ledger import (
    DONE_GRACE,
    Amount,
    Hold,
    Limits,
    MemoryLedger,
    close_ledgers,
    open_ledger,
    usd_to_picos,
)
from budgetguard._ledger._redis import RedisLedger
from budgetguard._ledger._sqlite import SCHEMA_VERSION, SQLiteLedger
from budgetguard._windows import Calendar

DOLLAR = Limits(picos=usd_to_picos(Decimal(1)))
CENT = Amount(usd_to_picos(Decimal("0.01")), 10, 1)
DAY = Calendar("day")


@pytest.fixture(autouse=True)
def _fresh_ledgers() -> Iterator[None]:
    close_ledgers()
    yield
    close_ledgers()


# --- open_ledger ----------------------------------------------------------------------------------


def test_memory_uri_gives_one_shared_in_process_ledger() -> None:
    ledger = open_ledger("memory://")
    assert isinstance(ledger, MemoryLedger)
    assert open_ledger("memory://") is ledger
    assert open_ledger("memory://other") is not ledger


def test_sqlite_uris_follow_the_three_and_four_slash_convention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_ledger("sqlite:///spend.db")
    assert isinstance(relative, SQLiteLedger)
    assert relative.path == str(tmp_path / "spend.db")
    assert open_ledger(f"sqlite:///{tmp_path}/spend.db") is relative  # four slashes: absolute, same file
    assert (tmp_path / "spend.db").exists()
    in_memory = open_ledger("sqlite:///:memory:")
    assert isinstance(in_memory, SQLiteLedger)
    assert in_memory.path == ":memory:"


def test_redis_uri_gives_a_redis_ledger(redis_url: str) -> None:  # noqa: F811
    ledger = open_ledger(redis_url)
    assert isinstance(ledger, RedisLedger)
    assert open_ledger(redis_url) is ledger
    assert isinstance(open_ledger(redis_url.replace("redis://", "rediss://")), RedisLedger)


def test_every_thread_gets_the_same_ledger_for_a_uri(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/shared.db"
    seen: list[object] = []
    barrier = threading.Barrier(16)

    def open_it() -> None:
        barrier.wait()
        seen.append(open_ledger(uri))

    threads = [threading.Thread(target=open_it) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 16
    assert len({id(ledger) for ledger in seen}) == 1


def test_different_options_give_different_ledgers() -> None:
    assert open_ledger("memory://", keep_records=10) is not open_ledger("memory://")


def test_close_ledgers_forgets_them() -> None:
    ledger = open_ledger("memory://")
    close_ledgers()
    assert open_ledger("memory://") is not ledger


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("postgres://db/x", r"unknown store scheme 'postgres'.*memory://, sqlite://, redis://, rediss://"),
        ("spend.db", "invalid store URI 'spend.db': expected one of memory://"),
        ("sqlite://spend.db", "three slashes"),
        ("sqlite:///", "three slashes"),
        ("redis:///0", "expected redis://host:port/db"),
        ("redis://localhost:6379/cache", "the database must be a number"),
        ("redis://localhost:port/0", "invalid Redis store URI"),
    ],
)
def test_a_bad_uri_is_a_config_error_that_says_what_is_expected(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_ledger(uri)


def test_an_option_the_backend_does_not_take_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="memory://"):
        open_ledger("memory://", busy_timeout=3)


# --- SQLite ---------------------------------------------------------------------------------------


def test_sqlite_spend_survives_closing_and_reopening(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
    ledger.close()
    assert SQLiteLedger(tmp_path / "l.db").snapshot("b", DAY).spent == CENT


def test_a_program_that_ends_leaves_its_spend_in_the_database_file_alone(tmp_path: Path) -> None:
    # Left open at exit, SQLite keeps the last writes in the -wal file beside the database; a copy
    # of the database file alone (a backup, a file sent to someone) must still hold every spend.
    script = f"""
import budgetguard as bg
from budgetguard.testing import Simulator
from openai import OpenAI
with Simulator() as sim, OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client:
    with bg.Budget(max_usd=1, name="b", store="sqlite:///{tmp_path / "l.db"}"):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}], max_tokens=5
        )
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert not (tmp_path / "l.db-wal").exists()
    (tmp_path / "copy.db").write_bytes((tmp_path / "l.db").read_bytes())
    [record] = SQLiteLedger(tmp_path / "copy.db").records()
    assert record.budget == "b" and record.usage.requests == 1


def test_sqlite_runs_in_wal_mode_with_a_versioned_schema(tmp_path: Path) -> None:
    SQLiteLedger(tmp_path / "l.db").close()
    with sqlite3.connect(tmp_path / "l.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 1024  # small WAL frames


# The schema of version 4 as budgetguard wrote it (versions 1 to 3 lack records columns).
_V4_RECORD_INTS = (
    "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
    "input_audio_tokens", "output_audio_tokens", "input_image_tokens", "output_image_tokens",
    "cache_write_1h_tokens", "web_search_requests", "file_search_requests", "requests",
    "estimated_requests", "unpriced_requests",
)  # fmt: skip
_V4_SCHEMA = f"""
CREATE TABLE holds (id TEXT PRIMARY KEY, budget TEXT NOT NULL, picos INTEGER NOT NULL,
    tokens INTEGER NOT NULL, requests INTEGER NOT NULL, until REAL NOT NULL, owner TEXT NOT NULL);
CREATE INDEX holds_budget_until ON holds (budget, until);
CREATE INDEX holds_owner ON holds (owner);
CREATE TABLE finished (id TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE INDEX finished_until ON finished (until);
CREATE TABLE counters (budget TEXT NOT NULL, window_key TEXT NOT NULL, bucket INTEGER NOT NULL,
    picos INTEGER NOT NULL, tokens INTEGER NOT NULL, requests INTEGER NOT NULL,
    PRIMARY KEY (budget, window_key, bucket)) WITHOUT ROWID;
CREATE TABLE records (id INTEGER PRIMARY KEY, ledger_budget TEXT NOT NULL, picos INTEGER NOT NULL,
    tokens INTEGER NOT NULL, requests_amount INTEGER NOT NULL, time REAL NOT NULL, budget TEXT NOT NULL,
    key TEXT, scope_path TEXT NOT NULL, model TEXT NOT NULL, endpoint TEXT NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL" for name in _V4_RECORD_INTS)},
    cost_usd TEXT NOT NULL, reserved_usd TEXT NOT NULL, estimated INTEGER NOT NULL,
    price_source TEXT NOT NULL, request_id TEXT, extra TEXT NOT NULL);
CREATE INDEX records_time ON records (time);
CREATE INDEX records_budget_time ON records (budget, time);
PRAGMA user_version = 4;
"""


def _v4_ledger(path: Path) -> float:
    """A version 4 file of budget "b": a call of a cent settled (hold "settled", with a record),
    and a hold "live" of a cent of this process. Returns the time it was written."""
    now = time.time()
    with sqlite3.connect(path) as conn:
        conn.executescript(_V4_SCHEMA)
        conn.execute("INSERT INTO finished VALUES ('settled', ?)", (now + 600,))
        conn.execute(
            "INSERT INTO holds VALUES ('live', 'b', ?, ?, ?, ?, ?)",
            (CENT.picos, CENT.tokens, CENT.requests, now + 600, f"{socket.gethostname()}:{os.getpid()}"),
        )
        for window_key, bucket in (("", 0), (DAY.key, DAY.bucket(now))):
            conn.execute(
                "INSERT INTO counters VALUES (?, ?, ?, ?, ?, ?)",
                ("b", window_key, bucket, CENT.picos, CENT.tokens, CENT.requests),
            )
        ints = dict.fromkeys(_V4_RECORD_INTS, 0) | {"requests": 1}
        conn.execute(
            "INSERT INTO records (ledger_budget, picos, tokens, requests_amount, time, budget, key, "
            f"scope_path, model, endpoint, {', '.join(ints)}, cost_usd, reserved_usd, estimated, "
            f"price_source, request_id, extra) VALUES ({', '.join('?' * (16 + len(ints)))})",
            ("b", CENT.picos, CENT.tokens, CENT.requests, now, "b", None, "b", "gpt-4o", "chat.completions",
             *ints.values(), "0.01", "0.01", 0, "", None, "{}"),
        )  # fmt: skip
    return now


def test_sqlite_upgrades_a_version_1_ledger_and_keeps_its_records(tmp_path: Path) -> None:
    from budgetguard._ledger import SpendRecord
    from budgetguard._usage import Usage

    def record(model: str, usage: Usage) -> SpendRecord:
        return SpendRecord(1.0, "b", None, "b", model, "chat.completions", usage, Decimal(0))

    _v4_ledger(tmp_path / "l.db")
    with sqlite3.connect(tmp_path / "l.db") as conn:  # as budgetguard 0.1 wrote it
        for column in (
            "unpriced_requests", "cache_write_1h_tokens", "web_search_requests", "file_search_requests"
        ):  # fmt: skip
            conn.execute(f"ALTER TABLE records DROP COLUMN {column}")
        conn.execute("PRAGMA user_version = 1")
    ledger = SQLiteLedger(tmp_path / "l.db")
    unpriced = Usage(requests=1, unpriced_requests=1, unpriced_models=frozenset({"local"}))
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT, record("local", unpriced))
    old, new = ledger.records()
    assert (old.model, old.usage.unpriced_requests) == ("gpt-4o", 0)
    assert new.usage == unpriced
    ledger.close()
    with sqlite3.connect(tmp_path / "l.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5


def test_sqlite_upgrades_a_version_4_ledger_and_keeps_its_holds_and_finished_ids(tmp_path: Path) -> None:
    until = _v4_ledger(tmp_path / "l.db") + 600
    ledger = SQLiteLedger(tmp_path / "l.db")
    assert (ledger.snapshot("b", DAY).spent, ledger.snapshot("b", DAY).reserved) == (CENT, CENT)
    ledger.settle(Hold("settled", "b", CENT, until, DAY), CENT)  # settled before the upgrade: ignored
    ledger.settle(Hold("live", "b", CENT, until, DAY), CENT)
    ledger.settle(Hold("live", "b", CENT, until, DAY), CENT)  # a repeat: ignored
    assert (ledger.snapshot("b", DAY).spent, ledger.snapshot("b", DAY).reserved) == (CENT + CENT, Amount())
    assert [record.model for record in ledger.records(budget="b")] == ["gpt-4o"]
    ledger.close()
    with sqlite3.connect(tmp_path / "l.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"holds", "counters", "records"}


def test_sqlite_remembers_finished_holds_for_the_grace_then_deletes_every_expired_row(tmp_path: Path) -> None:
    now = [1_000_000.0]
    ledger = SQLiteLedger(tmp_path / "l.db", clock=lambda: now[0])

    def rows() -> set[str]:
        with sqlite3.connect(tmp_path / "l.db") as conn:
            return {id for (id,) in conn.execute("SELECT id FROM holds")}

    short = _granted(ledger.reserve("b", CENT, DOLLAR, DAY, ttl=1))  # remembered past its ttl
    ledger.settle(short, CENT)
    foreign = Hold("lease-0123.L1", "b", CENT, 0.0, DAY)  # an id not made here, as a lease's
    ledger.settle(foreign, CENT)
    abandoned = _granted(ledger.reserve("b", CENT, DOLLAR, DAY, ttl=1))
    now[0] += DONE_GRACE - 1
    ledger.release(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)))  # a transaction that purges
    ledger.settle(short, CENT)
    ledger.settle(foreign, CENT)  # repeats within the grace are ignored
    assert ledger.snapshot("b", DAY).spent == CENT + CENT
    assert abandoned.id not in rows() and {short.id, foreign.id} <= rows()
    now[0] += 3600
    live = _granted(ledger.reserve("b", CENT, DOLLAR, DAY))
    assert rows() == {live.id}
    ledger.close()


def test_sqlite_refuses_a_ledger_from_a_newer_budgetguard(tmp_path: Path) -> None:
    SQLiteLedger(tmp_path / "l.db").close()
    with sqlite3.connect(tmp_path / "l.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match=r"l\.db has schema version 99.*upgrade budgetguard-sdk"):
        SQLiteLedger(tmp_path / "l.db")


def test_sqlite_refuses_a_database_that_is_not_a_ledger(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(StoreError, match="not a budgetguard ledger"):
        SQLiteLedger(tmp_path / "app.db")


def test_sqlite_names_the_file_it_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"missing/l\.db: open failed"):
        SQLiteLedger(tmp_path / "missing" / "l.db")


def test_sqlite_releases_the_holds_of_a_dead_process_when_opened(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    hold = _granted(ledger.reserve("b", CENT, DOLLAR, DAY))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    with sqlite3.connect(tmp_path / "l.db") as conn:  # pretend the hold was taken by that process
        conn.execute(
            "UPDATE holds SET owner = ? WHERE id = ?", (f"{ledger._host}:{int(dead.stdout)}", hold.id)
        )
    assert ledger.snapshot("b", DAY).reserved == CENT
    SQLiteLedger(tmp_path / "l.db").close()
    assert ledger.snapshot("b", DAY).reserved == Amount()


def test_sqlite_keeps_the_holds_of_live_processes_when_opened(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    _granted(ledger.reserve("b", CENT, DOLLAR, DAY))
    SQLiteLedger(tmp_path / "l.db").close()
    assert ledger.snapshot("b", DAY).reserved == CENT


def test_a_forked_child_uses_its_own_sqlite_connection(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    ledger.snapshot("b", DAY)  # the parent's connection is open before the fork
    context = multiprocessing.get_context("fork")
    process = context.Process(target=_spend_a_cent, args=(ledger,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: this child is simple
        process.start()
    process.join(timeout=60)
    assert process.exitcode == 0
    assert ledger.snapshot("b", DAY).spent == CENT


def _spend_a_cent(ledger: SQLiteLedger) -> None:
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)


# --- Redis ----------------------------------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


def test_redis_reloads_its_scripts_when_the_server_forgot_them(redis_url: str, prefix: str) -> None:  # noqa: F811
    ledger = RedisLedger(redis_url, prefix=prefix)
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
    redis.Redis.from_url(redis_url).script_flush()
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
    assert ledger.snapshot("b", DAY).spent == CENT + CENT


def test_redis_a_reserve_retried_after_a_lost_reply_holds_once(redis_url: str, prefix: str) -> None:  # noqa: F811
    ledger = RedisLedger(redis_url, prefix=prefix)
    keys = ledger._hold_keys("b")
    args = ["1000", "retried-id", "2000", CENT.picos, CENT.tokens, CENT.requests, "", "", ""]
    ledger._run("reserve", keys, args)
    ledger._run("reserve", keys, args)
    ledger.clock = lambda: 1000.0
    assert ledger.snapshot("b", DAY).reserved == CENT


def test_redis_window_buckets_expire_on_their_own(redis_url: str, prefix: str) -> None:  # noqa: F811
    ledger = RedisLedger(redis_url, prefix=prefix)
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    [bucket_key] = client.keys(f"{prefix}*:w:*")
    assert 0 < client.ttl(bucket_key) <= DAY.retention + 60
    assert client.ttl(f"{prefix}{{b}}:total") == -1  # the all-time total stays


def test_redis_records_stream_is_capped(redis_url: str, prefix: str) -> None:  # noqa: F811
    from test_ledger_backends import a_record

    ledger = RedisLedger(redis_url, prefix=prefix, records_cap=10)
    for i in range(400):
        ledger.settle(_granted(ledger.reserve("b", CENT, Limits(), None)), CENT, a_record(request_id=f"r{i}"))
    records = ledger.records()
    assert len(records) < 400  # trimmed (approximately: whole stream nodes of 100 entries go at once)
    assert records[-1].request_id == "r399"


def test_redis_fails_closed_naming_the_store_without_its_password() -> None:
    url = f"redis://:hunter2@127.0.0.1:{_free_port()}/0"
    ledger = RedisLedger(url, socket_timeout=2)
    with pytest.raises(StoreError, match=r"Redis ledger redis://:\*\*\*@127\.0\.0\.1:\d+/0: reserve") as info:
        ledger.reserve("b", CENT, DOLLAR, DAY)
    assert "hunter2" not in str(info.value)
    with pytest.raises(StoreError, match="settle"):
        ledger.settle(Hold("x", "b", CENT, 0.0, DAY), CENT)
    with pytest.raises(StoreError, match="snapshot"):
        ledger.snapshot("b", DAY)


def test_redis_fails_open_when_configured_with_a_warning(redis_url: str, prefix: str) -> None:  # noqa: F811
    down = RedisLedger(f"redis://127.0.0.1:{_free_port()}/0", fail_open=True, socket_timeout=2, prefix=prefix)
    with pytest.warns(BudgetGuardWarning, match="fails open"):
        hold = _granted(down.reserve("b", CENT, DOLLAR, DAY))
    with pytest.warns(BudgetGuardWarning, match="was not recorded"):
        down.settle(hold, CENT)
    down.release(hold)  # a locally granted hold has nothing stored to release
    # Once the store answers again, settling a locally granted hold records the spend.
    up = RedisLedger(redis_url, prefix=prefix)
    up.settle(hold, CENT)
    assert up.snapshot("b", DAY).spent == CENT


def test_redis_without_the_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'budgetguard-sdk\[redis\]'"):
        RedisLedger("redis://localhost:6379/0")


def _granted(result: object) -> Hold:
    assert isinstance(result, Hold), result
    return result
