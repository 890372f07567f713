"""The Anthropic Messages API on the simulator, specified through the real anthropic SDK over loopback.

One ``Simulator`` speaks both APIs: ``Anthropic(base_url=sim.anthropic_base_url)`` reaches
``/v1/messages`` (JSON and SSE), ``/v1/messages/count_tokens`` and the Message Batches routes,
with the same scripted replies, faults and request log as the OpenAI endpoints. Input tokens
come from the simulator's own stand-in rule (``budgetguard.testing._anthropic_counting``):
o200k_base tokens, 3 per message and for the system prompt, tools as JSON plus the 346-token
tool-use system prompt, images at ``ceil(w * h / 750)``.
"""

from __future__ import annotations

import base64
import http.client
import json
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic import Anthropic, AsyncAnthropic
from anthropic.types import MessageParam, ToolParam
from openai import OpenAI

from budgetguard._tokenizer import encoding_for_model
from budgetguard.testing import Reply, Simulator, ToolCall

MODEL = "claude-sonnet-4-6"
# A dropped stream: anthropic 2.x lets httpx2's error through mid-stream instead of mapping it.
DROPPED = (anthropic.APIConnectionError, httpx2.RemoteProtocolError)
USER: list[MessageParam] = [{"role": "user", "content": "Hello there"}]
USER_TOKENS = 3 + 2  # framing + "Hello there"
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Get the weather.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def tokens(text: str) -> int:
    """Tokens of ``text`` in o200k_base, the simulator's stand-in tokenizer for Claude."""
    encoding, _ = encoding_for_model("gpt-4o")
    return len(encoding.encode(text))


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def png(width: int, height: int) -> str:
    """Base64 of just a PNG signature and IHDR chunk: enough to read the size."""
    ihdr = struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00"
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + ihdr + b"\0\0\0\0").decode()


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.reset()
    return server


@pytest.fixture
def client(sim: Simulator) -> Iterator[Anthropic]:
    with Anthropic(base_url=sim.anthropic_base_url, api_key="sim", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
async def aclient(sim: Simulator) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(base_url=sim.anthropic_base_url, api_key="sim", max_retries=0, timeout=20) as c:
        yield c


def create_raw(client: Anthropic, body: dict[str, Any], path: str = "/v1/messages") -> Any:
    """POST a body as is (no SDK-side typing), for requests the SDK would not let us build."""
    return client.post(path, body=body, cast_to=object)


# --- the base URL ----------------------------------------------------------------------------------


def test_anthropic_base_url_is_the_servers_root_and_the_sdk_calls_v1_messages(
    sim: Simulator, client: Anthropic
) -> None:
    assert sim.anthropic_base_url == f"http://127.0.0.1:{sim.port}"
    client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    [request] = sim.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.body == {"model": MODEL, "max_tokens": 64, "messages": USER}
    assert "anthropic-version" in request.headers


def test_the_openai_base_url_given_to_an_anthropic_client_is_a_404_that_says_which_url_to_use(
    sim: Simulator,
) -> None:
    with Anthropic(base_url=sim.base_url, api_key="sim", max_retries=0) as wrong:
        with pytest.raises(anthropic.NotFoundError, match="anthropic_base_url"):
            wrong.messages.create(model=MODEL, max_tokens=8, messages=USER)


# --- messages.create -----------------------------------------------------------------------------------


def test_create_returns_a_message_with_the_scripted_text_and_usage_counted_from_the_request(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(Reply(content="Hi! How can I help?"))
    message = client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "Hi! How can I help?")]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.input_tokens == USER_TOKENS
    assert message.usage.output_tokens == tokens("Hi! How can I help?")
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_5m_input_tokens == 0
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 0
    assert message.usage.service_tier == "standard"
    assert message.usage.server_tool_use is None  # only when scripted


def test_without_a_script_the_answer_is_default_tokens_of_fixed_text(client: Anthropic) -> None:
    first = client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    second = client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert first.usage.output_tokens == 16
    assert first.content == second.content


def test_the_system_prompt_and_every_message_are_billed(client: Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=64,
        system="Be brief",
        messages=[
            {"role": "user", "content": "Hello there"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "user", "content": [{"type": "text", "text": "What is the weather?"}]},
        ],
    )
    expected = (
        (3 + tokens("Be brief")) + USER_TOKENS + (3 + tokens("Hi")) + (3 + tokens("What is the weather?"))
    )
    assert message.usage.input_tokens == expected


