"""`budgetguard.langchain.get_openai_callback`: LangChain's callback, counted at the SDK.

The same ChatOpenAI calls run under LangChain's own ``get_openai_callback`` and the drop-in;
they must agree on every attribute and print the same summary. Then what LangChain's callback
misses: streams, nesting, models newer than its price table.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest

import budgetguard as bg
from budgetguard.langchain import OpenAICallbackHandler, get_openai_callback
from budgetguard.testing import Reply, Simulator

langchain_openai = pytest.importorskip("langchain_openai")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # langchain-community announces its sunset
    lc_callbacks = pytest.importorskip("langchain_community.callbacks")
    lc_openai_info = pytest.importorskip("langchain_community.callbacks.openai_info")

ATTRIBUTES = (
    "total_tokens",
    "prompt_tokens",
    "prompt_tokens_cached",
    "completion_tokens",
    "reasoning_tokens",
    "successful_requests",
)


def _chat_model(sim: Simulator, model: str = "gpt-4o-mini", **options: Any) -> Any:
    return langchain_openai.ChatOpenAI(
        model=model, base_url=sim.base_url, api_key="sim", max_retries=0, **options
    )


def _langchain_repr_of(values: Any) -> str:
    """LangChain's own handler, loaded with the given values, printed by LangChain's code."""
    reference = lc_openai_info.OpenAICallbackHandler()
    for name in (*ATTRIBUTES, "total_cost"):
        setattr(reference, name, getattr(values, name))
    return repr(reference)


def _split_cost(summary: str) -> tuple[list[str], float]:
    *lines, cost_line = summary.splitlines()
    prefix = "Total Cost (USD): $"
    assert cost_line.startswith(prefix), summary
    return lines, float(cost_line.removeprefix(prefix))


def _script_replies(sim: Simulator) -> None:
    sim.script(
        Reply(content="A first answer of a few words."),
        # Cached prompt tokens and reasoning tokens, reported the way OpenAI reports them.
        Reply(
            content="A second answer, somewhat longer than the first one was.",
            usage={
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 5},
            },
        ),
        Reply(content="Third."),
        Reply(content="Fourth and last."),
    )


def _run_the_same_calls(llm: Any) -> None:
    llm.invoke("Tell me a joke about budgets")
    llm.invoke([("system", "You are terse."), ("user", "And another one, please")])
    llm.batch(["one", "two"])


def test_drop_in_agrees_with_langchains_callback_on_the_same_calls(sim: Simulator) -> None:
    llm = _chat_model(sim)
    _script_replies(sim)
    with lc_callbacks.get_openai_callback() as theirs, get_openai_callback() as ours:
        _run_the_same_calls(llm)

    assert len(sim.requests) == 4
    assert theirs.successful_requests == 4
    assert theirs.prompt_tokens_cached == 4 and theirs.reasoning_tokens == 5  # the scripted details arrived
    for name in ATTRIBUTES:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert isinstance(ours.total_cost, float)
    assert theirs.total_cost > 0
    assert ours.total_cost == pytest.approx(theirs.total_cost, rel=1e-9)

    # The printed summary: LangChain's seven lines, same numbers (its cost is a float sum, ours
    # the exact Decimal as a float, so the last digits of the cost may differ).
    our_lines, our_cost = _split_cost(repr(ours))
    their_lines, their_cost = _split_cost(repr(theirs))
    assert our_lines == their_lines
    assert our_cost == pytest.approx(their_cost, rel=1e-9)
    assert repr(ours) == _langchain_repr_of(ours)
    assert str(ours) == repr(ours)  # print(cb) prints the summary, as LangChain's does


async def test_async_calls_in_with_and_async_with_blocks(sim: Simulator) -> None:
    llm = _chat_model(sim)
    with lc_callbacks.get_openai_callback() as theirs, get_openai_callback() as ours:
        await llm.ainvoke("Say hi")
    async with get_openai_callback() as ours_async:
        await llm.ainvoke("Say hi")
    assert theirs.successful_requests == ours.successful_requests == ours_async.successful_requests == 1
    for name in ATTRIBUTES:
        assert getattr(ours, name) == getattr(theirs, name) == getattr(ours_async, name), name
    assert ours.total_cost == pytest.approx(theirs.total_cost, rel=1e-9)


def test_streams_are_counted_where_langchains_callback_sees_nothing(sim: Simulator, client: Any) -> None:
    text = "Streaming costs the same as not streaming."
    plain, streaming = _chat_model(sim), _chat_model(sim, streaming=True)

    sim.script(Reply(content=text))
    with lc_callbacks.get_openai_callback() as reference:
        plain.invoke("Say it")  # the same call unstreamed: what the streams must each count

    sim.script(Reply(content=text), Reply(content=text), Reply(content=text))
    with lc_callbacks.get_openai_callback() as theirs, get_openai_callback() as ours:
        chunks = list(plain.stream("Say it"))
        streaming.invoke("Say it")
        # Not LangChain at all: the openai SDK used directly, in the same block.
        raw = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say it"}], stream=True
        )
        raw_text = "".join(chunk.choices[0].delta.content or "" for chunk in raw if chunk.choices)

    assert "".join(str(chunk.content) for chunk in chunks) == text == raw_text
    assert len(sim.requests) == 4
    assert theirs.successful_requests == 0 and theirs.total_tokens == 0  # LangChain misses streams
    assert reference.successful_requests == 1 and reference.total_cost > 0
    assert ours.successful_requests == 3
    for name in ATTRIBUTES[:-1]:
        assert getattr(ours, name) == 3 * getattr(reference, name), name
    assert ours.total_cost == pytest.approx(3 * reference.total_cost, rel=1e-9)


def test_blocks_nest_and_the_outer_one_counts_everything(sim: Simulator) -> None:
    llm = _chat_model(sim)
    with bg.track_usage() as everything, get_openai_callback() as outer:
        llm.invoke("before")
        with get_openai_callback() as inner, bg.track_usage() as inside:
            llm.invoke("inside")
            with get_openai_callback() as innermost:
                llm.invoke("deeper")
        llm.invoke("after")
    assert (outer.successful_requests, inner.successful_requests, innermost.successful_requests) == (4, 2, 1)
    assert outer.usage == everything.usage
    assert inner.usage == inside.usage
    assert outer.total_tokens > inner.total_tokens > innermost.total_tokens > 0
    assert outer.total_cost > inner.total_cost > innermost.total_cost > 0


def test_models_newer_than_langchains_price_table_are_priced(sim: Simulator) -> None:
    model = "gpt-5.1"
    assert model not in lc_openai_info.MODEL_COST_PER_1K_TOKENS
    llm = _chat_model(sim, model=model)
    with lc_callbacks.get_openai_callback() as theirs, get_openai_callback() as ours:
        llm.invoke("Say hi")
    assert theirs.successful_requests == ours.successful_requests == 1
    assert theirs.total_tokens == ours.total_tokens > 0
    assert theirs.total_cost == 0.0  # LangChain: unknown model, counted at $0
    assert ours.total_cost > 0
    assert ours.usage.unpriced_requests == 0


def test_the_handler_reads_live_and_keeps_its_values_after_the_block(sim: Simulator, client: Any) -> None:
    with get_openai_callback() as cb:
        assert isinstance(cb, OpenAICallbackHandler)
        assert repr(cb) == _langchain_repr_of(cb)  # all zeros, cost printed as 0.0
        assert repr(cb).endswith("Total Cost (USD): $0.0")
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert cb.successful_requests == 1
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert cb.successful_requests == 1
    assert cb.total_cost == float(cb.usage.cost_usd) > 0


def test_the_module_works_without_langchain_installed(sim: Simulator) -> None:
    script = textwrap.dedent(
        f"""
        import sys, importlib.abc

        class NoLangChain(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0].startswith("langchain"):
                    raise ImportError(f"{{name}} is not installed here")
                return None

        sys.meta_path.insert(0, NoLangChain())
        from openai import OpenAI
        from budgetguard.langchain import get_openai_callback

        client = OpenAI(base_url={sim.base_url!r}, api_key="sim", max_retries=0)
        messages = [{{"role": "user", "content": "hi"}}]
        with get_openai_callback() as cb:
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert not [name for name in sys.modules if name.startswith("langchain")]
        print(cb)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Tokens Used: ")
    assert lines[-2] == "Successful Requests: 1"
    assert len(sim.requests) == 1
