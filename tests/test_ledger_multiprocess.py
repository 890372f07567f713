"""Many processes on one store: a shared daily cap holds, and a killed process's holds are freed.

Each test starts real OS processes (``_ledger_worker.py``) against one SQLite file or one real
Redis server; the parent only reads the store afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from _noon_clock import OFFSET, Clock
from _redis_server import redis_url  # noqa: F401 - the fixture

from budgetguard._ledger import Amount, Hold, Ledger, Limits, usd_to_picos
from budgetguard._ledger._redis import RedisLedger
from budgetguard._ledger._sqlite import SQLiteLedger
from budgetguard._windows import Calendar

WORKER = Path(__file__).with_name("_ledger_worker.py")
ROOT = Path(__file__).resolve().parent.parent

DAY = Calendar("day")
PROCESSES, THREADS, CALLS = 4, 8, 20
CAP = usd_to_picos(Decimal("2.00"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["LEDGER_CLOCK_OFFSET"] = repr(OFFSET)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _worker(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Clock, Ledger]]:
    """(the worker's store spec, the parent's clock, the parent's ledger on the same store)."""
    clock = Clock()
    ledger: Ledger
    if request.param == "sqlite":
        path = tmp_path / "shared.db"
        ledger = SQLiteLedger(path, clock=clock)
        spec = f"sqlite:{path}"
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"mp-{uuid.uuid4().hex[:8]}:"
        ledger = RedisLedger(url, clock=clock, prefix=prefix)
        spec = f"redis:{url}|{prefix}"
    yield spec, clock, ledger
    ledger.close()


def test_processes_and_threads_sharing_a_daily_cap_never_overspend(store: tuple[str, Clock, Ledger]) -> None:
    spec, _, ledger = store
    workers = [_worker("spend", spec, "daily", CAP, THREADS, CALLS, seed) for seed in range(PROCESSES)]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        results.append(json.loads(out))

    snap = ledger.snapshot("daily", DAY)
    assert snap.spent.picos <= CAP
    assert snap.reserved == Amount()
    assert snap.spent.picos == sum(r["picos"] for r in results)
    assert snap.spent.requests == sum(r["granted"] for r in results)
    assert sum(r["refused"] for r in results) > 0  # the cap was reached, so it was what held
    records = ledger.records(budget="daily")
    assert len(records) == snap.spent.requests
    assert sum(r.usage.cost_usd for r in records) == snap.spent.usd
    start, end = DAY.span(ledger.clock())
    assert all(start <= r.time < end for r in records)


def _kill_while_holding(spec: str, settled: int, held: int, ttl: float) -> None:
    worker = _worker("hold", spec, "daily", settled, held, ttl)
    assert worker.stdout is not None
    line = worker.stdout.readline()
    assert line.strip() == "HELD", worker.stderr.read() if worker.stderr else line
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    worker.communicate()


CENT = usd_to_picos(Decimal("0.01"))
DIME = usd_to_picos(Decimal("0.10"))


def test_a_killed_process_holds_are_released_after_their_ttl(store: tuple[str, Clock, Ledger]) -> None:
    spec, clock, ledger = store
    _kill_while_holding(spec, settled=3, held=4, ttl=600)
    snap = ledger.snapshot("daily", DAY)
    assert snap.reserved.picos == 4 * DIME  # dead, but not yet known to be: the holds still count
    assert snap.spent.picos == 3 * CENT
    clock.skip = 601
    snap = ledger.snapshot("daily", DAY)
    assert snap.reserved == Amount()
    assert snap.spent.picos == 3 * CENT
    # All of the cap but the settled spend is free again.
    cap = Limits(picos=10 * DIME)
    assert isinstance(ledger.reserve("daily", Amount(10 * DIME - 3 * CENT), cap, DAY), Hold)


def test_a_killed_process_sqlite_holds_are_released_when_the_file_is_next_opened(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    ledger = SQLiteLedger(path, clock=Clock())
    _kill_while_holding(f"sqlite:{path}", settled=2, held=5, ttl=600)
    assert ledger.snapshot("daily", DAY).reserved.picos == 5 * DIME
    reopened = SQLiteLedger(path, clock=Clock())
    snap = reopened.snapshot("daily", DAY)
    assert snap.reserved == Amount()
    assert snap.spent.picos == 2 * CENT
    assert ledger.snapshot("daily", DAY).reserved == Amount()  # every connection sees it
