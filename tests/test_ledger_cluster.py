"""Budgets in a real Redis Cluster (three primaries, three replicas on loopback, started by the tests).

The ledger contract itself runs against the cluster in ``test_ledger_backends.py``; here: the URI,
where keys and records go, the report, and what happens when a primary dies: many processes and
threads on a keyed budget family keep every cap and count every settled call exactly, with and
without leases, while a primary is killed under them; and during the failover gap the
fail-open/closed rule decides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import redirect_stdout
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import redis
from _noon_clock import OFFSET, noon
from _redis_cluster import RedisCluster, redis_cluster, redis_cluster_url  # noqa: F401 - fixtures
from _redis_server import _free_port

from budgetguard._cli import main as cli_main
from budgetguard._errors import BudgetGuardWarning, ConfigError, StoreError
from budgetguard._ledger import (
    Amount,
    Hold,
    LeasingLedger,
    Limits,
    Snapshot,
    SpendRecord,
    check_store_uri,
    close_ledgers,
    open_ledger,
    usd_to_picos,
)
from budgetguard._ledger._cluster import RedisClusterLedger
from budgetguard._usage import Usage
from budgetguard._windows import Calendar

DAY = Calendar("day")
CENT = Amount(usd_to_picos(Decimal("0.01")), 10, 1)
DOLLAR = Limits(picos=usd_to_picos(Decimal(1)))
WORKER = Path(__file__).with_name("_ledger_worker.py")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(autouse=True)
def _fresh_ledgers() -> Iterator[None]:
    close_ledgers()
    yield
    close_ledgers()


def _granted(result: object) -> Hold:
    assert isinstance(result, Hold), result
    return result


def _record(budget: str, key: str | None = None, request_id: str | None = None) -> SpendRecord:
    usage = Usage(prompt_tokens=10, requests=1, cost_usd=Decimal("0.01"))
    return SpendRecord(
        0.0,
        budget,
        key,
        budget,
        "gpt-4o-mini",
        "chat.completions",
        usage,
        Decimal("0.01"),
        request_id=request_id,
    )


def _raw(url: str) -> redis.RedisCluster:
    host, _, port = url.partition("://")[2].split(",")[0].rpartition(":")
    return redis.RedisCluster(host=host, port=int(port), decode_responses=True)


# --- the URI ---------------------------------------------------------------------------------------


def test_a_cluster_uri_opens_one_shared_cluster_ledger(redis_cluster_url: str) -> None:  # noqa: F811
    ledger = open_ledger(redis_cluster_url)
    assert isinstance(ledger, RedisClusterLedger)
    assert open_ledger(redis_cluster_url + "/") is ledger
    assert check_store_uri(redis_cluster_url, fail_open=True, wait_replicas=0) is RedisClusterLedger
    leased = open_ledger(redis_cluster_url, lease_usd="0.05")
    assert isinstance(leased, LeasingLedger)
    assert leased.inner is ledger


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("redis+cluster://", "no node"),
        ("redis+cluster://h:1,h:port", "bad port 'port'"),
        ("redis+cluster://h:1/3", "a cluster has only database 0"),
        ("rediss+cluster://h:1?x=1", "takes no query string"),
    ],
)
def test_a_bad_cluster_uri_says_what_is_expected(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_store_uri(uri)


# --- keys and records --------------------------------------------------------------------------------


def test_each_budget_lives_in_one_slot_and_budgets_spread_over_the_primaries(
    redis_cluster_url: str,  # noqa: F811
    prefix: str,
) -> None:
    ledger = RedisClusterLedger(redis_cluster_url, prefix=prefix)
    budgets = [f"per-user:{i}" for i in range(24)]
    for budget in budgets:
        ledger.settle(_granted(ledger.reserve(budget, CENT, DOLLAR, DAY)), CENT, _record("per-user", budget))
    raw = _raw(redis_cluster_url)
    keys = list(raw.scan_iter(match=f"{prefix}*", count=1000, target_nodes=redis.RedisCluster.PRIMARIES))
    slots: dict[str, set[int]] = {}
    for key in keys:
        budget = key[len(prefix) + 1 : key.index("}")]
        slots.setdefault(budget, set()).add(raw.keyslot(key))
    assert sorted(slots) == sorted(budgets)
    assert all(len(s) == 1 for s in slots.values())  # no script crosses slots
    owners = {raw.get_node_from_key(f"{prefix}{{{b}}}:total").name for b in budgets}
    assert len(owners) == 3  # 24 budgets over 3 primaries
    assert {k for k in keys if k.endswith(":records")} == {f"{prefix}{{{b}}}:records" for b in budgets}
    assert all(raw.type(f"{prefix}{{{b}}}:records") == "stream" for b in budgets)


def test_records_are_gathered_from_every_budget_stream_oldest_first(
    redis_cluster_url: str,  # noqa: F811
    prefix: str,
) -> None:
    now = [1_800_000_000.0]
    ledger = RedisClusterLedger(redis_cluster_url, prefix=prefix, clock=lambda: now[0])
    for i in range(12):
        name = "a" if i % 3 else "b"
        hold = _granted(ledger.reserve(f"{name}:{i}", CENT, DOLLAR, DAY))
        ledger.settle(hold, CENT, _record(name, str(i), request_id=f"r{i}"))
        now[0] += 1
    records = ledger.records()
    assert [r.request_id for r in records] == [f"r{i}" for i in range(12)]
    assert [r.request_id for r in ledger.records(budget="b")] == ["r0", "r3", "r6", "r9"]
    assert len(ledger.records(since=1_800_000_005.0, until=1_800_000_007.0)) == 2


def test_budgetguard_report_reads_every_stream_of_a_cluster(redis_cluster_url: str) -> None:  # noqa: F811
    name = f"report-{uuid.uuid4().hex[:6]}"
    ledger = open_ledger(redis_cluster_url)
    for key in ("alice", "bob", "carol", "dave"):
        hold = _granted(ledger.reserve(f"{name}:{key}", CENT, DOLLAR, DAY))
        ledger.settle(hold, CENT, _record(name, key))
    out = StringIO()
    with redirect_stdout(out):
        assert cli_main(["report", "--store", redis_cluster_url, "--budget", name, "--json"]) == 0
    report = json.loads(out.getvalue())
    assert sorted(row["key"] for row in report["rows"]) == ["alice", "bob", "carol", "dave"]
    assert report["total"]["calls"] == 4
    assert Decimal(report["total"]["cost_usd"]) == Decimal("0.04")


def test_a_node_that_forgot_the_scripts_is_given_them_again(
    redis_cluster_url: str,  # noqa: F811
    prefix: str,
) -> None:
    ledger = RedisClusterLedger(redis_cluster_url, prefix=prefix)
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
    raw = _raw(redis_cluster_url)
    for node in raw.get_nodes():
        raw.get_redis_connection(node).script_flush()
    ledger.settle(_granted(ledger.reserve("b", CENT, DOLLAR, DAY)), CENT)
    assert ledger.snapshot("b", DAY).spent == CENT + CENT


def test_a_cluster_that_does_not_answer_fails_closed_or_open() -> None:
    url = f"redis+cluster://:hunter2@127.0.0.1:{_free_port()}"
    closed = RedisClusterLedger(url, socket_timeout=0.5, failover_wait=0.2)
    with pytest.raises(StoreError, match=r"redis\+cluster://:\*\*\*@127\.0\.0\.1:\d+: reserve") as info:
        closed.reserve("b", CENT, DOLLAR, DAY)
    assert "hunter2" not in str(info.value)
    opened = RedisClusterLedger(url, socket_timeout=0.5, failover_wait=0.2, fail_open=True)
    with pytest.warns(BudgetGuardWarning, match="fails open"):
        hold = _granted(opened.reserve("b", CENT, DOLLAR, DAY))
    with pytest.warns(BudgetGuardWarning, match="was not recorded"):
        opened.settle(hold, CENT)


# --- failover ---------------------------------------------------------------------------------------


def _restore(cluster: RedisCluster, port: int) -> None:
    """Bring a killed primary back: it rejoins as the replica of the node that replaced it."""
    cluster.restart(port)


def test_during_a_failover_the_fail_rule_decides_and_holds_in_flight_survive(
    redis_cluster: RedisCluster,  # noqa: F811
    prefix: str,
) -> None:
    url = redis_cluster.url
    patient = RedisClusterLedger(url, prefix=prefix, clock=noon)  # rides through the gap
    closed = RedisClusterLedger(url, prefix=prefix, clock=noon, failover_wait=0.3, socket_timeout=1)
    opened = RedisClusterLedger(
        url, prefix=prefix, clock=noon, failover_wait=0.3, socket_timeout=1, fail_open=True
    )
    in_flight = _granted(patient.reserve("b", CENT, DOLLAR, DAY))
    patient.settle(_granted(patient.reserve("b", CENT, DOLLAR, DAY)), CENT)
    for ledger in (closed, opened):
        ledger.snapshot("b", DAY)  # each has its connections and slot map
    victim = redis_cluster.primary_of(f"{prefix}{{b}}:holds")
    redis_cluster.kill(victim)
    try:
        with pytest.raises(StoreError, match="reserve for budget 'b' failed"):
            closed.reserve("b", CENT, DOLLAR, DAY)  # fail-closed: the call is not sent
        with pytest.warns(BudgetGuardWarning, match="fails open"):
            local = _granted(opened.reserve("b", CENT, DOLLAR, DAY))  # fail-open: allowed, unchecked
        started = time.monotonic()
        after = _granted(patient.reserve("b", CENT, DOLLAR, DAY))  # waits for the replica to take over
        assert time.monotonic() - started < 10
        assert redis_cluster.primary_of(f"{prefix}{{b}}:holds") != victim
        # The hold reserved before the kill was acknowledged by the replica: it still counts.
        assert patient.snapshot("b", DAY) == Snapshot(spent=CENT, reserved=CENT + CENT)
        patient.settle(in_flight, CENT)
        patient.settle(after, CENT)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            opened.settle(local, CENT)  # the store answers again: the spend is recorded
        snap = patient.snapshot("b", DAY)
        assert snap.spent == Amount(4 * CENT.picos, 40, 4)
        assert snap.reserved == Amount()
    finally:
        _restore(redis_cluster, victim)


FAMILY_PROCESSES, FAMILY_THREADS, FAMILY_CALLS, FAMILY_KEYS, FAMILY_LATENCY = 8, 8, 40, 4, 0.03
FAMILY_CAP = usd_to_picos(Decimal("1.50"))


@pytest.mark.parametrize("lease", ["", "0.05"], ids=["direct", "leased"])
def test_a_keyed_family_shared_by_processes_keeps_every_cap_through_a_primary_failure(
    redis_cluster: RedisCluster,  # noqa: F811
    prefix: str,
    lease: str,
) -> None:
    spec = f"cluster:{redis_cluster.url}|{prefix}" + (f"|{lease}" if lease else "")
    env = dict(os.environ)
    env["LEDGER_CLOCK_OFFSET"] = repr(OFFSET)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "family",
                spec,
                "tenant",
                str(FAMILY_KEYS),
                str(FAMILY_CAP),
                str(FAMILY_THREADS),
                str(FAMILY_CALLS),
                str(seed),
                str(FAMILY_LATENCY),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for seed in range(FAMILY_PROCESSES)
    ]
    victim = redis_cluster.primary_of(f"{prefix}{{tenant:0}}:holds")
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line.strip() == "STARTED", line or worker.communicate()[1]
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        time.sleep(FAMILY_CALLS * FAMILY_LATENCY / 3)
        assert all(worker.poll() is None for worker in workers)  # still running...
        redis_cluster.kill(victim)  # ...when the primary of key 0 dies
        results = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        _restore(redis_cluster, victim)

    ledger = RedisClusterLedger(redis_cluster.url, prefix=prefix, clock=noon)
    records = ledger.records(budget="tenant")
    refused = 0
    for key in map(str, range(FAMILY_KEYS)):
        settled = sum(r[key]["picos"] for r in results)
        granted = sum(r[key]["granted"] for r in results)
        refused += sum(r[key]["refused"] for r in results)
        assert sum(r[key]["errors"] for r in results) == 0  # the gap was ridden through
        snap = ledger.snapshot(f"tenant:{key}", DAY)
        assert snap.spent.picos <= FAMILY_CAP
        assert snap.spent.picos == settled  # nothing lost, nothing counted twice
        assert snap.spent.requests == granted
        assert snap.reserved == Amount()  # every hold settled, every lease returned
        mine = [r for r in records if r.key == key]
        assert len(mine) == granted
        assert sum(r.usage.cost_usd for r in mine) == snap.spent.usd
    assert refused > 0  # the caps were reached, so they were what held
