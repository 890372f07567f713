"""``POST /v1/chat/completions``: JSON and SSE, text, tool calls, ``n``, caps, structured output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._generate import Generation, OutputFormat, generate
from ._sse import DONE, EventStream
from ._wire import (
    JsonOutcome,
    Outcome,
    RequestError,
    StreamOutcome,
    Turn,
    apply_usage_override,
    chat_usage,
    json_type,
    output_cap,
    positive_int,
    require_model,
    service_tier,
)

__all__ = ["chat_completions"]

_FINGERPRINT = "fp_simulator"


def chat_completions(turn: Turn) -> Outcome:
    body = turn.body
    model = require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty array of messages", param="messages")
    for index, message in enumerate(messages):
        _check_message(message, f"messages[{index}]")
    n = positive_int(body, "n", 1) or 1
    cap = output_cap(body, "max_completion_tokens", "max_tokens")
    output_format = _output_format(body.get("response_format"))
    stream = bool(body.get("stream"))
    stream_options = body.get("stream_options")
    include_usage = (
        stream and isinstance(stream_options, Mapping) and bool(stream_options.get("include_usage"))
    )

    prompt = turn.prompt()
    reply = turn.take_reply()
    choices = [
        generate(
            model=model,
            reply=reply,
            cap=cap,
            default_tokens=turn.default_tokens,
            output_format=output_format,
            new_call_id=lambda: turn.new_id("call_"),
        )
        for _ in range(n)
    ]
    usage = apply_usage_override(chat_usage(prompt, sum(c.tokens for c in choices)), reply, responses=False)
    completion_id = turn.new_id("chatcmpl-")
    head = {
        "created": turn.created,
        "model": reply.model if reply and reply.model else model,
        "service_tier": service_tier(body, reply),
        "system_fingerprint": _FINGERPRINT,
    }
    omit_usage = reply is not None and reply.omit_usage
    delay = reply.delay if reply else 0.0
    if not stream:
        completion: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            **head,
            "choices": [_choice(i, c) for i, c in enumerate(choices)],
        }
        if not omit_usage:
            completion["usage"] = usage
        return JsonOutcome(200, completion, delay=delay)

    events = EventStream()
    chunk_head = {"id": completion_id, "object": "chat.completion.chunk", **head}
    # With include_usage the real API puts "usage": null on every chunk but the last.
    extra = {"usage": None} if include_usage and not omit_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**chunk_head, "choices": [choice], **extra}

    for index, choice in enumerate(choices):
        events.add(
            chunk(
                index,
                {"role": "assistant", "content": "" if choice.text is not None else None, "refusal": None},
            )
        )
        for piece in choice.pieces:
            events.add(chunk(index, {"content": piece}), token=True)
        for call_index, call in enumerate(choice.calls):
            opening = {
                "index": call_index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            events.add(chunk(index, {"tool_calls": [opening]}))
            for piece in call.pieces:
                delta = {"tool_calls": [{"index": call_index, "function": {"arguments": piece}}]}
                events.add(chunk(index, delta), token=True)
    events.mark_closing()
    for index, choice in enumerate(choices):
        events.add(chunk(index, {}, _finish_reason(choice)))
    if include_usage and not omit_usage:
        events.add({**chunk_head, "choices": [], "usage": usage})
    events.add_raw(DONE)
    return StreamOutcome(events, reply.cut_stream_after if reply else None, delay)


def _check_message(message: object, path: str) -> None:
    """Refuse the message shapes the real API refuses: no object, no role, content not text."""
    if not isinstance(message, Mapping):
        raise RequestError(
            f"Invalid type for '{path}': expected an object, but got {json_type(message)} instead.",
            param=path,
        )
    if not isinstance(message.get("role"), str):
        raise RequestError(f"Missing or invalid required parameter: '{path}.role'.", param=f"{path}.role")
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        raise RequestError(
            f"Invalid type for '{path}.content': expected one of an array of objects or a string, "
            f"but got {json_type(content)} instead.",
            param=f"{path}.content",
        )
    for index, part in enumerate(content if isinstance(content, list) else ()):
        if not isinstance(part, Mapping):
            where = f"{path}.content[{index}]"
            raise RequestError(
                f"Invalid type for '{where}': expected an object, but got {json_type(part)} instead.",
                param=where,
            )


def _choice(index: int, generation: Generation) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": generation.text,
        "refusal": None,
        "annotations": [],
    }
    if generation.calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in generation.calls
        ]
    return {"index": index, "message": message, "logprobs": None, "finish_reason": _finish_reason(generation)}


def _finish_reason(generation: Generation) -> str:
    if generation.truncated:
        return "length"
    return "tool_calls" if generation.calls else "stop"


def _output_format(response_format: Any) -> OutputFormat | None:
    """The structured output a Chat Completions ``response_format`` asks for."""
    if not isinstance(response_format, Mapping):
        return None
    if response_format.get("type") == "json_object":
        return OutputFormat()
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema", {}), Mapping):
            raise RequestError("response_format.json_schema must be an object", param="response_format")
        return OutputFormat(schema=spec.get("schema", {}))
    return None