def test_max_tokens_truncates_the_answer_and_stops_with_max_tokens(sim: Simulator, client: Anthropic) -> None:
    sim.script(Reply(content="one two three four five six seven"))
    message = client.messages.create(model=MODEL, max_tokens=3, messages=USER)
    assert message.content[0].type == "text" and message.content[0].text == "one two three"
    assert (message.stop_reason, message.usage.output_tokens) == ("max_tokens", 3)


def test_max_tokens_zero_warms_the_cache_without_generating(client: Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=0, messages=USER)
    assert (message.content, message.stop_reason, message.usage.output_tokens) == ([], "max_tokens", 0)


def test_scripted_tool_calls_are_tool_use_blocks_and_stop_with_tool_use(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(
        Reply(
            content="Let me check.",
            tool_calls=[
                ToolCall("get_weather", {"city": "Paris"}),
                ToolCall("get_weather", {"city": "Rome"}, id="toolu_x"),
            ],
        )
    )
    message = client.messages.create(model=MODEL, max_tokens=200, messages=USER, tools=[WEATHER])
    text, paris, rome = message.content
    assert text.type == "text" and text.text == "Let me check."
    assert paris.type == "tool_use" and rome.type == "tool_use"
    assert paris.id.startswith("toolu_") and rome.id == "toolu_x"
    assert (paris.name, paris.input, rome.input) == ("get_weather", {"city": "Paris"}, {"city": "Rome"})
    assert message.stop_reason == "tool_use"
    args = tokens(compact({"city": "Paris"})) + tokens(compact({"city": "Rome"}))
    assert message.usage.output_tokens == tokens("Let me check.") + args


def test_a_stop_sequence_in_the_text_cuts_it_there(sim: Simulator, client: Anthropic) -> None:
    sim.script(Reply(content="Paris. Then Rome. Then Oslo."))
    message = client.messages.create(
        model=MODEL, max_tokens=64, messages=USER, stop_sequences=["Oslo", " Then"]
    )
    assert message.content[0].type == "text" and message.content[0].text == "Paris."
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", " Then")
    assert message.usage.output_tokens == tokens("Paris.")


def test_thinking_enabled_puts_a_signed_thinking_block_first_and_bills_it_as_output(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(Reply(content="42.", thinking="The user wants the answer."))
    message = client.messages.create(
        model=MODEL, max_tokens=2048, messages=USER, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking == "The user wants the answer."
    assert thinking.signature
    assert text.type == "text" and text.text == "42."
    assert message.usage.output_tokens == tokens("The user wants the answer.") + tokens("42.")


def test_thinking_defaults_to_default_tokens_of_text_and_is_absent_unless_enabled(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(Reply(content="a"), Reply(content="b", thinking="ignored: thinking is off"))
    adaptive = client.messages.create(
        model=MODEL, max_tokens=64, messages=USER, thinking={"type": "adaptive"}
    )
    plain = client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert [block.type for block in adaptive.content] == ["thinking", "text"]
    assert adaptive.usage.output_tokens == 16 + 1
    assert [block.type for block in plain.content] == ["text"]


def test_thinking_counts_against_max_tokens(sim: Simulator, client: Anthropic) -> None:
    sim.script(Reply(content="never said", thinking="one two three four five"))
    message = client.messages.create(model=MODEL, max_tokens=3, messages=USER, thinking={"type": "adaptive"})
    assert [block.type for block in message.content] == ["thinking"]
    assert (message.stop_reason, message.usage.output_tokens) == ("max_tokens", 3)


def test_a_structured_output_request_gets_a_minimal_instance_of_its_schema(client: Anthropic) -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
    }
    message = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=USER,
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert message.content[0].type == "text"
    assert set(json.loads(message.content[0].text)) == {"name"}


def test_system_role_messages_are_accepted_and_billed_like_any_message(client: Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=8, messages=[{"role": "system", "content": "Be brief"}, *USER]
    )
    assert message.usage.input_tokens == 3 + tokens("Be brief") + USER_TOKENS


def test_consecutive_turns_of_one_role_are_accepted_as_the_api_combines_them(client: Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=8,
        messages=[{"role": "user", "content": "Hello there"}, {"role": "user", "content": "Hello there"}],
    )
    assert message.usage.input_tokens == 2 * USER_TOKENS


def test_reply_can_report_a_dated_model_and_a_service_tier(sim: Simulator, client: Anthropic) -> None:
    sim.script(Reply(content="hi", model="claude-sonnet-4-6-20260101", service_tier="priority"))
    message = client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert (message.model, message.usage.service_tier) == ("claude-sonnet-4-6-20260101", "priority")


def test_with_raw_response_exposes_the_wire_json_and_the_request_id(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(Reply(content="raw"))
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=8, messages=USER)
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["content-type"] == "application/json"
    wire = json.loads(raw.http_response.content)
    assert wire["usage"] == {
        "input_tokens": USER_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
        "service_tier": "standard",
    }
    assert raw.parse().content[0].type == "text"


# --- streaming -----------------------------------------------------------------------------------------


def test_a_raw_stream_sends_anthropics_event_sequence_with_one_delta_per_token(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(Reply(content="one two three"))
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=USER, stream=True)
    assert raw.headers["content-type"].startswith("text/event-stream")
    raw_events = [frame for frame in raw.http_response.read().decode().split("\n\n") if frame]
    names = [frame.split("\n")[0].removeprefix("event: ") for frame in raw_events]
    data = [json.loads(frame.split("\n")[1].removeprefix("data: ")) for frame in raw_events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [event["type"] for event in data] == names  # each data repeats its event name
    start = data[0]["message"]
    assert (start["content"], start["stop_reason"]) == ([], None)
    assert start["usage"]["input_tokens"] == USER_TOKENS
    assert start["usage"]["output_tokens"] == 1
    assert data[1]["content_block"] == {"type": "text", "text": ""}
    assert [e["delta"] for e in data[3:6]] == [
        {"type": "text_delta", "text": t} for t in ("one", " two", " three")
    ]
    assert data[7]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert data[7]["usage"] == {
        "input_tokens": USER_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 3,
    }


def test_create_with_stream_true_yields_typed_events(sim: Simulator, client: Anthropic) -> None:
    sim.script(Reply(content="Hi there"))
    events = list(client.messages.create(model=MODEL, max_tokens=64, messages=USER, stream=True))
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK drops pings
    delta = events[-2]
    assert delta.type == "message_delta"
    assert (delta.delta.stop_reason, delta.usage.output_tokens) == ("end_turn", 2)


def test_the_stream_helper_accumulates_the_same_message_as_the_json_answer(
    sim: Simulator, client: Anthropic
) -> None:
    reply = Reply(
        content="Let me look.", tool_calls=[ToolCall("get_weather", {"city": "Paris"})], thinking="Hmm."
    )
    sim.script(reply, reply)
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 2048,
        "messages": USER,
        "tools": [WEATHER],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    as_json = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        streamed = stream.get_final_message()
    assert text == "Let me look."

    def without_ids(message: Any) -> list[dict[str, Any]]:
        return [{k: v for k, v in block.to_dict().items() if k != "id"} for block in message.content]

    assert without_ids(streamed) == without_ids(as_json)
    assert streamed.content[0].type == "thinking" and streamed.content[0].signature  # signature_delta arrived
    assert streamed.usage.to_dict() == as_json.usage.to_dict()
    assert (streamed.stop_reason, as_json.stop_reason) == ("tool_use", "tool_use")


def test_a_cut_stream_delivers_the_first_tokens_then_drops_without_message_delta(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(Reply(content="one two three four five six", cut_stream_after=2))
    events: list[Any] = []
    with pytest.raises(DROPPED):
        events.extend(client.messages.create(model=MODEL, max_tokens=64, messages=USER, stream=True))
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert deltas == ["one", " two"]
    assert "message_delta" not in [e.type for e in events]


def test_a_stream_cut_after_every_token_still_lacks_the_final_usage(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(Reply(content="one two", cut_stream_after=99))
    events: list[Any] = []
    with pytest.raises(DROPPED):
        events.extend(client.messages.create(model=MODEL, max_tokens=64, messages=USER, stream=True))
    assert [e.type for e in events][-1] == "content_block_stop"


# --- count_tokens --------------------------------------------------------------------------------------


def test_count_tokens_bills_what_create_bills_and_consumes_no_reply(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(Reply(content="kept"))
    counted = client.messages.count_tokens(model=MODEL, messages=USER, system="Be brief", tools=[WEATHER])
    message = client.messages.create(
        model=MODEL, max_tokens=8, messages=USER, system="Be brief", tools=[WEATHER]
    )
    assert counted.input_tokens == message.usage.input_tokens
    assert message.content[0].type == "text" and message.content[0].text == "kept"
    assert sim.requests[0].path == "/v1/messages/count_tokens"


def test_tools_cost_their_json_plus_the_tool_use_system_prompt(client: Anthropic) -> None:
    def count(**kwargs: Any) -> int:
        return client.messages.count_tokens(model=MODEL, messages=USER, **kwargs).input_tokens

    assert count(tools=[WEATHER]) == USER_TOKENS + 346 + tokens(compact(WEATHER))
    assert count(tools=[WEATHER], tool_choice={"type": "any"}) == USER_TOKENS + 313 + tokens(compact(WEATHER))
    cached_tool = {**WEATHER, "cache_control": {"type": "ephemeral"}}
    assert count(tools=[cached_tool]) == count(tools=[WEATHER])  # markers are not prompt


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((200, 200), 54),  # ceil(40000 / 750): the docs' ~54
        ((1000, 1000), 1334),  # the docs' ~1334
        ((1092, 1092), 1590),  # the docs' largest 1:1 image that is not resized
        ((3136, 1000), 1046),  # long edge scaled to 1568: 1568 x 500
        ((1500, 1500), 1600),  # 3000 tokens, held to the ~1,600 ceiling
    ],
)
def test_an_image_costs_width_times_height_over_750_after_the_long_edge_resize(
    client: Anthropic, size: tuple[int, int], expected: int
) -> None:
    image: Any = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": png(*size)},
    }
    counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": [image]}])
    assert counted.input_tokens == 3 + expected


def test_an_image_of_unknown_size_costs_the_ceiling(client: Anthropic) -> None:
    image: Any = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": [image]}])
    assert counted.input_tokens == 3 + 1600


def test_tool_use_and_tool_result_blocks_bill_their_name_input_and_content(client: Anthropic) -> None:
    messages: list[MessageParam] = [
        {"role": "user", "content": "Hello there"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]},
    ]
    counted = client.messages.count_tokens(model=MODEL, messages=messages)
    tool_use = 3 + tokens("get_weather") + tokens(compact({"city": "Paris"}))
    assert counted.input_tokens == USER_TOKENS + tool_use + 3 + tokens("Sunny")


# --- prompt caching -------------------------------------------------------------------------------------

LONG_SYSTEM = "You are a careful assistant who answers questions about the weather. " * 20


def cached_system(ttl: str | None = None) -> list[Any]:
    marker: dict[str, Any] = {"type": "ephemeral"} if ttl is None else {"type": "ephemeral", "ttl": ttl}
    return [{"type": "text", "text": LONG_SYSTEM, "cache_control": marker}]


def test_a_cached_prefix_is_written_on_first_sight_and_read_afterwards(client: Anthropic) -> None:
    prefix = 3 + tokens(LONG_SYSTEM)
    first = client.messages.create(model=MODEL, max_tokens=8, system=cached_system(), messages=USER)
    second = client.messages.create(model=MODEL, max_tokens=8, system=cached_system(), messages=USER)
    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (prefix, 0)
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == prefix
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (0, prefix)
    # input_tokens is what follows the last breakpoint; the three add up to the whole prompt
    assert first.usage.input_tokens == second.usage.input_tokens == USER_TOKENS


def test_a_one_hour_breakpoint_is_reported_as_one_hour_writes(client: Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=8, system=cached_system("1h"), messages=USER)
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 3 + tokens(LONG_SYSTEM)
    assert message.usage.cache_creation.ephemeral_5m_input_tokens == 0


def test_each_span_is_written_under_its_own_breakpoint_and_the_longest_seen_prefix_is_read(
    client: Anthropic,
) -> None:
    tools: Any = [{**WEATHER, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    tools_prefix = 346 + tokens(compact(WEATHER))
    system_span = 3 + tokens(LONG_SYSTEM)
    first = client.messages.create(
        model=MODEL, max_tokens=8, tools=tools, system=cached_system(), messages=USER
    )
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == tools_prefix
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == system_span
    other_system: Any = [{**cached_system()[0], "text": "Another system prompt."}]
    second = client.messages.create(
        model=MODEL, max_tokens=8, tools=tools, system=other_system, messages=USER
    )
    assert second.usage.cache_read_input_tokens == tools_prefix  # the tools are still cached
    assert second.usage.cache_creation_input_tokens == 3 + tokens("Another system prompt.")


def test_top_level_cache_control_caches_the_whole_prompt(client: Anthropic) -> None:
    kwargs: Any = {"model": MODEL, "max_tokens": 8, "messages": USER, "cache_control": {"type": "ephemeral"}}
    first = client.messages.create(**kwargs)
    second = client.messages.create(**kwargs)
    assert (first.usage.input_tokens, first.usage.cache_creation_input_tokens) == (0, USER_TOKENS)
    assert (second.usage.input_tokens, second.usage.cache_read_input_tokens) == (0, USER_TOKENS)


def test_the_cache_is_per_model_and_count_tokens_and_reset_leave_or_clear_it(
    sim: Simulator, client: Anthropic
) -> None:
    client.messages.count_tokens(model=MODEL, system=cached_system(), messages=USER)  # not a cache write
    first = client.messages.create(model=MODEL, max_tokens=8, system=cached_system(), messages=USER)
    other_model = client.messages.create(
        model="claude-haiku-4-5", max_tokens=8, system=cached_system(), messages=USER
    )
    assert first.usage.cache_read_input_tokens == 0
    assert other_model.usage.cache_read_input_tokens == 0
    sim.reset()
    again = client.messages.create(model=MODEL, max_tokens=8, system=cached_system(), messages=USER)
    assert again.usage.cache_read_input_tokens == 0


# --- forced usage, shared script, custom counter -----------------------------------------------------


def test_forced_usage_in_anthropic_names_is_reported_exactly(sim: Simulator, client: Anthropic) -> None:
    sim.script(
        Reply(
            content="searched",
            usage={
                "input_tokens": 1000,
                "cache_creation": {"ephemeral_1h_input_tokens": 50},
                "cache_read_input_tokens": 7,
                "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
            },
        )
    )
    message = client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (
        1000,
        7,
        50,
    )
    assert usage.cache_creation is not None
    assert (
        usage.cache_creation.ephemeral_5m_input_tokens,
        usage.cache_creation.ephemeral_1h_input_tokens,
    ) == (0, 50)
    assert usage.server_tool_use is not None and usage.server_tool_use.web_search_requests == 2
    assert usage.output_tokens == tokens("searched")


def test_forced_usage_in_openai_names_is_translated(sim: Simulator, client: Anthropic) -> None:
    sim.script(
        Reply(
            usage={
                "prompt_tokens": 120,
                "completion_tokens": 30,
                "total_tokens": 150,
                "prompt_tokens_details": {"cached_tokens": 100},
            }
        )
    )
    wire = json.loads(
        client.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=USER).text()
    )
    assert wire["usage"]["input_tokens"] == 120
    assert wire["usage"]["output_tokens"] == 30
    assert wire["usage"]["cache_read_input_tokens"] == 100
    assert "total_tokens" not in wire["usage"]


def test_forced_usage_reaches_both_ends_of_a_stream(sim: Simulator, client: Anthropic) -> None:
    sim.script(Reply(content="hi", usage={"input_tokens": 500, "output_tokens": 40,
                                          "server_tool_use": {"web_search_requests": 1}}))  # fmt: skip
    events = list(client.messages.create(model=MODEL, max_tokens=64, messages=USER, stream=True))
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert (start.message.usage.input_tokens, start.message.usage.output_tokens) == (500, 1)
    assert (delta.usage.input_tokens, delta.usage.output_tokens) == (500, 40)
    assert delta.usage.server_tool_use is not None and delta.usage.server_tool_use.web_search_requests == 1


def test_omit_usage_sends_a_message_without_usage(sim: Simulator, client: Anthropic) -> None:
    sim.script(Reply(content="no bill", omit_usage=True))
    wire = json.loads(
        client.messages.with_raw_response.create(model=MODEL, max_tokens=8, messages=USER).text()
    )
    assert "usage" not in wire


def test_openai_and_anthropic_requests_take_replies_from_one_queue(sim: Simulator, client: Anthropic) -> None:
    sim.script(Reply(content="first"), Reply(content="second"), Reply(content="third"))
    with OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as openai_client:
        chat = openai_client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        message = client.messages.create(model=MODEL, max_tokens=8, messages=USER)
        response = openai_client.responses.create(model="gpt-4o", input="hi")
    assert chat.choices[0].message.content == "first"
    assert message.content[0].type == "text" and message.content[0].text == "second"
    assert response.output_text == "third"
    assert [r.path for r in sim.requests] == ["/v1/chat/completions", "/v1/messages", "/v1/responses"]


def test_a_custom_prompt_counter_bills_anthropic_requests_as_endpoint_messages() -> None:
    seen: list[str] = []

    def counter(endpoint: str, body: dict[str, Any]) -> int:
        seen.append(endpoint)
        return 11

    with (
        Simulator(prompt_counter=counter) as sim,
        Anthropic(base_url=sim.anthropic_base_url, api_key="sim") as c,
    ):
        message = c.messages.create(model=MODEL, max_tokens=8, messages=USER)
        counted = c.messages.count_tokens(model=MODEL, messages=USER)
    assert (message.usage.input_tokens, counted.input_tokens) == (11, 11)
    assert seen == ["messages", "messages"]


# --- errors and faults ---------------------------------------------------------------------------------


VALID: dict[str, Any] = {"model": MODEL, "max_tokens": 8, "messages": USER}
THINKING_1024 = {"type": "enabled", "budget_tokens": 1024}
MARKED = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": MODEL, "messages": USER}, "max_tokens: Field required"),
        ({"model": MODEL, "max_tokens": 8}, "messages: Field required"),
        ({"max_tokens": 8, "messages": USER}, "model: Field required"),
        ({**VALID, "messages": []}, "messages: at least one message is required"),
        ({**VALID, "max_tokens": -1}, "max_tokens: Input should be greater than or equal to 0"),
        ({**VALID, "max_tokens": "8"}, "max_tokens: Input should be a valid integer"),
        ({**VALID, "messages": [{"role": "robot", "content": "hi"}]},
         "messages.0.role: Input should be 'user', 'assistant' or 'system'"),
        ({**VALID, "messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        ({**VALID, "messages": [{"role": "user", "content": ""}, *USER]},
         "messages.0: all messages must have non-empty content"),
        ({**VALID, "messages": [{"role": "user", "content": [{"text": "hi"}]}]},
         "messages.0.content.0.type: Field required"),
        ({**VALID, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
         "messages: text content blocks must be non-empty"),
        ({**VALID, "system": 5}, "system: Input should be a valid"),
        ({**VALID, "tools": [{"name": "x"}]}, "tools.0.custom.input_schema: Field required"),
        ({**VALID, "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 100}},
         "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
        ({**VALID, "max_tokens": 1024, "thinking": THINKING_1024},
         "`max_tokens` must be greater than `thinking.budget_tokens`"),
        ({**VALID, "system": cached_system("2h")},
         "system.0.cache_control.ttl: Input should be '5m' or '1h'"),
        ({**VALID, "messages": [{"role": "user", "content": [MARKED] * 5}]},
         "A maximum of 4 blocks with cache_control may be provided. Found 5."),
    ],
)  # fmt: skip
def test_an_invalid_request_is_a_400_in_anthropics_error_shape_naming_the_field_and_consumes_no_reply(
    sim: Simulator, client: Anthropic, body: dict[str, Any], message: str
) -> None:
    sim.script(Reply(content="still queued"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        create_raw(client, body)
    assert caught.value.status_code == 400
    assert caught.value.body is not None
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]
    assert sim.pending_replies == 1


def test_malformed_json_is_a_400_in_anthropics_error_shape(sim: Simulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    connection.request("POST", "/v1/messages", body=b'{"model": "x",', headers={"Content-Length": "14"})
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 400
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "could not parse the JSON body" in body["error"]["message"]


def test_an_unknown_messages_route_is_a_404_not_found_error(client: Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        create_raw(client, {}, path="/v1/messages/nowhere")
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == "not_found_error"


def test_a_rate_limit_with_retry_after_is_retried_by_the_sdk(sim: Simulator) -> None:
    sim.fail_next(status=429, retry_after=0.01, times=2)
    sim.script(Reply(content="finally"))
    with Anthropic(base_url=sim.anthropic_base_url, api_key="sim", max_retries=2, timeout=10) as client:
        message = client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert message.content[0].type == "text" and message.content[0].text == "finally"
    assert [r.headers["x-stainless-retry-count"] for r in sim.requests] == ["0", "1", "2"]


def test_a_fault_on_an_anthropic_route_has_anthropics_error_shape(sim: Simulator, client: Anthropic) -> None:
    sim.fail_next(status=429, retry_after=0.25, message="slow down")
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert caught.value.response.headers["retry-after-ms"] == "250"
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    sim.fail_next(status=529)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        client.messages.create(model=MODEL, max_tokens=8, messages=USER)
    assert (
        isinstance(overloaded.value.body, dict)
        and overloaded.value.body["error"]["type"] == "overloaded_error"
    )


def test_a_failing_prompt_counter_is_a_500_that_the_sdk_does_not_retry() -> None:
    def broken(endpoint: str, body: dict[str, Any]) -> int:
        raise RuntimeError("boom")

    with Simulator(prompt_counter=broken) as sim:
        with Anthropic(base_url=sim.anthropic_base_url, api_key="sim", max_retries=2) as client:
            with pytest.raises(anthropic.InternalServerError, match="boom"):
                client.messages.create(model=MODEL, max_tokens=8, messages=USER)
        assert len(sim.requests) == 1


def test_a_delay_longer_than_the_client_timeout_times_out(sim: Simulator, client: Anthropic) -> None:
    sim.script(Reply(content="late", delay=5.0))
    with pytest.raises(anthropic.APITimeoutError):
        client.with_options(timeout=0.3).messages.create(model=MODEL, max_tokens=8, messages=USER)


# --- message batches ---------------------------------------------------------------------------------


def test_a_batch_is_in_progress_when_created_ends_on_the_first_poll_and_serves_jsonl_results(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(Reply(content="first"), Reply(content="second"))
    params: Any = {"model": MODEL, "max_tokens": 16, "messages": USER}
    no_max_tokens: Any = {"model": MODEL, "messages": USER}
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": "a", "params": params},
            {"custom_id": "broken", "params": no_max_tokens},
            {"custom_id": "b", "params": params},
        ]
    )
    assert (batch.type, batch.processing_status, batch.results_url) == ("message_batch", "in_progress", None)
    assert batch.request_counts.processing == 3
    assert sim.pending_replies == 0  # answered at creation, in order

    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert (
        ended.request_counts.succeeded,
        ended.request_counts.errored,
        ended.request_counts.processing,
    ) == (2, 1, 0)
    assert ended.results_url == f"{sim.anthropic_base_url}/v1/messages/batches/{batch.id}/results"

    results = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}
    assert results["a"].type == "succeeded" and results["b"].type == "succeeded"
    first, second = results["a"].message, results["b"].message
    assert [first.content[0].to_dict()["text"], second.content[0].to_dict()["text"]] == ["first", "second"]
    assert first.usage.service_tier == "batch"
    assert (first.usage.input_tokens, first.usage.output_tokens) == (USER_TOKENS, 1)
    assert results["broken"].type == "errored"
    assert "max_tokens: Field required" in results["broken"].error.error.message
    assert [r.path for r in sim.requests][-2:] == [
        f"/v1/messages/batches/{batch.id}",  # results() retrieves the batch first
        f"/v1/messages/batches/{batch.id}/results",
    ]


def test_batches_can_be_listed_and_an_unknown_batch_is_a_404(client: Anthropic) -> None:
    batch = client.messages.batches.create(
        requests=[{"custom_id": "only", "params": {"model": MODEL, "max_tokens": 4, "messages": USER}}]
    )
    assert [b.id for b in client.messages.batches.list()] == [batch.id]
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_nope")


def test_a_malformed_batch_is_refused_whole(sim: Simulator, client: Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="custom_id values must be unique"):
        create_raw(
            client,
            {"requests": [{"custom_id": "x", "params": {}}, {"custom_id": "x", "params": {}}]},
            path="/v1/messages/batches",
        )
    with pytest.raises(anthropic.BadRequestError, match="requests: List should have at least 1 item"):
        create_raw(client, {"requests": []}, path="/v1/messages/batches")


# --- the beta namespace --------------------------------------------------------------------------------


def test_the_beta_namespace_reaches_the_same_routes_with_its_beta_header(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(Reply(content="beta"), Reply(content="beta stream"))
    user: Any = USER
    message = client.beta.messages.create(
        model=MODEL, max_tokens=8, messages=user, betas=["context-management-2025-06-27"]
    )
    with client.beta.messages.stream(model=MODEL, max_tokens=8, messages=user) as stream:
        streamed = stream.get_final_message()
    counted = client.beta.messages.count_tokens(model=MODEL, messages=user)
    assert message.content[0].type == "text" and message.content[0].text == "beta"
    assert streamed.content[0].type == "text" and streamed.content[0].text == "beta stream"
    assert message.usage.input_tokens == streamed.usage.input_tokens == counted.input_tokens == USER_TOKENS
    assert [r.path for r in sim.requests] == ["/v1/messages", "/v1/messages", "/v1/messages/count_tokens"]
    assert sim.requests[0].headers["anthropic-beta"] == "context-management-2025-06-27"


def test_beta_batches_work_too(sim: Simulator, client: Anthropic) -> None:
    params: Any = {"model": MODEL, "max_tokens": 4, "messages": USER}
    batch = client.beta.messages.batches.create(requests=[{"custom_id": "a", "params": params}])
    assert client.beta.messages.batches.retrieve(batch.id).processing_status == "ended"
    [line] = list(client.beta.messages.batches.results(batch.id))
    assert line.result.type == "succeeded"


def test_a_query_string_such_as_beta_true_is_ignored(sim: Simulator, client: Anthropic) -> None:
    message = client.post(
        "/v1/messages?beta=true", body={"model": MODEL, "max_tokens": 4, "messages": USER}, cast_to=object
    )
    assert isinstance(message, dict) and message["type"] == "message"
    assert sim.requests[0].path == "/v1/messages"


# --- async and concurrency -----------------------------------------------------------------------------


async def test_an_async_client_creates_and_streams(sim: Simulator, aclient: AsyncAnthropic) -> None:
    sim.script(Reply(content="async hello"), Reply(content="async stream"))
    message = await aclient.messages.create(model=MODEL, max_tokens=16, messages=USER)
    async with aclient.messages.stream(model=MODEL, max_tokens=16, messages=USER) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == "async hello"
    assert text == "async stream"
    assert final.usage.output_tokens == tokens("async stream")
    counted = await aclient.messages.count_tokens(model=MODEL, messages=USER)
    assert counted.input_tokens == USER_TOKENS


def test_sixteen_threads_share_the_cache_and_the_queue_without_errors(
    sim: Simulator, client: Anthropic
) -> None:
    sim.script(*[Reply(content=f"r{i}") for i in range(16)])
    results: list[Any] = []
    lock = threading.Lock()

    def call() -> None:
        message = client.messages.create(model=MODEL, max_tokens=8, system=cached_system(), messages=USER)
        with lock:
            results.append(message)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(m.content[0].text for m in results) == sorted(f"r{i}" for i in range(16))
    writes = [m.usage.cache_creation_input_tokens for m in results]
    assert writes.count(0) == 15  # exactly one request wrote the prefix; the others read it


# --- the cloud routes (Vertex AI, Bedrock) -----------------------------------------------------------


def _post(sim: Simulator, path: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    raw = json.dumps(body).encode()
    connection.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    out = (response.status, response.getheader("Content-Type") or "", response.read())
    connection.close()
    return out


VERTEX_PATH = "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929"
BEDROCK_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
CLOUD_BODY: dict[str, Any] = {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (VERTEX_PATH + ":rawPredict", CLOUD_BODY, "anthropic_version: Field required"),
        (
            VERTEX_PATH + ":rawPredict",
            {**CLOUD_BODY, "anthropic_version": "vertex-2023-10-16", "model": "claude-sonnet-4-5"},
            "model: Extra inputs are not permitted",
        ),
        (
            VERTEX_PATH + ":rawPredict",
            {**CLOUD_BODY, "anthropic_version": "vertex-2023-10-16", "stream": True},
            "rawPredict needs stream=False",
        ),
        (
            f"/model/{BEDROCK_ID}/invoke",
            {**CLOUD_BODY, "anthropic_version": "bedrock-2023-05-31", "stream": True},
            "stream: Extra inputs are not permitted",
        ),
    ],
    ids=["no version", "model in the body", "stream on rawPredict", "stream in a Bedrock body"],
)
def test_a_cloud_request_names_what_is_wrong_with_it(
    sim: Simulator, path: str, body: dict[str, Any], message: str
) -> None:
    status, _, raw = _post(sim, path, body)
    error = json.loads(raw)
    assert status == 400 and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


def test_bedrock_streams_the_messages_events_in_amazons_event_stream_framing(sim: Simulator) -> None:
    eventstream = pytest.importorskip("botocore.eventstream")
    status, content_type, raw = _post(
        sim, f"/model/{BEDROCK_ID}/invoke-with-response-stream", {**CLOUD_BODY, "anthropic_version": "x"}
    )
    assert (status, content_type) == (200, "application/vnd.amazon.eventstream")
    buffer = eventstream.EventStreamBuffer()
    buffer.add_data(raw)  # botocore checks each message's length and both checksums
    events = []
    for message in buffer:
        assert message.headers[":event-type"] == "chunk" and message.headers[":message-type"] == "event"
        events.append(json.loads(base64.b64decode(json.loads(message.payload)["bytes"])))
    assert [event["type"] for event in events][:2] == ["message_start", "content_block_start"]
    assert events[-1]["type"] == "message_stop"
    assert (
        events[0]["message"]["model"] == "claude-sonnet-4-5-20250929"
    )  # Anthropic's name, as Bedrock answers
