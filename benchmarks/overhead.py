"""What budgetguard costs per call, measured side by side in one run.

- untracked: a chat call through the real openai SDK with an in-process transport
- tracked:   the same call inside ``track_usage`` (parse usage, price, tally)
- budgeted:  the same call inside a ``Budget`` (estimate + reserve + settle as well)

Rounds alternate the three so machine noise hits them alike; the ratio is of medians.
Also: memory after 100,000 tracked calls (it must not grow with the number of calls).

    .venv/bin/python benchmarks/overhead.py [--calls 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _transport import chat, make_client

import budgetguard as bg


def _time(fn: Any, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--memory-calls", type=int, default=100_000)
    args = parser.parse_args()

    client = make_client()
    bg.instrument()  # installed for every variant, so "untracked" includes the idle hook
    tracker = bg.track_usage()
    budget = bg.Budget(max_usd=10_000, name="bench")

    def untracked() -> None:
        chat(client)

    def tracked() -> None:
        with tracker:
            chat(client)

    def budgeted() -> None:
        with budget:
            chat(client)

    for fn in (untracked, tracked, budgeted):  # warm up: encoders, prices, pydantic
        _time(fn, 200)
    results: dict[str, list[float]] = {"untracked": [], "tracked": [], "budgeted": []}
    for _ in range(args.rounds):
        for name, fn in (("untracked", untracked), ("tracked", tracked), ("budgeted", budgeted)):
            results[name].append(_time(fn, args.calls))
    base = statistics.median(results["untracked"])
    print(f"per-call time, median of {args.rounds} rounds x {args.calls} calls")
    print("(real openai SDK, in-process transport; ratios against the untracked call in this run)")
    for name, samples in results.items():
        median = statistics.median(samples)
        extra = (median - base) * 1e6
        print(f"  {name:<10} {median * 1e6:8.1f} us   ratio {median / base:5.3f}x   (+{extra:6.1f} us)")

    gc.collect()
    tracemalloc.start()
    with bg.track_usage() as long_run:
        for i in range(args.memory_calls):
            chat(client)
            if i == 999:
                gc.collect()
                after_1k = tracemalloc.get_traced_memory()[0]
    gc.collect()
    after_all = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(
        f"memory: traced heap after 1,000 tracked calls {after_1k / 1024:8.1f} KiB, "
        f"after {args.memory_calls:,} {after_all / 1024:8.1f} KiB "
        f"(growth {(after_all - after_1k) / 1024:+.1f} KiB; {long_run.usage.requests:,} calls counted)"
    )


if __name__ == "__main__":
    main()
