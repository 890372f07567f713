"""A refusal stops the run also inside frameworks that wrap, retry or swallow errors.

`bg.find_budget_exceeded` first, on hand-made exception graphs; then one recipe per framework
(README, "Frameworks"), each run against the real framework and the simulator. Every scenario
has a tight budget that the first call fits and a later one cannot: the later prompt alone
costs more than what is left, so it is refused whatever the policy for uncapped requests.
Each checks that the run stopped, that the refused request never reached the server, and that
`find_budget_exceeded` finds the refusal through the framework's wrapper. Where a framework's
default lets the run go on (or retries the refusal), a test shows that first.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

import budgetguard as bg
from budgetguard.testing import Reply, Simulator, ToolCall

# ~2,000 prompt tokens: $0.0003 on gpt-4o-mini, $0.005 on gpt-4o. Alone more than any budget
# below has left once its first call is paid.
LONG_PROMPT = "word " * 2000
TIGHT_USD = "0.0001"


def _refusal(budget: str = "b") -> bg.BudgetExceeded:
    zero = Decimal(0)
    return bg.BudgetExceeded(
        budget=budget,
        limit_kind="usd",
        limit=Decimal("0.01"),
        spent=zero,
        reserved=zero,
        requested=Decimal("0.02"),
        spent_usd=zero,
        reserved_usd=zero,
        requested_usd=Decimal("0.02"),
        limit_usd=Decimal("0.01"),
    )


# --------------------------------------------------------------------------------------------
# find_budget_exceeded
# --------------------------------------------------------------------------------------------


class _Wrapped(Exception):
    pass


def test_finds_the_refusal_itself_through_causes_and_contexts() -> None:
    refusal = _refusal()
    assert bg.find_budget_exceeded(refusal) is refusal
    assert bg.find_budget_exceeded(None) is None
    assert bg.find_budget_exceeded(ValueError("plain")) is None

    def wrap(*, hide_context: bool) -> None:
        try:
            raise refusal
        except bg.BudgetExceeded as e:
            if hide_context:
                raise _Wrapped("hidden") from None  # the context stays reachable
            raise _Wrapped("wrapped") from e

    with pytest.raises(_Wrapped) as chained:
        wrap(hide_context=False)
    assert bg.find_budget_exceeded(chained.value) is refusal
    with pytest.raises(_Wrapped) as hidden:
        wrap(hide_context=True)
    assert hidden.value.__suppress_context__ and hidden.value.__cause__ is None
    assert bg.find_budget_exceeded(hidden.value) is refusal


def test_finds_the_refusal_in_nested_exception_groups_and_prefers_the_nearest() -> None:
    near, far = _refusal("near"), _refusal("far")
    deep = _Wrapped("deep")
    deep.__cause__ = far
    group = ExceptionGroup("outer", [ValueError("x"), ExceptionGroup("inner", [deep, near])])
    assert bg.find_budget_exceeded(group) is near
    assert bg.find_budget_exceeded(BaseExceptionGroup("b", [KeyboardInterrupt(), far])) is far


def test_cycles_and_shared_links_end() -> None:
    a, b = _Wrapped("a"), _Wrapped("b")
    a.__cause__, b.__cause__ = b, a
    a.__context__ = a
    assert bg.find_budget_exceeded(a) is None
    refusal = _refusal()
    b.__context__ = refusal
    assert bg.find_budget_exceeded(a) is refusal


def test_finds_the_refusal_in_instructor_failed_attempts_and_tenacity_retry_errors() -> None:
    import tenacity

    class FailedAttempt:  # instructor's NamedTuple: attempt_number, exception, completion
        def __init__(self, n: int, exception: Exception) -> None:
            self.attempt_number, self.exception, self.completion = n, exception, None

    refusal = _refusal()
    retry_exception = _Wrapped("max retries")
    retry_exception.failed_attempts = [  # type: ignore[attr-defined]
        FailedAttempt(1, ValueError("bad json")),
        FailedAttempt(2, refusal),
    ]
    assert bg.find_budget_exceeded(retry_exception) is refusal

    attempts = 0

    @tenacity.retry(stop=tenacity.stop_after_attempt(2))
    def always_refused() -> None:
        nonlocal attempts
        attempts += 1
        raise refusal

    with pytest.raises(tenacity.RetryError) as info:
        always_refused()
    assert attempts == 2
    stripped = tenacity.RetryError(info.value.last_attempt)  # no __cause__: only last_attempt leads there
    assert bg.find_budget_exceeded(stripped) is refusal
    assert bg.find_budget_exceeded(info.value) is refusal


def test_attributes_that_only_look_like_framework_ones_are_ignored() -> None:
    class Odd(Exception):
        failed_attempts = "not a list"

        @property
        def last_attempt(self) -> Any:
            raise RuntimeError("a property that fails")

    assert bg.find_budget_exceeded(Odd()) is None
    odd = Odd()
    odd.__context__ = _refusal()
    assert bg.find_budget_exceeded(odd) is odd.__context__


# --------------------------------------------------------------------------------------------
# LangChain: .with_retry() and .with_fallbacks()
# --------------------------------------------------------------------------------------------


def _lc_model(sim: Simulator, model: str = "gpt-4o-mini") -> Any:
    langchain_openai = pytest.importorskip("langchain_openai")
    return langchain_openai.ChatOpenAI(
        model=model, base_url=sim.base_url, api_key="sim", max_retries=0, max_tokens=16
    )


def _error_counter() -> Any:
    callbacks = pytest.importorskip("langchain_core.callbacks")

    class Errors(callbacks.BaseCallbackHandler):  # type: ignore[misc]
        def __init__(self) -> None:
            self.errors: list[BaseException] = []

        def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
            self.errors.append(error)

    return Errors()


def test_langchain_default_with_retry_retries_a_refusal(sim: Simulator) -> None:
    llm = _lc_model(sim).with_retry(wait_exponential_jitter=False, stop_after_attempt=3)
    errors = _error_counter()
    with bg.Budget(max_usd=TIGHT_USD, name="lc"):
        llm.invoke("Say hi")
        with pytest.raises(bg.BudgetExceeded):
            llm.invoke(LONG_PROMPT, config={"callbacks": [errors]})
    assert len(sim.requests) == 1
    assert len(errors.errors) == 3  # refused three times: the default retries every Exception


@pytest.mark.parametrize(
    "retry_on",
    [
        pytest.param("transient", id="tuple-of-transient-openai-errors"),
        pytest.param("predicate", id="callable-excluding-refusals"),
    ],
)
def test_langchain_with_retry_recipe_does_not_retry_a_refusal(sim: Simulator, retry_on: str) -> None:
    import openai

    retry_if: Any = (
        (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
        if retry_on == "transient"
        else (lambda e: bg.find_budget_exceeded(e) is None)
    )
    llm = _lc_model(sim).with_retry(
        retry_if_exception_type=retry_if, wait_exponential_jitter=False, stop_after_attempt=3
    )
    errors = _error_counter()
    sim.fail_next(status=500)
    with bg.Budget(max_usd=TIGHT_USD, name="lc"):
        llm.invoke("Say hi")  # a 500, retried, then answered: the retry still works
        assert len(sim.requests) == 2
        with pytest.raises(bg.BudgetExceeded) as info:
            llm.invoke(LONG_PROMPT, config={"callbacks": [errors]})
    assert len(sim.requests) == 2
    assert len(errors.errors) == 1  # refused once, not retried
    assert bg.find_budget_exceeded(info.value) is info.value
    assert info.value.budget == "lc"


def test_langchain_default_with_fallbacks_falls_back_past_a_refusal(sim: Simulator) -> None:
    llm = _lc_model(sim, "gpt-4o").with_fallbacks([_lc_model(sim, "gpt-4o-mini")])
    with bg.Budget(max_usd="0.001", name="lc"):
        llm.invoke("Say hi")  # gpt-4o, fits
        llm.invoke(LONG_PROMPT)  # gpt-4o refused; gpt-4o-mini fits, and the run goes on
    assert [request.body["model"] for request in sim.requests] == ["gpt-4o", "gpt-4o-mini"]


def test_langchain_with_fallbacks_recipe_lets_a_refusal_through(sim: Simulator) -> None:
    import openai

    llm = _lc_model(sim, "gpt-4o").with_fallbacks(
        [_lc_model(sim, "gpt-4o-mini")], exceptions_to_handle=(openai.APIError,)
    )
    sim.fail_next(status=500)
    with bg.Budget(max_usd="0.001", name="lc"):
        llm.invoke("Say hi")  # gpt-4o fails with a 500: API errors still fall back
        assert [request.body["model"] for request in sim.requests] == ["gpt-4o", "gpt-4o-mini"]
        with pytest.raises(bg.BudgetExceeded) as info:
            llm.invoke(LONG_PROMPT)
    assert len(sim.requests) == 2
    assert bg.find_budget_exceeded(info.value) is info.value


# --------------------------------------------------------------------------------------------
# OpenAI Agents SDK: @function_tool(failure_error_function=...)
# --------------------------------------------------------------------------------------------


def _agents_setup(sim: Simulator, **tool_options: Any) -> tuple[Any, Any]:
    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI

    agents.set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

    @agents.function_tool(**tool_options)
    async def summarize(topic: str) -> str:
        """Summarize the long document about a topic."""
        response = await client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": LONG_PROMPT}]
        )
        return response.choices[0].message.content or ""

    agent = agents.Agent(
        name="reader",
        instructions="Use the tool.",
        tools=[summarize],
        model=agents.OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client),
        model_settings=agents.ModelSettings(max_tokens=20),
    )
    sim.script(Reply(tool_calls=[ToolCall("summarize", {"topic": "budgets"})]), Reply(content="Sorry."))
    return agents, agent


async def test_agents_default_tool_failure_turns_a_refusal_into_a_message(sim: Simulator) -> None:
    agents, agent = _agents_setup(sim)
    with bg.Budget(max_usd=TIGHT_USD, name="agent"):
        result = await agents.Runner.run(agent, "Summarize the budgets document.")
    # The tool's request was refused and never sent, but the model was told "an error
    # occurred" and the run went on to a second model call.
    assert result.final_output == "Sorry."
    assert [request.path for request in sim.requests] == ["/v1/responses", "/v1/responses"]


def _reraise_refusals(ctx: Any, error: Exception) -> str:
    """The recipe's failure function: a refusal stops the run, other errors go to the model."""
    import agents

    refusal = bg.find_budget_exceeded(error)
    if refusal is not None:
        raise refusal
    return agents.default_tool_error_function(ctx, error)


