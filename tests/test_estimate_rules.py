"""How the pre-flight estimator counts a request body, rule by rule.

Counts are checked against formulas written out in the test (tiktoken counts of the pieces
plus the framing rules), so each test states the rule it pins down.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from typing import Any

import pytest

from budgetguard._errors import EstimateError
from budgetguard._estimate import DEFAULT_SAFETY_MARGIN, ENDPOINTS, TokenEstimate, count_request, count_text
from budgetguard._estimate._schema import format_schema_json
from budgetguard._estimate._tools import FunctionDef, render_functions
from budgetguard._tokenizer import get_encoding

O200K = get_encoding("o200k_base")
CL100K = get_encoding("cl100k_base")


def t(text: str, enc: Any = O200K) -> int:
    return len(enc.encode_ordinary(text))


def chat(model: str = "gpt-4o", **body: Any) -> TokenEstimate:
    body.setdefault("messages", [{"role": "user", "content": "Hello there"}])
    return count_request("chat.completions", {"model": model, **body})


def responses(model: str = "gpt-4o", **body: Any) -> TokenEstimate:
    return count_request("responses", {"model": model, **body})


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


# --- images as data URLs of a known size ------------------------------------------------------


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = (
        b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    )
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def webp(width: int, height: int, kind: str) -> bytes:
    if kind == "VP8X":
        chunk = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    elif kind == "VP8L":
        chunk = b"\x2f" + ((width - 1) | ((height - 1) << 14)).to_bytes(4, "little")
    else:
        chunk = b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
    body = b"WEBP" + kind.encode() + struct.pack("<I", len(chunk)) + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def image_part(url: str, detail: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"url": url}
    if detail is not None:
        spec["detail"] = detail
    return {"type": "image_url", "image_url": spec}


def image_cost(model: str, url: str, detail: str | None = None) -> TokenEstimate:
    return chat(model, messages=[user([image_part(url, detail)])])


TEXT_ONLY = 3 + 1 + 3  # one user message with empty content: framing, role, reply primer


# --- plain messages ----------------------------------------------------------------------------


def test_a_message_costs_three_tokens_of_framing_plus_its_role_and_text_and_the_reply_primes_three() -> None:
    est = chat("gpt-4o", messages=[user("Hello there")])
    assert est.prompt_tokens == 3 + t("user") + t("Hello there") + 3
    assert est.exact
    assert est.reasons == ()


def test_every_message_adds_its_framing_role_and_content() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        user("What is 2+2?"),
        {"role": "assistant", "content": "4"},
        {"role": "developer", "content": "Answer in French."},
    ]
    expected = 3 + sum(3 + t(m["role"]) + t(m["content"]) for m in messages)
    assert chat(messages=messages).prompt_tokens == expected


def test_a_name_adds_its_own_tokens_plus_one() -> None:
    plain = chat(messages=[user("hi")]).prompt_tokens
    named = chat(messages=[{**user("hi"), "name": "alice_smith"}]).prompt_tokens
    assert named - plain == t("alice_smith") + 1


def test_gpt_3_5_turbo_0301_frames_messages_with_four_tokens_and_a_name_replaces_the_role() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {**user("hi"), "name": "bob"}]
    est = chat("gpt-3.5-turbo-0301", messages=messages)
    expected = 3 + (4 + t("system", CL100K) + t("Be brief.", CL100K))
    expected += 4 + t("user", CL100K) + t("hi", CL100K) + t("bob", CL100K) - 1
    assert est.prompt_tokens == expected
    assert est.exact


def test_the_bare_gpt_3_5_turbo_alias_is_counted_with_the_costlier_0301_framing_and_says_so() -> None:
    alias = chat("gpt-3.5-turbo", messages=[user("hi"), user("there")])
    pinned = chat("gpt-3.5-turbo-0125", messages=[user("hi"), user("there")])
    assert alias.prompt_tokens == pinned.prompt_tokens + 2  # one token more per message
    assert alias.exact
    assert any("0301" in reason for reason in alias.reasons)


@pytest.mark.parametrize("model", ["gpt-5", "gpt-5-mini", "gpt-5.4", "o3-mini", "o4-mini", "o3"])
def test_reasoning_models_bill_one_token_less_than_the_chat_formula(model: str) -> None:
    messages = [{"role": "developer", "content": "Think."}, user("Why is the sky blue?")]
    assert chat(model, messages=messages).prompt_tokens == chat("gpt-4o", messages=messages).prompt_tokens - 1


def test_text_content_parts_count_like_the_same_text_as_a_string() -> None:
    parts = [{"type": "text", "text": "Describe "}, {"type": "text", "text": "this file."}]
    assert chat(messages=[user(parts)]).prompt_tokens == TEXT_ONLY + t("Describe ") + t("this file.")


def test_cl100k_models_are_counted_with_cl100k() -> None:
    text = "naïve café in München, 3.14159"
    assert chat("gpt-4", messages=[user(text)]).prompt_tokens == TEXT_ONLY + t(text, CL100K)
    assert count_text("gpt-4", text) == t(text, CL100K)
    assert count_text("gpt-4o", text) == t(text)


def test_count_text_counts_special_token_strings_as_plain_text() -> None:
    assert count_text("gpt-4o", "<|endoftext|>") == t("<|endoftext|>") > 1


def test_unknown_models_fall_back_to_o200k_and_gpt_4o_rules_and_are_inexact() -> None:
    est = chat("acme-llm-7", messages=[user("Hello there")])
    assert est.prompt_tokens == chat("gpt-4o", messages=[user("Hello there")]).prompt_tokens
    assert not est.exact
    assert any("unknown model 'acme-llm-7'" in r and "o200k_base" in r for r in est.reasons)


@pytest.mark.parametrize("model", ["ft:gpt-4o-mini:acme::abc123", "openai/gpt-4o-mini", "GPT-4o-mini"])
def test_fine_tunes_and_provider_prefixed_names_count_like_their_base_model(model: str) -> None:
    est = chat(model, messages=[user("Hello there")])
    assert est.exact
    assert est.prompt_tokens == chat("gpt-4o-mini", messages=[user("Hello there")]).prompt_tokens


# --- tool definitions --------------------------------------------------------------------------


WEATHER = {
    "name": "get_weather",
    "description": "Get the weather.\n\n    Args:\n        city: where",
    "parameters": {
        "type": "object",
        "title": "WeatherArgs",
        "properties": {
            "city": {"type": "string", "description": "City and country"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "days": {"type": "integer", "title": "Days"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "when": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "place": {"$ref": "#/$defs/Place"},
        },
        "required": ["city", "place"],
        "$defs": {
            "Place": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "title": {"type": "string"}},
                "required": ["lat"],
            }
        },
    },
}


def test_function_definitions_render_as_a_typescript_namespace() -> None:
    params = WEATHER["parameters"]
    assert isinstance(params, dict)
    text = render_functions([FunctionDef("get_weather", str(WEATHER["description"]), params)])
    assert text == (
        "# Tools\n\n## functions\n\nnamespace functions {\n\n"
        "// Get the weather. Args: city: where\n"
        "type get_weather = (_: // WeatherArgs\n{\n"
        "// City and country\n"
        "city: string,\n"
        'unit?: "c" | "f",\n'
        "// Days\n//\n"
        "days?: number,\n"
        "tags?: string[],\n"
        "when?: string | null,\n"
        "place: {\nlat: number,\ntitle?: string,\n},\n"
        "}) => any;\n\n"
        "} // namespace functions"
    )


def test_a_function_without_parameters_renders_as_a_nullary_type() -> None:
    text = render_functions([FunctionDef("ping", "", {"type": "object", "properties": {}})])
    assert "type ping = () => any;" in text


def test_tool_definitions_cost_their_rendered_text_in_a_system_message_of_their_own() -> None:
    params = WEATHER["parameters"]
    assert isinstance(params, dict)
    rendered = render_functions([FunctionDef("get_weather", str(WEATHER["description"]), params)])
    with_tools = chat(tools=[{"type": "function", "function": WEATHER}])
    assert with_tools.prompt_tokens - chat().prompt_tokens == t(rendered) - 1 + 3 + t("system")


def test_tool_definitions_extend_an_existing_system_message_without_new_framing() -> None:
    system = [{"role": "system", "content": "Be brief."}, user("Hello there")]
    params = WEATHER["parameters"]
    assert isinstance(params, dict)
    rendered = render_functions([FunctionDef("get_weather", str(WEATHER["description"]), params)])
    added = chat(messages=system, tools=[{"type": "function", "function": WEATHER}]).prompt_tokens
    added -= chat(messages=system).prompt_tokens
    joined = t("Be brief.\n\n") - t("Be brief.")  # the blank line merges into the full stop
    assert added == t(rendered) - 1 + joined


def test_richer_schemas_cost_more_tokens() -> None:
    small = {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}
    described = {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "string", "description": "The first argument, in full."}},
        },
    }
    assert (
        chat(tools=[{"type": "function", "function": described}]).prompt_tokens
        > chat(tools=[{"type": "function", "function": small}]).prompt_tokens
    )


def test_legacy_functions_are_counted_like_function_tools() -> None:
    assert (
        chat(functions=[WEATHER]).prompt_tokens
        == chat(tools=[{"type": "function", "function": WEATHER}]).prompt_tokens
    )


@pytest.mark.parametrize(
    "choice", ["auto", "none", "required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_tool_choice_does_not_change_the_prompt(choice: Any) -> None:
    tools = [{"type": "function", "function": WEATHER}]
    assert chat(tools=tools, tool_choice=choice).prompt_tokens == chat(tools=tools).prompt_tokens


def test_recursive_refs_render_as_any_instead_of_looping() -> None:
    node = {
        "name": "walk",
        "parameters": {
            "type": "object",
            "properties": {"node": {"$ref": "#/$defs/Node"}},
            "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        },
    }
    text = render_functions([FunctionDef("walk", "", node["parameters"])])  # type: ignore[arg-type]
    assert "child?: any," in text


# --- tool calls and results --------------------------------------------------------------------


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_a_past_tool_call_is_an_assistant_turn_to_the_function_with_compact_json_arguments() -> None:
    spaced = chat(
        messages=[
            user("hi"),
            {"role": "assistant", "tool_calls": [call("c1", "get_weather", '{"city": "Paris"}')]},
        ]
    )
    compact = chat(
        messages=[
            user("hi"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("c1", "get_weather", '{"city":"Paris"}')],
            },
        ]
    )
    assert spaced.prompt_tokens == compact.prompt_tokens
    expected = chat(messages=[user("hi")]).prompt_tokens + 3 + t("assistant to=functions.get_weather json")
    assert compact.prompt_tokens == expected + t('{"city":"Paris"}')


def test_tool_results_are_turns_authored_by_the_function_called() -> None:
    messages = [
        user("hi"),
        {"role": "assistant", "tool_calls": [call("c1", "get_weather", "{}")]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    without_result = chat(messages=messages[:2]).prompt_tokens
    assert chat(messages=messages).prompt_tokens - without_result == 3 + t("functions.get_weather") + t(
        "sunny"
    )


def test_parallel_tool_calls_are_one_call_to_multi_tool_use() -> None:
    calls = [call("a", "get_weather", '{"city": "Paris"}'), call("b", "get_weather", '{"city": "Rome"}')]
    est = chat(messages=[user("hi"), {"role": "assistant", "tool_calls": calls}])
    body = (
        '{"tool_uses":[{"recipient_name":"functions.get_weather","parameters":{"city":"Paris"}},'
        '{"recipient_name":"functions.get_weather","parameters":{"city":"Rome"}}]}'
    )
    expected = (
        chat(messages=[user("hi")]).prompt_tokens + 3 + t("assistant to=multi_tool_use.parallel") + t(body)
    )
    assert est.prompt_tokens == expected


def test_assistant_text_alongside_tool_calls_is_a_turn_of_its_own() -> None:
    calls = [call("a", "f", "{}")]
    with_text = chat(
        messages=[user("hi"), {"role": "assistant", "content": "Let me check.", "tool_calls": calls}]
    )
    without = chat(messages=[user("hi"), {"role": "assistant", "tool_calls": calls}])
    assert with_text.prompt_tokens - without.prompt_tokens == 3 + t("assistant") + t("Let me check.")


# --- images ------------------------------------------------------------------------------------


def test_a_low_detail_image_costs_the_model_base_tokens() -> None:
    est = image_cost("gpt-4o", data_url(png(4000, 3000)), "low")
    assert est.prompt_tokens == TEXT_ONLY + 85
    assert est.image_tokens == 85
    assert est.exact


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        ((1024, 1024), 765),
        ((2048, 4096), 1105),
        ((512, 512), 255),
        ((100, 100), 255),
        ((4096, 1024), 765),
        ((3000, 1000), 85 + 170 * 8),
    ],
)
def test_high_detail_images_cost_85_plus_170_per_512px_tile_after_scaling(
    size: tuple[int, int], tokens: int
) -> None:
    assert image_cost("gpt-4o", data_url(png(*size)), "high").image_tokens == tokens


def test_auto_detail_counts_like_high() -> None:
    url = data_url(png(1024, 1024))
    assert image_cost("gpt-4o", url, "auto").image_tokens == image_cost("gpt-4o", url, "high").image_tokens
    assert image_cost("gpt-4o", url).image_tokens == 765


@pytest.mark.parametrize(
    ("model", "base", "tile"), [("gpt-4o-mini", 2833, 5667), ("o3", 75, 150), ("gpt-5", 70, 140)]
)
def test_tile_models_use_their_own_constants(model: str, base: int, tile: int) -> None:
    url = data_url(png(1024, 1024))
    assert image_cost(model, url, "low").image_tokens == base
    assert image_cost(model, url, "high").image_tokens == base + 4 * tile


@pytest.mark.parametrize(
    ("model", "multiplier"),
    [("gpt-4.1-mini", 1.62), ("gpt-4.1-nano", 2.46), ("o4-mini", 1.72), ("gpt-5-mini", 1.2)],
)
def test_patch_models_bill_32px_patches_times_their_multiplier_whatever_the_detail(
    model: str, multiplier: float
) -> None:
    url = data_url(png(540, 360))  # 17 x 12 patches
    expected = math.ceil(17 * 12 * multiplier) + 1
    assert image_cost(model, url, "high").image_tokens == expected
    assert image_cost(model, url, "low").image_tokens == expected


def test_large_images_are_shrunk_to_at_most_1536_patches() -> None:
    # OpenAI's worked example: 1800x2400 shrinks to 1056x1408, 33 x 44 = 1452 patches.
    assert image_cost("gpt-4.1-mini", data_url(png(1800, 2400))).image_tokens == math.ceil(1452 * 1.62) + 1


@pytest.mark.parametrize(
    ("raw", "mime"),
    [
        (png(1024, 1024), "image/png"),
        (jpeg(1024, 1024), "image/jpeg"),
        (gif(1024, 1024), "image/gif"),
        (webp(1024, 1024, "VP8X"), "image/webp"),
        (webp(1024, 1024, "VP8L"), "image/webp"),
        (webp(1024, 1024, "VP8 "), "image/webp"),
    ],
)
def test_image_sizes_are_read_from_png_jpeg_gif_and_webp_data_urls(raw: bytes, mime: str) -> None:
    est = image_cost("gpt-4o", data_url(raw, mime))
    assert est.image_tokens == 765
    assert est.exact


def test_a_remote_image_is_assumed_512px_square_and_the_upper_bound_reserves_the_largest() -> None:
    est = image_cost("gpt-4o", "https://example.com/cat.png", "high")
    assert est.image_tokens == 85 + 170
    assert not est.exact
    assert any("remote image" in r and "512x512" in r for r in est.reasons)
    largest = 85 + 170 * 8
    assert est.prompt_tokens_upper >= est.prompt_tokens + (largest - 255)


def test_an_unreadable_data_url_is_treated_like_a_remote_image() -> None:
    est = image_cost("gpt-4o", "data:image/png;base64,bm90IGFuIGltYWdl")
    assert not est.exact
    assert est.image_tokens == 255


def test_responses_input_images_are_counted_like_chat_images() -> None:
    url = data_url(png(1024, 1024))
    est = responses(
        input=[{"role": "user", "content": [{"type": "input_image", "image_url": url, "detail": "high"}]}]
    )
    assert est.image_tokens == 765
    assert est.prompt_tokens == TEXT_ONLY + 765


# --- structured outputs ------------------------------------------------------------------------


SCHEMA = {
    "type": "object",
    "title": "Person",
    "properties": {
        "name": {"type": "string", "title": "Name"},
        "title": {"type": "string"},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "title", "address"],
    "additionalProperties": False,
}


def test_json_schemas_are_shown_as_compact_json_without_titles() -> None:
    # "title" keywords go, a property called "title" stays; nested objects lose what strict implies.
    assert format_schema_json(SCHEMA) == (
        '{"type":"object","properties":{"name":{"type":"string"},"title":{"type":"string"},'
        '"address":{"type":"object","properties":{"city":{"type":"string"}}}},'
        '"required":["name","title","address"],"additionalProperties":false}'
    )


def test_a_json_schema_response_format_adds_a_response_formats_section() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "Person", "strict": True, "schema": SCHEMA}}
    section = f"# Response Formats\n\n## Person\n\n{format_schema_json(SCHEMA)}"
    added = chat(response_format=fmt).prompt_tokens - chat().prompt_tokens
    assert added == t(section) + 5 + 3 + t("system")


def test_json_object_and_text_response_formats_add_nothing() -> None:
    assert chat(response_format={"type": "json_object"}).prompt_tokens == chat().prompt_tokens
    assert chat(response_format={"type": "text"}).prompt_tokens == chat().prompt_tokens


def test_responses_text_format_json_schema_is_counted() -> None:
    fmt = {"format": {"type": "json_schema", "name": "Person", "schema": SCHEMA}}
    plain = responses(input="Extract: Alice, 30")
    assert responses(input="Extract: Alice, 30", text=fmt).prompt_tokens > plain.prompt_tokens + t(
        format_schema_json(SCHEMA)
    )


# --- the Responses API -------------------------------------------------------------------------


def test_instructions_and_string_input_count_like_a_system_and_a_user_message() -> None:
    est = responses(instructions="You are terse.", input="Say hi")
    assert (
        est.prompt_tokens
        == chat(messages=[{"role": "system", "content": "You are terse."}, user("Say hi")]).prompt_tokens
    )


def test_input_messages_with_text_parts_count_like_chat_messages() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Pick a word."}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Vibrant"}]},
        {"role": "user", "content": "Why?"},
    ]
    messages = [user("Pick a word."), {"role": "assistant", "content": "Vibrant"}, user("Why?")]
    assert responses(input=items).prompt_tokens == chat(messages=messages).prompt_tokens


def test_function_call_items_and_outputs_count_like_chat_tool_calls() -> None:
    items = [
        {"role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    messages = [
        user("hi"),
        {"role": "assistant", "tool_calls": [call("c1", "get_weather", '{"city": "Paris"}')]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert responses(input=items).prompt_tokens == chat(messages=messages).prompt_tokens


def test_responses_function_tools_are_rendered_more_compactly_than_in_chat() -> None:
    tool = {"type": "function", **WEATHER}
    added = responses(input="hi", tools=[tool]).prompt_tokens - responses(input="hi").prompt_tokens
    params = WEATHER["parameters"]
    assert isinstance(params, dict)
    assert added == t(render_functions([FunctionDef("get_weather", str(WEATHER["description"]), params)])) - 3


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"previous_response_id": "resp_123", "input": "and then?"}, "previous_response_id"),
        ({"conversation": "conv_123", "input": "and then?"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "referenced by id"),
        (
            {
                "input": [
                    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA" * 40}
                ]
            },
            "reasoning",
        ),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "web_search"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}, "by id"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
            "unknown size",
        ),
    ],
)
def test_bodies_that_hide_context_are_inexact_and_say_why(body: dict[str, Any], reason: str) -> None:
    est = responses(**body)
    assert not est.exact
    assert any(reason in r for r in est.reasons), est.reasons


def test_built_in_tools_add_a_typical_expansion_and_reserve_more() -> None:
    plain = responses(input="news?")
    est = responses(input="news?", tools=[{"type": "web_search"}])
    assert est.prompt_tokens > plain.prompt_tokens
    assert est.prompt_tokens_upper > est.prompt_tokens * 2


def test_reasoning_items_are_estimated_from_their_encrypted_size() -> None:
    small = responses(input=[{"type": "reasoning", "summary": [], "encrypted_content": "g" * 800}])
    large = responses(input=[{"type": "reasoning", "summary": [], "encrypted_content": "g" * 8000}])
    assert large.prompt_tokens > small.prompt_tokens
    assert large.prompt_tokens_upper - large.prompt_tokens > small.prompt_tokens_upper - small.prompt_tokens


def test_unknown_input_items_and_content_parts_are_counted_best_effort_not_rejected() -> None:
    est = responses(
        input=[
            {"type": "hologram", "payload": "a message from the future"},
            {"role": "user", "content": [{"type": "input_smell", "smell": "coffee"}]},
        ]
    )
    assert est.prompt_tokens > TEXT_ONLY
    assert not est.exact
    assert any("'hologram'" in r for r in est.reasons)
    assert any("'input_smell'" in r for r in est.reasons)


def test_unknown_chat_content_parts_are_counted_best_effort() -> None:
    est = chat(messages=[user([{"type": "input_video", "video": "..."}])])
    assert not est.exact
    assert any("messages[0].content[0]" in r and "'input_video'" in r for r in est.reasons)


def test_audio_and_files_are_estimated_and_inexact() -> None:
    audio = chat(
        "gpt-4o-audio-preview",
        messages=[
            user(
                [
                    {
                        "type": "input_audio",
                        "input_audio": {"data": base64.b64encode(b"\x00" * 32_000).decode(), "format": "mp3"},
                    }
                ]
            )
        ],
    )
    pdf = chat(
        messages=[
            user(
                [
                    {
                        "type": "file",
                        "file": {
                            "filename": "a.pdf",
                            "file_data": data_url(b"%PDF" * 1000, "application/pdf"),
                        },
                    }
                ]
            )
        ]
    )
    for est in (audio, pdf):
        assert not est.exact
        assert est.prompt_tokens > TEXT_ONLY
        assert est.prompt_tokens_upper > est.prompt_tokens


# --- embeddings and legacy completions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tokens"),
    [("Hello world", 2), (["Hello world", "Sample text"], 4), ([15339, 1917], 2), ([[15339, 1917], [1]], 3)],
)
def test_embeddings_count_strings_and_token_arrays_without_framing(value: Any, tokens: int) -> None:
    est = count_request("embeddings", {"model": "text-embedding-3-small", "input": value})
    assert est.prompt_tokens == tokens
    assert est.exact
    assert est.max_output_tokens == 0


def test_legacy_completions_count_the_prompt_and_suffix_as_plain_text() -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "suffix": " end."}
    assert count_request("completions", body).prompt_tokens == t("Say this is a test", CL100K) + t(
        " end.", CL100K
    )


def test_legacy_completions_count_every_prompt_of_a_list() -> None:
    body = {"model": "davinci-002", "prompt": ["one two", "three"], "max_tokens": 10, "n": 2}
    est = count_request("completions", body)
    assert est.prompt_tokens == t("one two", CL100K) + t("three", CL100K)
    assert est.max_output_tokens == 10 * 2 * 2  # per prompt, per choice


def test_legacy_completions_without_max_tokens_are_capped_at_the_api_default_of_16_per_choice() -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": [1, 2, 3], "best_of": 3}
    est = count_request("completions", body)
    assert est.prompt_tokens == 3
    assert est.max_output_tokens == 16 * 3


# --- output caps and the upper bound ------------------------------------------------------------


def test_the_output_cap_is_the_request_own_cap_times_the_choices() -> None:
    assert chat(max_tokens=100).max_output_tokens == 100
    assert chat(max_tokens=100, max_completion_tokens=50, n=3).max_output_tokens == 150
    assert chat().max_output_tokens is None
    assert responses(input="hi", max_output_tokens=64).max_output_tokens == 64
    assert responses(input="hi").max_output_tokens is None


def test_the_upper_bound_adds_the_safety_margin_with_a_small_fixed_headroom() -> None:
    est = chat(messages=[user("word " * 1000)])
    margin = DEFAULT_SAFETY_MARGIN
    assert est.prompt_tokens_upper == math.ceil(est.prompt_tokens * (1 + margin)) + math.ceil(margin * 160)
    custom = count_request(
        "chat.completions", {"model": "gpt-4o", "messages": [user("word " * 1000)]}, safety_margin=0.2
    )
    assert custom.prompt_tokens_upper == math.ceil(round(est.prompt_tokens * 1.2, 6)) + 32


def test_with_no_margin_the_upper_bound_of_an_exact_body_is_the_estimate() -> None:
    est = count_request("chat.completions", {"model": "gpt-4o", "messages": [user("hi")]}, safety_margin=0.0)
    assert est.prompt_tokens_upper == est.prompt_tokens


def test_a_negative_safety_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="safety_margin"):
        count_request("chat.completions", {"model": "gpt-4o", "messages": [user("hi")]}, safety_margin=-0.1)


# --- malformed bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "message"),
    [
        ("chat", {"model": "gpt-4o"}, "unknown endpoint 'chat'"),
        ("chat.completions", ["not", "a", "dict"], "expected a JSON object, got array"),
        ("chat.completions", {"messages": []}, "model: required for chat.completions"),
        ("chat.completions", {"model": 4, "messages": []}, "model: expected a non-empty string"),
        ("chat.completions", {"model": "gpt-4o"}, "messages: required for chat.completions, missing"),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": "hi"},
            "messages: expected an array, got string",
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": []},
            "messages: must contain at least one message",
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [user("a"), "b"]},
            "messages[1]: expected an object",
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [{"content": "hi"}]},
            "messages[0].role: every message",
        ),
        (
            "chat.completions",
            {
                "model": "gpt-4o",
                "messages": [
                    user("a"),
                    user("b"),
                    user([{"type": "text", "text": "c"}, {"type": "image_url", "image_url": 7}]),
                ],
            },
            "messages[2].content[1].image_url: expected an object, got number",
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [user([{"type": "image_url", "image_url": {}}])]},
            "messages[0].content[0].image_url.url: expected a string, got null",
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [user("a")], "tools": [{"type": "function"}]},
            "tools[0].function: a function tool needs a 'function' object",
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [user("a")], "tools": [{"type": "function", "function": {}}]},
            "tools[0].function.name: a function needs a name",
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [{"role": "assistant", "tool_calls": [{"id": "x"}]}]},
            "messages[0].tool_calls[0].function: a tool call needs a 'function' object",
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [user("a")], "tool_choice": 3},
            "tool_choice: expected an object",
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [user("a")], "max_tokens": -1},
            "max_tokens: expected a non-negative integer",
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [user("a")], "response_format": {"type": "json_schema"}},
            "response_format.json_schema: required when type is 'json_schema'",
        ),
        ("responses", {"model": "gpt-4o"}, "input: required for responses"),
        (
            "responses",
            {"model": "gpt-4o", "input": [{"content": "hi"}]},
            "input[0].type: an input item needs a type",
        ),
        (
            "responses",
            {"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0]: an input_image needs an image_url or a file_id",
        ),
        (
            "responses",
            {"model": "gpt-4o", "input": "hi", "tools": [{"name": "f"}]},
            "tools[0].type: every tool needs a type",
        ),
        ("embeddings", {"model": "text-embedding-3-small"}, "input: required for embeddings"),
        (
            "embeddings",
            {"model": "text-embedding-3-small", "input": ["a", 3.5]},
            "input[1]: expected a string or an array of token ids, got number",
        ),
        (
            "completions",
            {"model": "davinci-002", "prompt": [[1, "x"]]},
            "prompt[0]: expected an array of token ids",
        ),
    ],
)
def test_malformed_bodies_raise_an_estimate_error_naming_the_json_path(
    endpoint: str, body: Any, message: str
) -> None:
    with pytest.raises(EstimateError) as excinfo:
        count_request(endpoint, body)
    assert message in str(excinfo.value)


def test_every_documented_endpoint_is_supported() -> None:
    assert ENDPOINTS == ("chat.completions", "responses", "completions", "embeddings")
