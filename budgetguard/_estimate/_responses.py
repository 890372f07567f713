"""Responses API bodies: instructions, input items, function tools and ``text.format``.

``instructions`` is a system message and each input message is a chat message (same framing
as Chat Completions). Function tools and a ``json_schema`` text format are system sections.
Function calls and their outputs are rendered like chat tool calls. Anything the server
expands from state the body does not carry (``previous_response_id``, ``conversation``,
stored prompts, encrypted reasoning, built-in tools and their calls, files by id, compaction
past its threshold, deferred tools) makes the estimate inexact, with a reason; so does a key
missing from the allowlists of ``_fields.py`` in ``reasoning``, ``text``, a counted item or
part, or a function or custom tool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from budgetguard._estimate._body import (
    at,
    fail,
    json_type,
    need_list,
    need_mapping,
    need_str,
    opt_list,
    opt_mapping,
    opt_str,
)
from budgetguard._estimate._cache import MIN_HISTORY, Progress, count_history, count_once
from budgetguard._estimate._fields import (
    CONTEXT_MANAGEMENT_KEYS,
    REASONING_KEYS,
    RESPONSES_ITEM_KEYS,
    RESPONSES_PART_KEYS,
    RESPONSES_TOOL_KEYS,
    TEXT_FORMAT_KEYS,
    TEXT_KEYS,
)
from budgetguard._estimate._models import Profile
from budgetguard._estimate._parts import add_audio, add_file, add_image, add_unsized_image
from budgetguard._estimate._result import Tally
from budgetguard._estimate._sections import format_section, responses_sections_cost
from budgetguard._estimate._server import add_builtin_tool
from budgetguard._estimate._tools import (
    FunctionDef,
    call_header,
    check_tool_choice,
    compact_arguments,
    function_def,
    parallel_call_body,
    render_functions,
    result_header,
)
from budgetguard._estimate._unknown import check_fields, unknown_fields, unknown_json, unknown_type

__all__ = ["count_responses"]

# Encrypted reasoning is decrypted back into the prompt: roughly one token per this many
# characters of ciphertext (calibrated, loosely: it varies 2-20x), and the upper bound
# reserves one per _REASONING_UPPER_CHARS_PER_TOKEN more.
_REASONING_CHARS_PER_TOKEN = 8
_REASONING_UPPER_CHARS_PER_TOKEN = 2
_NO_SECTIONS = (None, None, None)
# Consecutive call items of one type are one turn (a parallel call, for chatml models).
_CALL_ITEMS = ("function_call", "custom_tool_call")
# Items produced by built-in tools or other server state, counted as their JSON text.
_SERVER_ITEMS = frozenset(
    {
        "web_search_call",
        "file_search_call",
        "computer_call",
        "computer_call_output",
        "code_interpreter_call",
        "image_generation_call",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "mcp_call",
        "tool_search_call",
        "tool_search_output",
        "additional_tools",
        "compaction",
    }
)


def count_responses(body: Mapping[str, Any], profile: Profile, tally: Tally) -> None:
    """Add the prompt tokens of a Responses API body to ``tally``."""
    count = profile.count
    per_message = profile.tokens_per_message
    total = profile.reply_priming + profile.hidden_prompt
    _hidden_state(body, tally)
    reasoning = body.get("reasoning")
    if reasoning is not None and not (type(reasoning) is dict and REASONING_KEYS.issuperset(reasoning)):
        unknown_fields(need_mapping(reasoning, "reasoning"), REASONING_KEYS, "reasoning", profile, tally)

    instructions = body.get("instructions")
    if isinstance(instructions, str):
        if instructions:
            total += per_message + 1 + count(instructions)
    elif instructions is not None:
        # Newer API versions accept a list of input items here.
        total += _items(need_list(instructions, "instructions"), "instructions", profile, tally)

    fields = (body.get("tools"), body.get("tool_choice"), body.get("text"))
    if fields != _NO_SECTIONS:
        # An agent sends the same tools with every request: rendered and counted once.
        total += count_once(
            "responses.sections", profile, fields, tally, lambda part: _sections(body, profile, part)
        )

    raw_input = body.get("input")
    if raw_input is None:
        if not any(body.get(k) for k in ("previous_response_id", "conversation", "prompt")):
            fail("input", "required for responses unless previous_response_id, conversation or prompt is set")
    elif isinstance(raw_input, str):
        total += per_message + 1 + count(raw_input)
    else:
        total += _items(need_list(raw_input, "input"), "input", profile, tally)
    if body.get("context_management") is not None:
        _context_management(body, total, profile, tally)
    tally.tokens += total


def _sections(body: Mapping[str, Any], profile: Profile, tally: Tally) -> int:
    """Tokens of the function tools and text format; built-in tools are added to ``tally``."""
    defs = _tools(body, profile, tally)
    check_tool_choice(body.get("tool_choice"), "tool_choice")
    fmt = _text_format(body, profile, tally)
    return responses_sections_cost(profile, render_functions(defs) if defs else None, fmt)


def _hidden_state(body: Mapping[str, Any], tally: Tally) -> None:
    if body.get("previous_response_id"):
        tally.inexact("previous_response_id: the earlier conversation is added server-side")
    if body.get("conversation"):
        tally.inexact("conversation: its stored items are added server-side")
    if body.get("prompt"):
        tally.inexact("prompt: a stored prompt template is expanded server-side")


def _context_management(body: Mapping[str, Any], total: int, profile: Profile, tally: Tally) -> None:
    """Compaction rewrites the prompt server-side once it passes a threshold: inexact past it."""
    for index, raw in enumerate(need_list(body["context_management"], "context_management")):
        path = at("context_management", index)
        entry = need_mapping(raw, path)
        kind = entry.get("type")
        known = CONTEXT_MANAGEMENT_KEYS.get(kind) if isinstance(kind, str) else None
        if known is None:
            unknown_type(entry, kind, path, profile, tally)
            continue
        check_fields(entry, known, path, profile, tally)
        threshold = entry.get("compact_threshold")
        if threshold is None:
            tally.inexact(f"{path}: compaction at the server's default threshold may rewrite the prompt")
        elif not isinstance(threshold, int) or total >= threshold:
            # Compaction shrinks the prompt: the uncompacted count stays a safe upper bound.
            tally.inexact(
                f"{path}: the prompt reaches compact_threshold ({threshold}) and may be compacted "
                "server-side: counted uncompacted"
            )


def _tools(body: Mapping[str, Any], profile: Profile, tally: Tally) -> list[FunctionDef]:
    """Function definitions to render; built-in tools are added to the tally as estimates."""
    defs: list[FunctionDef] = []
    for index, raw in enumerate(opt_list(body, "tools", "") or ()):
        path = at("tools", index)
        tool = need_mapping(raw, path)
        kind = tool.get("type")
        if kind is None:
            fail(at(path, "type"), "every tool needs a type")
        kind = need_str(kind, at(path, "type"))
        known = RESPONSES_TOOL_KEYS.get(kind)
        if known is not None:
            check_fields(tool, known, path, profile, tally)
            if tool.get("defer_loading"):
                tally.inexact(f"{path}: a deferred tool is loaded if tool search finds it: counted as loaded")
        if kind == "function":
            defs.append(function_def(tool, path))
        elif kind == "custom":
            name = need_str(tool.get("name"), at(path, "name"))
            defs.append(FunctionDef(name, opt_str(tool, "description", path) or "", None))
            tally.note(f"{path}: custom tool counted as a function without parameters")
        else:
            add_builtin_tool(tally, kind, path)
    return defs


def _text_format(body: Mapping[str, Any], profile: Profile, tally: Tally) -> str | None:
    text = opt_mapping(body, "text", "")
    if text is None:
        return None
    check_fields(text, TEXT_KEYS, "text", profile, tally)
    fmt = opt_mapping(text, "format", "text")
    if fmt is None:
        return None
    kind = fmt.get("type")
    known = TEXT_FORMAT_KEYS.get(kind) if isinstance(kind, str) else None
    if known is None:
        unknown_type(fmt, kind, "text.format", profile, tally)
        return None
    check_fields(fmt, known, "text.format", profile, tally)
    if kind != "json_schema":
        return None
    name = opt_str(fmt, "name", "text.format") or "response"
    return format_section(name, fmt.get("schema", {}))


def _items(items: Sequence[Any], path: str, profile: Profile, tally: Tally) -> int:
    if type(items) is list and len(items) >= MIN_HISTORY:
        # An agent resends its history: resume after the part counted for an earlier request.
        return count_history(f"responses.{path}", items, profile, tally, _ITEM_COUNTERS[path]).tokens
    progress = Progress(0, None, {}, None)
    _count_items(path, items, 0, progress, profile, tally)
    return progress.tokens


def _count_items(
    path: str, items: Sequence[Any], start: int, progress: Progress, profile: Profile, tally: Tally
) -> None:
    """Count ``items[start:]`` on from ``progress``."""
    count = profile.count
    per_message = profile.tokens_per_message
    names = progress.names
    tokens = 0
    index = start
    while index < len(items):
        ipath = at(path, index)
        item = need_mapping(items[index], ipath)
        kind = item.get("type", "message" if "role" in item else None)
        if kind is None:
            fail(at(ipath, "type"), "an input item needs a type (or a role, for a message)")
        known = RESPONSES_ITEM_KEYS.get(kind) if isinstance(kind, str) else None
        if known is not None and not item.keys() <= known:
            unknown_fields(item, known, ipath, profile, tally)
        if kind == "message":
            role = need_str(item.get("role"), at(ipath, "role"))
            tokens += (
                per_message
                + count(role)
                + _content(item.get("content"), at(ipath, "content"), profile, tally)
            )
        elif kind in _CALL_ITEMS:
            # Consecutive calls were made in one turn: chatml models see them as one parallel call.
            batch = [(ipath, item)]
            while (
                index + 1 < len(items)
                and isinstance(items[index + 1], Mapping)
                and items[index + 1].get("type") == kind
            ):
                index += 1
                batch.append((at(path, index), items[index]))
                check_fields(items[index], RESPONSES_ITEM_KEYS[kind], at(path, index), profile, tally)
            calls = [_call(p, it, names) for p, it in batch]
            if len(calls) > 1 and profile.dialect == "chatml":
                tokens += per_message + count("assistant to=multi_tool_use.parallel")
                tokens += count(parallel_call_body(calls))
            else:
                for name, args in calls:
                    tokens += per_message + count(call_header(name)) + count(compact_arguments(args))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = opt_str(item, "call_id", ipath)
            header = result_header(names.get(call_id) if call_id else None)
            tokens += (
                per_message
                + count(header)
                + _content(item.get("output"), at(ipath, "output"), profile, tally)
            )
        elif kind == "reasoning":
            tokens += _reasoning(item, ipath, profile, tally)
        elif kind == "item_reference":
            tally.inexact(f"{ipath}: an item referenced by id is added server-side")
        elif kind in _SERVER_ITEMS:
            tally.inexact(f"{ipath}: {kind} items carry server-side context the body only summarises")
            tokens += per_message + count(unknown_json(item, Tally(), kind))
        elif isinstance(kind, str):
            tokens += per_message + count(unknown_json(item, tally, f"{ipath}: input item type {kind!r}"))
        else:
            fail(at(ipath, "type"), f"expected an item type string, got {json_type(kind)}")
        index += 1
    progress.tokens += tokens
    # A trailing call would share its batch with a call of the same type appended next.
    last = items[-1] if items else None
    kind = last.get("type") if isinstance(last, Mapping) else None
    progress.tail = kind if kind in _CALL_ITEMS else None


_ITEM_COUNTERS = {
    "input": partial(_count_items, "input"),
    "instructions": partial(_count_items, "instructions"),
}


def _call(path: str, item: Mapping[str, Any], names: dict[str, str]) -> tuple[str, str]:
    name = need_str(item.get("name"), at(path, "name"))
    call_id = opt_str(item, "call_id", path)
    if call_id:
        names[call_id] = name
    if item.get("type") == "custom_tool_call":
        return name, opt_str(item, "input", path) or ""
    return name, opt_str(item, "arguments", path) or ""


def _reasoning(item: Mapping[str, Any], path: str, profile: Profile, tally: Tally) -> int:
    """Reasoning from an earlier turn: re-added from its encrypted form when still relevant."""
    summary = 0
    for index, raw in enumerate(opt_list(item, "summary", path) or ()):
        part = need_mapping(raw, at(at(path, "summary"), index))
        text = part.get("text")
        if isinstance(text, str):
            summary += profile.count(text)
    encrypted = opt_str(item, "encrypted_content", path) or ""
    guess = len(encrypted) // _REASONING_CHARS_PER_TOKEN
    tally.inexact(
        f"{path}: reasoning items are decrypted and re-added server-side when still relevant; "
        "estimated from the size of their encrypted content",
        allowance=len(encrypted) // _REASONING_UPPER_CHARS_PER_TOKEN + summary,
    )
    return guess


def _content(content: object, path: str, profile: Profile, tally: Tally) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return profile.count(content)
    count = profile.count
    tokens = 0
    for index, raw in enumerate(need_list(content, path)):
        ppath = at(path, index)
        part = need_mapping(raw, ppath)
        kind = part.get("type")
        known = RESPONSES_PART_KEYS.get(kind) if isinstance(kind, str) else None
        if known is not None and not part.keys() <= known:
            unknown_fields(part, known, ppath, profile, tally)
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            tokens += count(need_str(part.get("text"), at(ppath, "text")))
        elif kind == "refusal":
            tokens += count(need_str(part.get("refusal"), at(ppath, "refusal")))
        elif kind == "input_image":
            detail = opt_str(part, "detail", ppath)
            url = opt_str(part, "image_url", ppath)
            if url is not None:
                add_image(tally, profile, url, detail)
            elif part.get("file_id"):
                add_unsized_image(tally, profile, detail, f"{ppath} (an image by file id)")
            else:
                fail(ppath, "an input_image needs an image_url or a file_id")
        elif kind == "input_file":
            data = opt_str(part, "file_data", ppath)
            if data is None and part.get("file_url"):
                tally.inexact(f"{ppath} (file) is fetched from a URL: its contents are not in the body")
            else:
                add_file(tally, data, f"{ppath} (file)")
            filename = opt_str(part, "filename", ppath)
            if filename:
                tokens += count(filename)
        elif kind == "input_audio":
            audio = part.get("input_audio", part)
            spec = need_mapping(audio, ppath)
            add_audio(tally, opt_str(spec, "data", ppath), f"{ppath} (audio)")
        elif isinstance(kind, str):
            tokens += count(unknown_json(part, tally, f"{ppath}: content part type {kind!r}"))
        else:
            fail(at(ppath, "type"), f"expected a content part type string, got {json_type(kind)}")
    return tokens
