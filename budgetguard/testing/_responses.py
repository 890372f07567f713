"""``POST /v1/responses`` (JSON and the real SSE event sequence) and ``/v1/responses/input_tokens``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._generate import Generation, OutputFormat, generate
from ._sse import EventStream
from ._wire import (
    JsonOutcome,
    Outcome,
    RequestError,
    StreamOutcome,
    Turn,
    apply_usage_override,
    json_type,
    output_cap,
    require_model,
    responses_usage,
    service_tier,
)

__all__ = ["input_tokens", "responses"]


def input_tokens(turn: Turn) -> Outcome:
    require_model(turn.body)
    _check_input(turn.body)
    return JsonOutcome(200, {"object": "response.input_tokens", "input_tokens": turn.prompt().tokens})


def responses(turn: Turn) -> Outcome:
    body = turn.body
    model = require_model(body)
    _check_input(body)
    cap = output_cap(body, "max_output_tokens")
    output_format = _output_format(body.get("text"))

    prompt = turn.prompt()
    reply = turn.take_reply()
    generation = generate(
        model=model,
        reply=reply,
        cap=cap,
        default_tokens=turn.default_tokens,
        output_format=output_format,
        new_call_id=lambda: turn.new_id("call_"),
    )
    usage = apply_usage_override(responses_usage(prompt, generation.tokens), reply, responses=True)
    omit_usage = reply is not None and reply.omit_usage
    status = "incomplete" if generation.truncated else "completed"
    items = _output_items(turn, generation, status)
    response = {
        "id": turn.new_id("resp_"),
        "object": "response",
        "created_at": turn.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if generation.truncated else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": reply.model if reply and reply.model else model,
        "output": items,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": service_tier(body, reply),
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": _echo_format(body.get("text")), "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None if omit_usage else usage,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }
    delay = reply.delay if reply else 0.0
    if not body.get("stream"):
        return JsonOutcome(200, response, delay=delay)
    return StreamOutcome(
        _events(response, items, generation), reply.cut_stream_after if reply else None, delay
    )


def _check_input(body: Mapping[str, Any]) -> None:
    """Refuse what the real API refuses: ``input`` neither text nor items, ``instructions`` not text."""
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise RequestError(
            f"Invalid type for 'instructions': expected a string, but got {json_type(instructions)} instead.",
            param="instructions",
        )
    items = body.get("input")
    if items is None or isinstance(items, str):
        return
    if not isinstance(items, list):
        raise RequestError(
            f"Invalid type for 'input': expected one of a string or an array of input items, "
            f"but got {json_type(items)} instead.",
            param="input",
        )
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise RequestError(
                f"Invalid type for 'input[{index}]': expected an object, but got {json_type(item)} instead.",
                param=f"input[{index}]",
            )


def _output_items(turn: Turn, generation: Generation, status: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if generation.text is not None:
        part = {"type": "output_text", "text": generation.text, "annotations": [], "logprobs": []}
        items.append(
            {
                "id": turn.new_id("msg_"),
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [part],
            }
        )
    for call in generation.calls:
        items.append(
            {
                "id": turn.new_id("fc_"),
                "type": "function_call",
                "status": "completed",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    return items


def _events(response: dict[str, Any], items: list[dict[str, Any]], generation: Generation) -> EventStream:
    events = EventStream()
    sequence = 0

    def emit(kind: str, payload: Mapping[str, Any], *, token: bool = False) -> None:
        nonlocal sequence
        events.add({"type": kind, "sequence_number": sequence, **payload}, event=kind, token=token)
        sequence += 1

    in_progress = {
        **response,
        "status": "in_progress",
        "output": [],
        "usage": None,
        "incomplete_details": None,
    }
    emit("response.created", {"response": in_progress})
    emit("response.in_progress", {"response": in_progress})
    call_pieces = iter(call.pieces for call in generation.calls)
    for index, item in enumerate(items):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            part = item["content"][0]
            emit(
                "response.output_item.added",
                {"output_index": index, "item": {**item, "status": "in_progress", "content": []}},
            )
            emit("response.content_part.added", {**where, "content_index": 0, "part": {**part, "text": ""}})
            for piece in generation.pieces:
                emit(
                    "response.output_text.delta",
                    {**where, "content_index": 0, "delta": piece, "logprobs": []},
                    token=True,
                )
            emit(
                "response.output_text.done",
                {**where, "content_index": 0, "text": part["text"], "logprobs": []},
            )
            emit("response.content_part.done", {**where, "content_index": 0, "part": part})
        else:
            emit(
                "response.output_item.added",
                {"output_index": index, "item": {**item, "status": "in_progress", "arguments": ""}},
            )
            for piece in next(call_pieces):
                emit("response.function_call_arguments.delta", {**where, "delta": piece}, token=True)
            emit(
                "response.function_call_arguments.done",
                {**where, "name": item["name"], "arguments": item["arguments"]},
            )
        emit("response.output_item.done", {"output_index": index, "item": item})
    events.mark_closing()
    final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    emit(final, {"response": response})
    return events


def _output_format(text: Any) -> OutputFormat | None:
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping):
        return None
    if fmt.get("type") == "json_object":
        return OutputFormat()
    if fmt.get("type") == "json_schema":
        schema = fmt.get("schema", {})
        if not isinstance(schema, Mapping):
            raise RequestError("text.format.schema must be an object", param="text.format.schema")
        return OutputFormat(schema=schema)
    return None


def _echo_format(text: Any) -> Any:
    if isinstance(text, Mapping) and isinstance(text.get("format"), Mapping):
        return text["format"]
    return {"type": "text"}
