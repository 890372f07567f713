"""Usage: one value for every usage shape the API reports, adding exactly."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

import budgetguard as bg
from budgetguard._usage import TokenCounts, UsageFormatError
from budgetguard.testing import Reply, Simulator


def test_chat_usage_with_all_details_is_normalised() -> None:
    usage = bg.Usage.from_openai(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 10, "image_tokens": 85},
            "completion_tokens_details": {"reasoning_tokens": 200, "audio_tokens": 5},
        }
    )
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1200, 300, 1500)
    assert (usage.cached_tokens, usage.input_audio_tokens, usage.input_image_tokens) == (1024, 10, 85)
    assert (usage.reasoning_tokens, usage.output_audio_tokens) == (200, 5)
    assert usage.requests == 1


def test_responses_and_embeddings_usage_shapes() -> None:
    responses = bg.Usage.from_openai(
        {
            "input_tokens": 50,
            "output_tokens": 20,
            "total_tokens": 70,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 12},
        }
    )
    assert (responses.prompt_tokens, responses.completion_tokens, responses.reasoning_tokens) == (50, 20, 12)
    embeddings = bg.Usage.from_openai({"prompt_tokens": 8, "total_tokens": 8})
    assert (embeddings.prompt_tokens, embeddings.completion_tokens) == (8, 0)
    only_total = bg.Usage.from_openai({"total_tokens": 9})
    assert only_total.prompt_tokens == 9


def test_compatible_servers_may_omit_details_or_send_nulls() -> None:
    usage = bg.Usage.from_openai(
        {
            "prompt_tokens": 5,
            "completion_tokens": 2,
            "prompt_tokens_details": None,
            "completion_tokens_details": None,
        }
    )
    assert usage.cached_tokens == usage.reasoning_tokens == 0


_CHAT = {
    "prompt_tokens": 160,
    "completion_tokens": 7,
    "total_tokens": 167,
    "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0, "accepted_prediction_tokens": 0},
}


@pytest.mark.parametrize(
    "raw",
    [
        _CHAT,
        {**_CHAT, "prompt_tokens_details": {"cached_tokens": 0, "image_tokens": 5}},
        {**_CHAT, "prompt_tokens_details": {"cached_tokens": None, "audio_tokens": 4}},
        {**_CHAT, "prompt_cache_hit_tokens": 32, "prompt_tokens_details": {}},
        {**_CHAT, "completion_tokens_details": {"reasoning_tokens": 3.0}},
        {**_CHAT, "prompt_tokens_details": {"cached_tokens": 200}},
        {**_CHAT, "completion_tokens": -7},
        {**_CHAT, "prompt_tokens": True},
    ],
)
def test_a_chat_usage_reads_the_same_as_any_mapping_of_it(raw: dict[str, Any]) -> None:
    # The plain dict of a chat completion is read on a fast path; any other mapping goes the
    # general way. Both give the same counts, or the same error.
    def read(value: Any) -> object:
        try:
            return TokenCounts.from_openai(value)
        except UsageFormatError as exc:
            return str(exc)

    assert read(raw) == read(MappingProxyType(raw))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"prompt_tokens": "12"}, "'prompt_tokens' must be a number"),
        ({"prompt_tokens": -1}, "must not be negative"),
        ({"prompt_tokens": 1.5}, "whole number"),
        ({"prompt_tokens": True}, "must be a number"),
        ({"prompt_tokens": 3, "prompt_tokens_details": [1]}, "prompt_tokens_details must be an object"),
        ({"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 5}}, "more than its 3 prompt"),
        ({}, "none of prompt_tokens"),
        ([], "must be an object"),
    ],
)
def test_malformed_usage_is_rejected_with_the_field_named(raw: Any, message: str) -> None:
    with pytest.raises(UsageFormatError, match=message):
        bg.Usage.from_openai(raw)


def test_adding_usages_is_exact_and_sum_works() -> None:
    tiny = bg.Usage(prompt_tokens=1, requests=1, cost_usd=Decimal("0.0000001"))
    total = sum([tiny] * 10_000, bg.Usage())
    assert total.cost_usd == Decimal("0.001")
    assert sum([tiny, tiny]) == tiny + tiny
    assert (tiny + tiny) - tiny == tiny
    assert bg.Usage.from_dict(total.to_dict()) == total


def test_the_summary_adds_cached_and_reasoning_lines_only_when_nonzero() -> None:
    usage = bg.Usage(
        prompt_tokens=2000,
        completion_tokens=500,
        cached_tokens=1024,
        reasoning_tokens=300,
        requests=2,
        cost_usd=Decimal("0.0125"),
    )
    assert str(usage) == (
        "Tokens Used: 2500\n"
        "\tPrompt Tokens: 2000\n"
        "\t\tPrompt Tokens Cached: 1024\n"
        "\tCompletion Tokens: 500\n"
        "\t\tReasoning Tokens: 300\n"
        "Successful Requests: 2\n"
        "Total Cost (USD): $0.0125"
    )


def test_an_unreadable_usage_from_the_server_is_charged_from_the_estimate(
    client: Any, sim: Simulator
) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": -5}))
    with bg.track_usage() as tracked, pytest.warns(bg.EstimatedUsageWarning, match="unreadable"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert tracked.usage.requests == 1
    assert tracked.usage.estimated_requests == 1
    assert tracked.usage.prompt_tokens > 0


def test_arithmetic_covers_every_field() -> None:
    from dataclasses import fields

    counted = [f.name for f in fields(bg.Usage) if f.name != "unpriced_models"]
    values: dict[str, Any] = {
        name: (Decimal(i + 1) if name == "cost_usd" else i + 1) for i, name in enumerate(counted)
    }
    usage = bg.Usage(**values, unpriced_models=frozenset({"llama3.1:8b"}))
    doubled = usage + usage
    assert all(getattr(doubled, name) == 2 * value for name, value in values.items())
    assert doubled.unpriced_models == {"llama3.1:8b"}
    assert doubled - usage == usage
    assert usage.with_cost(Decimal(7)) == bg.Usage(
        **{**values, "cost_usd": Decimal(7)}, unpriced_models=frozenset({"llama3.1:8b"})
    )
    assert bg.Usage.from_dict(usage.to_dict()) == usage


def test_unpriced_models_are_the_union_of_the_usages_added() -> None:
    a = bg.Usage(prompt_tokens=5, requests=1, unpriced_requests=1, unpriced_models=frozenset({"a"}))
    b = bg.Usage(prompt_tokens=7, requests=1, unpriced_requests=1, unpriced_models=frozenset({"b"}))
    total = a + b + bg.Usage(prompt_tokens=1, requests=1, cost_usd=Decimal("0.1"))
    assert (total.requests, total.unpriced_requests, total.unpriced_models) == (3, 2, {"a", "b"})
    assert str(total).splitlines()[-1] == "Unpriced Requests: 2 (no price for a, b; not in the cost above)"


def test_anthropic_usage_counts_cache_reads_and_writes_as_part_of_the_prompt() -> None:
    counts = TokenCounts.from_anthropic(
        {
            "input_tokens": 100,
            "output_tokens": 40,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 2000,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "server_tool_use": {"web_search_requests": 2},
        }
    )
    assert counts == TokenCounts(
        prompt_tokens=2400,
        completion_tokens=40,
        cached_tokens=2000,
        cache_write_tokens=300,
        cache_write_1h_tokens=200,
        web_search_requests=2,
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({}, "neither input_tokens nor output_tokens"),
        ({"input_tokens": -1, "output_tokens": 1}, "input_tokens"),
        (
            {"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 5,
             "cache_creation": {"ephemeral_1h_input_tokens": 9}},
            "one-hour",
        ),
    ],
)  # fmt: skip
def test_malformed_anthropic_usage_is_named(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(UsageFormatError, match=problem):
        TokenCounts.from_anthropic(raw)
