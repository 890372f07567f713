"""``exact=True`` only for bodies made of fields the estimator knows: an allowlist, not a denylist.

Every top-level field, and every key of an object that can carry context (``reasoning``,
``text``, response formats, messages, input items, content parts, tool definitions and
calls), must be on the allowlists of ``budgetguard/_estimate/_fields.py``. Anything else
makes the estimate inexact, names the field by its JSON path, and widens the upper bound by
the field's compact JSON text counted as tokens plus ``UNKNOWN_FIELD_ALLOWANCE``.
"""

from __future__ import annotations

import json
from collections.abc import Set
from typing import Any

import pytest

from budgetguard._errors import EstimateError
from budgetguard._estimate import ENDPOINTS, TokenEstimate, count_request, count_text
from budgetguard._estimate._fields import (
    BODY_FIELDS,
    CHAT_MESSAGE_KEYS,
    CHAT_PART_KEYS,
    CHAT_PART_OBJECT_KEYS,
    CHAT_RESPONSE_FORMAT_KEYS,
    CHAT_TOOL_CALL_KEYS,
    CHAT_TOOL_KEYS,
    CONTEXT_MANAGEMENT_KEYS,
    CUSTOM_KEYS,
    FUNCTION_KEYS,
    JSON_SCHEMA_KEYS,
    LEGACY_FUNCTION_KEYS,
    REASONING_KEYS,
    RESPONSES_ITEM_KEYS,
    RESPONSES_PART_KEYS,
    RESPONSES_TOOL_KEYS,
    TEXT_FORMAT_KEYS,
    TEXT_KEYS,
    TOOL_CALL_OBJECT_KEYS,
)
from budgetguard._estimate._unknown import UNKNOWN_FIELD_ALLOWANCE

MODEL = "gpt-4o"
BASES: dict[str, dict[str, Any]] = {
    "chat.completions": {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]},
    "responses": {"model": MODEL, "input": "Hello there"},
    "completions": {"model": "gpt-3.5-turbo-instruct", "prompt": "Hello there"},
    "embeddings": {"model": "text-embedding-3-small", "input": "Hello there"},
}

# One plausible value for every field known to add no input tokens.
SETTINGS: dict[str, dict[str, Any]] = {
    "chat.completions": {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n\n"],
        "logit_bias": {"50256": -100},
        "frequency_penalty": 0.1,
        "presence_penalty": 0.1,
        "stream": True,
        "stream_options": {"include_usage": True},
        "prompt_cache_key": "tenant-1",
        "prompt_cache_options": {"ttl": "30m"},
        "prompt_cache_retention": "24h",
        "user": "user-1",
        "safety_identifier": "hash-1",
        "metadata": {"run": "1"},
        "store": False,
        "service_tier": "priority",
        "max_tokens": 100,
        "max_completion_tokens": 100,
        "n": 2,
        "logprobs": True,
        "top_logprobs": 3,
        "tool_choice": "auto",
        "function_call": "auto",
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "verbosity": "low",
        "modalities": ["text"],
        "audio": {"voice": "alloy", "format": "wav"},
        "prediction": {"type": "content", "content": "Hello"},
        "moderation": {"model": "omni-moderation-latest"},
    },
    "responses": {
        "temperature": 0.2,
        "top_p": 0.9,
        "stream": True,
        "stream_options": {"include_obfuscation": False},
        "prompt_cache_key": "tenant-1",
        "prompt_cache_options": {"ttl": "30m"},
        "prompt_cache_retention": "24h",
        "user": "user-1",
        "safety_identifier": "hash-1",
        "metadata": {"run": "1"},
        "store": False,
        "service_tier": "flex",
        "max_output_tokens": 100,
        "max_tool_calls": 3,
        "top_logprobs": 3,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "include": ["reasoning.encrypted_content"],
        "background": False,
        "background_options": {"completion_window": "soonest"},
        "truncation": "auto",
        "reasoning": {"effort": "low", "summary": "auto", "generate_summary": "auto", "context": "auto"},
        "moderation": {"model": "omni-moderation-latest"},
    },
    "completions": {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n\n"],
        "logit_bias": {"50256": -100},
        "frequency_penalty": 0.1,
        "presence_penalty": 0.1,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "user-1",
        "max_tokens": 100,
        "n": 2,
        "best_of": 3,
        "echo": False,
        "logprobs": 2,
    },
    "embeddings": {"dimensions": 256, "encoding_format": "float", "user": "user-1"},
}

