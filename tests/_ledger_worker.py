"""A worker process for the multi-process ledger tests (run as a script, never collected by pytest).

    python _ledger_worker.py spend STORE BUDGET CAP_PICOS THREADS CALLS SEED
        THREADS threads each try CALLS capped calls against one daily budget: reserve the worst
        case, then settle a random actual no larger than it (with a record). Prints one JSON line.
    python _ledger_worker.py hold STORE BUDGET SETTLED HELD TTL
        Settles SETTLED calls of $0.01, then reserves HELD holds of $0.10 with TTL seconds, prints
        ``HELD`` and sleeps until killed.

STORE is ``sqlite:PATH`` or ``redis:URL|PREFIX``. The clock is ``time.time()`` plus the seconds in
``LEDGER_CLOCK_OFFSET``, so the tests can run every process at noon and never straddle midnight.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from decimal import Decimal

from budgetguard._ledger import Amount, Hold, Ledger, Limits, SpendRecord, picos_to_usd, usd_to_picos
from budgetguard._usage import Usage
from budgetguard._windows import Calendar

DAY = Calendar("day")


OFFSET = float(os.environ.get("LEDGER_CLOCK_OFFSET", "0"))


def clock() -> float:
    return time.time() + OFFSET


def open_store(spec: str) -> Ledger:
    kind, _, where = spec.partition(":")
    if kind == "sqlite":
        from budgetguard._ledger._sqlite import SQLiteLedger

        return SQLiteLedger(where, clock=clock)
    from budgetguard._ledger._redis import RedisLedger

    url, _, prefix = where.partition("|")
    return RedisLedger(url, prefix=prefix, clock=clock)


def record(budget: str, actual: Amount, reserved: Amount) -> SpendRecord:
    return SpendRecord(
        time=0.0,
        budget=budget,
        key=None,
        scope_path="worker",
        model="gpt-4o-mini",
        endpoint="chat.completions",
        usage=Usage(prompt_tokens=actual.tokens, requests=1, cost_usd=picos_to_usd(actual.picos)),
        reserved_usd=reserved.usd,
    )


def spend(ledger: Ledger, budget: str, cap: int, threads: int, calls: int, seed: int) -> None:
    limits = Limits(picos=cap)
    lock = threading.Lock()
    totals = {"granted": 0, "refused": 0, "picos": 0}

    def run(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        for _ in range(calls):
            worst = Amount(usd_to_picos(Decimal(rng.randint(10, 50)) / 1000), 100, 1)
            hold = ledger.reserve(budget, worst, limits, DAY)
            if not isinstance(hold, Hold):
                with lock:
                    totals["refused"] += 1
                continue
            actual = Amount(rng.randint(0, worst.picos), rng.randint(1, 100), 1)
            ledger.settle(hold, actual, record(budget, actual, worst))
            with lock:
                totals["granted"] += 1
                totals["picos"] += actual.picos

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps(totals), flush=True)


def hold(ledger: Ledger, budget: str, settled: int, held: int, ttl: float) -> None:
    cent = Amount(usd_to_picos(Decimal("0.01")), 10, 1)
    for _ in range(settled):
        first = ledger.reserve(budget, cent, Limits(), DAY)
        assert isinstance(first, Hold)
        ledger.settle(first, cent, record(budget, cent, cent))
    dime = Amount(usd_to_picos(Decimal("0.10")), 10, 1)
    for _ in range(held):
        assert isinstance(ledger.reserve(budget, dime, Limits(), DAY, ttl=ttl), Hold)
    print("HELD", flush=True)
    while True:
        time.sleep(60)


def main(argv: list[str]) -> None:
    mode, store, budget, *numbers = argv
    ledger = open_store(store)
    if mode == "spend":
        cap, threads, calls, seed = (int(n) for n in numbers)
        spend(ledger, budget, cap, threads, calls, seed)
    else:
        settled, held, ttl = int(numbers[0]), int(numbers[1]), float(numbers[2])
        hold(ledger, budget, settled, held, ttl)


if __name__ == "__main__":
    main(sys.argv[1:])
