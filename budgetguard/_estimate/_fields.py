"""The request fields the estimator knows: one allowlist per endpoint, and per nested object.

An estimate may say ``exact=True`` only when every field of the body is one the estimator
knows. The API keeps adding fields that make the server add hidden context (a reasoning
``mode``, new built-in tools, new item types), so this is an allowlist, not a denylist: a
field missing here makes the estimate inexact (see ``_unknown.unknown_fields``), whatever it
turns out to do. Each endpoint's top-level fields fall into three groups:

* ``counted``: fields whose tokens the estimator counts (``model`` picks the counting rules);
* ``context_free``: fields known to add no input tokens: sampling settings, output caps,
  streaming, storage, caching, moderation and routing options, ids for abuse detection;
* ``hidden``: fields known to make the server add context the body does not carry; the
  endpoint counters mark them inexact with a reason of their own (``previous_response_id``).

Nested objects that can carry context have allowlists of their own: ``reasoning``, ``text``
and response formats, messages and input items, content parts, tool definitions and calls.
Keys of objects that are inexact anyway (built-in tools, their call items) are not checked.

Every name is spelled as OpenAI's API reference (and the ``openai`` SDK's request types)
spell it; ``tests/test_estimate_exactness.py`` pins the spelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "BODY_FIELDS",
    "CHAT_MESSAGE_KEYS",
    "CHAT_PART_KEYS",
    "CHAT_PART_OBJECT_KEYS",
    "CHAT_RESPONSE_FORMAT_KEYS",
    "CHAT_TOOL_CALL_KEYS",
    "CHAT_TOOL_KEYS",
    "CONTEXT_MANAGEMENT_KEYS",
    "CUSTOM_KEYS",
    "FUNCTION_KEYS",
    "JSON_SCHEMA_KEYS",
    "LEGACY_FUNCTION_KEYS",
    "REASONING_KEYS",
    "RESPONSES_ITEM_KEYS",
    "RESPONSES_PART_KEYS",
    "RESPONSES_TOOL_KEYS",
    "TEXT_FORMAT_KEYS",
    "TEXT_KEYS",
    "TOOL_CALL_OBJECT_KEYS",
    "BodyFields",
]


@dataclass(frozen=True, slots=True)
class BodyFields:
    """The top-level fields of one endpoint's body that the estimator knows, by group."""

    counted: frozenset[str]
    context_free: frozenset[str]
    hidden: frozenset[str] = frozenset()
    #: All of them: the set ``count_request`` checks every body's keys against.
    known: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "known", self.counted | self.context_free | self.hidden)


# Fields every generating endpoint shares that add no input tokens.
_SAMPLING = frozenset({"temperature", "top_p"})
# Sampling controls of the older endpoints.
_DECODING = frozenset({"seed", "stop", "logit_bias"})
_PENALTIES = frozenset({"frequency_penalty", "presence_penalty"})
_STREAMING = frozenset({"stream", "stream_options"})
# Caching options change what is billed as cached, never how many tokens the prompt has.
_CACHING = frozenset({"prompt_cache_key", "prompt_cache_options", "prompt_cache_retention"})
# Ids and storage: for abuse detection, retrieval and dashboards, never shown to the model.
_BOOKKEEPING = frozenset({"user", "safety_identifier", "metadata", "store", "service_tier"})

