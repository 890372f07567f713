"""What metering a call costs, next to what users would pick instead, measured side by side.

The workload: a short chat request (a ~140-token system prompt and a question, gpt-4o-mini)
through the real openai SDK with an in-process transport (``_transport.py``). Modes:

    sdk                    the openai SDK alone (budgetguard not imported)
    hook                   budgetguard's hook installed, no scope active
    track_usage            inside ``bg.track_usage()`` (usage parsed, priced, tallied)
    budget                 inside ``bg.Budget`` with its in-memory ledger (also estimate,
                           reserve, settle)
    budget_sqlite          inside ``bg.Budget`` on a SQLite ledger (WAL, on disk)
    langchain              LangChain ``ChatOpenAI.invoke``, alone
    langchain_callback     the same inside LangChain's ``get_openai_callback()``
    langchain_track_usage  the same inside ``bg.track_usage()``

Each scope is entered once around a mode's calls (a run), so the figures are per call.

Wall time: every mode runs in a fresh process; rounds interleave the modes (the order rotates
each round). A process times its calls in batches; each mode's figure is the minimum, over
rounds and batches, of the mean time per call in a batch (the least disturbed by other work).
Paired wall time (``--paired``, on by default): separate processes on a shared machine differ
by more than budgetguard costs, so each scoped mode also runs in one process against its own
unscoped calls: short batches inside the scope alternate with batches outside it (the hook
installed, or LangChain's invoke alone), in ``--paired-rounds`` processes of ``--pairs`` pairs of
adjacent batches; the figure is the median over all pairs of inside / outside (the quietest batch
of each side is printed too). Both sides share the process, its caches and its disturbances.
Instructions: each mode runs under valgrind's callgrind at two batch sizes in fresh processes
(same warm-up); the difference divided by the difference in calls is the cost per call, with
interpreter start-up and imports cancelled out. ``PYTHONHASHSEED=0`` keeps runs repeatable.
A callgrind run takes minutes (start-up is ~6 billion instructions): ``--jobs 2`` runs two at
once (counts do not depend on load, wall times do: they are measured first, alone).

Targets: ``track_usage`` <= 1.03x and ``Budget`` <= 1.05x of the SDK call, ``Budget`` on
SQLite <= 1.10x, and neither above LangChain's callback (its overhead over ``invoke``).
``--breakdown`` also profiles the ``budget`` mode under callgrind with one trampoline per
budgetguard function and prints the inclusive instructions per call of the top functions.

    .venv/bin/python benchmarks/overhead.py [--rounds 5] [--calls 2000] [--no-callgrind] [--no-paired]
    .venv/bin/python benchmarks/overhead.py --breakdown-only
    .venv/bin/python benchmarks/overhead.py --memory-calls 100000 --memory-keys 100000
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODES = {
    "sdk": "openai SDK alone",
    "hook": "hook installed, no scope",
    "track_usage": "inside track_usage",
    "budget": "inside Budget (in-memory ledger)",
    "budget_sqlite": "inside Budget (SQLite ledger)",
    "langchain": "LangChain invoke alone",
    "langchain_callback": "LangChain invoke, get_openai_callback",
    "langchain_track_usage": "LangChain invoke, track_usage",
}
BG_MODES = ("hook", "track_usage", "budget", "budget_sqlite", "langchain_track_usage")


# --- worker: one mode in this process -------------------------------------------------------


@contextlib.contextmanager
def _mode(mode: str, store_dir: str) -> Iterator[Callable[[], Any]]:
    """The call to time for ``mode``, inside the scope the mode needs."""
    call, scope = _call_and_scope(mode, store_dir)
    with scope:
        yield call


def _call_and_scope(mode: str, store_dir: str) -> tuple[Callable[[], Any], Any]:
    """The call to time for ``mode`` and the scope (a reusable context manager) it runs in."""
    warnings.simplefilter("ignore")  # LangChain community's deprecation notices
    from _transport import chat, make_client, make_langchain

    if mode.startswith("langchain"):
        llm, messages = make_langchain()

        def call() -> Any:
            return llm.invoke(messages)

    else:
        client = make_client()

        def call() -> Any:
            return chat(client)

    scope: Any = contextlib.nullcontext()
    if mode in BG_MODES:
        import budgetguard as bg

        bg.instrument()
        if mode in ("track_usage", "langchain_track_usage"):
            scope = bg.track_usage()
        elif mode == "budget":
            scope = bg.Budget(max_usd=1_000_000, name="bench")
        elif mode == "budget_sqlite":
            store = Path(store_dir) / "ledger.db"
            scope = bg.Budget(max_usd=1_000_000, name="bench", store=f"sqlite:///{store}")
    elif mode == "langchain_callback":
        from langchain_community.callbacks import get_openai_callback

        scope = _Reentered(get_openai_callback)
    return call, scope


class _Reentered:
    """A context manager made afresh at each ``with`` (LangChain's is a one-shot generator)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._active: list[Any] = []

    def __enter__(self) -> Any:
        manager = self._make()
        self._active.append(manager)
        return manager.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._active.pop().__exit__(*exc)


# Scoped modes, and the unscoped mode of the same process they are paired with.
PAIRED = {
    "track_usage": "hook",
    "budget": "hook",
    "budget_sqlite": "hook",
    "langchain_callback": "langchain",
    "langchain_track_usage": "langchain",
}


class Paired(NamedTuple):
    """A scoped mode against its own unscoped calls in the same processes."""

    outside: float  # the quietest batch outside the scope, seconds per call
    inside: float  # the quietest batch inside it
    ratios: list[float]  # inside / outside of each pair of adjacent batches

    @property
    def ratio(self) -> float:
        """The median ratio of adjacent batches: a disturbance that lasts longer than a pair
        slows both of its sides alike, and the median leaves out the pairs it splits."""
        return statistics.median(self.ratios)


def _paired_worker(args: argparse.Namespace) -> None:
    """Pairs of adjacent batches, one outside and one inside the mode's scope, in this process
    (the order alternates, so neither side always runs first)."""
    mode = args.paired_worker
    with tempfile.TemporaryDirectory() as store_dir:
        call, scope = _call_and_scope(mode, store_dir)
        if mode in BG_MODES:
            import budgetguard as bg

            bg.instrument()
        for _ in range(args.warmup):
            call()
        with scope:
            for _ in range(args.warmup):
                call()
        gc.collect()
        size = max(1, args.calls // args.batches)
        best = {"outside": float("inf"), "inside": float("inf")}
        ratios = []
        for pair in range(args.batches):
            seconds = {}
            for side in ("outside", "inside") if pair % 2 == 0 else ("inside", "outside"):
                manager = scope if side == "inside" else contextlib.nullcontext()
                with manager:
                    start = time.perf_counter()
                    for _ in range(size):
                        call()
                    seconds[side] = (time.perf_counter() - start) / size
                best[side] = min(best[side], seconds[side])
            ratios.append(seconds["inside"] / seconds["outside"])
    print(json.dumps({**best, "ratios": ratios}))


def _paired(modes: list[str], rounds: int, calls: int, warmup: int, pairs: int) -> dict[str, Paired]:
    """Per scoped mode, over ``rounds`` processes of ``pairs`` pairs of short batches each: the
    quietest batch of each side, and every pair's ratio."""
    found: dict[str, Paired] = {}
    for r in range(rounds):
        for mode in modes:
            if mode not in PAIRED:
                continue
            argv = [
                sys.executable, str(Path(__file__).resolve()), "--paired-worker", mode, "--calls", str(calls),
                "--warmup", str(warmup), "--batches", str(pairs),
            ]  # fmt: skip
            out = subprocess.run(argv, env=_env(), check=True, capture_output=True, text=True).stdout
            got = json.loads(out.strip().splitlines()[-1])
            before = found.get(mode, Paired(float("inf"), float("inf"), []))
            outside, inside = min(before.outside, got["outside"]), min(before.inside, got["inside"])
            found[mode] = Paired(outside, inside, before.ratios + got["ratios"])
        print(f"  paired round {r + 1}/{rounds} done", file=sys.stderr)
    return found


def _paired_table(found: dict[str, Paired], wall: dict[str, float]) -> None:
    print("\nwall time, paired in one process: scoped batches against unscoped ones (the hook installed,")
    print("or invoke alone), adjacent and alternating; the median ratio of the pairs, and the quietest")
    print("batch of each side")
    for mode, paired in found.items():
        print(
            f"  {mode:<22} {MODES[mode]:<38} median {paired.ratio:6.3f}x {PAIRED[mode]:<9} "
            f"of {len(paired.ratios)} pairs; quietest {paired.inside * 1e6:7.1f} us vs "
            f"{paired.outside * 1e6:7.1f} us (+{(paired.inside - paired.outside) * 1e6:.1f} us)"
        )
    if "hook" in wall and "sdk" in wall:
        print(f"  (the hook itself, fresh processes: {wall['hook'] / wall['sdk']:.3f}x of the SDK alone)")


def _worker(args: argparse.Namespace) -> None:
    profiling = args.profile_out is not None
    with tempfile.TemporaryDirectory() as store_dir, _mode(args.worker, store_dir) as call:
        if profiling:
            import _callgrind

            _callgrind.profile_package("budgetguard", _installed_hooks())
        for _ in range(args.warmup):
            call()
        gc.collect()
        if profiling:
            _callgrind.reset_call_counts()
            _callgrind.toggle_collect()
        # Batches: the quietest one is least disturbed by other processes on the machine.
        batches = max(1, min(args.batches, args.calls))
        size = args.calls // batches
        best = float("inf")
        for _ in range(batches):
            start = time.perf_counter()
            for _ in range(size):
                call()
            best = min(best, (time.perf_counter() - start) / size)
        if profiling:
            _callgrind.toggle_collect()
            Path(args.profile_out).write_text(
                json.dumps({"names": _callgrind.names(), "calls": _callgrind.call_counts()}), encoding="utf-8"
            )
    print(json.dumps({"mode": args.worker, "per_call": best}))


def _installed_hooks() -> list[tuple[type, str, str]]:
    """The methods budgetguard installed on the openai SDK's classes (its hooks)."""
    import inspect

    found = []
    for name, module in list(sys.modules.items()):
        if not (name == "openai" or name.startswith("openai.")):
            continue
        for cls in list(vars(module).values()):
            if not inspect.isclass(cls) or cls.__module__ != name:
                continue
            for attr, value in list(vars(cls).items()):
                if inspect.isfunction(value) and value.__module__.startswith("budgetguard"):
                    found.append((cls, attr, f"openai hook {cls.__name__}.{attr}"))
    return found


def _heap_growth(step: Callable[[int], object], runs: int, baseline_after: int) -> tuple[int, int]:
    """Traced heap bytes after ``baseline_after`` runs of ``step(i)`` and after all ``runs``."""
    gc.collect()
    tracemalloc.start()
    baseline = 0
    for i in range(runs):
        step(i)
        if i == baseline_after - 1:
            gc.collect()
            baseline = tracemalloc.get_traced_memory()[0]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return baseline, after


def _memory_worker(calls: int) -> None:
    from _transport import chat, make_client

    import budgetguard as bg

    client = make_client()
    with bg.track_usage() as long_run:
        after_1k, after_all = _heap_growth(lambda _: chat(client), calls, 1_000)
    print(
        f"memory: traced heap after 1,000 tracked calls {after_1k / 1024:8.1f} KiB, "
        f"after {calls:,} {after_all / 1024:8.1f} KiB "
        f"(growth {(after_all - after_1k) / 1024:+.1f} KiB; {long_run.usage.requests:,} calls counted)"
    )


def _memory_keys_worker(keys: int) -> None:
    """Every call in a keyed budget of its own key (a per-user cap for ``keys`` users), the
    spend in SQLite: budgetguard keeps the recently used budget objects, not one per key."""
    from _transport import chat, make_client

    import budgetguard as bg

    client = make_client()

    def call_as_user(i: int) -> None:
        with bg.Budget.named("per-user", key=f"user-{i}"):
            chat(client)

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "budgetguard.yaml"
        config.write_text(
            f"version: 1\nbudgets:\n  per-user:\n    max_usd: 1\n    keyed: true\n"
            f"    store: sqlite:///{tmp}/ledger.db\n",
            encoding="utf-8",
        )
        bg.configure(config)
        # The baseline is past the 1,024 recently used budget objects kept.
        after_2k, after_all = _heap_growth(call_as_user, keys, 2_000)
        spent = bg.Budget.named("per-user", key="user-0").spent_usd
    print(
        f"memory: traced heap after 2,000 keyed budgets (a call each) {after_2k / 1024:8.1f} KiB, "
        f"after {keys:,} {after_all / 1024:8.1f} KiB (growth {(after_all - after_2k) / 1024:+.1f} KiB; "
        f"the first key's spend still in its store: ${spent})"
    )


# --- driver ---------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONHASHSEED": "0", "PYTHONWARNINGS": "ignore"}


def _worker_argv(mode: str, calls: int, warmup: int, *extra: str, batches: int = 1) -> list[str]:
    return [
        sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--calls", str(calls),
        "--warmup", str(warmup), "--batches", str(batches), *extra,
    ]  # fmt: skip


def _wall(modes: list[str], rounds: int, calls: int, warmup: int, batches: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    for r in range(rounds):
        order = modes[r % len(modes) :] + modes[: r % len(modes)]
        for mode in order:
            argv = _worker_argv(mode, calls, warmup, batches=batches)
            out = subprocess.run(argv, env=_env(), check=True, capture_output=True, text=True).stdout
            samples[mode].append(json.loads(out.strip().splitlines()[-1])["per_call"])
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    return samples


def _instructions(modes: list[str], small: int, large: int, warmup: int, jobs: int) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    import _callgrind

    def run(job: tuple[str, int]) -> int:
        mode, calls = job
        return _callgrind.instructions(_worker_argv(mode, calls, warmup), env=_env())

    jobs_list = [(mode, calls) for mode in modes for calls in (small, large)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        totals = dict(zip(jobs_list, pool.map(run, jobs_list), strict=True))
    per_call = {mode: (totals[mode, large] - totals[mode, small]) / (large - small) for mode in modes}
    for mode, value in per_call.items():
        print(f"  callgrind {mode}: {value:,.0f} instructions per call", file=sys.stderr)
    return per_call


def _ratio_table(title: str, values: dict[str, float], unit: Callable[[float], str]) -> None:
    print(title)
    sdk, lc = values.get("sdk"), values.get("langchain")
    for mode, value in values.items():
        base = lc if mode.startswith("langchain") else sdk
        if base:
            against = "langchain" if mode.startswith("langchain") else "sdk"
            extra = value - base
            print(
                f"  {mode:<22} {MODES[mode]:<38} {unit(value):>12}  {value / base:6.3f}x {against:<9} "
                f"(+{unit(extra).strip()})"
            )
        else:
            print(f"  {mode:<22} {MODES[mode]:<38} {unit(value):>12}")


def _verdicts(label: str, values: dict[str, float]) -> None:
    sdk, lc, cb = values.get("sdk"), values.get("langchain"), values.get("langchain_callback")
    if not sdk:
        return
    checks = [("track_usage", 1.03), ("budget", 1.05), ("budget_sqlite", 1.10)]
    for mode, target in checks:
        if mode in values:
            ratio = values[mode] / sdk
            print(f"  {label}: {mode} {ratio:.3f}x of the SDK call, target <= {target:.2f}x: "
                  f"{'met' if ratio <= target else 'NOT met'}")  # fmt: skip
    if lc and cb:
        callback = cb / lc
        for mode in ("track_usage", "budget", "langchain_track_usage"):
            if mode not in values:
                continue
            ratio = values[mode] / (lc if mode.startswith("langchain") else sdk)
            print(
                f"  {label}: {mode} {ratio:.3f}x vs LangChain's callback {callback:.3f}x over invoke: "
                f"{'not above' if ratio <= callback else 'ABOVE'}"
            )


def _paired_verdicts(found: dict[str, Paired]) -> None:
    ratios = {mode: paired.ratio for mode, paired in found.items()}
    for mode, target in (("track_usage", 1.03), ("budget", 1.05), ("budget_sqlite", 1.10)):
        if mode in ratios:
            print(f"  wall, paired: {mode} {ratios[mode]:.3f}x of the hook's calls, target <= {target:.2f}x: "
                  f"{'met' if ratios[mode] <= target else 'NOT met'}")  # fmt: skip
    callback = ratios.get("langchain_callback")
    if callback is not None:
        for mode in ("track_usage", "budget", "langchain_track_usage"):
            if mode in ratios:
                print(f"  wall, paired: {mode} {ratios[mode]:.3f}x vs LangChain's callback {callback:.3f}x: "
                      f"{'not above' if ratios[mode] <= callback else 'ABOVE'}")  # fmt: skip


def _breakdown(mode: str, calls: int, warmup: int, per_call_total: dict[str, float], top: int) -> None:
    import _callgrind

    if not _callgrind.can_profile():
        print("breakdown skipped: needs valgrind, its headers and a C compiler")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        meta = Path(tmp) / "meta.json"
        subprocess.run(
            [
                *_callgrind.valgrind_argv(out, collect_at_start=False),
                *_worker_argv(mode, calls, warmup, "--profile-out", str(meta)),
            ],
            env=_env(),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        info = json.loads(meta.read_text(encoding="utf-8"))
        labels = {int(k): v for k, v in info["names"].items()}
        total, rows = _callgrind.breakdown(out, labels)
    counts: dict[str, int] = info["calls"]
    print(
        f"\nwhere budgetguard's instructions go, {mode} mode (callgrind, {calls} calls after {warmup} "
        f"warm-up; every budgetguard function behind a C trampoline of its own, inclusive cost):"
    )
    print(f"  all instructions per call (profiled; trampolines add some): {total / calls:,.0f}")
    if mode in per_call_total and "sdk" in per_call_total:
        extra = per_call_total[mode] - per_call_total["sdk"]
        print(
            f"  unprofiled: {mode} {per_call_total[mode]:,.0f}, SDK alone {per_call_total['sdk']:,.0f}, "
            f"budgetguard's share {extra:,.0f}"
        )
    print(f"  {'inclusive Ir/call':>18} {'calls/call':>10}  function")
    hooks = [row for row in rows if row[0].startswith("openai hook")]
    own = [row for row in rows if not row[0].startswith("openai hook")]
    for label, cost in hooks:
        print(
            f"  {cost / calls:>18,.0f} {counts.get(label, 0) / calls:>10.2f}  {label} (the SDK's work inside)"
        )
    print(f"  top {top} budgetguard functions:")
    for label, cost in own[:top]:
        print(f"  {cost / calls:>18,.0f} {counts.get(label, 0) / calls:>10.2f}  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per process (wall time)")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--batches", type=int, default=10, help="timed batches per process (min taken)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of the modes")
    parser.add_argument("--no-callgrind", action="store_true", help="wall time only")
    parser.add_argument("--callgrind-calls", default="100,400", help="the two batch sizes, e.g. 100,400")
    parser.add_argument("--callgrind-warmup", type=int, default=50, help="warm-up calls under callgrind")
    parser.add_argument(
        "--jobs", type=int, default=1, help="callgrind runs at once (counts do not mind load)"
    )
    parser.add_argument("--breakdown", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--paired", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--paired-rounds", type=int, default=3, help="processes per paired mode")
    parser.add_argument("--pairs", type=int, default=100, help="pairs of batches per paired process")
    parser.add_argument("--breakdown-only", action="store_true")
    parser.add_argument("--breakdown-top", type=int, default=15, help="budgetguard functions listed")
    parser.add_argument("--breakdown-mode", default="budget", help="the mode profiled (default budget)")
    parser.add_argument("--memory-calls", type=int, default=0, help="also check memory over this many calls")
    parser.add_argument("--memory-keys", type=int, default=0, help="also: keyed budgets, a call each")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory-keys-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--paired-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    if args.paired_worker:
        _paired_worker(args)
        return
    if args.memory_worker:
        _memory_worker(args.memory_worker)
        return
    if args.memory_keys_worker:
        _memory_keys_worker(args.memory_keys_worker)
        return

    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    small, large = (int(n) for n in args.callgrind_calls.split(","))
    instr: dict[str, float] = {}
    wall: dict[str, float] = {}
    paired: dict[str, Paired] = {}
    if not args.breakdown_only:
        import platform

        import openai

        print(
            f"per-call cost, {platform.python_implementation()} {platform.python_version()}, "
            f"openai {openai.__version__}; a ~140-token system prompt + question, in-process transport"
        )
        samples = _wall(modes, args.rounds, args.calls, args.warmup, args.batches)
        wall = {mode: min(values) for mode, values in samples.items()}
        _ratio_table(
            f"\nwall time: min over {args.rounds} interleaved rounds (a fresh process each) of the "
            f"quietest of {args.batches} batches of {args.calls // args.batches} calls",
            wall,
            lambda s: f"{s * 1e6:8.1f} us",
        )
        if args.paired:
            paired = _paired(modes, args.paired_rounds, args.calls, args.warmup, args.pairs)
            _paired_table(paired, wall)
        import _callgrind

        if not args.no_callgrind and _callgrind.available():
            instr = _instructions(modes, small, large, args.callgrind_warmup, args.jobs)
            _ratio_table(
                f"\ninstructions (callgrind): ({large} calls - {small} calls) / {large - small}, "
                "fresh processes",
                instr,
                lambda n: f"{n:10,.0f}",
            )
        print("\ntargets (met or not):")
        _verdicts("wall", wall)
        _paired_verdicts(paired)
        _verdicts("instructions", instr)
    if (args.breakdown or args.breakdown_only) and not args.no_callgrind:
        _breakdown(args.breakdown_mode, small, args.callgrind_warmup, instr, args.breakdown_top)
    if args.memory_calls:
        print()
        argv = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", str(args.memory_calls)]
        subprocess.run(argv, env=_env(), check=True)
    if args.memory_keys:
        argv = [sys.executable, str(Path(__file__).resolve()), "--memory-keys-worker", str(args.memory_keys)]
        subprocess.run(argv, env=_env(), check=True)
    if args.json:
        figures = {
            "wall_seconds": wall,
            "paired": {mode: {**p._asdict(), "median_ratio": p.ratio} for mode, p in paired.items()},
            "instructions": instr,
        }
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