# The counted fields the bases leave out, with values that keep the body self-contained.
_FUNCTION = {
    "name": "get_weather",
    "description": "Weather",
    "parameters": {"type": "object", "properties": {}},
}
COUNTED_EXTRAS: dict[str, dict[str, Any]] = {
    "chat.completions": {
        "tools": [{"type": "function", "function": {**_FUNCTION, "strict": True}}],
        "functions": [_FUNCTION],
        "response_format": {"type": "json_object"},
    },
    "responses": {
        "instructions": "Be brief.",
        "tools": [{"type": "function", **_FUNCTION, "strict": True}],
        "text": {"format": {"type": "text"}, "verbosity": "low"},
    },
    "completions": {"suffix": "\n"},
    "embeddings": {},
}

# Fields the counters themselves mark inexact (hidden context), with a value that triggers it.
HIDDEN: dict[str, dict[str, Any]] = {
    "chat.completions": {"web_search_options": {}},
    "responses": {
        "previous_response_id": "resp_123",
        "conversation": "conv_123",
        "prompt": {"id": "pmpt_123"},
        "context_management": [{"type": "compaction", "compact_threshold": 1}],
    },
    "completions": {},
    "embeddings": {},
}


def unknown_reasons(est: TokenEstimate) -> list[str]:
    return [r for r in est.reasons if "is not known to the estimator" in r]


def widening(model: str, key: str, value: Any) -> int:
    """What one unknown field adds to the upper bound: its compact JSON text, plus the allowance."""
    text = json.dumps(key) + ":" + json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return count_text(model, text) + UNKNOWN_FIELD_ALLOWANCE


# --- known fields ---------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_specs_cover_every_field_of_the_allowlist(endpoint: str) -> None:
    fields = BODY_FIELDS[endpoint]
    assert set(SETTINGS[endpoint]) == fields.context_free
    assert set(HIDDEN[endpoint]) == fields.hidden
    assert set(BASES[endpoint]) | set(COUNTED_EXTRAS[endpoint]) == fields.counted


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_three_groups_do_not_overlap(endpoint: str) -> None:
    fields = BODY_FIELDS[endpoint]
    assert not fields.counted & fields.context_free
    assert not fields.counted & fields.hidden
    assert not fields.context_free & fields.hidden
    assert fields.known == fields.counted | fields.context_free | fields.hidden


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_of_known_context_free_fields_stays_exact_and_costs_what_the_bare_body_costs(
    endpoint: str,
) -> None:
    bare = count_request(endpoint, BASES[endpoint])
    full = count_request(endpoint, {**BASES[endpoint], **SETTINGS[endpoint]})
    assert bare.exact and full.exact, full.reasons
    assert full.prompt_tokens == bare.prompt_tokens
    assert full.prompt_tokens_upper == bare.prompt_tokens_upper
    assert unknown_reasons(full) == []


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_using_every_counted_and_context_free_field_stays_exact(endpoint: str) -> None:
    body = {**BASES[endpoint], **COUNTED_EXTRAS[endpoint], **SETTINGS[endpoint]}
    est = count_request(endpoint, body)
    assert est.exact, est.reasons


@pytest.mark.parametrize(("endpoint", "field"), [(e, f) for e in ENDPOINTS for f in HIDDEN[e]])
def test_fields_known_to_hide_context_are_inexact_with_a_reason_of_their_own(
    endpoint: str, field: str
) -> None:
    est = count_request(endpoint, {**BASES[endpoint], field: HIDDEN[endpoint][field]})
    assert not est.exact
    assert any(field in r for r in est.reasons), est.reasons
    assert unknown_reasons(est) == []


