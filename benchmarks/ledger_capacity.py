"""Capacity of shared budgets: reserve + settle per second on one Redis and on a Redis Cluster,
with and without leases, from 1, 4 and 16 processes, on one hot budget and on 10,000 keyed ones.

    .venv/bin/python benchmarks/ledger_capacity.py [--seconds 2] [--processes 1,4,16] [--json]

Starts its own stores on free loopback ports: one ``redis-server``, and a Redis Cluster of three
primaries and three replicas (Debian's ``redis-server`` in cluster mode; the cluster ledger waits
for one replica to acknowledge each write, its default). Each process runs one thread that calls
``reserve`` then ``settle`` (with the call's ledger record, as a budget does) in a loop, as fast as
the store answers: the numbers are the store's capacity, not a model of API latency. Cases:

* hot: every process charges the same budget (one tenant, one daily cap);
* spread: each call charges one of 10,000 keyed budgets (``tenant:<k>``, k at random).

Leased rows wrap the store in a ``LeasingLedger`` whose slice is ``--lease-calls`` (default 100)
calls' worst case, flushing every 0.1 s (the default). Processes are started once per process
count and run every configuration in turn, started together; between configurations the stores
are emptied. Needs the ``redis`` package (``pip install -e '.[redis]'``; ``./scripts/test`` installs
it) and ``redis-server`` / ``redis-cli`` (``apt-get install -y redis-server``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from budgetguard._ledger import (  # noqa: E402
    Amount,
    Hold,
    LeasingLedger,
    Ledger,
    Limits,
    SpendRecord,
    usd_to_picos,
)
from budgetguard._usage import Usage  # noqa: E402
from budgetguard._windows import Calendar  # noqa: E402

CALL = Amount(usd_to_picos(Decimal("0.0004")), 1200, 1)
ACTUAL = Amount(usd_to_picos(Decimal("0.0003")), 900, 1)
LIMITS = Limits(picos=usd_to_picos(Decimal(10**6)), tokens=10**12, requests=10**9)
DAY = Calendar("day")
KEYS = 10_000
RECORD = SpendRecord(
    time=0.0, budget="tenant", key=None, scope_path="bench", model="gpt-4o-mini", endpoint="chat.completions",
    usage=Usage(prompt_tokens=800, completion_tokens=100, requests=1, cost_usd=Decimal("0.0003")),
    reserved_usd=Decimal("0.0004"),
)  # fmt: skip
CONFIGS = (("redis", False), ("redis", True), ("cluster", False), ("cluster", True))
CASES = ("hot", "spread")


# --- the worker: one process, one thread, commands on stdin ----------------------------------------


def _open(command: dict[str, Any]) -> Ledger:
    ledger: Ledger
    if command["store"] == "cluster":
        from budgetguard._ledger._cluster import RedisClusterLedger

        ledger = RedisClusterLedger(command["url"], prefix=command["prefix"])
    else:
        from budgetguard._ledger._redis import RedisLedger

        ledger = RedisLedger(command["url"], prefix=command["prefix"])
    if command["lease_usd"]:
        ledger = LeasingLedger(ledger, usd=command["lease_usd"])
    return ledger


def _operation(ledger: Ledger, case: str, seed: int) -> Callable[[], None]:
    rng = random.Random(seed)
    hot = case == "hot"

    def op() -> None:
        key = "0" if hot else str(rng.randrange(KEYS))
        hold = ledger.reserve(f"tenant:{key}", CALL, LIMITS, DAY)
        assert isinstance(hold, Hold), hold
        ledger.settle(hold, ACTUAL, RECORD)

    return op


def worker() -> None:
    """Answer each command line (JSON) with one line: ``ready``, then after ``go`` the count."""
    for line in sys.stdin:
        command = json.loads(line)
        ledger = _open(command)
        op = _operation(ledger, command["case"], command["seed"])
        for _ in range(20):  # connections, scripts, a first lease
            op()
        print("ready", flush=True)
        sys.stdin.readline()  # go
        count, start = 0, time.perf_counter()
        deadline = start + command["seconds"]
        while True:
            for _ in range(10):
                op()
            count += 10
            now = time.perf_counter()
            if now >= deadline:
                break
        elapsed = now - start
        inner = ledger.inner if isinstance(ledger, LeasingLedger) else ledger
        ledger.close()  # a leasing ledger returns its leases and writes what it counted
        if inner is not ledger:
            inner.close()
        print(json.dumps({"ops": count, "seconds": elapsed}), flush=True)


# --- the parent --------------------------------------------------------------------------------------


def _primaries(servers: dict[str, Any], store: str) -> list[int]:
    return [servers["redis"].port] if store == "redis" else list(servers["cluster"].primaries())


def _server_cpu(ports: list[int]) -> float:
    """CPU seconds the primaries' main threads have used (INFO cpu): what runs out first on a
    single-threaded server. Not wall time, so other work on the machine does not inflate it."""
    import redis

    total = 0.0
    for port in ports:
        cpu = redis.Redis(port=port).info("cpu")
        if "used_cpu_user_main_thread" in cpu:
            total += float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])
        else:
            total += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return total


def _flush_stores(servers: dict[str, Any]) -> None:
    import redis

    if "redis" in servers:
        redis.Redis(port=servers["redis"].port).flushall()
    if "cluster" in servers:
        cluster = servers["cluster"]
        for port in cluster.primaries():
            redis.Redis(port=port).flushall()


def measure(
    processes: int, servers: dict[str, Any], seconds: float, lease_calls: int
) -> list[dict[str, Any]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(processes)
    ]
    rows = []
    lease_usd = str(CALL.usd * lease_calls)
    try:
        for store, leased in CONFIGS:
            if store not in servers:
                continue
            url = servers[store].url
            for case in CASES:
                prefix = f"cap-{uuid.uuid4().hex[:6]}:"
                for index, process in enumerate(workers):
                    assert process.stdin is not None
                    command = {"store": store, "url": url, "prefix": prefix, "case": case, "seconds": seconds,
                               "seed": index, "lease_usd": lease_usd if leased else None}  # fmt: skip
                    process.stdin.write(json.dumps(command) + "\n")
                    process.stdin.flush()
                for process in workers:
                    assert process.stdout is not None
                    ready = process.stdout.readline().strip()
                    if ready != "ready":
                        raise RuntimeError(f"a worker failed (said {ready!r}); run it alone to see why")
                primaries = _primaries(servers, store)
                cpu_before = _server_cpu(primaries)
                for process in workers:
                    assert process.stdin is not None
                    process.stdin.write("go\n")
                    process.stdin.flush()
                results = []
                for process in workers:
                    assert process.stdout is not None
                    results.append(json.loads(process.stdout.readline()))
                rate = sum(r["ops"] / r["seconds"] for r in results)
                server_us = 1e6 * (_server_cpu(primaries) - cpu_before) / sum(r["ops"] for r in results)
                rows.append({"store": store, "leases": leased, "case": case, "processes": processes,
                             "ops_per_s": round(rate), "per_process": round(rate / processes),
                             "server_us_per_op": round(server_us, 1)})  # fmt: skip
                _flush_stores(servers)
    finally:
        for process in workers:
            if process.stdin is not None:
                process.stdin.close()
        for process in workers:
            process.wait(timeout=60)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    parser.add_argument("--processes", default="1,4,16", help="process counts (default 1,4,16)")
    parser.add_argument("--lease-calls", type=int, default=100, help="calls per lease slice (default 100)")
    parser.add_argument("--stores", default="redis,cluster", help="stores to measure (default redis,cluster)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.worker:
        worker()
        return

    try:
        import redis  # noqa: F401
        from _redis_cluster import find_redis_cli, start_redis_cluster
        from _redis_server import find_redis_server, start_redis_server
    except ImportError as exc:
        sys.exit(f"ledger_capacity needs the redis package ({exc}): .venv/bin/pip install -e '.[redis]'")
    if find_redis_server() is None or find_redis_cli() is None:
        sys.exit("ledger_capacity needs redis-server and redis-cli: apt-get install -y redis-server")

    wanted = set(args.stores.split(","))
    servers: dict[str, Any] = {}
    try:
        if "redis" in wanted:
            servers["redis"] = start_redis_server()
        if "cluster" in wanted:
            servers["cluster"] = start_redis_cluster()
        rows: list[dict[str, Any]] = []
        for processes in (int(p) for p in args.processes.split(",")):
            rows.extend(measure(processes, servers, args.seconds, args.lease_calls))
    finally:
        for server in servers.values():
            server.stop()

    machine = f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs"
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
        return
    counts = sorted({r["processes"] for r in rows})
    print(f"reserve+settle per second, all processes together ({machine}; {args.seconds:g} s each)")
    header = ["store", "leases", "case", *(f"{n} proc" for n in counts)]
    table = []
    for store, leased in CONFIGS:
        for case in CASES:
            cells = {
                r["processes"]: r
                for r in rows
                if (r["store"], r["leases"], r["case"]) == (store, leased, case)
            }
            if not cells:
                continue
            name = "Redis (1 server)" if store == "redis" else "Redis Cluster (3+3)"
            rates = [f"{cells[n]['ops_per_s']:,}" if n in cells else "-" for n in counts]
            table.append([name, "yes" if leased else "no", case, *rates])
    _print_table(header, table, 3)
    # What the stores did per call: CPU microseconds of the primaries' main threads (the replicas'
    # work is not in it), and the calls per second at which one primary, a single-threaded
    # server, would be saturated, whatever the clients' CPUs.
    most = counts[-1]
    print(f"\nserver time per reserve+settle ({most} processes) and the ceiling it sets on one primary")
    header = ["store", "leases", "case", "server CPU us/call", "calls/s per primary"]
    table = []
    for store, leased in CONFIGS:
        for case in CASES:
            key = (store, leased, case, most)
            row = next((r for r in rows if (r["store"], r["leases"], r["case"], r["processes"]) == key), None)
            if row is None:
                continue
            name = "Redis (1 server)" if store == "redis" else "Redis Cluster (3+3)"
            us = max(row["server_us_per_op"], 0.1)
            table.append([name, "yes" if leased else "no", case, f"{us:g}", f"{round(1e6 / us, -2):,.0f}"])
    _print_table(header, table, 3)


def _print_table(header: list[str], table: list[list[str]], text_columns: int) -> None:
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        cells = enumerate(zip(line, widths, strict=True))
        print("  ".join(c.ljust(w) if i < text_columns else c.rjust(w) for i, (c, w) in cells))


if __name__ == "__main__":
    main()