@pytest.mark.parametrize(
    "failure_error_function",
    [pytest.param(None, id="None"), pytest.param(_reraise_refusals, id="reraise-refusals")],
)
async def test_agents_tool_recipe_stops_the_run(sim: Simulator, failure_error_function: Any) -> None:
    agents, agent = _agents_setup(sim, failure_error_function=failure_error_function)
    with bg.Budget(max_usd=TIGHT_USD, name="agent"):
        with pytest.raises(agents.AgentsException) as info:
            await agents.Runner.run(agent, "Summarize the budgets document.")
    assert [request.path for request in sim.requests] == ["/v1/responses"]  # the tool's call never left
    refusal = bg.find_budget_exceeded(info.value)
    assert refusal is not None and refusal.budget == "agent"


@pytest.mark.parametrize("recipe", [False, True], ids=["default", "reraise-refusals"])
async def test_agents_as_tool_sub_agent_refusal(sim: Simulator, recipe: bool) -> None:
    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI

    agents.set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

    def model(name: str) -> Any:
        return agents.OpenAIResponsesModel(model=name, openai_client=client)

    # The reader is gpt-4o: its first request alone costs more than the budget has left.
    reader = agents.Agent(name="reader", instructions=LONG_PROMPT, model=model("gpt-4o"))
    options = {"failure_error_function": _reraise_refusals} if recipe else {}
    tool = reader.as_tool(tool_name="read", tool_description="Read the document.", **options)
    boss = agents.Agent(
        name="boss",
        tools=[tool],
        model=model("gpt-4o-mini"),
        model_settings=agents.ModelSettings(max_tokens=20),
    )
    sim.script(Reply(tool_calls=[ToolCall("read", {"input": "budgets"})]), Reply(content="Sorry."))
    with bg.Budget(max_usd=TIGHT_USD, name="agent"):
        if not recipe:
            result = await agents.Runner.run(boss, "Read the budgets document.")
            assert result.final_output == "Sorry."  # the sub-agent's refusal became a tool message
        else:
            with pytest.raises(agents.AgentsException) as info:
                await agents.Runner.run(boss, "Read the budgets document.")
            refusal = bg.find_budget_exceeded(info.value)
            assert refusal is not None and refusal.budget == "agent"
    assert [request.body["model"] for request in sim.requests] == ["gpt-4o-mini"] * (1 if recipe else 2)


