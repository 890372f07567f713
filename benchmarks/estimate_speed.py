"""What a pre-flight estimate costs, measured side by side with raw tiktoken in one run.

- large: ``count_request`` on a chat body whose user message is ~100k tokens, against
  ``Encoding.encode`` (and ``encode_ordinary``) of the same text. Target: ratio <= 1.2.
- small: a short chat request (system + user, the common case), in microseconds per call
  after warm-up. Target: well under 50 us.
- cold: the first estimate for a model (loads and checks the vocabulary, once per process).

Rounds alternate the contenders so machine noise hits them alike; figures are medians. The
estimator remembers the token count of each text (``_estimate/_cache.py``): the large prompt
is timed with that memory cleared, and once more as a prompt seen before.

    .venv/bin/python benchmarks/estimate_speed.py [--tokens 100000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from budgetguard._estimate import count_request
from budgetguard._estimate._cache import clear_caches
from budgetguard._tokenizer import get_encoding

_PROSE = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there been one all we their has would when if so no will can "
    "budget token estimate request model reserve settle ledger scope window price usage prompt "
    'München naïve café 2024 3.14159 user@example.com https://example.org/path?q=1 {"key": [1, 2]}'
)
_WORDS = _PROSE.split(" ")


def make_text(tokens: int, seed: int = 0) -> str:
    """Deterministic prose-like text of about ``tokens`` o200k tokens."""
    rng = random.Random(seed)
    enc = get_encoding("o200k_base")
    words: list[str] = []
    text = ""
    while True:
        words.extend(rng.choice(_WORDS) + ("." if rng.random() < 0.08 else "") for _ in range(5000))
        text = " ".join(words)
        if len(enc.encode_ordinary(text)) >= tokens:
            return text


def _seconds_per_call(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--small-calls", type=int, default=20_000)
    args = parser.parse_args()

    small = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France? Answer in one word."},
        ],
        "max_tokens": 50,
    }
    start = time.perf_counter()
    count_request("chat.completions", small)
    cold = time.perf_counter() - start

    text = make_text(args.tokens)
    enc = get_encoding("o200k_base")
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "Summarise."}, {"role": "user", "content": text}],
    }
    n_tokens = len(enc.encode(text))
    assert count_request("chat.completions", body).prompt_tokens >= n_tokens

    contenders: dict[str, Callable[[], object]] = {
        # The estimator remembers texts it has counted: clear that first, or this is a lookup.
        "count_request": lambda: count_request("chat.completions", body),
        "tiktoken encode": lambda: enc.encode(text),
        "tiktoken encode_ordinary": lambda: enc.encode_ordinary(text),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            clear_caches()
            times[name].append(_seconds_per_call(fn, 1))
    med = {name: statistics.median(values) for name, values in times.items()}
    contenders["count_request"]()
    seen = statistics.median(_seconds_per_call(contenders["count_request"], 100) for _ in range(args.rounds))

    small_times = [
        _seconds_per_call(lambda: count_request("chat.completions", small), args.small_calls // 5)
        for _ in range(5)
    ]
    fresh = [dict(small, messages=[*small["messages"][:1], {"role": "user", "content": f"Question {i}?"}])
             for i in range(args.small_calls)]  # fmt: skip
    fresh_iter = iter(fresh)
    fresh_time = _seconds_per_call(lambda: count_request("chat.completions", next(fresh_iter)), len(fresh))

    print(f"large prompt: {n_tokens} tokens, {len(text)} characters, median of {args.rounds} rounds")
    for name, seconds in med.items():
        print(f"  {name:26} {seconds * 1000:8.1f} ms")
    print(
        f"  ratio count_request / encode            {med['count_request'] / med['tiktoken encode']:.3f}  "
        "(target <= 1.2)"
    )
    print(
        f"  ratio count_request / encode_ordinary   "
        f"{med['count_request'] / med['tiktoken encode_ordinary']:.3f}"
    )
    print(f"  the same prompt again (its count remembered): {seen * 1e6:.1f} us")
    print(
        f"short chat request: {statistics.median(small_times) * 1e6:.1f} us per estimate after warm-up, "
        f"{fresh_time * 1e6:.1f} us with a question not seen before (target well under 50 us)"
    )
    print(f"cold first estimate (vocabulary load, once per process): {cold * 1000:.0f} ms")


if __name__ == "__main__":
    main()
