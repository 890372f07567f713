"""A worker process for the multi-process ledger tests (run as a script, never collected by pytest).

    python _ledger_worker.py spend STORE BUDGET CAP_PICOS THREADS CALLS SEED
        THREADS threads each try CALLS capped calls against one daily budget: reserve the worst
        case, then settle a random actual no larger than it (with a record). Prints one JSON line.
    python _ledger_worker.py hold STORE BUDGET SETTLED HELD TTL
        Settles SETTLED calls of $0.01, then reserves HELD holds of $0.10 with TTL seconds, prints
        ``HELD`` and sleeps until killed. With a leased STORE, the holds are taken against a lease
        of the budget (capped at $10) and ``HELD`` is printed once the settled spend has reached
        the store (the flushing thread writes it within its interval).
    python _ledger_worker.py family STORE FAMILY KEYS CAP_PICOS THREADS CALLS SEED LATENCY
        A keyed budget family: THREADS threads each make CALLS calls, each on the budget
        ``FAMILY:<k>`` of a random key k < KEYS (each capped at CAP_PICOS a day): reserve the worst
        case, wait LATENCY seconds (the API call), settle a random actual no larger than it, with
        a record. Prints ``STARTED`` once the store is open and starts when a line arrives on its
        stdin; prints one JSON line of totals per key at the end.

STORE is ``sqlite:PATH``, ``redis:URL|PREFIX`` or ``cluster:URL|PREFIX``; a further ``|FRACTION``
wraps it in a ``LeasingLedger`` leasing that fraction of each cap. The clock is ``time.time()``
plus the seconds in ``LEDGER_CLOCK_OFFSET``, so the tests can run every process at noon and never
straddle midnight.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from decimal import Decimal

from budgetguard._errors import StoreError
from budgetguard._ledger import (
    Amount,
    Hold,
    LeasingLedger,
    Ledger,
    Limits,
    SpendRecord,
    picos_to_usd,
    usd_to_picos,
)
from budgetguard._usage import Usage
from budgetguard._windows import Calendar

DAY = Calendar("day")


OFFSET = float(os.environ.get("LEDGER_CLOCK_OFFSET", "0"))


def clock() -> float:
    return time.time() + OFFSET


def open_store(spec: str) -> Ledger:
    kind, _, where = spec.partition(":")
    ledger: Ledger
    if kind == "sqlite":
        from budgetguard._ledger._sqlite import SQLiteLedger

        path, _, lease = where.partition("|")
        ledger = SQLiteLedger(path, clock=clock)
    else:
        url, prefix, *rest = where.split("|")
        lease = rest[0] if rest else ""
        if kind == "cluster":
            from budgetguard._ledger._cluster import RedisClusterLedger

            ledger = RedisClusterLedger(url, prefix=prefix, clock=clock)
        else:
            from budgetguard._ledger._redis import RedisLedger

            ledger = RedisLedger(url, prefix=prefix, clock=clock)
    if lease:
        ledger = LeasingLedger(ledger, fraction=lease)
    return ledger


def record(budget: str, actual: Amount, reserved: Amount, key: str | None = None) -> SpendRecord:
    return SpendRecord(
        time=0.0,
        budget=budget,
        key=key,
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
    leased = isinstance(ledger, LeasingLedger)
    limits = Limits(picos=usd_to_picos(Decimal(10))) if leased else Limits()
    cent = Amount(usd_to_picos(Decimal("0.01")), 10, 1)
    for _ in range(settled):
        first = ledger.reserve(budget, cent, limits, DAY, ttl=ttl)
        assert isinstance(first, Hold)
        ledger.settle(first, cent, record(budget, cent, cent))
    if isinstance(ledger, LeasingLedger):
        # Nothing is flushed by hand: wait for the flushing thread to have written the spend.
        deadline = time.monotonic() + 30
        while ledger.inner.snapshot(budget, DAY).spent.picos < settled * cent.picos:
            assert time.monotonic() < deadline, "the settled spend never reached the store"
            time.sleep(0.02)
    dime = Amount(usd_to_picos(Decimal("0.10")), 10, 1)
    for _ in range(held):
        assert isinstance(ledger.reserve(budget, dime, limits, DAY, ttl=ttl), Hold)
    print("HELD", flush=True)
    while True:
        time.sleep(60)


def family(
    ledger: Ledger, name: str, keys: int, cap: int, threads: int, calls: int, seed: int, latency: float
) -> None:
    limits = Limits(picos=cap)
    lock = threading.Lock()
    totals = {
        str(k): {"granted": 0, "refused": 0, "errors": 0, "picos": 0, "requests": 0} for k in range(keys)
    }
    print("STARTED", flush=True)
    sys.stdin.readline()  # the parent says when: every process starts its calls together

    def run(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        for _ in range(calls):
            key = str(rng.randrange(keys))
            budget = f"{name}:{key}"
            worst = Amount(usd_to_picos(Decimal(rng.randint(10, 50)) / 1000), 100, 1)
            try:
                hold = ledger.reserve(budget, worst, limits, DAY)
            except StoreError:
                with lock:
                    totals[key]["errors"] += 1
                continue
            if not isinstance(hold, Hold):
                with lock:
                    totals[key]["refused"] += 1
                continue
            time.sleep(latency)
            actual = Amount(rng.randint(0, worst.picos), rng.randint(1, 100), 1)
            ledger.settle(hold, actual, record(name, actual, worst, key))
            with lock:
                totals[key]["granted"] += 1
                totals[key]["picos"] += actual.picos
                totals[key]["requests"] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ledger.close()  # returns any lease, writing what is counted here
    print(json.dumps(totals), flush=True)


_crashed: list[str] = []


def _thread_crashed(args: threading.ExceptHookArgs) -> None:
    """A worker thread that dies makes the whole process fail (its calls would go uncounted)."""
    _crashed.append(repr(args.exc_value))
    threading.__excepthook__(args)


def main(argv: list[str]) -> None:
    threading.excepthook = _thread_crashed
    mode, store, budget, *numbers = argv
    ledger = open_store(store)
    if mode == "spend":
        cap, threads, calls, seed = (int(n) for n in numbers)
        spend(ledger, budget, cap, threads, calls, seed)
    elif mode == "family":
        keys, cap, threads, calls, seed = (int(n) for n in numbers[:5])
        family(ledger, budget, keys, cap, threads, calls, seed, float(numbers[5]))
    else:
        settled, held, ttl = int(numbers[0]), int(numbers[1]), float(numbers[2])
        hold(ledger, budget, settled, held, ttl)


if __name__ == "__main__":
    main(sys.argv[1:])
    if _crashed:
        sys.exit(f"{len(_crashed)} worker threads crashed: {_crashed}")
