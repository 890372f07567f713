"""Why budgetguard's wall time inside an SDK call exceeds its instruction count: cold caches.

budgetguard's per-call work runs in pieces between long stretches of the SDK's own work
(building the request with pydantic, httpx, parsing the response), which push budgetguard's
code and data out of the CPU caches. This times each piece of a budgeted call's work warm (run
twice, the second timed) and cold (after sweeping a buffer through the caches, as the SDK's work
does), side by side, median of ``--trials``:

- a no-op function call: the floor of the timer and of a cold call
- ``count_request``: the prompt estimate of the overhead benchmark's chat request
- ``plan_request``: the estimate plus the worst-case price a budget reserves
- ``from_openai`` + ``price``: reading a response's usage and pricing it (what tracking does)

Sweeps: ``--evict`` MiB (default 2: four times this machine's L2 per core, inside its L3) and
64 MiB (past the L3 too). Then the estimate timed where it really runs: inside budgeted calls
through the SDK (the overhead benchmark's transport), next to its warm time.

``--misses`` counts, instead of timing, what a call does to the caches: the overhead
benchmark's modes under valgrind's cachegrind, which simulates them (first level, and a last
level the size of this machine's L2 per core, read from sysfs), at two batch sizes so start-up
cancels out. Per call: instructions, first-level instruction misses, and misses that leave the
core's private caches (instruction fetches, data reads, data writes). Deterministic, unlike wall
time: this is the cost the instruction counts do not show.

    .venv/bin/python benchmarks/cold_cache.py [--trials 300] [--evict 2]
    .venv/bin/python benchmarks/cold_cache.py --misses [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _transport import CHAT_RESPONSE, MESSAGES, MODEL

from budgetguard._estimate import count_request
from budgetguard._preflight import plan_request
from budgetguard._settings import current_settings
from budgetguard._usage import TokenCounts

BODY = {"model": MODEL, "messages": [dict(m) for m in MESSAGES], "max_completion_tokens": 32}
USAGE = json.loads(CHAT_RESPONSE)["usage"]


def _noop() -> None:
    return None


def _settle() -> None:
    counts = TokenCounts.from_openai(USAGE)
    current_settings().price_book().price(counts, MODEL)


CASES: dict[str, Callable[[], object]] = {
    "no-op function call": _noop,
    "count_request (estimate)": lambda: count_request("chat.completions", BODY),
    "plan_request (estimate + worst case)": lambda: plan_request("chat.completions", BODY),
    "from_openai + price (tracking)": _settle,
}


def _sweeper(mib: int) -> Callable[[], None]:
    buffer = bytearray(mib * 1024 * 1024)
    view = memoryview(buffer)

    def sweep() -> None:
        # One write per 64-byte line: every line of the buffer passes through the caches.
        view[::64] = bytes(len(range(0, len(buffer), 64)))

    return sweep


def _median_us(fn: Callable[[], object], trials: int, before: Callable[[], None] | None) -> float:
    samples = []
    for _ in range(trials):
        fn()
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def _estimate_in_sdk_calls(trials: int) -> float:
    """Median microseconds of ``count_request`` inside budgeted calls through the real SDK."""
    from _transport import chat, make_client

    import budgetguard as bg
    from budgetguard import _preflight

    client = make_client()
    original = _preflight._counter()
    samples: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            samples.append(time.perf_counter() - start)

    _preflight._count_request = timed  # the planner's estimator, looked up once per process
    try:
        with bg.Budget(max_usd=1_000_000, name="cold-cache"):
            for _ in range(trials + 50):
                chat(client)
    finally:
        _preflight._count_request = original
    return statistics.median(samples[50:]) * 1e6


def _l2_bytes() -> int:
    """The L2 cache of one core, from sysfs (1 MiB if it cannot be read)."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if level == "2" and size.endswith("K") and size[:-1].isdigit():
            return int(size[:-1]) * 1024
    return 1024 * 1024


MISS_MODES = ("sdk", "hook", "track_usage", "budget", "budget_sqlite")


def _misses(jobs: int, small: int, large: int) -> None:
    """Per-call instructions and simulated cache misses of the overhead benchmark's modes."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import _callgrind

    if not _callgrind.available():
        print("cache misses: skipped (needs valgrind)")
        return
    l2 = _l2_bytes()
    overhead = Path(__file__).resolve().parent / "overhead.py"
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONWARNINGS": "ignore"}

    def run(job: tuple[str, int]) -> dict[str, int]:
        mode, calls = job
        argv = [sys.executable, str(overhead), "--worker", mode, "--calls", str(calls), "--warmup", "100"]
        return _callgrind.cache_events(argv, l2, env)

    jobs_list = [(mode, calls) for mode in MISS_MODES for calls in (small, large)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        totals = dict(zip(jobs_list, pool.map(run, jobs_list), strict=True))
    columns = {
        "instructions": ("Ir",),
        "L1i misses": ("I1mr",),
        "L1d misses": ("D1mr", "D1mw"),
        f"past L2 ({l2 // 1024} KiB)": ("ILmr", "DLmr", "DLmw"),
    }
    per_call = {
        mode: {
            name: sum(totals[mode, large][e] - totals[mode, small][e] for e in events) / (large - small)
            for name, events in columns.items()
        }
        for mode in MISS_MODES
    }
    print(f"\nper call, simulated by cachegrind ({large} - {small} calls), and as a multiple of the SDK's:")
    print(f"  {'':<14}" + "".join(f"{name:>28}" for name in columns))
    base = per_call["sdk"]
    for mode, values in per_call.items():
        cells = "".join(f"{values[n]:>18,.0f} ({values[n] / base[n]:5.3f}x)" for n in columns)
        print(f"  {mode:<14}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--evict", type=int, default=2, help="MiB swept before a cold run")
    parser.add_argument("--misses", action="store_true", help="count simulated cache misses instead")
    parser.add_argument("--jobs", type=int, default=2, help="cachegrind runs at once (--misses)")
    args = parser.parse_args()
    if args.misses:
        _misses(args.jobs, small=100, large=400)
        return
    sweeps = {f"cold, {args.evict} MiB swept": _sweeper(args.evict), "cold, 64 MiB swept": _sweeper(64)}
    print(f"median of {args.trials} trials, microseconds (the SDK's call is about 1,200 us)")
    print(f"  {'':<38} {'warm':>8} " + " ".join(f"{name:>22}" for name in sweeps))
    warm_estimate = 0.0
    for name, fn in CASES.items():
        warm = _median_us(fn, args.trials, None)
        cold = [_median_us(fn, args.trials, sweep) for sweep in sweeps.values()]
        print(
            f"  {name:<38} {warm:8.1f} " + " ".join(f"{value:13.1f} ({value / warm:4.1f}x)" for value in cold)
        )
        if fn is CASES["count_request (estimate)"]:
            warm_estimate = warm
    in_sdk = _estimate_in_sdk_calls(args.trials)
    ratio = in_sdk / warm_estimate
    print(f"  count_request inside budgeted SDK calls: {in_sdk:.1f} us ({ratio:.1f}x its warm time)")


if __name__ == "__main__":
    main()