# --- unknown top-level fields ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "field", "value"),
    [
        ("chat.completions", "mode", "deep"),
        ("chat.completions", "reasoning", {"effort": "low"}),  # a Responses field, not a chat one
        ("responses", "mode", "deep"),
        ("responses", "reasoning_effort", "low"),  # a chat field, not a Responses one
        ("responses", "image", {"context_compression": "auto"}),  # changes image tokens
        ("completions", "mode", "deep"),
        ("embeddings", "mode", "deep"),
        ("embeddings", "instructions", "Embed for retrieval."),
    ],
)
def test_an_unknown_top_level_field_is_inexact_names_the_field_and_widens_the_upper_bound(
    endpoint: str, field: str, value: Any
) -> None:
    without = count_request(endpoint, BASES[endpoint])
    est = count_request(endpoint, {**BASES[endpoint], field: value})
    assert without.exact
    assert not est.exact
    assert unknown_reasons(est) == [
        f"{field} is not known to the estimator: it may add context server-side "
        f"(the upper bound reserves {widening(est.model, field, value)} tokens for it)"
    ]
    assert est.prompt_tokens == without.prompt_tokens  # the best estimate assumes a setting
    assert est.prompt_tokens_upper == without.prompt_tokens_upper + widening(est.model, field, value)


def test_each_unknown_field_widens_the_upper_bound_on_its_own() -> None:
    base = BASES["responses"]
    one = count_request("responses", {**base, "mode": "deep"})
    two = count_request("responses", {**base, "mode": "deep", "persona": "a pirate who explains tax law"})
    assert len(unknown_reasons(two)) == 2
    assert two.prompt_tokens_upper == one.prompt_tokens_upper + widening(
        MODEL, "persona", "a pirate who explains tax law"
    )


def test_even_a_one_token_unknown_field_reserves_a_fixed_allowance_for_hidden_context() -> None:
    without = count_request("responses", BASES["responses"])
    est = count_request("responses", {**BASES["responses"], "mode": "x"})
    assert est.prompt_tokens_upper - without.prompt_tokens_upper >= 256


def test_a_bigger_unknown_field_reserves_more() -> None:
    small = count_request("responses", {**BASES["responses"], "memory": "likes tea"})
    large = count_request("responses", {**BASES["responses"], "memory": "likes tea. " * 200})
    assert large.prompt_tokens_upper > small.prompt_tokens_upper + 300


def test_an_unknown_field_set_to_null_is_the_default_and_stays_exact() -> None:
    est = count_request("chat.completions", {**BASES["chat.completions"], "mode": None})
    assert est.exact, est.reasons


def test_an_unknown_field_adds_to_a_body_that_is_already_inexact() -> None:
    hidden = {**BASES["responses"], "previous_response_id": "resp_123"}
    without = count_request("responses", hidden)
    est = count_request("responses", {**hidden, "mode": "deep"})
    assert any("previous_response_id" in r for r in est.reasons)
    assert any(r.startswith("mode is not known") for r in est.reasons)
    assert est.prompt_tokens_upper == without.prompt_tokens_upper + widening(MODEL, "mode", "deep")


def test_a_malformed_body_still_fails_before_its_unknown_fields_are_reported() -> None:
    with pytest.raises(EstimateError, match="messages"):
        count_request("chat.completions", {"model": MODEL, "messages": "hi", "mode": "deep"})


# --- unknown keys inside known objects -------------------------------------------------------

_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


def _chat(messages: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, **body}


def _resp(**body: Any) -> dict[str, Any]:
    return {"model": MODEL, **body}


