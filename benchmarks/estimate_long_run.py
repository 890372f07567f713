"""Estimating a long agent run: the cost per step stays flat as the history grows.

A tool-using agent resends its whole history with every request. The workload: a chat
conversation (gpt-4o, two function tools, a ~140-token system prompt and a task) that runs
``--steps`` tool-calling steps (an assistant tool call, then its ~480-token result), so the
history grows to about 100k tokens; each step's request is estimated with ``count_request``
as ``Budget`` does before sending it (the same message dicts in a new list each step).

- cached:   the estimator as shipped (text counts and counted histories remembered)
- no cache: the same requests with the caches cleared before each (what every estimate cost
            before: re-encoding the whole history); timed at a few steps only, it is quadratic
- tiktoken: raw ``Encoding.encode`` of only the text that is new at each step (the tool call's
            arguments and the tool's result), once; ``encode_ordinary`` too

Targets: the estimate at step 200 within 1.5x of the estimate at step 10, and the whole run's
estimates within 1.2x of the tiktoken baseline. Rounds alternate the contenders; every figure
is the minimum over rounds (per step, then summed), the least disturbed by other processes.
Then the same run under valgrind's callgrind (a child process; ``--no-callgrind`` skips it):
instructions, which other processes on the machine do not disturb.

    .venv/bin/python benchmarks/estimate_long_run.py [--steps 200] [--rounds 7] [--no-callgrind]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from budgetguard._estimate import count_request
from budgetguard._estimate._cache import cache_info, clear_caches
from budgetguard._tokenizer import get_encoding

_WORDS = (  # noqa: SIM905 - a sentence reads better than a list of 100 strings
    "the of and to in is that for it as was with be by on not this are or from at which but have "
    "an they you were there been one all we their has would when if so no will can def return "
    "class import self value result error config request response token budget ledger usage "
    "None True False 0 1 2 10 42 100 2024 3.14 = == += ( ) [ ] { } : , . -> # \" ' / _ - * "
    "München café naïve user@example.com https://example.org/path?q=1"
).split(" ")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file of the repository, or the lines matching a query.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Path from the repository root."},
                    "query": {"type": "string", "description": "Only lines matching this."},
                },
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the repository for a symbol or a phrase.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["query"],
            },
        },
    },
]


def _text(rng: random.Random, words: int) -> str:
    out = []
    for i in range(words):
        out.append(rng.choice(_WORDS))
        if i % 12 == 11:
            out.append("\n")
    return " ".join(out)


def make_run(steps: int, seed: int = 0) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """The final history of a ``steps``-step run, and the text each step adds."""
    rng = random.Random(seed)
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a careful coding agent. " + _text(rng, 95)},
        {"role": "user", "content": "Find why the nightly job fails and fix it. " + _text(rng, 40)},
    ]
    new_texts: list[list[str]] = []
    for step in range(steps):
        name = "read_file" if step % 3 else "search"
        args = json.dumps(
            {"path": f"src/pkg/module_{step}.py", "query": _text(rng, 4)}
            if name == "read_file"
            else {"query": _text(rng, 5), "limit": 20}
        )
        call_id = f"call_{step:04d}"
        result = _text(rng, 345)
        history.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
                ],
            }
        )
        history.append({"role": "tool", "tool_call_id": call_id, "content": result})
        new_texts.append([args, result])
    return history, new_texts


def _request(history: list[dict[str, Any]], step: int) -> dict[str, Any]:
    # Step k (1-based) sends the system prompt, the task and k calls with their results.
    return {"model": "gpt-4o", "messages": history[: 2 + 2 * step], "tools": TOOLS, "max_tokens": 1024}


def _run_cached(bodies: list[dict[str, Any]]) -> list[float]:
    clear_caches()
    times = []
    for body in bodies:
        start = time.perf_counter()
        count_request("chat.completions", body)
        times.append(time.perf_counter() - start)
    return times


def _run_uncached(bodies: list[dict[str, Any]], steps: list[int]) -> list[float]:
    times = []
    for step in steps:
        clear_caches()
        start = time.perf_counter()
        count_request("chat.completions", bodies[step - 1])
        times.append(time.perf_counter() - start)
    return times


def _run_tiktoken(new_texts: list[list[str]], encode: Callable[[str], Any]) -> list[float]:
    times = []
    for texts in new_texts:
        start = time.perf_counter()
        for text in texts:
            encode(text)
        times.append(time.perf_counter() - start)
    return times


def _callgrind_worker(steps: int, early: int) -> None:
    """Under callgrind: zero and dump the counters around each region (client requests)."""
    import _callgrind

    ext = _callgrind.client_requests()
    history, new_texts = make_run(steps)
    bodies = [_request(history, k) for k in range(1, steps + 1)]
    enc = get_encoding("o200k_base")
    count_request("chat.completions", bodies[0])  # load the vocabulary, warm everything once
    for encode in (enc.encode, enc.encode_ordinary):
        encode(new_texts[0][1])
    clear_caches()
    marks = {early - 1, early, steps - 1, steps}
    ext.zero_stats()
    for k, body in enumerate(bodies, 1):
        count_request("chat.completions", body)
        if k in marks:
            ext.dump_stats(f"estimate:{k}")
    for name, encode in (("encode", enc.encode), ("encode_ordinary", enc.encode_ordinary)):
        ext.zero_stats()
        for k, texts in enumerate(new_texts, 1):
            for text in texts:
                encode(text)
            if k in marks:
                ext.dump_stats(f"{name}:{k}")


def _instructions(steps: int, early: int) -> None:
    """Instructions per region, counted by callgrind in a child process."""
    import tempfile

    import _callgrind

    if not _callgrind.can_profile():
        print("instructions: skipped (needs valgrind, its headers and a C compiler)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = [sys.executable, str(Path(__file__).resolve()), "--steps", str(steps), "--callgrind-worker"]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run([*_callgrind.valgrind_argv(out), *argv], env=env, check=True, capture_output=True)
        regions: dict[str, dict[int, int]] = {}
        for dump in Path(tmp).glob("callgrind.out.*"):
            text = dump.read_text(encoding="utf-8", errors="replace")
            label = next(line for line in text.splitlines() if line.startswith("desc: Trigger"))
            name, _, k = label.rsplit(" ", 1)[1].partition(":")
            regions.setdefault(name, {})[int(k)] = _callgrind.total_of(dump)
    # Each dump holds what ran since the previous one: the steps up to and including its mark.
    est, raw, ordinary = regions["estimate"], regions["encode"], regions["encode_ordinary"]
    print(
        f"instructions (callgrind), estimate at step {early}: {est[early]:,}; at step {steps}: {est[steps]:,}"
    )
    print(
        f"  step {steps} / step {early}: {est[steps] / est[early]:.2f}x (target <= 1.5); "
        f"estimate / tiktoken encode of the new text at step {early}: {est[early] / raw[early]:.2f}x, "
        f"at step {steps}: {est[steps] / raw[steps]:.2f}x"
    )
    total, base, base_ordinary = sum(est.values()), sum(raw.values()), sum(ordinary.values())
    print(
        f"  whole run: {total:,} instructions of estimates; tiktoken encode of the new text {base:,} -> "
        f"{total / base:.2f}x (target <= 1.2); encode_ordinary {base_ordinary:,} -> "
        f"{total / base_ordinary:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-callgrind", action="store_true", help="wall time only")
    parser.add_argument("--callgrind-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps
    early = min(10, steps)
    if args.callgrind_worker:
        _callgrind_worker(steps, early)
        return

    history, new_texts = make_run(steps)
    bodies = [_request(history, k) for k in range(1, steps + 1)]
    enc = get_encoding("o200k_base")
    final = count_request("chat.completions", bodies[-1])
    exact = [count_request("chat.completions", body).prompt_tokens for body in bodies]
    clear_caches()
    assert exact == [count_request("chat.completions", body).prompt_tokens for body in bodies]
    uncached_steps = sorted({1, early, steps // 2, steps})
    for encode in (enc.encode, enc.encode_ordinary):  # tiktoken's first call compiles a regex
        encode(new_texts[0][1])

    cached: list[list[float]] = []
    uncached: list[list[float]] = []
    raw: list[list[float]] = []
    raw_ordinary: list[list[float]] = []
    for _ in range(args.rounds):
        cached.append(_run_cached(bodies))
        raw.append(_run_tiktoken(new_texts, enc.encode))
        uncached.append(_run_uncached(bodies, uncached_steps))
        raw_ordinary.append(_run_tiktoken(new_texts, enc.encode_ordinary))
    _run_cached(bodies)
    info = cache_info()

    def per_step(samples: list[list[float]]) -> list[float]:
        return [min(column) for column in zip(*samples, strict=True)]

    c, u, r, ro = per_step(cached), per_step(uncached), per_step(raw), per_step(raw_ordinary)
    new_tokens = sum(len(enc.encode(t)) for texts in new_texts for t in texts)
    print(
        f"{steps}-step tool-using chat run: {len(history)} messages, {final.prompt_tokens:,} prompt tokens "
        f"at the last step ({new_tokens:,} of them new text); min of {args.rounds} rounds"
    )
    print(f"{'step':>6} {'history':>9} {'cached':>10} {'no cache':>10} {'tiktoken new text':>18}")
    for step in uncached_steps:
        print(
            f"{step:>6} {exact[step - 1]:>9,} {c[step - 1] * 1e6:>8.1f}us "
            f"{u[uncached_steps.index(step)] * 1e6:>8.0f}us {r[step - 1] * 1e6:>16.1f}us"
        )
    window = 5  # medians of the steps around each end, less sensitive to one disturbed step
    head = sorted(c[max(early - window // 2 - 1, 0) : early + window // 2])
    tail = sorted(c[-window:])
    ratio = c[steps - 1] / c[early - 1]
    print(
        f"step {steps} / step {early}: {ratio:.2f}x (target <= 1.5; "
        f"median of 5 steps around each: {tail[len(tail) // 2] / head[len(head) // 2]:.2f}x)"
    )
    total, base, base_ordinary = sum(c), sum(r), sum(ro)
    print(
        f"whole run: {total * 1000:.2f} ms of estimates; tiktoken encode of the new text "
        f"{base * 1000:.2f} ms -> {total / base:.2f}x (target <= 1.2); encode_ordinary "
        f"{base_ordinary * 1000:.2f} ms -> {total / base_ordinary:.2f}x"
    )
    print(
        f"without the caches the run would take about {_quadratic(u, uncached_steps, steps) * 1000:,.0f} ms "
        f"of estimates; caches after the run: {info}"
    )
    if not args.no_callgrind:
        _instructions(steps, early)


def _quadratic(samples: list[float], at: list[int], steps: int) -> float:
    """The whole run without caches, interpolated linearly between the timed steps."""
    total = 0.0
    for step in range(1, steps + 1):
        hi = next(i for i, s in enumerate(at) if s >= step)
        lo = max(hi - 1, 0)
        s0, s1 = at[lo], at[hi]
        f = 0.0 if s1 == s0 else (step - s0) / (s1 - s0)
        total += samples[lo] + f * (samples[hi] - samples[lo])
    return total


if __name__ == "__main__":
    main()
