"""Chat Completions bodies: messages, names, tool definitions and calls, images, response formats.

Each message costs its framing (3 tokens; 4 for gpt-3.5-turbo-0301) plus its role and
content; a name adds itself and one token. The reply primer adds 3 (2 for reasoning models).
Tool definitions and a ``json_schema`` response format are system sections: they extend the
first system/developer message, or form one of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    CHAT_MESSAGE_KEYS,
    CHAT_PART_KEYS,
    CHAT_PART_OBJECT_KEYS,
    CHAT_RESPONSE_FORMAT_KEYS,
    CHAT_TOOL_CALL_KEYS,
    CHAT_TOOL_KEYS,
    CUSTOM_KEYS,
    FUNCTION_KEYS,
    JSON_SCHEMA_KEYS,
    LEGACY_FUNCTION_KEYS,
    TOOL_CALL_OBJECT_KEYS,
)
from budgetguard._estimate._models import Profile
from budgetguard._estimate._parts import add_audio, add_file, add_image
from budgetguard._estimate._result import Tally
from budgetguard._estimate._sections import chat_host_cost, chat_sections_text_cost, format_section
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

__all__ = ["count_chat"]

_SYSTEM_ROLES = ("system", "developer")
_RESULT_ROLES = ("tool", "function")
_TEXT_MESSAGE_KEYS = frozenset({"role", "content"})
_RESULT_MESSAGE_KEYS = frozenset({"role", "content", "tool_call_id"})
_CALLS_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls"})
_PLAIN_CALL_KEYS = CHAT_TOOL_CALL_KEYS["function"]
_FUNCTION_KEYS = TOOL_CALL_OBJECT_KEYS["function"]
# The body fields that define tools or a response format (system sections) or choose a tool.
_SECTION_FIELDS = ("tools", "functions", "tool_choice", "function_call", "response_format")
_SECTION_KEYS = frozenset(_SECTION_FIELDS)


def count_chat(body: Mapping[str, Any], profile: Profile, tally: Tally) -> None:
    """Add the prompt tokens of a Chat Completions body to ``tally``."""
    messages = body.get("messages")
    if messages is None:
        fail("messages", "required for chat.completions, missing")
    messages = need_list(messages, "messages")
    if not messages:
        fail("messages", "must contain at least one message")

    sections = None  # tokens of the tool and format sections, before joining the host message
    if not body.keys().isdisjoint(_SECTION_KEYS):  # most requests have none of them
        # An agent sends the same tools with every request: rendered and counted once.
        fields = tuple(body.get(key) for key in _SECTION_FIELDS)
        sections = count_once(
            "chat.sections", profile, fields, tally, lambda part: _sections(body, profile, part)
        )

    total = profile.reply_priming + profile.hidden_prompt
    if type(messages) is list and len(messages) >= MIN_HISTORY:
        # An agent resends its history: resume after the part counted for an earlier request.
        progress = count_history("chat.messages", messages, profile, tally, _count_messages)
    else:
        progress = Progress(0, None, {}, None)
        _count_messages(messages, 0, progress, profile, tally)
    total += progress.tokens
    host = progress.host
    if sections is not None:
        total += sections + chat_host_cost(profile, host)
    if body.get("web_search_options") is not None:  # search-preview models search first
        add_builtin_tool(tally, "web_search", "web_search_options")
    tally.tokens += total


def _count_messages(
    messages: Sequence[Any], start: int, progress: Progress, profile: Profile, tally: Tally
) -> None:
    """Count ``messages[start:]`` on from ``progress`` (a ``_cache.Counter``)."""
    call_names = progress.names
    per_message = profile.tokens_per_message
    total = 0
    host = progress.host  # the first system text: tool and format sections extend it
    for index in range(start, len(messages)):
        raw = messages[index]
        # Most messages are {"role": ..., "content": "text"}: counted here as _message counts
        # them, without its reads of absent fields and the JSON paths it keeps for errors.
        if type(raw) is dict:
            keys = raw.keys()
            if keys <= _TEXT_MESSAGE_KEYS:
                role = raw.get("role")
                content = raw.get("content")
                if type(role) is str and type(content) is str and role not in _RESULT_ROLES:
                    if host is None and role in _SYSTEM_ROLES:
                        host = content
                    total += per_message + profile.count_role(role) + profile.count(content)
                    continue
            # An agent's history is mostly tool calls and their results: the same, for them.
            elif keys <= _RESULT_MESSAGE_KEYS:
                content = raw.get("content")
                call_id = raw.get("tool_call_id")
                if (
                    raw.get("role") == "tool"
                    and type(content) is str
                    and (call_id is None or type(call_id) is str)
                ):
                    name = call_names.get(call_id) if call_id else None
                    total += per_message + profile.count(result_header(name)) + profile.count(content)
                    continue
            elif keys <= _CALLS_MESSAGE_KEYS:
                tokens = _plain_calls(raw, profile, call_names)
                if tokens is not None:
                    total += tokens
                    continue
        path = at("messages", index)
        message = need_mapping(raw, path)
        if not message.keys() <= CHAT_MESSAGE_KEYS:
            unknown_fields(message, CHAT_MESSAGE_KEYS, path, profile, tally)
        role = message.get("role")
        if role is None:
            fail(at(path, "role"), "every message needs a role")
        role = need_str(role, at(path, "role"))
        if host is None and role in _SYSTEM_ROLES:
            host = _plain_text(message.get("content"))
        total += _message(message, role, path, profile, tally, call_names)
    progress.tokens += total
    progress.host = host


def _plain_calls(message: dict[str, Any], profile: Profile, call_names: dict[str, str]) -> int | None:
    """Tokens of an assistant message that only calls functions, as ``_message`` counts them;
    None if it is not that simple (then ``_message`` counts it, and reports what is wrong)."""
    if message.get("role") != "assistant" or message.get("content") not in (None, ""):
        return None
    raw_calls = message.get("tool_calls")
    if type(raw_calls) is not list or not raw_calls:
        return None
    calls: list[tuple[str, str, str]] = []
    for call in raw_calls:
        if type(call) is not dict or not call.keys() <= _PLAIN_CALL_KEYS:
            return None
        fn = call.get("function")
        if (
            call.get("type", "function") != "function"
            or type(fn) is not dict
            or not fn.keys() <= _FUNCTION_KEYS
        ):
            return None
        call_id, name, arguments = call.get("id"), fn.get("name"), fn.get("arguments")
        if type(name) is not str or not (call_id is None or type(call_id) is str):
            return None
        if not (arguments is None or type(arguments) is str):
            return None
        calls.append((call_id or "", name, arguments or ""))
    for call_id, name, _ in calls:
        if call_id:
            call_names[call_id] = name
    count = profile.count
    per_message = profile.tokens_per_message
    if len(calls) > 1 and profile.dialect == "chatml":
        body = parallel_call_body([(name, args) for _, name, args in calls])
        return per_message + count("assistant to=multi_tool_use.parallel") + count(body)
    return sum(
        per_message + count(call_header(name)) + count(compact_arguments(args)) for _, name, args in calls
    )


def _sections(body: Mapping[str, Any], profile: Profile, tally: Tally) -> int | None:
    """Tokens of the tool definitions and response format (None if neither), less the host part."""
    defs = _function_defs(body, profile, tally)
    check_tool_choice(body.get("tool_choice"), "tool_choice")
    check_tool_choice(body.get("function_call"), "function_call")
    tools = render_functions(defs) if defs else None
    fmt = _response_format(body, profile, tally)
    return chat_sections_text_cost(profile, tools, fmt) if tools or fmt else None


def _plain_text(content: object) -> str | None:
    """The text of a system message (string or text parts), if it is all text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = [p.get("text") for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return "".join(str(t) for t in texts)
    return None


def _function_defs(body: Mapping[str, Any], profile: Profile, tally: Tally) -> list[FunctionDef]:
    defs: list[FunctionDef] = []
    tools = opt_list(body, "tools", "")
    for index, raw in enumerate(tools or ()):
        path = at("tools", index)
        tool = need_mapping(raw, path)
        kind = tool.get("type", "function")
        known = CHAT_TOOL_KEYS.get(kind) if isinstance(kind, str) else None
        if known is not None:
            check_fields(tool, known, path, profile, tally)
        if kind == "function":
            spec = tool.get("function")
            if spec is None:
                fail(at(path, "function"), "a function tool needs a 'function' object")
            spec = need_mapping(spec, at(path, "function"))
            check_fields(spec, FUNCTION_KEYS, at(path, "function"), profile, tally)
            defs.append(function_def(spec, at(path, "function")))
        elif kind == "custom":
            spec = need_mapping(tool.get("custom"), at(path, "custom"))
            check_fields(spec, CUSTOM_KEYS, at(path, "custom"), profile, tally)
            defs.append(
                FunctionDef(
                    need_str(spec.get("name"), at(path, "custom.name")),
                    opt_str(spec, "description", at(path, "custom")) or "",
                    None,
                )
            )
            tally.note(f"{path}: custom tool counted as a function without parameters")
        else:
            defs.append(
                FunctionDef(str(kind), unknown_json(tool, tally, f"{path}: tool type {kind!r}"), None)
            )
    for index, raw in enumerate(opt_list(body, "functions", "") or ()):
        path = at("functions", index)
        spec = need_mapping(raw, path)
        check_fields(spec, LEGACY_FUNCTION_KEYS, path, profile, tally)
        defs.append(function_def(spec, path))
    return defs


def _response_format(body: Mapping[str, Any], profile: Profile, tally: Tally) -> str | None:
    fmt = opt_mapping(body, "response_format", "")
    if fmt is None:
        return None
    kind = fmt.get("type")
    known = CHAT_RESPONSE_FORMAT_KEYS.get(kind) if isinstance(kind, str) else None
    if known is None:
        unknown_type(fmt, kind, "response_format", profile, tally)
        return None
    check_fields(fmt, known, "response_format", profile, tally)
    if kind != "json_schema":
        return None
    spec = fmt.get("json_schema")
    if spec is None:
        fail("response_format.json_schema", "required when type is 'json_schema', missing")
    spec = need_mapping(spec, "response_format.json_schema")
    check_fields(spec, JSON_SCHEMA_KEYS, "response_format.json_schema", profile, tally)
    name = opt_str(spec, "name", "response_format.json_schema") or "response"
    return format_section(name, spec.get("schema", {}))


def _message(
    message: Mapping[str, Any],
    role: str,
    path: str,
    profile: Profile,
    tally: Tally,
    call_names: dict[str, str],
) -> int:
    count = profile.count
    per_message = profile.tokens_per_message
    content = message.get("content")
    tokens = 0

    if role in _RESULT_ROLES:
        if role == "tool":
            call_id = opt_str(message, "tool_call_id", path)
            name = call_names.get(call_id) if call_id else None
        else:
            name = opt_str(message, "name", path)
        return (
            per_message + count(result_header(name)) + _content(content, at(path, "content"), profile, tally)
        )

    calls = _calls(message, path, profile, tally)
    for call_id, name, _ in calls:
        if call_id:
            call_names[call_id] = name
    has_text = content is not None and content != "" and content != []
    if has_text or not calls:
        tokens += (
            per_message + profile.count_role(role) + _content(content, at(path, "content"), profile, tally)
        )
        name = opt_str(message, "name", path)
        if name:
            tokens += count(name) + profile.tokens_per_name
        refusal = opt_str(message, "refusal", path)  # an earlier refusal is part of the turn's text
        if refusal:
            tokens += count(refusal)
    if len(calls) > 1 and profile.dialect == "chatml":
        body = parallel_call_body([(name, args) for _, name, args in calls])
        tokens += per_message + count("assistant to=multi_tool_use.parallel") + count(body)
    else:
        for _, name, args in calls:
            tokens += per_message + count(call_header(name)) + count(compact_arguments(args))
    if message.get("audio") is not None:
        tally.inexact(f"{at(path, 'audio')}: a previous audio response is referenced by id")
    return tokens


def _calls(
    message: Mapping[str, Any], path: str, profile: Profile, tally: Tally
) -> list[tuple[str, str, str]]:
    """``(id, name, arguments)`` of an assistant message's tool calls (and legacy function_call)."""
    calls: list[tuple[str, str, str]] = []
    for index, raw in enumerate(opt_list(message, "tool_calls", path) or ()):
        cpath = at(at(path, "tool_calls"), index)
        call = need_mapping(raw, cpath)
        call_id = opt_str(call, "id", cpath) or ""
        kind = call.get("type", "function")
        known = CHAT_TOOL_CALL_KEYS.get(kind) if isinstance(kind, str) else None
        if known is not None:
            check_fields(call, known, cpath, profile, tally)
        if kind == "function":
            fn = call.get("function")
            if fn is None:
                fail(at(cpath, "function"), "a tool call needs a 'function' object")
            fpath = at(cpath, "function")
            fn = need_mapping(fn, fpath)
            check_fields(fn, TOOL_CALL_OBJECT_KEYS["function"], fpath, profile, tally)
            calls.append(
                (call_id, need_str(fn.get("name"), at(fpath, "name")), opt_str(fn, "arguments", fpath) or "")
            )
        elif kind == "custom":
            spec = need_mapping(call.get("custom"), at(cpath, "custom"))
            spath = at(cpath, "custom")
            check_fields(spec, TOOL_CALL_OBJECT_KEYS["custom"], spath, profile, tally)
            calls.append(
                (call_id, need_str(spec.get("name"), at(spath, "name")), opt_str(spec, "input", spath) or "")
            )
        else:
            calls.append((call_id, str(kind), unknown_json(call, tally, f"{cpath}: tool call type {kind!r}")))
    legacy = opt_mapping(message, "function_call", path)
    if legacy is not None:
        fpath = at(path, "function_call")
        check_fields(legacy, TOOL_CALL_OBJECT_KEYS["function"], fpath, profile, tally)
        calls.append(
            ("", need_str(legacy.get("name"), at(fpath, "name")), opt_str(legacy, "arguments", fpath) or "")
        )
    return calls


def _content(content: object, path: str, profile: Profile, tally: Tally) -> int:
    """Tokens of a message's content: a string, or an array of content parts."""
    if content is None:
        return 0
    if isinstance(content, str):
        return profile.count(content)
    parts = need_list(content, path)
    count = profile.count
    tokens = 0
    for index, raw in enumerate(parts):
        ppath = at(path, index)
        if isinstance(raw, str):  # some SDKs send bare strings as parts
            tokens += count(raw)
            continue
        part = need_mapping(raw, ppath)
        kind = part.get("type")
        known = CHAT_PART_KEYS.get(kind) if isinstance(kind, str) else None
        if known is not None and not part.keys() <= known:
            unknown_fields(part, known, ppath, profile, tally)
        if kind == "text":
            tokens += count(need_str(part.get("text"), at(ppath, "text")))
        elif kind == "refusal":
            tokens += count(need_str(part.get("refusal"), at(ppath, "refusal")))
        elif kind == "image_url":
            image = part.get("image_url")
            ipath = at(ppath, "image_url")
            if isinstance(image, str):
                url, detail = image, None
            else:
                spec = need_mapping(image, ipath)
                check_fields(spec, CHAT_PART_OBJECT_KEYS["image_url"], ipath, profile, tally)
                url = need_str(spec.get("url"), at(ipath, "url"))
                detail = opt_str(spec, "detail", ipath)
            add_image(tally, profile, url, detail)
        elif kind == "input_audio":
            apath = at(ppath, "input_audio")
            audio = need_mapping(part.get("input_audio"), apath)
            check_fields(audio, CHAT_PART_OBJECT_KEYS["input_audio"], apath, profile, tally)
            add_audio(tally, opt_str(audio, "data", apath), f"{ppath} (audio)")
        elif kind == "file":
            spec = need_mapping(part.get("file"), at(ppath, "file"))
            fpath = at(ppath, "file")
            check_fields(spec, CHAT_PART_OBJECT_KEYS["file"], fpath, profile, tally)
            add_file(tally, opt_str(spec, "file_data", fpath), f"{ppath} (file)")
            filename = opt_str(spec, "filename", fpath)
            if filename:
                tokens += count(filename)
        elif isinstance(kind, str):
            tokens += count(unknown_json(part, tally, f"{ppath}: content part type {kind!r}"))
        else:
            fail(at(ppath, "type"), f"expected a content part type string, got {json_type(kind)}")
    return tokens
