"""Leases: calls reserved and settled in memory against a slice of a budget held in a shared store.

Against a real Redis (and a real Redis Cluster, and SQLite, where it matters): few round trips, a
cap that holds across every process's leases, spend that reaches the store by itself, slices that
come back (returned, idle, or through the TTL of a process killed with SIGKILL), and round trips
that are applied once even when retried.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from _noon_clock import OFFSET, Clock
from _redis_cluster import redis_cluster, redis_cluster_url  # noqa: F401 - fixtures
from _redis_server import redis_url  # noqa: F401 - the fixture

from budgetguard._errors import BudgetGuardWarning, ConfigError, StoreError
from budgetguard._ledger import (
    Amount,
    Hold,
    LeasingLedger,
    Ledger,
    Limits,
    Refused,
    Snapshot,
    SpendRecord,
    check_store_uri,
    close_ledgers,
    ledger_schemes,
    open_ledger,
    usd_to_picos,
)
from budgetguard._ledger._base import LeaseRenewal
from budgetguard._ledger._cluster import RedisClusterLedger
from budgetguard._ledger._lease import LEASE_EXTRA
from budgetguard._ledger._redis import RedisLedger
from budgetguard._ledger._sqlite import SQLiteLedger
from budgetguard._usage import Usage
from budgetguard._windows import Calendar

DAY = Calendar("day")
CENT = Amount(usd_to_picos(Decimal("0.01")), 10, 1)
DIME = Amount(usd_to_picos(Decimal("0.10")), 10, 1)
DOLLAR = Limits(picos=usd_to_picos(Decimal(1)))
TEN = Limits(picos=usd_to_picos(Decimal(10)))
WORKER = Path(__file__).with_name("_ledger_worker.py")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_ledgers() -> Iterator[None]:
    close_ledgers()
    yield
    close_ledgers()


@pytest.fixture
def prefix() -> str:
    return f"lease-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[RedisLedger]:  # noqa: F811
    ledger = RedisLedger(redis_url, prefix=prefix, clock=Clock())
    yield ledger
    ledger.close()


@pytest.fixture
def leased() -> Iterator[Callable[..., LeasingLedger]]:
    opened: list[LeasingLedger] = []

    def make(inner: Ledger, **options: Any) -> LeasingLedger:
        options.setdefault("hot", math.inf)  # a lease from the first call (see the test of ``hot``)
        ledger = LeasingLedger(inner, **options)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


def _granted(result: object) -> Hold:
    assert isinstance(result, Hold), result
    return result


def _record(budget: str, request_id: str) -> SpendRecord:
    usage = Usage(prompt_tokens=10, requests=1, cost_usd=Decimal("0.01"))
    return SpendRecord(
        0.0,
        budget,
        None,
        budget,
        "gpt-4o-mini",
        "chat.completions",
        usage,
        Decimal("0.01"),
        request_id=request_id,
    )


def _count_round_trips(inner: Ledger) -> list[LeaseRenewal]:
    calls: list[LeaseRenewal] = []
    real = inner.renew_lease

    def counting(renewal: LeaseRenewal) -> Any:
        calls.append(renewal)
        return real(renewal)

    inner.renew_lease = counting  # type: ignore[method-assign]
    return calls


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never became true"
        time.sleep(0.02)


# --- fewer round trips, the same caps ----------------------------------------------------------


def test_calls_that_fit_in_the_lease_are_reserved_and_settled_in_memory(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, fraction="0.1", flush=3600)
    trips = _count_round_trips(store)
    granted = 0
    while isinstance(hold := ledger.reserve("b", CENT, DOLLAR, DAY), Hold):
        ledger.settle(hold, CENT, _record("b", f"r{granted}"))
        granted += 1
    assert granted == 100  # the whole dollar, a cent at a time
    assert len(trips) <= 12  # a slice of $0.10 (plus the call) per round trip, not two per call
    assert ledger.snapshot("b", DAY).spent == Amount(100 * CENT.picos, 1000, 100)
    ledger.return_leases()
    assert store.snapshot("b", DAY).spent == Amount(100 * CENT.picos, 1000, 100)
    assert store.snapshot("b", DAY).reserved == Amount()
    assert [r.request_id for r in store.records()] == [f"r{i}" for i in range(100)]


def test_a_budget_that_is_not_busy_in_this_process_is_reserved_in_the_store(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    clock = Clock()
    store.clock = clock
    ledger = leased(store, fraction="0.5", flush=3600, hot=1.0)
    trips = _count_round_trips(store)
    hold = _granted(ledger.reserve("b", CENT, DOLLAR, DAY))  # the first: a hold in the store
    assert trips == []
    assert store.snapshot("b", DAY).reserved == CENT
    ledger.settle(hold, CENT)
    assert store.snapshot("b", DAY) == Snapshot(CENT, Amount())  # settled in the store at once
    clock.skip += 2
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)  # 2 s later: still not busy
    assert trips == []
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)  # again within a second: busy
    assert len(trips) == 1
    for _ in range(10):
        ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
    assert len(trips) == 1
    ledger.return_leases()
    assert store.snapshot("b", DAY) == Snapshot(Amount(13 * CENT.picos, 130, 13), Amount())


def test_a_budget_without_caps_needs_no_lease(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, flush=3600)
    trips = _count_round_trips(store)
    for _ in range(20):
        ledger.settle(_granted(ledger.reserve("b", CENT, Limits(), DAY)), CENT)
    assert trips == []
    ledger.flush()
    assert len(trips) == 1
    assert store.snapshot("b", DAY) == Snapshot(Amount(20 * CENT.picos, 200, 20), Amount())


def test_leases_of_many_processes_never_sum_past_the_cap(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    processes = [leased(store, fraction="0.05", flush=3600) for _ in range(4)]
    cap = DOLLAR.picos
    assert cap is not None
    settled = 0
    refused = 0
    progress = True
    while progress:
        progress = False
        for ledger in processes:
            result = ledger.reserve("shared", DIME, DOLLAR, DAY)
            snap = store.snapshot("shared", DAY)
            assert snap.spent.picos + snap.reserved.picos <= cap  # every lease is a hold in the store
            if isinstance(result, Refused):
                refused += 1
                continue
            ledger.settle(result, Amount(DIME.picos // 2, 10, 1))
            settled += DIME.picos // 2
            progress = True
    assert refused >= 4
    for ledger in processes:
        ledger.return_leases()
    snap = store.snapshot("shared", DAY)
    assert snap.spent.picos == settled <= cap
    assert snap.reserved == Amount()


def test_near_the_cap_another_process_lease_is_reserved_until_it_is_returned(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    first = leased(store, usd="0.60", flush=3600)
    second = leased(store, usd="0.60", flush=3600)
    first.settle(_granted(first.reserve("b", DIME, DOLLAR, DAY)), DIME)  # a lease of $0.70, $0.10 spent
    refusal = second.reserve("b", Amount(usd_to_picos(Decimal("0.40")), 10, 1), DOLLAR, DAY)
    assert isinstance(refusal, Refused)
    # The first process's lease: its unused slice, and the spend it has not flushed yet.
    assert refusal.reserved.picos == usd_to_picos(Decimal("0.70"))
    assert refusal.spent == Amount()
    first.return_leases("b")
    assert store.snapshot("b", DAY) == Snapshot(DIME, Amount())
    _granted(second.reserve("b", Amount(usd_to_picos(Decimal("0.40")), 10, 1), DOLLAR, DAY))


def test_a_refused_call_leaves_the_calls_in_flight_covered(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, fraction="0.1", flush=3600)
    in_flight = [_granted(ledger.reserve("b", DIME, DOLLAR, DAY)) for _ in range(9)]
    assert isinstance(ledger.reserve("b", Amount(usd_to_picos(Decimal("0.20")), 10, 1), DOLLAR, DAY), Refused)
    assert store.snapshot("b", DAY).reserved.picos >= 9 * DIME.picos
    for hold in in_flight:
        ledger.settle(hold, DIME)
    ledger.return_leases()
    assert store.snapshot("b", DAY) == Snapshot(Amount(9 * DIME.picos, 90, 9), Amount())


# --- when spend becomes visible, when slices come back ----------------------------------------------


def test_settled_spend_reaches_the_store_by_itself_within_the_flush_interval(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, fraction="0.1", flush=0.05)
    for i in range(5):
        ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT, _record("b", f"r{i}"))
    # Nothing flushes by hand: the thread writes it.
    _eventually(lambda: store.snapshot("b", DAY).spent == Amount(5 * CENT.picos, 50, 5), timeout=5)
    assert len(store.records()) == 5


def test_with_flush_zero_every_settle_is_written_at_once(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, fraction="0.1", flush=0)
    trips = _count_round_trips(store)
    for i in range(1, 6):
        ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
        assert store.snapshot("b", DAY).spent.picos == i * CENT.picos
    assert len(trips) == 6  # the first lease, then one write per settle: one round trip per call


def test_an_unused_lease_is_returned_by_itself(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, fraction="0.5", flush=0.05, idle=0.2)
    trips = _count_round_trips(store)
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
    assert trips[0].want.picos == CENT.picos  # a lease of the call and half the cap was taken...
    _eventually(lambda: store.snapshot("b", DAY).reserved == Amount(), timeout=5)  # ...and given back
    assert store.snapshot("b", DAY).spent == CENT
    assert any(renewal.keep == Amount() and renewal.target == Amount() for renewal in trips[1:])


def test_returning_leases_keeps_the_calls_in_flight_reserved(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, fraction="0.5", flush=3600)
    hold = _granted(ledger.reserve("b", DIME, DOLLAR, DAY))
    ledger.return_leases("b")
    assert store.snapshot("b", DAY).reserved.picos == DIME.picos  # the call, not the slice
    ledger.settle(hold, CENT)
    ledger.return_leases("b")
    assert store.snapshot("b", DAY) == Snapshot(CENT, Amount())


def test_a_lease_older_than_its_extra_time_is_renewed_before_a_call_is_granted(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    clock = Clock()
    store.clock = clock
    ledger = leased(store, fraction="0.5", flush=3600)
    trips = _count_round_trips(store)
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY, ttl=60)), CENT)
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY, ttl=60)), CENT)
    assert len(trips) == 1
    clock.skip += LEASE_EXTRA + 1  # a call granted now would outlive the lease's expiry
    hold = _granted(ledger.reserve("b", CENT, DOLLAR, DAY, ttl=60))
    assert len(trips) == 2
    assert trips[-1].expires_at >= clock() + 60
    clock.skip += 59  # the call is still covered in the store
    assert store.snapshot("b", DAY).reserved.picos >= CENT.picos
    ledger.settle(hold, CENT)


# --- a process killed while it holds a lease --------------------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_a_killed_process_slice_comes_back_after_the_ttl_and_its_flushed_spend_counts_once(
    request: pytest.FixtureRequest, prefix: str, kind: str
) -> None:
    clock = Clock()
    url = request.getfixturevalue("redis_url" if kind == "redis" else "redis_cluster_url")
    inner: Ledger = (
        RedisLedger(url, prefix=prefix, clock=clock)
        if kind == "redis"
        else RedisClusterLedger(url, prefix=prefix, clock=clock)
    )
    env = dict(os.environ)
    env["LEDGER_CLOCK_OFFSET"] = repr(OFFSET)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", f"{kind}:{url}|{prefix}|0.05", "daily", "7", "3", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert worker.stdout is not None
    line = worker.stdout.readline()
    assert line.strip() == "HELD", line or worker.communicate()[1]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    worker.communicate()

    snap = inner.snapshot("daily", DAY)
    assert snap.spent == Amount(7 * CENT.picos, 70, 7)  # flushed by the worker's thread: not lost
    slice_ = snap.reserved.picos
    assert slice_ >= 3 * DIME.picos  # its calls in flight and the rest of its slice
    clock.skip = 600 + LEASE_EXTRA - 5  # until its TTL (from its last renewal) the lease counts...
    assert inner.snapshot("daily", DAY).reserved.picos == slice_
    clock.skip = 600 + LEASE_EXTRA + 1  # ...and just after it is gone
    snap = inner.snapshot("daily", DAY)
    assert snap.reserved == Amount()
    assert snap.spent == Amount(7 * CENT.picos, 70, 7)  # not counted twice
    assert len(inner.records(budget="daily")) == 7
    rest = Amount(usd_to_picos(Decimal(10)) - 7 * CENT.picos, 0, 0)
    _granted(inner.reserve("daily", rest, TEN, DAY))  # the whole cap but the spend is free again
    inner.close()


def test_sqlite_gives_back_a_dead_process_lease_when_the_file_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "spend.db"
    ledger = SQLiteLedger(path)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path[:0] = sys.argv[1:3]\n"
            "from _ledger_worker import *\n"
            "ledger = open_store(sys.argv[3])\n"
            "hold = ledger.reserve('b', Amount(10**10, 10, 1), Limits(picos=10**12), DAY)\n"
            "ledger.settle(hold, Amount(10**10, 10, 1))\n"
            "ledger.flush()\n"
            "ledger.reserve('b', Amount(10**10, 10, 1), Limits(picos=10**12), DAY)\n"
            "import os; os.kill(os.getpid(), 9)\n",
            str(ROOT),
            str(ROOT / "tests"),
            f"sqlite:{path}|0.2",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert ledger.snapshot("b", DAY).reserved.picos > 0  # its lease, until the file is opened again
    SQLiteLedger(path).close()
    assert ledger.snapshot("b", DAY) == Snapshot(Amount(10**10, 10, 1), Amount())


# --- round trips applied once, stores that fail --------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "redis", "cluster"])
def test_a_round_trip_sent_twice_is_applied_once(
    request: pytest.FixtureRequest, prefix: str, tmp_path: Path, kind: str
) -> None:
    inner: Ledger
    if kind == "sqlite":
        inner = SQLiteLedger(tmp_path / "l.db")
    elif kind == "redis":
        inner = RedisLedger(request.getfixturevalue("redis_url"), prefix=prefix)
    else:
        inner = RedisClusterLedger(request.getfixturevalue("redis_cluster_url"), prefix=prefix)
    now = inner.clock()
    renewal = LeaseRenewal(
        budget="b",
        window=DAY,
        old_id="",
        new_id="lease-test.L1",
        expires_at=now + 60,
        flush=((DAY.bucket(now), CENT),),
        records=((_record("b", "r1"), CENT, now),),
        want=DIME,
        target=DIME + DIME,
        limits=DOLLAR,
    )
    first = inner.renew_lease(renewal)
    again = inner.renew_lease(renewal)
    assert (first.amount.picos, first.applied, first.refused) == (2 * DIME.picos, True, None)
    assert (again.amount, again.applied) == (first.amount, False)
    snap = inner.snapshot("b", DAY)
    assert snap.spent == CENT
    assert snap.reserved.picos == 2 * DIME.picos
    assert [r.request_id for r in inner.records()] == ["r1"]
    inner.close()


def test_a_round_trip_whose_reply_was_lost_is_sent_again_and_counted_once(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, fraction="0.1", flush=3600)
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT, _record("b", "r1"))
    real = store._run

    def applied_then_lost(name: str, keys: Any, args: Any) -> Any:
        real(name, keys, args)
        raise redis.exceptions.ConnectionError("the reply was lost")

    store._run = applied_then_lost  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="the reply was lost"):
        ledger.flush()
    store._run = real  # type: ignore[method-assign]
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT, _record("b", "r2"))
    ledger.return_leases()
    assert store.snapshot("b", DAY) == Snapshot(CENT + CENT, Amount())
    assert [r.request_id for r in store.records()] == ["r1", "r2"]


def test_a_store_that_fails_closed_refuses_and_keeps_the_spend_counted_here(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, fraction="0.1", flush=3600)
    hold = _granted(ledger.reserve("b", CENT, DOLLAR, DAY))
    real = store._run

    def down(name: str, keys: Any, args: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis is down")

    store._run = down  # type: ignore[method-assign]
    ledger.settle(hold, CENT)  # in memory: never fails
    with pytest.raises(StoreError, match="Redis is down"):
        ledger.reserve("b", DIME + DIME, DOLLAR, DAY)  # past the lease: the store must answer
    store._run = real  # type: ignore[method-assign]
    ledger.return_leases()
    assert store.snapshot("b", DAY) == Snapshot(CENT, Amount())


def test_a_store_that_fails_open_grants_here_and_gets_the_spend_when_it_answers(
    redis_url: str,  # noqa: F811
    prefix: str,
    leased: Callable[..., LeasingLedger],
) -> None:
    store = RedisLedger(redis_url, prefix=prefix, fail_open=True)
    ledger = leased(store, fraction="0.1", flush=3600)
    real = store._run

    def down(name: str, keys: Any, args: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis is down")

    store._run = down  # type: ignore[method-assign]
    with pytest.warns(BudgetGuardWarning, match="fails open"):
        hold = _granted(ledger.reserve("b", DIME, DOLLAR, DAY))
    ledger.settle(hold, DIME)
    store._run = real  # type: ignore[method-assign]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ledger.return_leases()
    assert store.snapshot("b", DAY).spent == DIME


# --- processes, threads, configuration ---------------------------------------------------------------


def test_threads_sharing_one_leasing_ledger_keep_the_cap_exactly(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, fraction="0.02", flush=0.05)
    cap = Limits(picos=usd_to_picos(Decimal(2)))
    settled = [0] * 8

    def run(index: int) -> None:
        for _ in range(60):
            hold = ledger.reserve(
                "b", Amount(usd_to_picos(Decimal("0.01")) * (1 + index % 3), 10, 1), cap, DAY
            )
            if isinstance(hold, Hold):
                actual = Amount(hold.amount.picos // 2, 10, 1)
                ledger.settle(hold, actual)
                settled[index] += actual.picos

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ledger.return_leases()
    snap = store.snapshot("b", DAY)
    assert snap.spent.picos == sum(settled) <= usd_to_picos(Decimal(2))
    assert snap.reserved == Amount()


def test_a_forked_child_takes_a_lease_of_its_own(
    store: RedisLedger, leased: Callable[..., LeasingLedger]
) -> None:
    ledger = leased(store, fraction="0.3", flush=3600)
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
    parent_lease = store.snapshot("b", DAY).reserved.picos
    context = multiprocessing.get_context("fork")
    process = context.Process(target=_spend_in_child, args=(ledger,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: this child is simple
        process.start()
    process.join(timeout=60)
    assert process.exitcode == 0
    snap = store.snapshot("b", DAY)
    assert snap.spent == CENT  # the child's, flushed when it returned its own lease...
    assert snap.reserved.picos == parent_lease  # ...and the parent's lease untouched
    ledger.return_leases()
    assert store.snapshot("b", DAY) == Snapshot(CENT + CENT, Amount())


def _spend_in_child(ledger: LeasingLedger) -> None:
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
    ledger.close()


def test_lease_options_open_a_leasing_ledger_over_the_shared_store(redis_url: str) -> None:  # noqa: F811
    plain = open_ledger(redis_url)
    ledger = open_ledger(redis_url, lease_usd="0.05", lease_flush=0.5)
    assert isinstance(ledger, LeasingLedger)
    assert ledger.inner is plain
    assert ledger.flush_interval == 0.5
    assert open_ledger(redis_url, lease_flush=0.5, lease_usd="0.05") is ledger
    assert ledger_schemes("lease_usd") == ("sqlite", "redis", "rediss", "redis+cluster", "rediss+cluster")
    with pytest.raises(ConfigError, match=r"invalid option for a memory:// ledger: lease_usd"):
        check_store_uri("memory://", lease_usd=1)
    with pytest.raises(ConfigError, match=r"lease_fraction must be a fraction of the cap in \(0, 1\]"):
        check_store_uri(redis_url, lease_fraction=2)
    with pytest.raises(ConfigError, match="lease_tokens must be a whole number > 0"):
        check_store_uri(redis_url, lease_tokens=-1)
