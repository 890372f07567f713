"""Anthropic Messages API estimates: hand-computed bodies, error paths, and the calibration set.

Anthropic publishes no tokenizer for current models, so every estimate is an upper bound
(``exact=False``). The specs below pin the formula with literals computed by hand from o200k
counts; ``RECORDED`` holds request bodies with the input tokens Anthropic billed (or counted),
copied from public recordings, and checks that no bound falls below a billed count.
"""

from __future__ import annotations

import base64
import math
import re
import struct
import zlib
from typing import Any

import pytest

from budgetguard._errors import EstimateError
from budgetguard._estimate import count_request, count_text
from budgetguard._estimate._anthropic import (
    LEGACY,
    NEWER,
    NO_TOKENIZER,
    TOOL_PROMPT,
    TOOL_PROMPT_UPPER,
    generation_for,
    image_tokens,
    messages_token_counter,
)

EP = "anthropic.messages"


def o200k(text: str) -> int:
    return count_text("gpt-4o", text)


def png(width: int, height: int) -> str:
    """A valid PNG header of the given size, base64 (the estimator reads only the header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return base64.b64encode(data).decode()


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, **fields}


# --- hand-computed bodies (default margin 5%: bound * 1.05, + 8 tokens of headroom) -----------------


def test_one_message() -> None:
    # "What is 2+2?" is 7 o200k tokens. Estimate: ceil(7 * 1.1) + 4 (request) + 3 (message) = 15.
    # Bound: ceil(7 * 1.5) + 12 + 6 = 29; ceil(29 * 1.05) + 8 = 39.
    assert o200k("What is 2+2?") == 7
    est = count_request(EP, body(messages=[{"role": "user", "content": "What is 2+2?"}]))
    assert (est.prompt_tokens, est.prompt_tokens_upper) == (15, 39)
    assert est.max_output_tokens == 1024
    assert est.exact is False
    assert est.reasons == (NO_TOKENIZER,)
    assert est.endpoint == EP and est.image_tokens == 0


def test_text_blocks_count_like_a_string_plus_block_framing() -> None:
    # A list with one text block adds 2 tokens of block framing to the bound only.
    est = count_request(
        EP, body(messages=[{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}])
    )
    assert (est.prompt_tokens, est.prompt_tokens_upper) == (15, 41)  # bound 31 -> ceil(32.55) + 8


def test_system_prompt() -> None:
    # 6 + 7 o200k tokens: estimate ceil(13 * 1.1) + 4 + 0 + 3 = 22; bound ceil(19.5) + 12 + 4 + 6 = 42.
    est = count_request(
        EP,
        body(system="You are a helpful assistant.", messages=[{"role": "user", "content": "What is 2+2?"}]),
    )
    assert (est.prompt_tokens, est.prompt_tokens_upper) == (22, 53)  # ceil(42 * 1.05) + 8


def test_newer_tokenizer_factors() -> None:
    # Opus 4.7 and later: estimate ceil(7 * 1.45) + 7 = 18; bound ceil(7 * 2.0) + 18 = 32 -> 42.
    est = count_request(
        EP, body(model="claude-opus-4-7", messages=[{"role": "user", "content": "What is 2+2?"}])
    )
    assert (est.prompt_tokens, est.prompt_tokens_upper) == (18, 42)


def test_non_ascii_characters_add_to_the_bound() -> None:
    text = "人工智能"  # 4 non-ASCII characters
    t = o200k(text)
    est = count_request(EP, body(messages=[{"role": "user", "content": text}]))
    assert est.prompt_tokens == math.ceil(t * 1.1 + 4 * 0.5) + 7
    assert est.prompt_tokens_upper == math.ceil((math.ceil(t * 1.5 + 4) + 18) * 1.05) + 8


def test_image_of_known_size() -> None:
    # 1000x1000 PNG: 1000 * 1000 / 750 = 1333.3 -> 1334; patches ceil(1000/28)^2 = 36^2 = 1296.
    # "Describe." is 2 o200k tokens: estimate ceil(2.2) + 7 + 1334 = 1344;
    # bound ceil(3.0) + 18 + 2 + 2 (blocks) + 8 (image) + 1334 = 1367 -> ceil(1435.35) + 8 = 1444.
    assert o200k("Describe.") == 2
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": png(1000, 1000)},
    }
    est = count_request(
        EP, body(messages=[{"role": "user", "content": [image, {"type": "text", "text": "Describe."}]}])
    )
    assert est.image_tokens == 1334
    assert (est.prompt_tokens, est.prompt_tokens_upper) == (1344, 1444)
    assert est.reasons == (NO_TOKENIZER,)


def test_image_formula_resizes_like_the_documentation() -> None:
    # Long edge fitted to 1568 px: 3136x1568 -> 1568x784 = 1,229,312 px = 56 x 28 = 1568 patches;
    # 1,229,312 / 750 = 1639.1 -> 1640 for both (the area formula is the larger).
    assert image_tokens(LEGACY, 3136, 1568) == (1640, 1640)
    assert image_tokens(LEGACY, 56 * 28 - 5, 100) == (math.ceil(1563 * 100 / 750), 56 * 4)  # patches larger
    # Documented examples: 200x200 ~54 tokens, 1092x1092 ~1590 tokens.
    assert image_tokens(LEGACY, 200, 200)[0] == 54
    assert image_tokens(LEGACY, 1092, 1092)[0] == 1590
    # Too many pixels: shrunk to about 1568 patches (1.23 megapixels), whatever the shape.
    central, upper = image_tokens(LEGACY, 1500, 1500)
    assert central <= 1640 and upper <= LEGACY.image_tokens_max
    # The newer models keep more pixels: 2576 px long edge, 4784 patches.
    assert image_tokens(NEWER, 2000, 1000)[0] == math.ceil(2000 * 1000 / 750)
    assert image_tokens(NEWER, 8000, 8000)[1] <= NEWER.image_tokens_max


def test_image_by_url_reserves_the_largest_image() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
    est = count_request(EP, body(messages=[{"role": "user", "content": [image]}]))
    assert est.image_tokens == math.ceil(512 * 512 / 750)  # the assumed 512x512
    assert est.prompt_tokens_upper >= LEGACY.image_tokens_max
    assert any("an image by url has no size" in r for r in est.reasons)


def test_tools() -> None:
    tool = {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    }
    rendered = (
        '{"name":"get_weather","description":"Get the current weather in a given location",'
        '"input_schema":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}'
    )
    t = o200k(rendered) + o200k("Weather in Paris?")
    est = count_request(EP, body(tools=[tool], messages=[{"role": "user", "content": "Weather in Paris?"}]))
    # Estimate: text + 7 framing + the documented 346-token tool prompt (auto) + 10 for the tool.
    assert est.prompt_tokens == math.ceil(t * 1.1) + 7 + 346 + 10
    # Bound: text * 1.5 + 18 framing + 600 (tool prompt) + 200 per tool.
    assert est.prompt_tokens_upper == math.ceil((math.ceil(t * 1.5) + 18 + 600 + 200) * 1.05) + 8
    forced = count_request(
        EP,
        body(
            tools=[tool, {**tool, "name": "get_time"}],
            tool_choice={"type": "tool", "name": "get_time"},
            messages=[{"role": "user", "content": "Weather in Paris?"}],
        ),
    )
    t2 = t + o200k(rendered.replace("get_weather", "get_time"))
    assert forced.prompt_tokens == math.ceil(t2 * 1.1) + 7 + TOOL_PROMPT["tool"] + 10 + 150
    assert (
        forced.prompt_tokens_upper
        == math.ceil((math.ceil(t2 * 1.5) + 18 + TOOL_PROMPT_UPPER + 400) * 1.05) + 8
    )


def test_tool_use_and_result_count_ids_names_and_input() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "P"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]},
    ]
    t = o200k("Weather?") + o200k("toolu_1") * 2 + o200k("w") + o200k('{"c":"P"}') + o200k("Sunny")
    est = count_request(EP, body(messages=messages))
    # Estimate: 4 + 3 messages x 3 + 8 (call) + 8 (result); bound 12 + 3 x 6 + 2 x (2 + 16).
    assert est.prompt_tokens == math.ceil(t * 1.1) + 4 + 9 + 16
    assert est.prompt_tokens_upper == math.ceil((math.ceil(t * 1.5) + 12 + 18 + 36) * 1.05) + 8


def test_thinking_is_output_and_adds_instructions() -> None:
    est = count_request(
        EP,
        body(
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[{"role": "user", "content": "What is 2+2?"}],
        ),
    )
    assert est.max_output_tokens == 4096  # thinking is billed within max_tokens
    assert est.prompt_tokens == 15 + 30
    assert est.prompt_tokens_upper == math.ceil((29 + 64) * 1.05) + 8
    assert any("thinking is billed as output" in r for r in est.reasons)


def test_cache_control_and_settings_are_context_free() -> None:
    plain = count_request(EP, body(messages=[{"role": "user", "content": "What is 2+2?"}]))
    dressed = count_request(
        EP,
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is 2+2?", "cache_control": {"type": "ephemeral"}}
                    ],
                }
            ],
            cache_control={"type": "ephemeral", "ttl": "5m"},
            temperature=0.2,
            top_k=5,
            stop_sequences=["\n\nHuman:"],
            metadata={"user_id": "u1"},
            stream=True,
            service_tier="auto",
            container="container_1",
        ),
    )
    assert dressed.prompt_tokens == plain.prompt_tokens
    assert dressed.reasons == (NO_TOKENIZER,)


def test_documents() -> None:
    text_doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."},
    }
    est = count_request(EP, body(messages=[{"role": "user", "content": [text_doc]}]))
    t = o200k("The sky is blue.")
    assert est.prompt_tokens == math.ceil(t * 1.1) + 7 + 8
    # A PDF with readable page objects: 3,500 tokens reserved per page.
    pdf = (
        b"%PDF-1.4\n1 0 obj <</Type /Pages /Count 2>> endobj\n"
        b"2 0 obj <</Type /Page>> endobj\n3 0 obj <</Type /Page>> endobj\n"
    )
    pdf_doc = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(pdf).decode()},
    }
    est = count_request(EP, body(messages=[{"role": "user", "content": [pdf_doc]}]))
    assert est.prompt_tokens == 7 + 8 + 2 * 2300
    assert est.prompt_tokens_upper == math.ceil((18 + 2 + 24 + 2 * 3500) * 1.05) + 8
    # A PDF by URL: pages unknown, the bound reserves 100 pages.
    url_doc = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    est = count_request(EP, body(messages=[{"role": "user", "content": [url_doc]}]))
    assert est.prompt_tokens_upper > 100 * 3500
    assert any("reserved 100 pages" in r for r in est.reasons)


def test_hidden_context_reserves_and_names_it() -> None:
    est = count_request(
        EP,
        body(
            tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
            mcp_servers=[{"type": "url", "url": "https://mcp.example.com", "name": "x"}],
            messages=[{"role": "user", "content": "News?"}],
        ),
    )
    assert est.prompt_tokens_upper > 50_000
    assert any("web_search_20250305 runs on the server" in r for r in est.reasons)
    assert any(r.startswith("mcp_servers: 1 MCP server") for r in est.reasons)


def test_unknown_fields_are_named_by_path() -> None:
    est = count_request(
        EP,
        body(
            messages=[{"role": "user", "content": [{"type": "text", "text": "Hi", "shiny": 1}]}],
            new_knob={"a": 1},
        ),
    )
    assert any(r.startswith("new_knob is not known") for r in est.reasons)
    assert any(r.startswith("messages[0].content[0].shiny is not known") for r in est.reasons)
    plain = count_request(EP, body(messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]))
    assert est.prompt_tokens == plain.prompt_tokens
    assert est.prompt_tokens_upper > plain.prompt_tokens_upper + 2 * 256


def test_safety_margin() -> None:
    b = body(messages=[{"role": "user", "content": "What is 2+2?"}])
    assert count_request(EP, b, safety_margin=0).prompt_tokens_upper == 29
    with pytest.raises(ValueError, match="safety_margin"):
        count_request(EP, b, safety_margin=-1)


@pytest.mark.parametrize(
    ("model", "generation", "known"),
    [
        ("claude-3-opus-20240229", LEGACY, True),
        ("claude-3-5-sonnet-latest", LEGACY, True),
        ("claude-3.5-haiku", LEGACY, True),
        ("claude-sonnet-4-20250514", LEGACY, True),
        ("claude-sonnet-4-5", LEGACY, True),
        ("claude-opus-4-1-20250805", LEGACY, True),
        ("claude-opus-4-6", LEGACY, True),
        ("claude-haiku-4-5-20251001", LEGACY, True),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", LEGACY, True),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", LEGACY, True),
        ("claude-3-5-sonnet-v2@20241022", LEGACY, True),
        ("anthropic/claude-opus-4-6", LEGACY, True),
        ("claude-opus-4-7", NEWER, True),
        ("claude-opus-4-8", NEWER, True),
        ("claude-opus-5", NEWER, True),
        ("claude-sonnet-5", NEWER, True),
        ("claude-fable-5", NEWER, True),
        ("my-proxy-model", NEWER, False),
    ],
)
def test_generation_by_model_name(model: str, generation: object, known: bool) -> None:
    assert generation_for(model) == (generation, known)


def test_unknown_model_is_noted() -> None:
    est = count_request(EP, body(model="mystery", messages=[{"role": "user", "content": "Hi"}]))
    assert any("unknown model 'mystery'" in r for r in est.reasons)


# --- errors name the field ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"model": "claude-sonnet-4-5", "messages": []},
            "max_tokens: required for anthropic.messages, missing",
        ),
        (
            {"model": "claude-sonnet-4-5", "max_tokens": "9", "messages": []},
            "max_tokens: expected an integer",
        ),
        (
            {"model": "claude-sonnet-4-5", "max_tokens": 0, "messages": []},
            "max_tokens: expected a positive integer",
        ),
        ({"max_tokens": 9, "messages": []}, "model: required for anthropic.messages, missing"),
        (
            {"model": "claude-sonnet-4-5", "max_tokens": 9},
            "messages: required for anthropic.messages, missing",
        ),
        (body(messages={"role": "user"}), "messages: expected an array, got object"),
        (
            body(messages=[{"role": "bot", "content": "x"}]),
            "messages[0].role: expected one of user, assistant",
        ),
        (body(messages=[{"role": "user"}]), "messages[0].content: a message needs content"),
        (
            body(messages=[{"role": "user", "content": [{"text": "x"}]}]),
            "messages[0].content[0].type: a content",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "text", "text": 3}]}]),
            "content[0].text: expected a",
        ),
        (body(system=[{"type": "image"}], messages=[]), "system[0].type: expected 'text'"),
        (
            body(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "ftp"}}]}]),
            "messages[0].content[0].source.type: expected 'base64', 'url' or 'file'",
        ),
        (body(tools=[{"input_schema": {}}], messages=[]), "tools[0].name: a tool needs a name"),
        (
            body(tools=[{"name": "x"}], messages=[]),
            "tools[0].input_schema: a custom tool needs an input_schema",
        ),
        (body(tool_choice={"type": "sometimes"}, messages=[]), "tool_choice.type: expected one of auto"),
        (body(thinking={"type": "enabled", "budget_tokens": "lots"}, messages=[]), "thinking.budget_tokens"),
        ([], "anthropic.messages body: expected a JSON object, got array"),
    ],
)
def test_errors_name_the_field(payload: Any, message: str) -> None:
    with pytest.raises(EstimateError, match=re.escape(message)):
        count_request(EP, payload)


def test_unknown_endpoint_lists_anthropic() -> None:
    with pytest.raises(EstimateError, match=r"anthropic\.messages"):
        count_request("messages", body(messages=[]))


# --- exact mode ---------------------------------------------------------------------------------------


class _Counted:
    input_tokens = 14


class _Messages:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def count_tokens(self, **kwargs: Any) -> _Counted:
        self.calls.append(kwargs)
        return _Counted()


class _Client:
    def __init__(self) -> None:
        self.messages = _Messages()


def test_exact_mode_asks_count_tokens_with_the_fields_it_accepts() -> None:
    from budgetguard._preflight import plan_request

    client = _Client()
    b = body(system="Be brief.", stream=True, messages=[{"role": "user", "content": "What is 2+2?"}])
    counter = messages_token_counter(client, b)
    assert counter is not None
    plan = plan_request(EP, b, count_input_tokens=counter, priced=False)
    assert client.messages.calls == [
        {"messages": b["messages"], "model": "claude-sonnet-4-5", "system": "Be brief."}
    ]
    assert (plan.tokens.prompt_tokens, plan.tokens.prompt_tokens_upper, plan.tokens.exact) == (14, 14, True)
    assert plan.reserved_output_tokens == 1024


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        {"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}],
                }
            ]
        },
    ],
)
def test_exact_mode_skips_what_count_tokens_rejects(extra: dict[str, Any]) -> None:
    b = body(messages=[{"role": "user", "content": "Hi"}])
    assert messages_token_counter(_Client(), {**b, **extra}) is None
    assert messages_token_counter(object(), b) is None


# --- calibration: recorded bodies and the input tokens Anthropic billed ------------------------------

_PYDANTIC_AI = "pydantic/pydantic-ai tests/models/cassettes/test_anthropic/"
_PHRASE = "Please explain what Python is and its main use cases. "
_EMPTY_SCHEMA = {"additionalProperties": False, "properties": {}, "type": "object"}
_GET_COUNTRY = {"description": "", "input_schema": _EMPTY_SCHEMA, "name": "get_user_country"}
_FINAL_RESULT = {
    "description": "The final response which ends this conversation",
    "input_schema": {
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "type": "object",
    },
    "name": "final_result",
}
_Q_CITY = "What is the largest city in the user country?"
_Q_CITY_TOOL = f"{_Q_CITY} Use the get_user_country tool and then your own world knowledge."
_SCHEMA_SYSTEM = (
    "Always respond with a JSON object that's compatible with this schema:\n\n"
    '{"properties": {"city": {"type": "string"}, "country": {"type": "string"}}, '
    '"required": ["city", "country"], '
    '"title": "CityLocation", "type": "object"}\n\n'
    "Don't include any text or Markdown fencing before or after.\n"
)


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def _call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": call_id, "name": name, "input": args}],
    }


def _result(call_id: str, content: Any) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": False}],
    }


_ID1 = "toolu_01ECaF1WRmnTui1BpXZXyBds"
_ID2 = "toolu_01ArHq5f2wxRpRF2PVQcKExM"
_ID3 = "toolu_01Ttepb9joVoQFHP568v7UAL"
_ID4 = "toolu_011j5uC2Tg3TZJo3nmLtJ8Mm"
_ID5 = "toolu_01JJ8TequDsrEU2pv1QFRWAK"
_ID6 = "toolu_01MHZwZjVpR9iiNYDEe4n9uA"
_STRICT_SYSTEM = (
    "Always call `country_source` first, then call `capital_lookup` with that result before replying."
)
_STRICT_Q = "Use the registered tools and respond exactly as `Capital: <city>`."
_STRICT_TOOLS = [
    {"description": "", "input_schema": _EMPTY_SCHEMA, "name": "country_source", "strict": True},
    {
        "description": "",
        "input_schema": {
            "additionalProperties": False,
            "properties": {"country": {"type": "string"}},
            "required": ["country"],
            "type": "object",
        },
        "name": "capital_lookup",
    },
]
_STRICT_TEXT = "I'll help you find the capital city using the available tools."
_STRICT_TURN = [
    _user(_STRICT_Q),
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": _STRICT_TEXT},
            {"type": "tool_use", "id": _ID3, "name": "country_source", "input": {}},
        ],
    },
    _result(_ID3, "Japan"),
]
_HELP_TEXT = (
    "I'll help find the largest city in your country. "
    "Let me first check your country using the get_user_country tool."
)
_DEFER_SYSTEM = [
    {
        "type": "text",
        "text": "The following capabilities are deferred and can be loaded using the "
        "`load_capability` tool:\n"
        "- refunds: Refund policy tools. Load this capability before looking up refund policy.",
    }
]
_DEFER_Q = (
    "First load the refunds capability. Then call lookup_refund_policy for order-123. "
    "Return only the tool result."
)
_DEFER_TOOLS = [
    {
        "description": "Load a capability to access its full instructions and tools.",
        "input_schema": {
            "description": "Typed arguments for a `load_capability` tool call.",
            "properties": {"id": {"description": "The id of the capability to load.", "type": "string"}},
            "required": ["id"],
            "type": "object",
        },
        "name": "load_capability",
    },
    {
        "defer_loading": True,
        "description": "",
        "input_schema": {
            "additionalProperties": False,
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
            "type": "object",
        },
        "name": "lookup_refund_policy",
    },
]
_STREET_THINKING = (
    "This is a basic question about street safety. I should provide a clear, step-by-step explanation "
    "of how to "
    "safely cross a street, which is important information for pedestrian safety.\n\nI'll include:\n"
    "1. Finding the right place to cross (crosswalks, intersections)\n2. Checking for traffic signals\n"
    "3. Looking both ways for approaching vehicles\n4. Making eye contact with drivers\n"
    "5. Walking (not running) across the street\n6. Staying alert while crossing\n\n"
    "I'll keep my answer straightforward but comprehensive enough to cover the safety basics."
)
_STREET_ANSWER = (
    "# How to Cross the Street Safely\n\n1. **Find the right place to cross**\n"
    "   - Use marked crosswalks or intersections whenever possible\n"
    "   - Cross at corners where drivers expect pedestrians\n\n2. **Check for traffic signals**\n"
    "   - Follow pedestrian signals (walk/don't walk) if available\n"
    "   - At traffic lights, wait for the green light in your direction\n   \n"
    "3. **Look both ways before crossing**\n   - Look left, right, then left again\n"
    "   - Continue watching for traffic as you cross\n   \n4. **Make yourself visible**\n"
    "   - Make eye contact with drivers to ensure they see you\n"
    "   - Remove headphones and put away your phone to stay alert\n   \n5. **Cross at a steady pace**\n"
    "   - Walk, don't run, across the street\n   - Keep watching for vehicles while crossing\n\n"
    "Remember, safety should always be your priority when crossing streets!"
)
_THINK = {"budget_tokens": 1024, "type": "enabled"}
_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}
        },
        "required": ["location"],
    },
}

#: (source, body, input tokens billed or counted by Anthropic).
RECORDED: list[tuple[str, dict[str, Any], int]] = [
    (
        _PYDANTIC_AI + "test_anthropic_model_instructions.yaml",
        {
            "model": "claude-3-opus-latest",
            "max_tokens": 4096,
            "system": "You are a helpful assistant.\n",
            "messages": [_user("What is the capital of France?")],
        },
        20,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_opus_46_features[basic].yaml",
        {"model": "claude-opus-4-6", "max_tokens": 4096, "messages": [_user("What is 2+2?")]},
        14,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_opus_5_features.yaml",
        {
            "model": "claude-opus-5",
            "max_tokens": 4096,
            "messages": [_user("What is 2+2?")],
            "output_config": {"effort": "xhigh"},
            "thinking": {"display": "summarized", "type": "adaptive"},
        },
        13,
    ),
    (
        "Anthropic token counting guide (claude-opus-4-6 and claude-opus-5 examples)",
        {
            "model": "claude-opus-4-6",
            "max_tokens": 1024,
            "system": "You are a scientist",
            "messages": [{"role": "user", "content": "Hello, Claude"}],
        },
        14,
    ),
    (
        "Anthropic token counting guide (claude-opus-4-6 tools example)",
        {
            "model": "claude-opus-4-6",
            "max_tokens": 1024,
            "tools": [_WEATHER_TOOL],
            "messages": [{"role": "user", "content": "What's the weather like in San Francisco?"}],
        },
        403,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_cache_count_tokens.yaml (count_tokens)",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "cache_control": {"ttl": "5m", "type": "ephemeral"},
            "system": "You are a helpful assistant.",
            "messages": [_user(_PHRASE * 100)],
        },
        1114,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_model_thinking_part.yaml #1",
        {
            "model": "claude-3-7-sonnet-latest",
            "max_tokens": 2048,
            "thinking": _THINK,
            "messages": [_user("How do I cross the street?")],
        },
        42,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_model_thinking_part.yaml #2",
        {
            "model": "claude-3-7-sonnet-latest",
            "max_tokens": 2048,
            "thinking": _THINK,
            "messages": [
                _user("How do I cross the street?"),
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": _STREET_THINKING, "signature": "ErUBCkYIAhgCIkD6"},
                        {"type": "text", "text": _STREET_ANSWER},
                    ],
                },
                _user("Considering the way to cross the street, analogously, how do I cross the river?"),
            ],
        },
        266,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_text_output_function.yaml #1",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "tool_choice": {"type": "auto"},
            "tools": [_GET_COUNTRY],
            "messages": [_user(_Q_CITY_TOOL)],
        },
        383,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_text_output_function.yaml #2",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "tool_choice": {"type": "auto"},
            "tools": [_GET_COUNTRY],
            "messages": [
                _user(_Q_CITY_TOOL),
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": _HELP_TEXT},
                        {"type": "tool_use", "id": _ID5, "name": "get_user_country", "input": {}},
                    ],
                },
                _result(_ID5, "Mexico"),
            ],
        },
        460,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_prompted_output.yaml #1",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": _SCHEMA_SYSTEM,
            "tool_choice": {"type": "auto"},
            "tools": [_GET_COUNTRY],
            "messages": [_user(_Q_CITY_TOOL)],
        },
        459,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_prompted_output.yaml #2",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": _SCHEMA_SYSTEM,
            "tool_choice": {"type": "auto"},
            "tools": [_GET_COUNTRY],
            "messages": [_user(_Q_CITY_TOOL), _call(_ID2, "get_user_country", {}), _result(_ID2, "Mexico")],
        },
        510,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_tool_output.yaml #1",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "tool_choice": {"type": "any"},
            "tools": [_GET_COUNTRY, _FINAL_RESULT],
            "messages": [_user(_Q_CITY)],
        },
        711,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_tool_output.yaml #2",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "tool_choice": {"type": "any"},
            "tools": [_GET_COUNTRY, _FINAL_RESULT],
            "messages": [_user(_Q_CITY), _call(_ID1, "get_user_country", {}), _result(_ID1, "Mexico")],
        },
        762,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_mixed_strict_tool_run.yaml #1",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": _STRICT_SYSTEM,
            "tool_choice": {"type": "auto"},
            "tools": _STRICT_TOOLS,
            "messages": [_user(_STRICT_Q)],
        },
        628,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_mixed_strict_tool_run.yaml #2",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": _STRICT_SYSTEM,
            "tool_choice": {"type": "auto"},
            "tools": _STRICT_TOOLS,
            "messages": _STRICT_TURN,
        },
        691,
    ),
    (
        _PYDANTIC_AI + "test_anthropic_mixed_strict_tool_run.yaml #3",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": _STRICT_SYSTEM,
            "tool_choice": {"type": "auto"},
            "tools": _STRICT_TOOLS,
            "messages": [
                *_STRICT_TURN,
                _call(_ID4, "capital_lookup", {"country": "Japan"}),
                _result(_ID4, "Tokyo"),
            ],
        },
        757,
    ),
    (
        _PYDANTIC_AI
        + "test_anthropic_deferred_capability_without_tool_search_across_models[claude-haiku-4-5].yaml #1",
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 4096,
            "system": _DEFER_SYSTEM,
            "tool_choice": {"type": "auto"},
            "tools": _DEFER_TOOLS,
            "messages": [_user(_DEFER_Q)],
        },
        657,
    ),
    (
        _PYDANTIC_AI
        + "test_anthropic_deferred_capability_without_tool_search_across_models[claude-haiku-4-5].yaml #2",
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 4096,
            "system": _DEFER_SYSTEM,
            "tool_choice": {"type": "auto"},
            "tools": _DEFER_TOOLS,
            "messages": [
                _user(_DEFER_Q),
                _call(_ID6, "load_capability", {"id": "refunds"}),
                _result(_ID6, [{"text": "{}", "type": "text"}]),
                _call("auto_load_0f10f8b659c3c105", "search_tools", {"queries": ["refunds"]}),
                _result(
                    "auto_load_0f10f8b659c3c105",
                    [{"tool_name": "lookup_refund_policy", "type": "tool_reference"}],
                ),
            ],
        },
        858,
    ),
]


@pytest.mark.parametrize(
    ("source", "payload", "billed"), RECORDED, ids=[r[0].rsplit("/", 1)[-1] for r in RECORDED]
)
def test_bound_covers_recorded_billed_counts(source: str, payload: dict[str, Any], billed: int) -> None:
    est = count_request(EP, payload, safety_margin=0)
    assert est.prompt_tokens_upper >= billed, (source, est)
    assert est.exact is False
    # The bound stays within a useful factor of the bill (tools and tiny prompts are the loosest).
    assert est.prompt_tokens_upper <= 4 * billed, (source, est)


def test_calibration_summary() -> None:
    """How far the bound sits above the recorded counts (the README's numbers)."""
    ratios = [count_request(EP, b, safety_margin=0).prompt_tokens_upper / billed for _, b, billed in RECORDED]
    estimates = [count_request(EP, b).prompt_tokens / billed for _, b, billed in RECORDED]
    assert min(ratios) >= 1.0
    assert max(ratios) <= 4
    assert min(estimates) >= 0.7 and max(estimates) <= 1.6


# --- non-Latin scripts: the last public Claude tokenizer ---------------------------------------------

#: (language, text, tokens in the Claude 2 tokenizer shipped with ``anthropic`` 0.34.0, counted
#: offline). Anthropic's current tokenizers are unpublished; the old one is the worst case on hand
#: for these scripts (1.4-4x o200k), and the newer tokenizer splits them as the earlier one did.
LEGACY_TOKENIZER = [
    (
        "zh",
        (
            "人工智能是计算机科学的一个分支，它企图了解智能的实质，并生产出一种新的能以人类智"
            "能相似的方式做出反应的智能机器。该领域的研究包括机器人、语言识别、图像识别、自然"
            "语言处理和专家系统等。人工智能从诞生以来，理论和技术日益成熟，应用领域也不断扩大"
            "。可以设想，未来人工智能带来的科技产品，将会是人类智慧的容器。\n"
        ),
        160,
    ),
    (
        "ja",
        (
            "人工知能とは、人間の知的能力をコンピュータ上で実現する様々な技術やソフトウェアの"
            "総称です。近年では機械学習、特に深層学習の発展により、画像認識や音声認識、自然言"
            "語処理などの分野で大きな進歩が見られます。しかし、その社会的な影響については、ま"
            "だ多くの議論が続いています。\n"
        ),
        151,
    ),
    (
        "hi",
        (
            "कृत्रिम बुद्धिमत्ता कंप्यूटर विज्ञान की एक शाखा है जिसका उद्देश्य ऐसी "
            "मशीनें बनाना है जो मानव की तरह सोच सकें और निर्णय ले सकें। पिछले कुछ व"
            "र्षों में मशीन लर्निंग और गहन शिक्षण के विकास से इस क्षेत्र में बहुत प"
            "्रगति हुई है।\n"
        ),
        245,
    ),
    (
        "ru",
        (
            "Искусственный интеллект — это область информатики, которая занимается "
            "созданием систем, способных выполнять задачи, требующие человеческого "
            "интеллекта. В последние годы благодаря развитию машинного обучения был"
            "и достигнуты значительные успехи в распознавании изображений и обработ"
            "ке естественного языка.\n"
        ),
        143,
    ),
    (
        "ar",
        (
            "الذكاء الاصطناعي هو فرع من علوم الحاسوب يهدف إلى إنشاء أنظمة قادرة على"
            " أداء مهام تتطلب عادة ذكاء بشريا، مثل التعرف على الصور وفهم اللغة الطب"
            "يعية واتخاذ القرارات.\n"
        ),
        151,
    ),
    (
        "de",
        (
            "Künstliche Intelligenz ist ein Teilgebiet der Informatik, das sich mit"
            " der Automatisierung intelligenten Verhaltens und dem maschinellen Ler"
            "nen befasst. In den letzten Jahren wurden durch tiefe neuronale Netze "
            "erhebliche Fortschritte bei der Bild- und Spracherkennung erzielt.\n"
        ),
        78,
    ),
]


@pytest.mark.parametrize(
    ("language", "text", "legacy"), LEGACY_TOKENIZER, ids=[s[0] for s in LEGACY_TOKENIZER]
)
def test_bound_covers_the_legacy_tokenizer_on_other_scripts(language: str, text: str, legacy: int) -> None:
    framing = 12 + 6  # request and message, in the bound
    for model, inflation in (
        ("claude-sonnet-4-5", 1.0),
        ("claude-opus-4-7", 1.46 if language == "de" else 1.0),
    ):
        est = count_request(
            EP, body(model=model, messages=[{"role": "user", "content": text}]), safety_margin=0
        )
        assert est.prompt_tokens_upper - framing >= legacy * inflation, (language, model)
