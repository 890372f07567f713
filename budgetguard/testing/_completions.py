"""``POST /v1/completions`` (legacy): prompts, ``n``, ``best_of``, caps, JSON and SSE.

``best_of`` candidates are generated (and billed) server-side; ``n`` of them are returned per
prompt, as the real endpoint does. Scripted tool calls do not apply here; only ``content`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ._generate import Generation, generate
from ._sse import DONE, EventStream
from ._wire import (
    JsonOutcome,
    Outcome,
    RequestError,
    StreamOutcome,
    Turn,
    apply_usage_override,
    output_cap,
    positive_int,
    require_model,
)

__all__ = ["completions"]


def completions(turn: Turn) -> Outcome:
    body = turn.body
    model = require_model(body)
    prompts = _prompt_count(body.get("prompt"))
    n = positive_int(body, "n", 1) or 1
    best_of = positive_int(body, "best_of", n) or n
    if best_of < n:
        raise RequestError(f"best_of ({best_of}) must be greater than or equal to n ({n}).", param="best_of")
    stream = bool(body.get("stream"))
    if stream and best_of > n:
        raise RequestError("Cannot stream results when best_of is greater than n.", param="best_of")
    # The legacy endpoint's default cap is 16 tokens.
    cap = output_cap(body, "max_tokens") or 16
    stream_options = body.get("stream_options")
    include_usage = (
        stream and isinstance(stream_options, Mapping) and bool(stream_options.get("include_usage"))
    )

    prompt_tokens = turn.prompt().tokens
    reply = turn.take_reply()
    text_reply = dataclasses.replace(reply, tool_calls=()) if reply is not None else None
    candidates = [
        generate(
            model=model,
            reply=text_reply,
            cap=cap,
            default_tokens=turn.default_tokens,
            output_format=None,
            new_call_id=lambda: turn.new_id("call_"),
        )
        for _ in range(prompts * best_of)
    ]
    # Choice i*n+j is candidate j of prompt i; all best_of candidates are billed.
    returned = [candidates[p * best_of + j] for p in range(prompts) for j in range(n)]
    completion_tokens = sum(c.tokens for c in candidates)
    usage = apply_usage_override(
        {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        reply,
        responses=False,
    )
    head = {
        "id": turn.new_id("cmpl-"),
        "object": "text_completion",
        "created": turn.created,
        "model": reply.model if reply and reply.model else model,
        "system_fingerprint": None,
    }
    omit_usage = reply is not None and reply.omit_usage
    delay = reply.delay if reply else 0.0
    if not stream:
        result: dict[str, Any] = {
            **head,
            "choices": [_choice(i, c, c.text or "") for i, c in enumerate(returned)],
        }
        if not omit_usage:
            result["usage"] = usage
        return JsonOutcome(200, result, delay=delay)

    events = EventStream()
    for index, choice in enumerate(returned):
        for piece in choice.pieces:
            events.add(
                {
                    **head,
                    "choices": [{"text": piece, "index": index, "logprobs": None, "finish_reason": None}],
                },
                token=True,
            )
    events.mark_closing()
    for index, choice in enumerate(returned):
        events.add({**head, "choices": [_choice(index, choice, "")]})
    if include_usage and not omit_usage:
        events.add({**head, "choices": [], "usage": usage})
    events.add_raw(DONE)
    return StreamOutcome(events, reply.cut_stream_after if reply else None, delay)


def _choice(index: int, generation: Generation, text: str) -> dict[str, Any]:
    return {
        "text": text,
        "index": index,
        "logprobs": None,
        "finish_reason": "length" if generation.truncated else "stop",
    }


def _prompt_count(prompt: Any) -> int:
    """How many prompts ``prompt`` holds: a string, a token array, or a list of either."""
    if isinstance(prompt, str):
        return 1
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return 1
        if all(isinstance(p, str) for p in prompt) or all(
            isinstance(p, list) and all(isinstance(t, int) for t in p) for p in prompt
        ):
            return len(prompt)
    raise RequestError(
        "'prompt' must be a string, an array of strings, an array of tokens or an array of token arrays",
        param="prompt",
    )