BODY_FIELDS: Mapping[str, BodyFields] = {
    "chat.completions": BodyFields(
        counted=frozenset({"model", "messages", "tools", "functions", "response_format"}),
        context_free=_SAMPLING
        | _DECODING
        | _PENALTIES
        | _STREAMING
        | _CACHING
        | _BOOKKEEPING
        | frozenset(
            {
                "max_tokens",
                "max_completion_tokens",
                "n",
                "logprobs",
                "top_logprobs",
                # Which tool to call (or whether to call one in parallel): the definitions are
                # counted from ``tools``; the choice itself renders nothing (measured).
                "tool_choice",
                "function_call",
                "parallel_tool_calls",
                # Settings of a fixed size: an effort or verbosity level, never free text.
                "reasoning_effort",
                "verbosity",
                # Outside the prompt: audio output, a predicted output (rejected prediction
                # tokens are billed as completion tokens), moderation (a separate model:
                # recordings bill the same prompt with it).
                "modalities",
                "audio",
                "prediction",
                "moderation",
            }
        ),
        # Search-preview models search before answering (see _server.py).
        hidden=frozenset({"web_search_options"}),
    ),
    "responses": BodyFields(
        counted=frozenset({"model", "input", "instructions", "tools", "text"}),
        context_free=_SAMPLING
        | _STREAMING
        | _CACHING
        | _BOOKKEEPING
        | frozenset(
            {
                "max_output_tokens",
                "max_tool_calls",
                "top_logprobs",
                "tool_choice",
                "parallel_tool_calls",
                # Output data to return (``reasoning.encrypted_content``, search sources...).
                "include",
                # Scheduling: a completion window, an id that "does not add prior history".
                "background",
                "background_options",
                # ``auto`` only drops items from a prompt that would not fit the context
                # window (the request fails otherwise): it never adds any.
                "truncation",
                # Its keys are checked against REASONING_KEYS.
                "reasoning",
                # A separate model: recordings bill the same prompt with it.
                "moderation",
            }
        ),
        # The counters mark these inexact: stored conversations and prompts are expanded
        # server-side; compaction (context_management) rewrites a prompt past its threshold.
        # Not here, so inexact: ``image`` (image context compression changes image tokens),
        # ``access_programs`` (a policy program the server applies).
        hidden=frozenset({"previous_response_id", "conversation", "prompt", "context_management"}),
    ),
    "completions": BodyFields(
        counted=frozenset({"model", "prompt", "suffix"}),
        context_free=_SAMPLING
        | _DECODING
        | _PENALTIES
        | _STREAMING
        | frozenset({"user", "max_tokens", "n", "best_of", "echo", "logprobs"}),
    ),
    "embeddings": BodyFields(
        counted=frozenset({"model", "input"}),
        context_free=frozenset({"dimensions", "encoding_format", "user"}),
    ),
}

# --- nested objects -------------------------------------------------------------------------

#: ``reasoning`` (Responses). ``effort`` and ``summary`` (``generate_summary`` is its deprecated
#: name) are settings of a fixed size. ``context`` picks which earlier reasoning items are
#: rendered back: it only matters for reasoning items and stored state, which are inexact
#: anyway. Not here, so inexact: ``mode`` (an execution mode such as ``pro``).
REASONING_KEYS = frozenset({"effort", "summary", "generate_summary", "context"})
#: ``text`` (Responses): the format is counted; ``verbosity`` is a level, like ``effort``.
TEXT_KEYS = frozenset({"format", "verbosity"})
#: ``text.format`` by type. A json_schema's ``description`` is not rendered (measured).
TEXT_FORMAT_KEYS: Mapping[str, frozenset[str]] = {
    "text": frozenset({"type"}),
    "json_object": frozenset({"type"}),
    "json_schema": frozenset({"type", "name", "schema", "strict", "description"}),
}
#: ``response_format`` (Chat Completions) by type; a json_schema's inner object below.
CHAT_RESPONSE_FORMAT_KEYS: Mapping[str, frozenset[str]] = {
    "text": frozenset({"type"}),
    "json_object": frozenset({"type"}),
    "json_schema": frozenset({"type", "json_schema"}),
}
JSON_SCHEMA_KEYS = frozenset({"name", "schema", "strict", "description"})

