"""The OpenAI simulator, specified through the real openai SDK talking to it over loopback."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import math
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from budgetguard._tokenizer import encoding_for_model
from budgetguard.testing import ReceivedRequest, Reply, Simulator, ToolCall

PROMPT_TOKENS = 11
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello there"}]


class RecordingCounter:
    """A pinned prompt counter that remembers which endpoint asked."""

    def __init__(self) -> None:
        self.endpoints: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, endpoint: str, body: dict[str, Any]) -> int:
        with self._lock:
            self.endpoints.append(endpoint)
        return PROMPT_TOKENS


COUNTER = RecordingCounter()


def tokens(text: str, model: str = "gpt-4o") -> int:
    encoding, _ = encoding_for_model(model)
    return len(encoding.encode(text))


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator(prompt_counter=COUNTER) as sim:
        yield sim


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.reset()
    COUNTER.endpoints.clear()
    return server


@pytest.fixture
def client(sim: Simulator) -> Iterator[OpenAI]:
    with OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
async def aclient(sim: Simulator) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=20) as c:
        yield c


# --- chat completions ---------------------------------------------------------------------------


def test_chat_answers_with_the_scripted_content_and_usage_computed_from_the_request(
    sim: Simulator, client: OpenAI
) -> None:
    sim.script(Reply(content="Bonjour, monde"))
    completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert completion.choices[0].message.content == "Bonjour, monde"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == tokens("Bonjour, monde")
    assert completion.usage.total_tokens == PROMPT_TOKENS + tokens("Bonjour, monde")
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0
    assert COUNTER.endpoints == ["chat.completions"]


def test_chat_default_reply_is_the_same_sixteen_tokens_every_time(client: OpenAI) -> None:
    first, second = (client.chat.completions.create(model="gpt-4o", messages=USER) for _ in range(2))
    text = first.choices[0].message.content
    assert text
    assert text == second.choices[0].message.content
    assert first.usage is not None
    assert first.usage.completion_tokens == 16 == tokens(text)


def test_default_reply_length_is_configurable() -> None:
    with (
        Simulator(prompt_counter=COUNTER, default_tokens=50) as sim,
        OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client,
    ):
        completion = client.chat.completions.create(model="gpt-3.5-turbo", messages=USER)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 50
    assert tokens(completion.choices[0].message.content or "", "gpt-3.5-turbo") == 50


@pytest.mark.parametrize("cap_name", ["max_tokens", "max_completion_tokens"])
def test_chat_output_cap_truncates_the_text_and_reports_length(
    sim: Simulator, client: OpenAI, cap_name: str
) -> None:
    sim.script(Reply(content="one two three four five six seven eight nine ten"))
    caps: dict[str, Any] = {cap_name: 4}
    completion = client.chat.completions.create(model="gpt-4o", messages=USER, **caps)
    assert completion.choices[0].message.content == "one two three four"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4


def test_chat_n_choices_are_each_billed(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=USER, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3 * 16


def test_chat_stream_sends_a_role_chunk_one_chunk_per_token_a_finish_chunk_and_no_usage(
    sim: Simulator, client: OpenAI
) -> None:
    sim.script(Reply(content="alpha beta gamma"))
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["alpha", " beta", " gamma"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_chat_stream_with_include_usage_ends_with_a_usage_chunk_that_has_no_choices(
    sim: Simulator, client: OpenAI
) -> None:
    sim.script(Reply(content="alpha beta gamma"))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == PROMPT_TOKENS
    assert chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_tool_calls_come_back_as_tool_calls_with_finish_reason_tool_calls(
    sim: Simulator, client: OpenAI
) -> None:
    sim.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_1")]))
    completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id == "call_1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens == tokens('{"city":"Paris"}')


def test_chat_streamed_tool_call_arguments_accumulate_in_the_stream_helper(
    sim: Simulator, client: OpenAI
) -> None:
    sim.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time", {})]))
    with client.chat.completions.stream(model="gpt-4o", messages=USER) as stream:
        deltas = [event for event in stream if event.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 2
    calls = final.choices[0].message.tool_calls
    assert calls is not None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    number: int


class Person(BaseModel):
    name: str
    age: int
    height: float
    active: bool
    tags: list[str]
    colour: Colour
    address: Address
    nickname: str | None
    born: datetime


class TreeNode(BaseModel):
    label: str
    children: list[TreeNode]
    parent: TreeNode | None


def test_chat_parse_returns_a_valid_instance_of_the_requested_model(client: OpenAI) -> None:
    completion = client.chat.completions.parse(model="gpt-4o", messages=USER, response_format=Person)
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person)
    assert person.address == Address(street="x", number=0)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == tokens(completion.choices[0].message.content or "")


def test_chat_parse_handles_self_referencing_models(client: OpenAI) -> None:
    completion = client.chat.completions.parse(model="gpt-4o", messages=USER, response_format=TreeNode)
    assert isinstance(completion.choices[0].message.parsed, TreeNode)


def test_chat_stream_helper_parses_structured_output(client: OpenAI) -> None:
    with client.chat.completions.stream(model="gpt-4o", messages=USER, response_format=Person) as stream:
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Person)


def test_json_object_mode_answers_with_a_json_object(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {}


def test_forced_usage_is_reported_exactly_and_total_is_recomputed(sim: Simulator, client: OpenAI) -> None:
    sim.script(
        Reply(
            content="x",
            usage={
                "prompt_tokens": 4,
                "completion_tokens": 33,
                "prompt_tokens_details": {"cached_tokens": 2},
            },
        )
    )
    usage = client.chat.completions.create(model="gpt-4o", messages=USER).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (4, 33, 37)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 2
    assert usage.prompt_tokens_details.audio_tokens == 0


def test_forced_usage_in_chat_names_applies_to_responses_too(sim: Simulator, client: OpenAI) -> None:
    sim.script(
        Reply(content="x", usage={"prompt_tokens": 4, "completion_tokens_details": {"reasoning_tokens": 9}})
    )
    usage = client.responses.create(model="gpt-4o", input="hi").usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (4, 1, 5)
    assert usage.output_tokens_details.reasoning_tokens == 9


def test_omit_usage_leaves_usage_out_of_json_and_streams(sim: Simulator, client: OpenAI) -> None:
    sim.script(Reply(content="x", omit_usage=True), Reply(content="x", omit_usage=True))
    assert client.chat.completions.create(model="gpt-4o", messages=USER).usage is None
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_reply_can_report_a_dated_model_and_a_service_tier(sim: Simulator, client: OpenAI) -> None:
    sim.script(
        Reply(content="x", model="gpt-4o-2024-08-06", service_tier="flex"),
        Reply(content="x", model="gpt-4o-2024-08-06", service_tier="flex"),
    )
    completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert (completion.model, completion.service_tier) == ("gpt-4o-2024-08-06", "flex")
    response = client.responses.create(model="gpt-4o", input="hi")
    assert (response.model, response.service_tier) == ("gpt-4o-2024-08-06", "flex")


# --- responses --------------------------------------------------------------------------------


def test_responses_create_returns_output_text_and_responses_usage(sim: Simulator, client: OpenAI) -> None:
    sim.script(Reply(content="Salut"))
    response = client.responses.create(model="gpt-4o-mini", input="hi", instructions="be brief")
    assert response.status == "completed"
    assert response.output_text == "Salut"
    assert response.model == "gpt-4o-mini"
    assert response.instructions == "be brief"
    assert response.usage is not None
    assert response.usage.input_tokens == PROMPT_TOKENS
    assert response.usage.output_tokens == tokens("Salut")
    assert response.usage.total_tokens == PROMPT_TOKENS + tokens("Salut")
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert COUNTER.endpoints == ["responses"]


def test_responses_stream_emits_the_real_event_sequence(sim: Simulator, client: OpenAI) -> None:
    sim.script(Reply(content="alpha beta"))
    with client.responses.stream(model="gpt-4o", input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "alpha beta"
    assert final.usage is not None
    assert final.usage.output_tokens == 2


def test_responses_max_output_tokens_makes_the_response_incomplete(client: OpenAI) -> None:
    response = client.responses.create(model="gpt-4o", input="hi", max_output_tokens=5)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None
    assert response.usage.output_tokens == 5
    assert tokens(response.output_text) == 5


def test_responses_stream_that_hits_the_cap_ends_with_response_incomplete(client: OpenAI) -> None:
    events = list(client.responses.create(model="gpt-4o", input="hi", max_output_tokens=3, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.usage is not None
    assert events[-1].response.usage.output_tokens == 3
    assert "response.completed" not in [e.type for e in events]


def test_responses_parse_returns_a_valid_instance_of_the_requested_model(client: OpenAI) -> None:
    response = client.responses.parse(model="gpt-4o", input="hi", text_format=Person)
    assert isinstance(response.output_parsed, Person)


def test_responses_scripted_tool_calls_become_function_call_items(sim: Simulator, client: OpenAI) -> None:
    sim.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]))
    with client.responses.stream(model="gpt-4o", input="hi") as stream:
        argument_deltas = [e for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert argument_deltas
    item = final.output[0]
    assert item.type == "function_call"
    assert (item.name, json.loads(item.arguments)) == ("get_weather", {"city": "Paris"})
    assert item.call_id.startswith("call_")
    assert final.usage is not None
    assert final.usage.output_tokens == tokens('{"city":"Paris"}')


def test_responses_input_tokens_counts_the_request(client: OpenAI) -> None:
    count = client.responses.input_tokens.count(model="gpt-4o", input="hi")
    assert (count.object, count.input_tokens) == ("response.input_tokens", PROMPT_TOKENS)


# --- legacy completions and embeddings ------------------------------------------------------------


def test_completions_return_n_choices_per_prompt_and_bill_all_best_of_candidates(client: OpenAI) -> None:
    completion = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt=["a", "b"], n=2, best_of=3, max_tokens=5
    )
    assert len(completion.choices) == 4
    assert all(c.finish_reason == "length" for c in completion.choices)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == 2 * 3 * 5
    assert COUNTER.endpoints == ["completions"]


def test_completions_stream_with_include_usage(sim: Simulator, client: OpenAI) -> None:
    sim.script(Reply(content="alpha beta"))
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="a", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "alpha beta"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2


def test_embeddings_default_to_base64_and_decode_to_unit_vectors(sim: Simulator, client: OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["cat", "dog"])
    assert sim.requests[-1].body["encoding_format"] == "base64"
    assert [len(d.embedding) for d in result.data] == [1536, 1536]
    assert math.isclose(sum(x * x for x in result.data[0].embedding), 1.0, rel_tol=1e-4)
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens == result.usage.total_tokens == PROMPT_TOKENS
    assert COUNTER.endpoints == ["embeddings"]


def test_embeddings_are_deterministic_and_agree_between_float_and_base64(client: OpenAI) -> None:
    as_float = client.embeddings.create(
        model="text-embedding-3-large", input=[[1, 2, 3]], dimensions=8, encoding_format="float"
    )
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-large", input=[[1, 2, 3]], dimensions=8, encoding_format="base64"
    )
    encoded = json.loads(raw.http_response.content)["data"][0]["embedding"]
    assert list(struct.unpack("<8f", base64.b64decode(encoded))) == as_float.data[0].embedding


# --- faults, delays, cut streams ------------------------------------------------------------------


def test_rate_limit_with_retry_after_is_retried_by_the_sdk(sim: Simulator) -> None:
    sim.fail_next(status=429, retry_after=0.01, times=2)
    sim.script(Reply(content="finally"))
    with OpenAI(base_url=sim.base_url, api_key="sim", max_retries=2, timeout=10) as client:
        completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert completion.choices[0].message.content == "finally"
    assert [r.headers["x-stainless-retry-count"] for r in sim.requests] == ["0", "1", "2"]


def test_a_fault_carries_retry_after_headers_and_an_openai_shaped_error(
    sim: Simulator, client: OpenAI
) -> None:
    sim.fail_next(status=429, retry_after=0.25, message="slow down", code="rate_limit_exceeded")
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert caught.value.response.headers["retry-after-ms"] == "250"
    assert caught.value.response.headers["retry-after"] == "0.25"
    assert caught.value.body == {"message": "slow down", "type": "requests", "param": None,
                                 "code": "rate_limit_exceeded"}  # fmt: skip


def test_server_error_without_retries_raises_and_keeps_the_scripted_reply(
    sim: Simulator, client: OpenAI
) -> None:
    sim.script(Reply(content="kept"))
    sim.fail_next(status=500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content == "kept"


def test_a_delay_longer_than_the_client_timeout_times_out(sim: Simulator, client: OpenAI) -> None:
    sim.script(Reply(content="late", delay=5.0), Reply(content="slow but in time", delay=0.05))
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(model="gpt-4o", messages=USER)
    completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert completion.choices[0].message.content == "slow but in time"


def test_a_cut_chat_stream_delivers_the_first_tokens_then_raises(sim: Simulator, client: OpenAI) -> None:
    sim.script(Reply(content="one two three four five six", cut_stream_after=3))
    chunks: list[Any] = []
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    with pytest.raises(openai.APIConnectionError):
        chunks.extend(stream)  # keeps what arrived before the connection dropped
    assert [c.choices[0].delta.content for c in chunks] == ["", "one", " two", " three"]
    assert all(c.usage is None for c in chunks)


def test_a_cut_responses_stream_never_completes(sim: Simulator, client: OpenAI) -> None:
    sim.script(Reply(content="one two three four five six", cut_stream_after=2))
    events: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        events.extend(client.responses.create(model="gpt-4o", input="hi", stream=True))
    kinds = [event.type for event in events]
    assert kinds.count("response.output_text.delta") == 2
    assert "response.completed" not in kinds


def test_a_stream_cut_after_all_tokens_stops_before_the_closing_events(
    sim: Simulator, client: OpenAI
) -> None:
    sim.script(Reply(content="one two", cut_stream_after=99))
    chunks: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        chunks.extend(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["", "one", " two"]
    assert all(c.choices[0].finish_reason is None for c in chunks)


# --- protocol errors, request log, lifecycle ---------------------------------------------------------


def test_unknown_path_is_a_404_with_an_openai_shaped_error(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.post("/nowhere", body={}, cast_to=object)
    assert caught.value.body == {"message": "Invalid URL (POST /v1/nowhere)", "type": "invalid_request_error",
                                 "param": None, "code": None}  # fmt: skip


def test_malformed_json_is_a_400_that_names_the_problem(sim: Simulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    connection.request(
        "POST", "/v1/chat/completions", body=b'{"model": "gpt-4o",', headers={"Content-Length": "19"}
    )
    response = connection.getresponse()
    error = json.loads(response.read())["error"]
    connection.close()
    assert response.status == 400
    assert error["type"] == "invalid_request_error"
    assert "could not parse the JSON body" in error["message"]
    assert "line 1 column 20" in error["message"]


def test_a_request_without_a_model_is_a_400_naming_the_parameter(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body={"messages": USER}, cast_to=object)
    assert caught.value.param == "model"


def test_a_failing_prompt_counter_is_a_500_that_the_sdk_does_not_retry() -> None:
    def broken(endpoint: str, body: dict[str, Any]) -> int:
        raise LookupError("no estimator for this body")

    with (
        Simulator(prompt_counter=broken) as sim,
        OpenAI(base_url=sim.base_url, api_key="sim", max_retries=2) as client,
    ):
        with pytest.raises(openai.InternalServerError, match="LookupError: no estimator for this body"):
            client.chat.completions.create(model="gpt-4o", messages=USER)
        assert len(sim.requests) == 1


def test_the_request_log_records_every_request_in_order_and_reset_clears_it(
    sim: Simulator, client: OpenAI
) -> None:
    client.chat.completions.create(model="gpt-4o", messages=USER)
    client.embeddings.create(model="text-embedding-3-small", input="x")
    first, second = sim.requests
    assert first == ReceivedRequest("POST", "/v1/chat/completions", first.headers,
                                    {"model": "gpt-4o", "messages": USER})  # fmt: skip
    assert first.headers["authorization"] == "Bearer sim"
    assert second.path == "/v1/embeddings"
    sim.script(Reply(content="x"))
    sim.fail_next()
    sim.reset()
    assert (sim.requests, sim.pending_replies) == ([], 0)
    assert client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content != "x"


def test_models_can_be_listed(client: OpenAI) -> None:
    assert "gpt-4o" in [m.id for m in client.models.list()]


def test_base_url_also_works_for_the_module_level_client_and_hand_joined_urls(sim: Simulator) -> None:
    saved = (openai.api_key, openai.base_url)
    openai.api_key, openai.base_url = "sim", sim.base_url
    try:
        assert openai.models.list().data
    finally:
        openai.api_key, openai.base_url = saved
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    connection.request("GET", urlsplit(f"{sim.base_url}/models").path)
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200
    assert [r.path for r in sim.requests] == ["/v1/models", "/v1/models"]


def test_a_stopped_simulator_has_no_url_and_refuses_connections() -> None:
    sim = Simulator(prompt_counter=COUNTER).start()
    url = sim.base_url
    sim.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = sim.base_url
    with (
        OpenAI(base_url=url, api_key="sim", max_retries=0, timeout=2) as client,
        pytest.raises(openai.APIConnectionError),
    ):
        client.models.list()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"delay": -1}, "delay"),
        ({"cut_stream_after": -1}, "cut_stream_after"),
        ({"usage": {}, "omit_usage": True}, "both"),
    ],
)
def test_invalid_replies_are_refused_when_scripted(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Reply(**kwargs)


def test_by_default_prompt_tokens_come_from_the_simulators_own_counter() -> None:
    # Hand-counted (tests/test_simulator_counting.py has more): 3 per message + role + text, +3.
    with Simulator() as sim, OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client:
        reported = [
            client.chat.completions.create(model="gpt-4o", messages=USER).usage,
            client.responses.create(
                model="gpt-4o", input="What is the weather?", instructions="Be brief"
            ).usage,
            client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b c", "d"]).usage,
            client.embeddings.create(model="text-embedding-3-small", input=["one", "two three"]).usage,
        ]
    prompts = [
        getattr(usage, "prompt_tokens", None) or getattr(usage, "input_tokens", None) for usage in reported
    ]
    assert prompts == [3 + 1 + 2 + 3, (3 + 1 + 2) + (3 + 1 + 5) + 3, 3 + 1, 1 + 2]


def test_a_malformed_message_is_a_400_naming_the_json_path_and_consumes_no_reply() -> None:
    with Simulator() as sim, OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client:
        sim.script(Reply(content="still queued"))
        with pytest.raises(openai.BadRequestError, match=r"messages\[0\]\.content"):
            client.post(
                "/chat/completions",
                body={"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]},
                cast_to=object,
            )
        completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert completion.choices[0].message.content == "still queued"


def test_thirty_two_threads_share_the_simulator_without_errors(sim: Simulator, client: OpenAI) -> None:
    results: list[str | None] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(3):
            content = client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
            with lock:
                results.append(content)

    threads = [threading.Thread(target=work) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 96
    assert len(set(results)) == 1
    assert len(sim.requests) == 96


# --- async -----------------------------------------------------------------------------------------


async def test_an_async_client_streams_from_the_simulator(sim: Simulator, aclient: AsyncOpenAI) -> None:
    sim.script(Reply(content="alpha beta"))
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "alpha beta"


async def test_a_hundred_concurrent_async_requests_all_succeed(sim: Simulator, aclient: AsyncOpenAI) -> None:
    async def one(i: int) -> int:
        if i % 2:
            completion = await aclient.chat.completions.create(model="gpt-4o", messages=USER)
            assert completion.usage is not None
            return completion.usage.completion_tokens
        response = await aclient.responses.create(model="gpt-4o", input="hi")
        assert response.usage is not None
        return response.usage.output_tokens

    assert await asyncio.gather(*(one(i) for i in range(100))) == [16] * 100
    assert len(sim.requests) == 100


async def test_the_simulator_works_as_an_async_context_manager() -> None:
    async with (
        Simulator(prompt_counter=COUNTER) as sim,
        AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client,
    ):
        response = await client.responses.create(model="gpt-4o", input="hi")
    assert response.status == "completed"