async def test_agents_reraise_recipe_still_reports_other_tool_errors_to_the_model(sim: Simulator) -> None:
    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI

    agents.set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

    @agents.function_tool(failure_error_function=_reraise_refusals)
    def lookup(key: str) -> str:
        """Look a key up."""
        raise KeyError(key)

    agent = agents.Agent(
        name="looker",
        tools=[lookup],
        model=agents.OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client),
        model_settings=agents.ModelSettings(max_tokens=20),
    )
    sim.script(Reply(tool_calls=[ToolCall("lookup", {"key": "x"})]), Reply(content="Not found."))
    with bg.Budget(max_usd="0.01", name="agent"):
        result = await agents.Runner.run(agent, "Look x up.")
    assert result.final_output == "Not found."
    assert len(sim.requests) == 2


# --------------------------------------------------------------------------------------------
# instructor: max_retries, InstructorRetryException
# --------------------------------------------------------------------------------------------


def _instructor_client(sim: Simulator) -> Any:
    instructor = pytest.importorskip("instructor")
    from openai import OpenAI

    return instructor.from_openai(OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0))


def _person_model() -> Any:
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    return Person


INVALID_PERSON = Reply(tool_calls=[ToolCall("Person", {"name": "Ann", "age": "old"})])  # fails validation
VALID_PERSON = Reply(tool_calls=[ToolCall("Person", {"name": "Ann", "age": 41})])


