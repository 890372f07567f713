"""Libraries built on the openai SDK are metered like user code: LangChain, the Agents SDK."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import budgetguard as bg
from budgetguard.testing import Reply, Simulator, ToolCall

langchain_openai = pytest.importorskip("langchain_openai")


def _chat_model(sim: Simulator, **options: Any) -> Any:
    return langchain_openai.ChatOpenAI(
        model="gpt-4o-mini", base_url=sim.base_url, api_key="sim", max_retries=0, **options
    )


@pytest.mark.parametrize("streaming", [False, True])
def test_langchain_invoke_stream_and_batch_are_each_counted_once(sim: Simulator, streaming: bool) -> None:
    llm = _chat_model(sim, streaming=streaming)
    with warnings.catch_warnings():
        warnings.simplefilter("error", bg.EstimatedUsageWarning)
        with bg.track_usage() as tracked:
            llm.invoke("Say hi")
            chunks = list(llm.stream("Say hi"))
            llm.batch(["one", "two"])
    assert chunks
    assert len(sim.requests) == 4
    assert tracked.usage.requests == 4


async def test_langchain_ainvoke_is_counted(sim: Simulator) -> None:
    llm = _chat_model(sim)
    async with bg.track_usage() as tracked:
        await llm.ainvoke("Say hi")
    assert tracked.usage.requests == 1


def test_budget_exceeded_reaches_langchain_callers_unchanged(sim: Simulator) -> None:
    llm = _chat_model(sim)
    with bg.Budget(max_usd="0.0000001", name="lc"), pytest.raises(bg.BudgetExceeded) as info:
        llm.invoke("Say hi")
    assert info.value.budget == "lc"
    assert sim.requests == []


agents = pytest.importorskip("agents")


async def test_openai_agents_sdk_runs_are_counted_per_model_call(sim: Simulator) -> None:
    from openai import AsyncOpenAI

    sim.script(Reply(tool_calls=[ToolCall("add", {"a": 2, "b": 3})]), Reply(content="5"))

    @agents.function_tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    client = AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
    model = agents.OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client)
    agent = agents.Agent(name="calc", instructions="Use the tool.", tools=[add], model=model)
    agents.set_tracing_disabled(True)
    async with bg.track_usage() as tracked:
        result = await agents.Runner.run(agent, "What is 2 + 3?")
    assert "5" in str(result.final_output)
    assert len(sim.requests) == 2
    assert tracked.usage.requests == 2
    assert tracked.usage.cost_usd > 0