#: A Chat Completions message, any role (``audio`` is counted as inexact: an id).
CHAT_MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio"}
)
# Marks where a cache prefix ends: caching only, on any content part.
_BREAKPOINT = "prompt_cache_breakpoint"
#: A Chat Completions content part, by type.
CHAT_PART_KEYS: Mapping[str, frozenset[str]] = {
    "text": frozenset({"type", "text", _BREAKPOINT}),
    "refusal": frozenset({"type", "refusal"}),
    "image_url": frozenset({"type", "image_url", _BREAKPOINT}),
    "input_audio": frozenset({"type", "input_audio", _BREAKPOINT}),
    "file": frozenset({"type", "file", _BREAKPOINT}),
}
#: The object inside a chat content part, by part type.
CHAT_PART_OBJECT_KEYS: Mapping[str, frozenset[str]] = {
    "image_url": frozenset({"url", "detail"}),
    "input_audio": frozenset({"data", "format"}),
    "file": frozenset({"file_data", "file_id", "filename"}),
}
#: A Chat Completions tool definition, by type; the object inside below.
CHAT_TOOL_KEYS: Mapping[str, frozenset[str]] = {
    "function": frozenset({"type", "function"}),
    "custom": frozenset({"type", "custom"}),
}
#: A function definition (``tools[].function`` in Chat Completions).
FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})
#: A legacy ``functions[]`` entry.
LEGACY_FUNCTION_KEYS = frozenset({"name", "description", "parameters"})
#: ``tools[].custom`` in Chat Completions; a custom tool is counted without its ``format``.
CUSTOM_KEYS = frozenset({"name", "description", "format"})
#: A past tool call in an assistant message, by type; the object inside below.
CHAT_TOOL_CALL_KEYS: Mapping[str, frozenset[str]] = {
    "function": frozenset({"id", "type", "function"}),
    "custom": frozenset({"id", "type", "custom"}),
}
TOOL_CALL_OBJECT_KEYS: Mapping[str, frozenset[str]] = {
    "function": frozenset({"name", "arguments"}),
    "custom": frozenset({"name", "input"}),
}

#: A Responses tool the estimator renders, by type. ``defer_loading`` is known: the counter
#: marks a deferred tool inexact (tool search loads it). Not here, so inexact: ``namespace``
#: tools, ``output_schema``, ``allowed_callers``, ``async``. Built-in tools are inexact anyway.
RESPONSES_TOOL_KEYS: Mapping[str, frozenset[str]] = {
    "function": frozenset({"type", "name", "description", "parameters", "strict", "defer_loading"}),
    "custom": frozenset({"type", "name", "description", "format", "defer_loading"}),
}
#: A Responses input item the estimator counts, by type (``id`` and ``status`` are bookkeeping).
#: Not here, so inexact: a message's ``phase`` (rendered as a channel), a call's ``namespace``,
#: ``caller`` or ``async``. Reasoning and server-side items are inexact anyway.
RESPONSES_ITEM_KEYS: Mapping[str, frozenset[str]] = {
    "message": frozenset({"type", "role", "content", "id", "status"}),
    "function_call": frozenset({"type", "id", "call_id", "name", "arguments", "status"}),
    "custom_tool_call": frozenset({"type", "id", "call_id", "name", "input"}),
    "function_call_output": frozenset({"type", "id", "call_id", "output", "status"}),
    "custom_tool_call_output": frozenset({"type", "id", "call_id", "output"}),
}
#: A Responses content part, by type. ``annotations`` and ``logprobs`` of earlier output are
#: not shown to the model.
RESPONSES_PART_KEYS: Mapping[str, frozenset[str]] = {
    "input_text": frozenset({"type", "text", _BREAKPOINT}),
    "output_text": frozenset({"type", "text", "annotations", "logprobs"}),
    "text": frozenset({"type", "text"}),
    "summary_text": frozenset({"type", "text"}),
    "reasoning_text": frozenset({"type", "text"}),
    "refusal": frozenset({"type", "refusal"}),
    "input_image": frozenset({"type", "image_url", "file_id", "detail", _BREAKPOINT}),
    "input_file": frozenset({"type", "file_data", "file_id", "file_url", "filename", "detail", _BREAKPOINT}),
    "input_audio": frozenset({"type", "input_audio", "data", "format"}),
}
#: A ``context_management`` entry, by type.
CONTEXT_MANAGEMENT_KEYS: Mapping[str, frozenset[str]] = {
    "compaction": frozenset({"type", "compact_threshold"}),
}
