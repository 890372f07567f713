"""What an Anthropic Messages API estimate costs (``count_request("anthropic.messages", ...)``).

- short: a system prompt, one user message and one tool, in microseconds per call after warm-up
  (the common case, run before every budgeted call).
- long: an agent-style history of ~100k o200k tokens over 40 turns (text, tool calls and
  results, a 1000x1000 PNG), in milliseconds per call: first sight (every text new to the
  text-count cache) and repeat (the texts seen before, as when an agent resends its history),
  next to ``encode_ordinary`` of the same text.

Figures are medians over rounds.

    .venv/bin/python benchmarks/estimate_anthropic.py [--tokens 100000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from estimate_speed import make_text

from budgetguard._estimate import count_request
from budgetguard._estimate._cache import clear_caches
from budgetguard._tokenizer import get_encoding

EP = "anthropic.messages"
_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city and state"}},
        "required": ["location"],
    },
}


def _png(width: int, height: int) -> str:
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    return base64.b64encode(raw).decode()


def short_body() -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You are a helpful assistant.",
        "tools": [_TOOL],
        "messages": [{"role": "user", "content": "What's the weather like in San Francisco?"}],
    }


def long_body(tokens: int, turns: int = 40) -> tuple[dict[str, Any], str]:
    """A history of ``turns`` exchanges holding about ``tokens`` o200k tokens of text."""
    text = make_text(tokens)
    step = len(text) // (turns * 2)
    chunks = [text[i * step : (i + 1) * step] for i in range(turns * 2)]
    messages: list[dict[str, Any]] = []
    for turn in range(turns):
        call = f"toolu_{turn:024d}"
        user: list[dict[str, Any]] = [{"type": "text", "text": chunks[2 * turn]}]
        if turn == 0:
            user.insert(
                0,
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": _png(1000, 1000)},
                },
            )
        if turn:
            user.insert(0, {"type": "tool_result", "tool_use_id": f"toolu_{turn - 1:024d}", "content": "ok"})
        messages.append({"role": "user", "content": user})
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": chunks[2 * turn + 1]},
                    {"type": "tool_use", "id": call, "name": "get_weather", "input": {"location": "Paris"}},
                ],
            }
        )
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call, "content": "ok"}]}
    )
    body = {
        "model": "claude-opus-4-7",
        "max_tokens": 8192,
        "system": "Be brief.",
        "tools": [_TOOL],
        "messages": messages,
    }
    return body, text


def _per_call(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--short-calls", type=int, default=20_000)
    args = parser.parse_args()

    short = short_body()
    count_request(EP, short)  # warm-up: vocabulary, caches
    short_us = statistics.median(
        _per_call(lambda: count_request(EP, short), args.short_calls) * 1e6 for _ in range(args.rounds)
    )
    est = count_request(EP, short)
    print(
        f"short: {short_us:.1f} us per estimate  "
        f"(prompt_tokens={est.prompt_tokens}, upper={est.prompt_tokens_upper})"
    )

    body, text = long_body(args.tokens)
    encode = get_encoding("o200k_base").encode_ordinary
    first, repeat, raw = [], [], []
    for _ in range(args.rounds):
        clear_caches()
        first.append(_per_call(lambda: count_request(EP, body), 1))
        repeat.append(_per_call(lambda: count_request(EP, body), 3))
        raw.append(_per_call(lambda: encode(text), 1))
    est = count_request(EP, body)
    print(
        f"long ({len(encode(text))} o200k tokens, {len(body['messages'])} messages): "
        f"first sight {statistics.median(first) * 1e3:.1f} ms, "
        f"repeat {statistics.median(repeat) * 1e3:.2f} ms, "
        f"encode_ordinary alone {statistics.median(raw) * 1e3:.1f} ms  "
        f"(prompt_tokens={est.prompt_tokens}, upper={est.prompt_tokens_upper})"
    )


if __name__ == "__main__":
    main()
