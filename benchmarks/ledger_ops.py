"""Reserve + settle operations per second on each ledger backend, next to a raw baseline on the same store.

    .venv/bin/python benchmarks/ledger_ops.py [--seconds 1.5] [--json]

One thread, one budget with a daily calendar window (and a rolling hour, the widest common window:
61 buckets), each operation a reserve then a settle. Baselines: for memory, a lock and a dict
increment; for SQLite, one ``INSERT`` + ``COMMIT`` in the same WAL / synchronous=NORMAL mode on
the same disk; for Redis, one ``INCRBY`` round trip to the same server. The ratio is ledger
operations per second over baseline operations per second. Starts its own ``redis-server`` on a
free port (skipped with a note when it is not installed).
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from budgetguard._ledger import Amount, Hold, Ledger, Limits, MemoryLedger, SpendRecord, usd_to_picos  # noqa: E402
from budgetguard._ledger._redis import RedisLedger  # noqa: E402
from budgetguard._ledger._sqlite import SQLiteLedger  # noqa: E402
from budgetguard._usage import Usage  # noqa: E402
from budgetguard._windows import Calendar, Rolling  # noqa: E402

CALL = Amount(usd_to_picos(Decimal("0.0004")), 1200, 1)
ACTUAL = Amount(usd_to_picos(Decimal("0.0003")), 900, 1)
LIMITS = Limits(picos=usd_to_picos(Decimal(10**6)), tokens=10**12, requests=10**9)
RECORD = SpendRecord(
    time=0.0, budget="bench", key=None, scope_path="bench", model="gpt-4o-mini", endpoint="chat.completions",
    usage=Usage(prompt_tokens=800, completion_tokens=100, requests=1, cost_usd=Decimal("0.0003")),
    reserved_usd=Decimal("0.0004"),
)  # fmt: skip


def rate(operation: Callable[[], None], seconds: float) -> float:
    """Operations per second of ``operation``, run for about ``seconds`` after a short warm-up."""
    for _ in range(50):
        operation()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            operation()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def ledger_op(ledger: Ledger, window: Calendar | Rolling, record: SpendRecord | None) -> Callable[[], None]:
    budget = f"bench-{uuid.uuid4().hex[:6]}"

    def op() -> None:
        hold = ledger.reserve(budget, CALL, LIMITS, window)
        assert isinstance(hold, Hold)
        ledger.settle(hold, ACTUAL, record)

    return op


def memory_baseline() -> Callable[[], None]:
    lock, counts = threading.Lock(), {"b": 0}

    def op() -> None:
        with lock:
            counts["b"] += 1

    return op


def sqlite_baseline(path: Path) -> Callable[[], None]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS raw (picos INTEGER)")

    def op() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO raw (picos) VALUES (?)", (CALL.picos,))
        conn.execute("COMMIT")

    return op


def redis_baseline(url: str) -> Callable[[], None]:
    import redis

    client = redis.Redis.from_url(url)

    def op() -> None:
        client.incrby("bench:raw", CALL.picos)

    return op


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement (default 1.5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    day, hour = Calendar("day", "America/New_York"), Rolling(3600)
    rows: list[dict[str, object]] = []

    def measure(store: str, case: str, op: Callable[[], None], baseline: float) -> None:
        ops = rate(op, args.seconds)
        rows.append({"store": store, "case": case, "ops_per_s": round(ops), "us_per_op": round(1e6 / ops, 1),
                     "baseline_ops_per_s": round(baseline), "ratio": round(ops / baseline, 3)})  # fmt: skip

    memory = MemoryLedger()
    base = rate(memory_baseline(), args.seconds)
    measure("memory", "reserve+settle, 1d calendar", ledger_op(memory, day, None), base)
    measure("memory", "reserve+settle, 1h rolling", ledger_op(memory, hour, None), base)

    with tempfile.TemporaryDirectory(prefix="budgetguard-bench-") as tmp:
        base = rate(sqlite_baseline(Path(tmp) / "raw.db"), args.seconds)
        sqlite = SQLiteLedger(Path(tmp) / "ledger.db")
        measure("sqlite", "reserve+settle, 1d calendar", ledger_op(sqlite, day, None), base)
        measure("sqlite", "reserve+settle, 1h rolling", ledger_op(sqlite, hour, None), base)
        measure("sqlite", "reserve+settle+record, 1d calendar", ledger_op(sqlite, day, RECORD), base)
        sqlite.close()

    notes = []
    try:
        from _redis_server import find_redis_server, start_redis_server
    except ImportError:  # pragma: no cover - run from a checkout
        find_redis_server = None  # type: ignore[assignment]
    if find_redis_server is not None and find_redis_server() is not None:
        server = start_redis_server()
        try:
            base = rate(redis_baseline(server.url), args.seconds)
            redis_ledger = RedisLedger(server.url)
            measure("redis", "reserve+settle, 1d calendar", ledger_op(redis_ledger, day, None), base)
            measure("redis", "reserve+settle, 1h rolling", ledger_op(redis_ledger, hour, None), base)
            measure("redis", "reserve+settle+record, 1d calendar", ledger_op(redis_ledger, day, RECORD), base)
            redis_ledger.close()
        finally:
            server.stop()
    else:
        notes.append("redis-server not installed (apt-get install -y redis-server): Redis rows skipped")

    machine = f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}, " + (
        f"SQLite {sqlite3.sqlite_version}"
    )
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows, "notes": notes}, indent=2))
        return
    header = ["store", "case", "ops/s", "us/op", "raw ops/s", "ratio"]
    table = [[str(r["store"]), str(r["case"]), f"{r['ops_per_s']:,}", f"{r['us_per_op']}",
              f"{r['baseline_ops_per_s']:,}", f"{r['ratio']}"] for r in rows]  # fmt: skip
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    print(f"ledger reserve+settle, one thread ({machine})")
    for line in [header, *table]:
        print(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