# (endpoint, body without the unknown key, the same body with it, JSON path, key, value)
NESTED: list[tuple[str, dict[str, Any], dict[str, Any], str, str, Any]] = [
    (
        "responses",
        _resp(input="hi", reasoning={"effort": "low"}),
        _resp(input="hi", reasoning={"effort": "low", "mode": "x"}),
        "reasoning.mode",
        "mode",
        "x",
    ),
    (
        "responses",
        _resp(input="hi", text={"format": {"type": "text"}}),
        _resp(input="hi", text={"format": {"type": "text"}, "persona": "pirate"}),
        "text.persona",
        "persona",
        "pirate",
    ),
    (
        "responses",
        _resp(
            input="hi", text={"format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}}}
        ),
        _resp(
            input="hi",
            text={
                "format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "examples": [1]}
            },
        ),
        "text.format.examples",
        "examples",
        [1],
    ),
    (
        "responses",
        _resp(input="hi", tools=[{"type": "function", **_FUNCTION}]),
        _resp(input="hi", tools=[{"type": "function", **_FUNCTION, "output_schema": {"type": "string"}}]),
        "tools[0].output_schema",
        "output_schema",
        {"type": "string"},
    ),
    (
        "responses",
        _resp(input=[{"role": "assistant", "content": "Done."}]),
        _resp(input=[{"role": "assistant", "content": "Done.", "phase": "final_answer"}]),
        "input[0].phase",
        "phase",
        "final_answer",
    ),
    (
        "responses",
        _resp(input=[{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]),
        _resp(
            input=[
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "namespace": "n"}
            ]
        ),
        "input[0].namespace",
        "namespace",
        "n",
    ),
    (
        "responses",
        _resp(input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]),
        _resp(input=[{"role": "user", "content": [{"type": "input_text", "text": "hi", "voice": "calm"}]}]),
        "input[0].content[0].voice",
        "voice",
        "calm",
    ),
    (
        "chat.completions",
        _chat([{"role": "user", "content": "hi"}]),
        _chat([{"role": "user", "content": "hi", "attachments": ["notes.txt"]}]),
        "messages[0].attachments",
        "attachments",
        ["notes.txt"],
    ),
    (
        "chat.completions",
        _chat([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
        _chat([{"role": "user", "content": [{"type": "text", "text": "hi", "voice": "calm"}]}]),
        "messages[0].content[0].voice",
        "voice",
        "calm",
    ),
    (
        "chat.completions",
        _chat([{"role": "user", "content": "hi"}], tools=[{"type": "function", "function": _FUNCTION}]),
        _chat(
            [{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {**_FUNCTION, "examples": ["Paris"]}}],
        ),
        "tools[0].function.examples",
        "examples",
        ["Paris"],
    ),
    (
        "chat.completions",
        _chat([{"role": "user", "content": "hi"}], tools=[{"type": "function", "function": _FUNCTION}]),
        _chat(
            [{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": _FUNCTION, "defer_loading": True}],
        ),
        "tools[0].defer_loading",
        "defer_loading",
        True,
    ),
    (
        "chat.completions",
        _chat([{"role": "user", "content": "hi"}], functions=[_FUNCTION]),
        _chat([{"role": "user", "content": "hi"}], functions=[{**_FUNCTION, "examples": ["Paris"]}]),
        "functions[0].examples",
        "examples",
        ["Paris"],
    ),
    (
        "chat.completions",
        _chat([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [_CALL]}]),
        _chat(
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [{**_CALL, "thought": "t"}]},
            ]
        ),
        "messages[1].tool_calls[0].thought",
        "thought",
        "t",
    ),
    (
        "chat.completions",
        _chat(
            [{"role": "user", "content": "hi"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": {"type": "object"}},
            },
        ),
        _chat(
            [{"role": "user", "content": "hi"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": {"type": "object"}, "examples": [1]},
            },
        ),
        "response_format.json_schema.examples",
        "examples",
        [1],
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "without", "with_", "path", "key", "value"), NESTED, ids=[n[3] for n in NESTED]
)
def test_an_unknown_key_of_a_known_object_is_inexact_names_its_path_and_widens_the_upper_bound(
    endpoint: str, without: dict[str, Any], with_: dict[str, Any], path: str, key: str, value: Any
) -> None:
    plain = count_request(endpoint, without)
    est = count_request(endpoint, with_)
    assert plain.exact, plain.reasons
    assert not est.exact
    assert [r for r in unknown_reasons(est) if r.startswith(f"{path} is not known to the estimator")], (
        est.reasons
    )
    assert est.prompt_tokens == plain.prompt_tokens
    assert est.prompt_tokens_upper == plain.prompt_tokens_upper + widening(MODEL, key, value)


@pytest.mark.parametrize(
    ("endpoint", "body", "path"),
    [
        ("responses", _resp(input="hi", text={"format": {"type": "regex", "pattern": "a+"}}), "text.format"),
        (
            "chat.completions",
            _chat([{"role": "user", "content": "hi"}], response_format={"type": "grammar"}),
            "response_format",
        ),
        (
            "responses",
            _resp(input="hi", context_management=[{"type": "forget_older_turns", "keep": 2}]),
            "context_management[0]",
        ),
    ],
)
def test_an_object_of_an_unknown_type_is_inexact_and_widens_the_upper_bound(
    endpoint: str, body: dict[str, Any], path: str
) -> None:
    est = count_request(endpoint, body)
    plain = count_request(
        endpoint,
        {k: v for k, v in body.items() if k not in ("text", "response_format", "context_management")},
    )
    assert not est.exact
    assert any(r.startswith(f"{path}: type ") and "is not known to the estimator" in r for r in est.reasons)
    assert est.prompt_tokens_upper >= plain.prompt_tokens_upper + UNKNOWN_FIELD_ALLOWANCE


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        (
            "responses",
            _resp(input="hi", tools=[{"type": "function", **_FUNCTION}, {"type": "hologram_search"}]),
        ),
        (
            "chat.completions",
            _chat(
                [{"role": "user", "content": "hi"}],
                tools=[{"type": "function", "function": _FUNCTION}, {"type": "hologram_search"}],
            ),
        ),
    ],
)
def test_a_new_tool_type_is_inexact_names_the_tool_and_widens_the_upper_bound(
    endpoint: str, body: dict[str, Any]
) -> None:
    est = count_request(endpoint, body)
    plain = count_request(endpoint, {**body, "tools": body["tools"][:1]})
    assert plain.exact
    assert not est.exact
    assert any("tools[1]" in r and "'hologram_search'" in r for r in est.reasons), est.reasons
    assert est.prompt_tokens_upper > plain.prompt_tokens_upper


def test_a_deferred_responses_tool_is_inexact() -> None:
    tool = {"type": "function", **_FUNCTION}
    assert count_request("responses", _resp(input="hi", tools=[{**tool, "defer_loading": False}])).exact
    est = count_request("responses", _resp(input="hi", tools=[{**tool, "defer_loading": True}]))
    assert not est.exact
    assert any(r.startswith("tools[0]: a deferred tool") for r in est.reasons)


def test_compaction_is_inexact_only_once_the_prompt_reaches_its_threshold() -> None:
    below = count_request(
        "responses",
        _resp(input="hi", context_management=[{"type": "compaction", "compact_threshold": 10_000}]),
    )
    reached = count_request(
        "responses", _resp(input="hi", context_management=[{"type": "compaction", "compact_threshold": 5}])
    )
    default = count_request("responses", _resp(input="hi", context_management=[{"type": "compaction"}]))
    assert below.exact, below.reasons
    assert not reached.exact and any("compact_threshold (5)" in r for r in reached.reasons)
    assert not default.exact and any("default threshold" in r for r in default.reasons)


# --- spelling ---------------------------------------------------------------------------------

# Request fields as OpenAI's API reference spells them (create chat completion, create
# response, create completion, create embeddings). Not all are on the allowlists.
OPENAI_FIELDS: dict[str, set[str]] = {
    "chat.completions": {
        "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
        "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n",
        "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
        "prompt_cache_options", "prompt_cache_retention", "reasoning_effort", "response_format",
        "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options",
        "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
        "web_search_options",
    },
    "responses": {
        "access_programs", "background", "background_options", "context_management", "conversation",
        "image", "include", "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata",
        "model", "moderation", "parallel_tool_calls", "previous_response_id", "prompt",
        "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "reasoning",
        "safety_identifier", "service_tier", "store", "stream", "stream_options", "temperature", "text",
        "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user",
    },
    "completions": {
        "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
        "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix",
        "temperature", "top_p", "user",
    },
    "embeddings": {"input", "model", "dimensions", "encoding_format", "user"},
}  # fmt: skip

# Nested objects, as the API reference spells their keys.
OPENAI_NESTED: dict[str, tuple[Set[str], Set[str]]] = {
    "reasoning": (REASONING_KEYS, {"effort", "summary", "generate_summary", "context", "mode"}),
    "text": (TEXT_KEYS, {"format", "verbosity"}),
    "text.format": (
        frozenset().union(*TEXT_FORMAT_KEYS.values()),
        {"type", "name", "schema", "strict", "description"},
    ),
    "response_format": (frozenset().union(*CHAT_RESPONSE_FORMAT_KEYS.values()), {"type", "json_schema"}),
    "response_format.json_schema": (JSON_SCHEMA_KEYS, {"name", "schema", "strict", "description"}),
    "messages[]": (
        CHAT_MESSAGE_KEYS,
        {"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio"},
    ),
    "messages[].content[]": (
        frozenset().union(*CHAT_PART_KEYS.values()),
        {"type", "text", "refusal", "image_url", "input_audio", "file", "prompt_cache_breakpoint"},
    ),
    "messages[].content[].*": (
        frozenset().union(*CHAT_PART_OBJECT_KEYS.values()),
        {"url", "detail", "data", "format", "file_data", "file_id", "filename"},
    ),
    "tools[] (chat)": (frozenset().union(*CHAT_TOOL_KEYS.values()), {"type", "function", "custom"}),
    "tools[].function": (FUNCTION_KEYS, {"name", "description", "parameters", "strict"}),
    "tools[].custom": (CUSTOM_KEYS, {"name", "description", "format"}),
    "functions[]": (LEGACY_FUNCTION_KEYS, {"name", "description", "parameters"}),
    "tool_calls[]": (frozenset().union(*CHAT_TOOL_CALL_KEYS.values()), {"id", "type", "function", "custom"}),
    "tool_calls[].*": (frozenset().union(*TOOL_CALL_OBJECT_KEYS.values()), {"name", "arguments", "input"}),
    "tools[] (responses)": (
        frozenset().union(*RESPONSES_TOOL_KEYS.values()),
        {"type", "name", "description", "parameters", "strict", "defer_loading", "format", "output_schema",
         "allowed_callers", "async"},
    ),
    "input[]": (
        frozenset().union(*RESPONSES_ITEM_KEYS.values()),
        {"type", "role", "content", "id", "status", "phase", "call_id", "name", "arguments", "input",
         "output", "namespace", "caller", "async"},
    ),
    "input[].content[]": (
        frozenset().union(*RESPONSES_PART_KEYS.values()),
        {"type", "text", "annotations", "logprobs", "refusal", "image_url", "file_id", "detail",
         "file_data", "file_url", "filename", "input_audio", "data", "format", "prompt_cache_breakpoint"},
    ),
    "context_management[]": (
        frozenset().union(*CONTEXT_MANAGEMENT_KEYS.values()),
        {"type", "compact_threshold"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_top_level_field_of_the_allowlist_is_spelled_as_openai_spells_it(endpoint: str) -> None:
    assert BODY_FIELDS[endpoint].known - OPENAI_FIELDS[endpoint] == set()


@pytest.mark.parametrize("where", sorted(OPENAI_NESTED))
def test_every_nested_key_of_the_allowlists_is_spelled_as_openai_spells_it(where: str) -> None:
    ours, openai_spelling = OPENAI_NESTED[where]
    assert set(ours) - openai_spelling == set()


def test_the_allowlists_use_the_openai_sdk_spelling_when_it_is_installed() -> None:
    openai = pytest.importorskip("openai")
    from openai.types import completion_create_params, embedding_create_params
    from openai.types.chat import completion_create_params as chat_params
    from openai.types.responses import response_create_params
    from openai.types.shared_params import Reasoning

    sdk = {
        "chat.completions": set(chat_params.CompletionCreateParamsBase.__annotations__),
        "responses": set(response_create_params.ResponseCreateParamsBase.__annotations__),
        "completions": set(completion_create_params.CompletionCreateParamsBase.__annotations__),
        "embeddings": set(embedding_create_params.EmbeddingCreateParams.__annotations__),
    }
    if "prompt_cache_options" not in sdk["responses"]:
        pytest.skip(f"openai {openai.__version__} predates fields the allowlists know")
    for endpoint in ENDPOINTS:
        # ``stream`` lives on the SDK's streaming/non-streaming subclasses.
        assert BODY_FIELDS[endpoint].known - sdk[endpoint] - {"stream"} == set(), endpoint
    assert REASONING_KEYS - set(Reasoning.__annotations__) == set()