def test_instructor_wraps_a_refused_retry_in_its_retry_exception(sim: Simulator) -> None:
    pytest.importorskip("instructor")
    from instructor.core import InstructorRetryException

    client, person = _instructor_client(sim), _person_model()
    sim.script(INVALID_PERSON)
    # 1,500 words fit $0.0004 once (with max_tokens=50); the re-ask repeats them, and the
    # prompt alone then costs more than what is left.
    with bg.Budget(max_usd="0.0004", name="extract"):
        with pytest.raises(InstructorRetryException) as info:
            client.chat.completions.create(
                model="gpt-4o-mini",
                max_tokens=50,
                max_retries=2,
                response_model=person,
                messages=[{"role": "user", "content": "word " * 1500}],
            )
    assert not isinstance(info.value, bg.BudgetExceeded)  # `except bg.BudgetExceeded` would miss it
    assert len(sim.requests) == 1
    refusal = bg.find_budget_exceeded(info.value)
    assert refusal is not None and refusal.budget == "extract"


def _extract(client: Any, person: Any, **options: Any) -> Any:
    """The recipe: a refusal wrapped by instructor is raised as itself."""
    from instructor.core import InstructorRetryException

    try:
        return client.chat.completions.create(
            model="gpt-4o-mini",
            max_tokens=50,
            response_model=person,
            messages=[{"role": "user", "content": "word " * 1500}],
            **options,
        )
    except InstructorRetryException as e:
        refusal = bg.find_budget_exceeded(e)
        if refusal is not None:
            raise refusal from e
        raise


def test_instructor_recipe_raises_the_refusal(sim: Simulator) -> None:
    client, person = _instructor_client(sim), _person_model()
    sim.script(INVALID_PERSON)
    with bg.Budget(max_usd="0.0004", name="extract"):
        with pytest.raises(bg.BudgetExceeded) as info:
            _extract(client, person, max_retries=2)
    assert info.value.budget == "extract"
    assert len(sim.requests) == 1


def test_instructor_recipe_with_a_tenacity_retrying_that_excludes_refusals(sim: Simulator) -> None:
    import tenacity

    client, person = _instructor_client(sim), _person_model()
    attempts = 0

    def count(_: Any) -> None:
        nonlocal attempts
        attempts += 1

    # Retrying every exception (as a hand-written Retrying might) would retry the refusal too;
    # the predicate keeps instructor's re-asks and stops at a refusal.
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(3),
        retry=tenacity.retry_if_exception(lambda e: bg.find_budget_exceeded(e) is None),
        before=count,
    )
    sim.script(INVALID_PERSON)
    with bg.Budget(max_usd="0.0004", name="extract"):
        with pytest.raises(bg.BudgetExceeded):
            _extract(client, person, max_retries=retrying)
    assert attempts == 2
    assert len(sim.requests) == 1

    # Within budget, the same Retrying re-asks after the invalid answer and succeeds.
    sim.script(INVALID_PERSON, VALID_PERSON)
    with bg.Budget(max_usd="0.01", name="roomy"):
        assert _extract(client, person, max_retries=retrying).age == 41
    assert len(sim.requests) == 3


# --------------------------------------------------------------------------------------------
# pydantic-ai: output retries, tools, FallbackModel
# --------------------------------------------------------------------------------------------


def _pai_model(sim: Simulator, model: str = "gpt-4o-mini") -> Any:
    pytest.importorskip("pydantic_ai")
    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
    return OpenAIChatModel(model, provider=OpenAIProvider(openai_client=client))


