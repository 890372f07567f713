"""track_usage: every OpenAI SDK call made inside is counted exactly once, priced, reported."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

import budgetguard as bg
from budgetguard.testing import Reply, Simulator

MESSAGES = [{"role": "user", "content": "Say hi"}]


class Answer(BaseModel):
    text: str


def test_the_langchain_summary_lines_for_one_instruct_call(client: Any, sim: Simulator) -> None:
    sim.script(Reply(content="Why did the chicken...", usage={"prompt_tokens": 4, "completion_tokens": 33}))
    with bg.track_usage() as tracked:
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Tell me a joke", n=2, best_of=2)
    assert str(tracked.usage) == (
        "Tokens Used: 37\n"
        "\tPrompt Tokens: 4\n"
        "\tCompletion Tokens: 33\n"
        "Successful Requests: 1\n"
        "Total Cost (USD): $7.2e-05"
    )
    assert tracked.usage.cost_usd == Decimal("0.000072")


# Every surface of the SDK, each expected to produce exactly one billed request.
SYNC_SURFACES: dict[str, Callable[[Any], Any]] = {
    "chat.create": lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES),
    "chat.raw_parsed": lambda c: c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    ).parse(),
    "chat.raw_unparsed": lambda c: c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    ),
    "chat.streaming_response": lambda c: _read_streaming_response(c),
    "chat.stream_true": lambda c: list(
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    ),
    "chat.parse": lambda c: c.chat.completions.parse(
        model="gpt-4o-mini", messages=MESSAGES, response_format=Answer
    ),
    "chat.stream_helper": lambda c: _drain_chat_stream_helper(c),
    "responses.create": lambda c: c.responses.create(model="gpt-4o-mini", input="Say hi"),
    "responses.stream_true": lambda c: list(
        c.responses.create(model="gpt-4o-mini", input="Say hi", stream=True)
    ),
    "responses.stream_helper": lambda c: _drain_responses_stream_helper(c),
    "responses.parse": lambda c: c.responses.parse(model="gpt-4o-mini", input="Say hi", text_format=Answer),
    "completions.create": lambda c: c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi"),
    "completions.stream": lambda c: list(
        c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True)
    ),
    "embeddings.create": lambda c: c.embeddings.create(model="text-embedding-3-small", input=["a", "b"]),
}


def _read_streaming_response(c: Any) -> Any:
    with c.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    ) as response:
        return response.parse()


def _drain_chat_stream_helper(c: Any) -> Any:
    with c.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion()


def _drain_responses_stream_helper(c: Any) -> Any:
    with c.responses.stream(model="gpt-4o-mini", input="Say hi") as stream:
        for _ in stream:
            pass
        return stream.get_final_response()


@pytest.mark.parametrize("surface", sorted(SYNC_SURFACES))
def test_every_sync_surface_is_counted_exactly_once(client: Any, sim: Simulator, surface: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", bg.EstimatedUsageWarning)
        with bg.track_usage() as tracked:
            SYNC_SURFACES[surface](client)
    assert len(sim.requests) == 1
    assert tracked.usage.requests == 1
    assert tracked.usage.estimated_requests == 0
    assert tracked.usage.prompt_tokens > 0
    assert tracked.usage.cost_usd > 0


async def _async_surface(c: Any, surface: str) -> None:
    if surface == "chat.create":
        await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    elif surface == "chat.raw_unparsed":
        await c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    elif surface == "chat.stream_true":
        stream = await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        async for _ in stream:
            pass
    elif surface == "chat.parse":
        await c.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES, response_format=Answer)
    elif surface == "chat.stream_helper":
        async with c.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
            async for _ in stream:
                pass
    elif surface == "responses.create":
        await c.responses.create(model="gpt-4o-mini", input="Say hi")
    elif surface == "responses.stream_helper":
        async with c.responses.stream(model="gpt-4o-mini", input="Say hi") as stream:
            async for _ in stream:
                pass
    elif surface == "completions.create":
        await c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    elif surface == "embeddings.create":
        await c.embeddings.create(model="text-embedding-3-small", input="a")
    else:  # pragma: no cover
        raise AssertionError(surface)


ASYNC_SURFACES = [
    "chat.create",
    "chat.raw_unparsed",
    "chat.stream_true",
    "chat.parse",
    "chat.stream_helper",
    "responses.create",
    "responses.stream_helper",
    "completions.create",
    "embeddings.create",
]


@pytest.mark.parametrize("surface", ASYNC_SURFACES)
async def test_every_async_surface_is_counted_exactly_once(
    aclient: Any, sim: Simulator, surface: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", bg.EstimatedUsageWarning)
        async with bg.track_usage() as tracked:
            await _async_surface(aclient, surface)
    assert len(sim.requests) == 1
    assert tracked.usage.requests == 1
    assert tracked.usage.cost_usd > 0


def test_a_stream_without_include_usage_gets_it_and_never_shows_the_usage_chunk(
    client: Any, sim: Simulator
) -> None:
    with bg.track_usage() as tracked:
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert sim.requests[0].body["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks)  # code doing chunk.choices[0] keeps working
    assert tracked.usage.completion_tokens > 0


def test_a_stream_that_asked_for_usage_still_sees_its_usage_chunk(client: Any) -> None:
    with bg.track_usage() as tracked:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
    assert chunks[-1].usage is not None and not chunks[-1].choices
    assert tracked.usage.total_tokens == chunks[-1].usage.total_tokens


def test_a_stream_the_caller_breaks_out_of_is_charged_from_the_estimate(client: Any, sim: Simulator) -> None:
    sim.script(Reply(content="one two three four five six seven eight nine ten"))
    with bg.track_usage() as tracked, pytest.warns(bg.EstimatedUsageWarning, match="stream ended"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        for index, _ in enumerate(stream):
            if index == 2:
                break
        stream.close()
    assert tracked.usage.requests == 1
    assert tracked.usage.estimated_requests == 1
    assert tracked.usage.prompt_tokens > 0 and tracked.usage.completion_tokens >= 1


def test_a_stream_that_is_never_read_is_charged_once_collected(client: Any) -> None:
    # Collection can happen anywhere (inside a ledger's lock, say), so the charge is made at
    # the next safe point: here the end of the scope.
    with pytest.warns(bg.EstimatedUsageWarning), bg.track_usage() as tracked:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        stream.response.close()
        del stream
        gc.collect()
    assert tracked.usage.requests == 1
    assert tracked.usage.estimated_requests == 1


def test_a_stream_cut_by_the_server_is_charged_conservatively(client: Any, sim: Simulator) -> None:
    sim.script(Reply(content="alpha beta gamma delta epsilon zeta eta theta", cut_stream_after=3))
    with bg.track_usage() as tracked, pytest.warns(bg.EstimatedUsageWarning):
        try:
            for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                pass
        except Exception:  # the SDK reports the dropped connection; the call was still billed
            pass
    assert tracked.usage.requests == 1
    assert tracked.usage.estimated_requests == 1


def test_usage_missing_from_the_response_is_estimated_loudly(client: Any, sim: Simulator) -> None:
    sim.script(Reply(content="hello there", omit_usage=True))
    with bg.track_usage() as tracked, pytest.warns(bg.EstimatedUsageWarning, match="no usage"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert tracked.usage.requests == 1
    assert tracked.usage.completion_tokens > 0
    assert tracked.usage.cost_usd > 0


def test_nested_trackers_each_see_their_own_calls_and_outer_ones_see_all(client: Any) -> None:
    with bg.track_usage() as outer:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(RuntimeError), bg.track_usage() as inner:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            raise RuntimeError("the agent step failed after its call")
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert inner.usage.requests == 1
    assert outer.usage.requests == 3
    assert outer.usage.cost_usd == 3 * inner.usage.cost_usd


def test_calls_outside_any_scope_are_not_counted(client: Any) -> None:
    with bg.track_usage() as tracked:
        pass
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert tracked.usage.requests == 0


def test_the_decorator_works_bare_and_with_a_name_and_totals_invocations(client: Any) -> None:
    @bg.track_usage
    def bare() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    @bg.track_usage(name="summarize")
    def named() -> None:
        client.embeddings.create(model="text-embedding-3-small", input="x")

    bare()
    bare()
    named()
    assert bg.usage_of(bare).requests == 2
    assert bare.tracked.invocations == 2  # type: ignore[attr-defined]
    assert bg.usage_of(named).requests == 1
    assert set(bg.usage_of(bare).__class__.__dataclass_fields__) >= {"prompt_tokens", "cost_usd"}


async def test_async_functions_and_concurrent_tasks_are_counted(aclient: Any) -> None:
    @bg.track_usage
    async def step(i: int) -> None:
        await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": str(i)}]
        )

    with bg.track_usage() as run:
        await asyncio.gather(*(step(i) for i in range(10)))
    assert run.usage.requests == 10
    assert bg.usage_of(step).requests == 10


def test_threads_need_propagate_to_carry_the_scopes(client: Any) -> None:
    def work() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with bg.track_usage() as tracked:
        plain = threading.Thread(target=work)
        # The escape is warned about once per process (its own spec: test_process_wide.py).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bg.BudgetGuardWarning)
            plain.start()
            plain.join()
        assert tracked.usage.requests == 0
        carried = threading.Thread(target=bg.propagate(work))
        carried.start()
        carried.join()
        with bg.ScopedThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: work(), range(3)))
            for future in [pool.submit(work) for _ in range(3)]:
                future.result()
    assert tracked.usage.requests == 1 + 3 + 3


def test_per_model_breakdown_prices_the_model_that_answered(client: Any, sim: Simulator) -> None:
    sim.script(Reply(content="hi", model="gpt-4o-mini-2024-07-18"))
    with bg.track_usage() as tracked:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert set(tracked.by_model) == {"gpt-4o-mini-2024-07-18", "text-embedding-3-small"}
    assert sum(tracked.by_model.values(), bg.Usage()) == tracked.usage
    assert tracked.usage.to_dict()["cost_usd"] == str(tracked.usage.cost_usd)


def test_tracking_an_unpriced_model_sends_it_counts_its_tokens_and_marks_its_cost_unknown(
    client: Any, sim: Simulator
) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": 11, "completion_tokens": 3}))
    sim.script(Reply(content="hi", usage={"prompt_tokens": 11, "completion_tokens": 3}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with bg.track_usage() as tracked:
            client.chat.completions.create(model="llama3.1:8b-unpriced", messages=MESSAGES)
            client.chat.completions.create(model="llama3.1:8b-unpriced", messages=MESSAGES)
    assert len(sim.requests) == 2
    usage = tracked.usage
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (2, 22, 6)
    assert (usage.unpriced_requests, usage.unpriced_models) == (2, {"llama3.1:8b-unpriced"})
    assert usage.cost_usd == 0
    assert str(usage).splitlines()[-1].startswith("Unpriced Requests: 2 (no price for llama3.1:8b-unpriced")
    unpriced = [w for w in caught if issubclass(w.category, bg.UnknownModelWarning)]
    assert len(unpriced) == 1  # once per model, with the fix, pointing at the caller's line
    assert "prices=" in str(unpriced[0].message) and "aliases=" in str(unpriced[0].message)
    assert unpriced[0].filename == __file__


def test_a_token_capped_budget_runs_an_unpriced_model_and_still_caps_its_tokens(
    client: Any, sim: Simulator
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bg.UnknownModelWarning)
        with bg.Budget(max_tokens=60) as budget:
            client.chat.completions.create(model="local-unpriced", messages=MESSAGES, max_tokens=20)
            with pytest.raises(bg.BudgetExceeded, match="tokens"):
                client.chat.completions.create(model="local-unpriced", messages=MESSAGES, max_tokens=50)
    assert len(sim.requests) == 1
    assert budget.usage.unpriced_requests == 1


def test_a_dollar_capped_budget_refuses_an_unpriced_model_before_anything_is_sent(
    client: Any, sim: Simulator
) -> None:
    with bg.Budget(max_usd=1), pytest.raises(bg.UnknownModelError, match="no-such-model"):
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert sim.requests == []


def test_an_unknown_model_with_a_fallback_price_warns_and_is_never_free(client: Any) -> None:
    bg.configure(unknown_model="warn", fallback_price={"input": "1.00", "output": "2.00"})
    with bg.track_usage() as tracked, pytest.warns(bg.UnknownModelWarning):
        client.chat.completions.create(model="my-local-llama", messages=MESSAGES)
    assert tracked.usage.cost_usd > 0


def test_sdk_retries_are_seen_and_billed_once(sim: Simulator) -> None:
    from openai import OpenAI

    sim.fail_next(status=429, retry_after=0.01, times=2)
    with OpenAI(base_url=sim.base_url, api_key="sim", max_retries=3) as c, bg.track_usage() as tracked:
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(sim.requests) == 3
    assert tracked.usage.requests == 1


def test_copied_clients_and_the_module_client_are_instrumented(client: Any, sim: Simulator) -> None:
    import openai

    with bg.track_usage() as tracked:
        client.with_options(timeout=5).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.copy(max_retries=1).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        saved = (openai.api_key, openai.base_url)
        openai.api_key, openai.base_url = "sim", sim.base_url
        try:
            openai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        finally:
            openai.api_key, openai.base_url = saved
    assert tracked.usage.requests == 3


def test_uninstrument_restores_the_sdk_and_instrument_is_idempotent(client: Any) -> None:
    from openai._base_client import SyncAPIClient

    bg.instrument()
    bg.instrument()
    patched = SyncAPIClient.request
    bg.uninstrument()
    assert SyncAPIClient.request is not patched
    assert not hasattr(SyncAPIClient.request, "__wrapped__")
    with bg.track_usage() as tracked:  # entering a scope installs the hooks again
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert tracked.usage.requests == 1


def test_import_budgetguard_loads_neither_tiktoken_nor_genai_prices() -> None:
    import subprocess
    import sys

    code = (
        "import sys, budgetguard; "
        "print(sorted(m for m in ('tiktoken', 'genai_prices', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_azure_clients_are_counted_and_deployments_priced_through_aliases(sim: Simulator) -> None:
    from openai import AzureOpenAI

    root = sim.base_url.split("/v1")[0]
    azure = AzureOpenAI(azure_endpoint=root, api_key="sim", api_version="2024-10-21", max_retries=0)
    with pytest.raises(bg.UnknownModelError, match="prod-gpt4o"), bg.Budget(max_usd=1):
        azure.chat.completions.create(model="prod-gpt4o", messages=MESSAGES)
    assert sim.requests == []
    bg.configure(aliases={"prod-gpt4o": "gpt-4o"})
    with bg.track_usage() as tracked:
        azure.chat.completions.create(model="prod-gpt4o", messages=MESSAGES)
    assert sim.requests[0].path == "/openai/deployments/prod-gpt4o/chat/completions"
    assert tracked.usage.requests == 1
    gpt4o = bg.PriceBook().cost(tracked.usage, "gpt-4o")
    assert tracked.usage.cost_usd == gpt4o


def test_responses_streams_settle_on_incomplete(client: Any, sim: Simulator) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", bg.EstimatedUsageWarning)
        with bg.track_usage() as tracked:
            events = list(
                client.responses.create(model="gpt-4o-mini", input="Say hi", stream=True, max_output_tokens=3)
            )
    assert events[-1].type == "response.incomplete"
    assert tracked.usage.completion_tokens == 3
    assert tracked.usage.estimated_requests == 0
