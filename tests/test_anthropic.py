"""The same guarantees for Claude: the anthropic SDK is counted, reserved and capped like openai.

Every call goes over real HTTP to the simulator's Messages API, whose usage is counted by its
own rules; the billed numbers a test expects are the ones the server reported.
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import Any

import pytest

import budgetguard as bg
from budgetguard import _events
from budgetguard.testing import Reply, Simulator, ToolCall

anthropic = pytest.importorskip("anthropic")

MODEL = "claude-sonnet-4-6"
MESSAGES = [{"role": "user", "content": "Tell me about budgets"}]


@pytest.fixture
def claude(sim: Simulator) -> Any:
    with anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="sim", max_retries=0) as c:
        yield c


@pytest.fixture
async def aclaude(sim: Simulator) -> Any:
    async with anthropic.AsyncAnthropic(base_url=sim.anthropic_base_url, api_key="sim", max_retries=0) as c:
        yield c


def _billed(usage: Any) -> tuple[int, int]:
    """(prompt, completion) as Anthropic bills them: input excludes cache reads and writes."""
    prompt = (
        usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    )
    return prompt, usage.output_tokens


def test_a_message_is_counted_and_priced_as_billed(claude: Any) -> None:
    with bg.track_usage() as tracked:
        message = claude.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    usage = tracked.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == _billed(message.usage)
    assert usage.requests == 1 and usage.estimated_requests == 0
    assert usage.cost_usd == bg.PriceBook().cost(usage, MODEL) > 0
    assert set(tracked.by_model) == {message.model}


@pytest.mark.parametrize("surface", ["stream=True", "stream helper", "raw response", "beta namespace"])
def test_every_surface_is_counted_exactly_once(claude: Any, surface: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", bg.EstimatedUsageWarning)
        with bg.Budget(max_usd=1) as budget:
            if surface == "stream=True":
                events = list(
                    claude.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, stream=True)
                )
                billed = next(e for e in events if e.type == "message_delta").usage
                start = next(e for e in events if e.type == "message_start").message.usage
                expected = (start.input_tokens, billed.output_tokens)
            elif surface == "stream helper":
                with claude.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
                    final = stream.get_final_message()
                expected = _billed(final.usage)
            elif surface == "raw response":
                raw = claude.messages.with_raw_response.create(model=MODEL, max_tokens=50, messages=MESSAGES)
                expected = _billed(raw.parse().usage)
            else:
                message = claude.beta.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
                expected = _billed(message.usage)
    usage = budget.usage
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (1, *expected)
    assert budget.reserved_usd == 0


async def test_async_messages_and_streams_are_counted(aclaude: Any) -> None:
    async with bg.Budget(max_usd=1) as budget:
        await aclaude.messages.create(model=MODEL, max_tokens=30, messages=MESSAGES)
        stream = await aclaude.messages.create(model=MODEL, max_tokens=30, messages=MESSAGES, stream=True)
        async for _ in stream:
            pass
    assert budget.usage.requests == 2 and budget.usage.estimated_requests == 0
    assert budget.reserved_usd == 0


def test_a_budget_refuses_a_message_that_would_not_fit_before_sending(claude: Any, sim: Simulator) -> None:
    with bg.Budget(max_usd="0.0001", name="tiny") as budget, pytest.raises(bg.BudgetExceeded) as info:
        claude.messages.create(model=MODEL, max_tokens=4000, messages=MESSAGES)
    assert info.value.budget == "tiny"
    assert sim.requests == []
    assert budget.spent_usd == 0


def test_the_reservation_covers_what_the_server_billed(claude: Any) -> None:
    body = {"model": MODEL, "max_tokens": 200, "messages": MESSAGES, "system": "Be brief."}
    reserved = bg.estimate_request("anthropic.messages", body).max_usd
    with warnings.catch_warnings():
        warnings.simplefilter("error", bg.UnderReservedWarning)
        with bg.Budget(max_usd=reserved) as budget:
            claude.messages.create(**body)
    assert 0 < budget.spent_usd <= reserved


def test_cache_writes_by_ttl_cache_reads_and_web_searches_are_priced_apart(
    claude: Any, sim: Simulator
) -> None:
    sim.script(
        Reply(
            content="ok",
            usage={
                "input_tokens": 50,
                "output_tokens": 10,
                "cache_creation_input_tokens": 3000,
                "cache_read_input_tokens": 20000,
                "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
                "server_tool_use": {"web_search_requests": 3},
            },
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bg.UnderReservedWarning)
        with bg.track_usage() as tracked:
            claude.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    usage = tracked.usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (23050, 20000, 3000)
    assert (usage.cache_write_1h_tokens, usage.web_search_requests) == (2000, 3)
    # claude-sonnet-4-6 per 1M tokens: input $3, output $15, cache read $0.30, 5m write $3.75,
    # 1h write $6; web search $10 per 1,000.
    per_million = Decimal(1_000_000)
    expected = (
        50 * Decimal(3)
        + 10 * Decimal(15)
        + 20000 * Decimal("0.3")
        + 1000 * Decimal("3.75")
        + 2000 * Decimal(6)
    ) / per_million + 3 * Decimal(10) / 1000
    assert usage.cost_usd == expected


def test_count_tokens_is_free_and_never_reserved(claude: Any, sim: Simulator) -> None:
    with bg.Budget(max_usd="0.0000001") as budget:
        counted = claude.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert counted.input_tokens > 0
    assert budget.usage.requests == 0 and budget.spent_usd == 0


def test_exact_mode_asks_count_tokens_before_reserving(claude: Any, sim: Simulator) -> None:
    bg.configure(exact_estimates=True)
    with bg.Budget(max_usd=1) as budget:
        message = claude.messages.create(model=MODEL, max_tokens=20, messages=MESSAGES)
    paths = [request.path.split("?")[0] for request in sim.requests]
    assert paths == ["/v1/messages/count_tokens", "/v1/messages"]
    assert budget.usage.requests == 1
    assert budget.usage.prompt_tokens == _billed(message.usage)[0]


def test_a_stream_closed_at_its_message_delta_is_charged_exactly(claude: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", bg.EstimatedUsageWarning)
        with bg.Budget(max_usd=1) as budget:
            stream = claude.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, stream=True)
            for event in stream:
                if event.type == "content_block_stop":
                    break
            stream.close()
    assert budget.usage.requests == 1 and budget.usage.estimated_requests == 0


def test_a_cut_thinking_stream_is_charged_its_reported_input_and_its_reserved_output(
    claude: Any, sim: Simulator
) -> None:
    sim.script(Reply(content="A long answer " * 50, cut_stream_after=5))
    body = {
        "model": MODEL,
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "messages": MESSAGES,
    }
    input_tokens = None
    with pytest.warns(bg.EstimatedUsageWarning, match="hidden"), bg.Budget(max_usd=1) as budget:
        with pytest.raises(Exception):  # noqa: B017, PT011 - the transport error differs by SDK version
            for event in claude.messages.create(**body, stream=True):
                if event.type == "message_start":
                    input_tokens = event.message.usage.input_tokens
    assert input_tokens is not None
    usage = budget.usage
    assert usage.prompt_tokens == input_tokens  # what message_start reported, not an estimate
    assert usage.completion_tokens == 3000  # thinking is billed in full, and was not seen
    assert usage.estimated_requests == 1


def test_a_cut_stream_without_thinking_is_charged_its_input_and_the_text_it_sent(
    claude: Any, sim: Simulator
) -> None:
    sim.script(Reply(content="word " * 100, cut_stream_after=8))
    with pytest.warns(bg.EstimatedUsageWarning), bg.Budget(max_usd=1) as budget:
        with pytest.raises(Exception):  # noqa: B017, PT011 - the transport error differs by SDK version
            for _ in claude.messages.create(model=MODEL, max_tokens=500, messages=MESSAGES, stream=True):
                pass
    assert 0 < budget.usage.completion_tokens < 500


def test_a_message_batch_passes_with_one_warning_inside_a_capped_budget(claude: Any) -> None:
    requests = [{"custom_id": "a", "params": {"model": MODEL, "max_tokens": 10, "messages": MESSAGES}}]
    with pytest.warns(bg.BudgetGuardWarning, match="batch rates"), bg.Budget(max_usd=1) as budget:
        claude.messages.batches.create(requests=requests)
    assert budget.usage.requests == 0


def test_tool_use_round_trips_are_counted(claude: Any, sim: Simulator) -> None:
    sim.script(Reply(tool_calls=[ToolCall("add", {"a": 2, "b": 3})]), Reply(content="5"))
    tools = [
        {
            "name": "add",
            "description": "Add two numbers.",
            "input_schema": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            },
        }
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", bg.UnderReservedWarning)
        with bg.Budget(max_usd=1) as budget:
            first = claude.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, tools=tools)
            call = next(block for block in first.content if block.type == "tool_use")
            claude.messages.create(
                model=MODEL,
                max_tokens=100,
                tools=tools,
                messages=[
                    *MESSAGES,
                    {"role": "assistant", "content": first.content},
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "5"}],
                    },
                ],
            )
    assert budget.usage.requests == 2


def test_langchain_chat_anthropic_is_counted(sim: Simulator) -> None:
    langchain_anthropic = pytest.importorskip("langchain_anthropic")
    llm = langchain_anthropic.ChatAnthropic(
        model=MODEL, base_url=sim.anthropic_base_url, api_key="sim", max_tokens=50, max_retries=0
    )
    with bg.track_usage() as tracked:
        llm.invoke("Say hi")
        list(llm.stream("Say hi"))
    assert tracked.usage.requests == 2 and tracked.usage.estimated_requests == 0


async def test_pydantic_ai_anthropic_model_is_counted(sim: Simulator) -> None:
    pytest.importorskip("pydantic_ai.models.anthropic")
    from pydantic_ai import Agent
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    provider = AnthropicProvider(
        anthropic_client=anthropic.AsyncAnthropic(
            base_url=sim.anthropic_base_url, api_key="sim", max_retries=0
        )
    )
    # pydantic-ai always sends max_tokens (its default is the model's maximum): a budget
    # reserves what the request asks for, so a small budget needs a small setting.
    agent = Agent(AnthropicModel(MODEL, provider=provider), model_settings={"max_tokens": 200})
    async with bg.Budget(max_usd=1) as budget:
        await agent.run("Say hi")
    assert budget.usage.requests == 1 and budget.reserved_usd == 0


# --- Claude on Google Vertex AI and Amazon Bedrock ----------------------------------------------
# Their clients send the same Messages API with the model in the URL; the simulator answers both
# (Bedrock's stream in Amazon's event-stream framing, which botocore decodes in the SDK).


@pytest.fixture
def vertex(sim: Simulator) -> Any:
    client = anthropic.AnthropicVertex(
        region="us-east5",
        project_id="proj",
        access_token="sim",
        base_url=sim.anthropic_base_url,
        max_retries=0,
    )
    with client:
        yield client


@pytest.fixture
def bedrock(sim: Simulator) -> Any:
    pytest.importorskip("boto3")  # the Bedrock client signs its requests with botocore
    client = anthropic.AnthropicBedrock(
        aws_access_key="AKIDEXAMPLE",
        aws_secret_key="sim",
        aws_region="us-east-1",
        base_url=sim.anthropic_base_url,
        max_retries=0,
    )
    with client:
        yield client


@pytest.fixture
def settled() -> Any:
    """The calls settled while the test runs, as published events."""
    seen: list[Any] = []
    _events.subscribe(seen.append)
    yield seen
    _events.unsubscribe(seen.append)


def test_vertex_calls_are_counted_reserved_and_priced_as_anthropics_own(
    vertex: Any, sim: Simulator, settled: list[Any]
) -> None:
    model = "claude-sonnet-4-5@20250929"
    with bg.Budget(max_usd=1) as budget:
        message = vertex.messages.create(model=model, max_tokens=20, messages=MESSAGES)
        with vertex.messages.stream(model=model, max_tokens=20, messages=MESSAGES) as stream:
            streamed = stream.get_final_message()
    assert [request.path.rsplit(":", 1)[1] for request in sim.requests] == ["rawPredict", "streamRawPredict"]
    prompt = message.usage.input_tokens + streamed.usage.input_tokens
    completion = message.usage.output_tokens + streamed.usage.output_tokens
    usage = budget.usage
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (2, prompt, completion)
    # Claude Sonnet 4.5 on Vertex's global endpoint: Anthropic's list prices, $3 / $15 per million.
    assert usage.cost_usd == (prompt * 3 + completion * 15) / Decimal(1_000_000)
    assert budget.reserved_usd == 0
    assert [event.provider for event in settled if isinstance(event, _events.CallSettled)] == [
        "gcp.vertex_ai"
    ] * 2


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "invoke-with-response-stream"])
def test_bedrock_calls_are_priced_at_aws_rates_for_the_model_id_asked_for(
    bedrock: Any, sim: Simulator, settled: list[Any], streamed: bool
) -> None:
    model_id = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # a US inference profile
    with bg.Budget(max_usd=1) as budget:
        if streamed:
            events = list(
                bedrock.messages.create(model=model_id, max_tokens=20, messages=MESSAGES, stream=True)
            )
            start = next(e for e in events if e.type == "message_start").message
            answered, prompt = start.model, start.usage.input_tokens
            completion = next(e for e in events if e.type == "message_delta").usage.output_tokens
        else:
            message = bedrock.messages.create(model=model_id, max_tokens=20, messages=MESSAGES)
            answered, prompt, completion = (
                message.model,
                message.usage.input_tokens,
                message.usage.output_tokens,
            )
    [request] = sim.requests
    assert request.path == f"/model/{model_id}/" + ("invoke-with-response-stream" if streamed else "invoke")
    # Bedrock answers with Anthropic's name for the model, which Anthropic prices at $3 / $15 ...
    assert answered == "claude-sonnet-4-5-20250929"
    usage = budget.usage
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (1, prompt, completion)
    # ... but bills the id asked for: AWS's regional profiles cost 10% more, $3.30 / $16.50.
    assert usage.cost_usd == (prompt * Decimal("3.3") + completion * Decimal("16.5")) / 1_000_000
    assert budget.reserved_usd == 0
    [event] = [event for event in settled if isinstance(event, _events.CallSettled)]
    assert (event.provider, event.request_model) == ("aws.bedrock", model_id)