async def test_pydantic_ai_output_retry_refusal_reaches_the_caller_unchanged(sim: Simulator) -> None:
    from pydantic_ai import Agent

    agent = Agent(_pai_model(sim), output_type=_person_model(), model_settings={"max_tokens": 50}, retries=2)
    sim.script(Reply(tool_calls=[ToolCall("final_result", {"name": "Ann", "age": "old"})]))
    with bg.Budget(max_usd="0.0004", name="pai"):
        with pytest.raises(bg.BudgetExceeded) as info:
            await agent.run("word " * 1500)  # invalid output; the retry does not fit
    assert len(sim.requests) == 1
    assert bg.find_budget_exceeded(info.value) is info.value


async def test_pydantic_ai_tool_refusal_reaches_the_caller_unchanged(sim: Simulator, aclient: Any) -> None:
    from pydantic_ai import Agent

    agent = Agent(_pai_model(sim), model_settings={"max_tokens": 20})

    @agent.tool_plain
    async def summarize(topic: str) -> str:
        """Summarize the long document about a topic."""
        response = await aclient.chat.completions.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": LONG_PROMPT}]
        )
        return response.choices[0].message.content or ""

    sim.script(Reply(tool_calls=[ToolCall("summarize", {"topic": "budgets"})]), Reply(content="Sorry."))
    with bg.Budget(max_usd=TIGHT_USD, name="pai"):
        with pytest.raises(bg.BudgetExceeded):
            await agent.run("Summarize the budgets document.")
    assert len(sim.requests) == 1


async def test_pydantic_ai_fallback_model_default_does_not_fall_back_past_a_refusal(sim: Simulator) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.fallback import FallbackModel

    agent = Agent(
        FallbackModel(_pai_model(sim, "gpt-4o"), _pai_model(sim, "gpt-4o-mini")),
        model_settings={"max_tokens": 16},
    )
    with bg.Budget(max_usd="0.001", name="pai"):
        await agent.run("Say hi")  # gpt-4o, fits
        with pytest.raises(bg.BudgetExceeded):
            await agent.run(LONG_PROMPT)  # not a ModelAPIError: no fallback
    assert [request.body["model"] for request in sim.requests] == ["gpt-4o"]


async def test_pydantic_ai_fallback_on_every_exception_falls_back_unless_refusals_are_excluded(
    sim: Simulator,
) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.exceptions import FallbackExceptionGroup
    from pydantic_ai.models.fallback import FallbackModel

    def agent_with(fallback_on: Any) -> Any:
        model = FallbackModel(
            _pai_model(sim, "gpt-4o"), _pai_model(sim, "gpt-4o-mini"), fallback_on=fallback_on
        )
        return Agent(model, model_settings={"max_tokens": 16})

    # fallback_on=(Exception,): gpt-4o refused, gpt-4o-mini fits, the run goes on.
    with bg.Budget(max_usd="0.001", name="pai"):
        await agent_with((Exception,)).run("Say hi")
        await agent_with((Exception,)).run(LONG_PROMPT)
    assert [request.body["model"] for request in sim.requests] == ["gpt-4o", "gpt-4o-mini"]

    # The recipe: a predicate that does not handle refusals.
    with bg.Budget(max_usd="0.001", name="pai"):
        agent = agent_with(lambda e: bg.find_budget_exceeded(e) is None)
        await agent.run("Say hi")
        with pytest.raises(bg.BudgetExceeded):
            await agent.run(LONG_PROMPT)
    assert len(sim.requests) == 3

    # When every model is refused, the refusals come back in a FallbackExceptionGroup.
    with bg.Budget(max_usd="0.0003", name="pai"):
        agent = agent_with((Exception,))
        await agent.run("Say hi")  # gpt-4o, fits
        with pytest.raises(FallbackExceptionGroup) as info:
            await agent.run(LONG_PROMPT)  # more than what is left on either model
    assert [request.body["model"] for request in sim.requests[3:]] == ["gpt-4o"]
    refusal = bg.find_budget_exceeded(info.value)
    assert refusal is not None and refusal.budget == "pai"


async def test_recipes_hold_in_concurrent_tasks(sim: Simulator) -> None:
    """Refusals raised in gathered tasks surface in an ExceptionGroup from a TaskGroup."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)

    async def ask(prompt: str) -> None:
        await client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": prompt}]
        )

    with bg.Budget(max_usd=TIGHT_USD, name="tasks"):
        await ask("Say hi")
        with pytest.raises(ExceptionGroup) as info:
            async with asyncio.TaskGroup() as group:
                group.create_task(ask(LONG_PROMPT))
    assert len(sim.requests) == 1
    refusal = bg.find_budget_exceeded(info.value)
    assert refusal is not None and refusal.budget == "tasks"
