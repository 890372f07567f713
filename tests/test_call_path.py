"""The per-call path's shortcuts give exactly what the general code gives.

Every API call parses its usage into token counts and prices those before building one Usage,
reserves a worst case computed in integer picodollars, and adds to running totals in place;
these specs pin each shortcut to the value the plain computation would produce.
"""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal, localcontext
from typing import Any

import pytest

import budgetguard as bg
from budgetguard._ledger import usd_to_picos
from budgetguard._pricing import ModelRates, PriceBook
from budgetguard._usage import TokenCounts, Usage, UsageTotal
from budgetguard.testing import Reply, Simulator

D = Decimal
MESSAGES = [{"role": "user", "content": "hi"}]
FULL_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 10, "image_tokens": 85},
    "completion_tokens_details": {"reasoning_tokens": 200, "audio_tokens": 5},
}


def test_token_counts_are_the_token_fields_of_usage_in_order() -> None:
    names = tuple(f.name for f in fields(Usage))
    assert TokenCounts._fields == names[: len(TokenCounts._fields)]
    assert "web_search_requests" in TokenCounts._fields
    assert names[len(TokenCounts._fields) :] == (
        "requests",
        "cost_usd",
        "estimated_requests",
        "unpriced_requests",
        "unpriced_models",
    )


def test_a_request_priced_from_its_counts_equals_its_usage_priced() -> None:
    book = PriceBook()
    counts = TokenCounts.from_openai(FULL_USAGE)
    usage = Usage.from_openai(FULL_USAGE)
    cost = book.cost(usage, "gpt-4o")
    assert book.cost(counts, "gpt-4o") == cost
    assert Usage.of_request(counts, cost) == usage.with_cost(cost)
    assert Usage.of_request(counts, cost).requests == 1


def test_a_running_total_equals_the_sum_of_the_usages_of_its_requests() -> None:
    book = PriceBook()
    total = UsageTotal()
    assert total.value() == Usage()
    usages = []
    for i in range(1, 60):
        counts = TokenCounts(i, 2 * i, i // 2, i // 5, i // 3, 1, 2, 3, 4, i // 7, i % 3)
        estimated = bool(i % 2)
        if i % 5 == 0:  # a model without a price: counted, not priced
            model = f"m{i % 3}"
            total.add_request(counts, 0, 0, estimated, model)
            usages.append(Usage.of_unpriced_request(counts, model, estimated))
        else:  # models priced in different exponents add exactly
            model = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")[i % 3]
            units, exponent = book.price(counts, model)
            total.add_request(counts, units, exponent, estimated, None)
            usages.append(Usage.of_request(counts, book.cost(counts, model), estimated))
    assert total.value() == sum(usages, Usage())


@pytest.mark.parametrize(
    ("model", "prompt", "output", "images"),
    [
        ("gpt-4o-mini", 13, 32, False),
        ("gpt-4o", 1_000, 16_384, True),
        ("gpt-5.4", 300_000, 1_000, False),  # above the long-context threshold
        ("text-embedding-3-small", 8_000, 0, False),
    ],
)
def test_the_reserved_worst_case_is_the_priced_maximum_rounded_up_to_a_picodollar(
    model: str, prompt: int, output: int, images: bool
) -> None:
    book = PriceBook()
    _, high = book.cost_bounds(model, prompt, output, images=images)
    assert book.max_cost_picos(model, prompt, output, images=images) == usd_to_picos(high)


def test_a_worst_case_below_a_picodollar_per_token_still_reserves_whole_picodollars() -> None:
    book = PriceBook(overrides={"tiny": ModelRates(input=D("0.0000003"), output=D("0.0000007"))})
    # 1 token in, 1 out: $0.000000000001 (1.0 picodollars); 2 in, 1 out: 1.3 -> 2.
    assert book.max_cost_picos("tiny", 1, 1) == 1
    assert book.max_cost_picos("tiny", 2, 1) == 2
    _, high = book.cost_bounds("tiny", 2, 1)
    assert high == D("1.3E-12")


def test_picodollars_round_up_exactly_whatever_the_decimal_context() -> None:
    with localcontext() as context:
        context.prec = 3
        assert usd_to_picos(D("0.123456789012345")) == 123_456_789_013
        assert usd_to_picos(D("1E-13")) == 1
        assert usd_to_picos(D("2.5")) == 2_500_000_000_000
        assert usd_to_picos(D(0)) == 0


def test_a_scope_total_read_between_calls_includes_every_later_call(client: Any, sim: Simulator) -> None:
    sim.script(Reply(content="a", model="gpt-4o-mini"), Reply(content="b", model="gpt-4o"))
    with bg.track_usage() as tracked:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        first = tracked.usage
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert (first.requests, tracked.usage.requests) == (1, 2)
    assert tracked.usage == sum(tracked.by_model.values(), Usage())
    assert tracked.usage.cost_usd == first.cost_usd + tracked.by_model["gpt-4o"].cost_usd


def test_a_call_to_a_data_residency_host_is_priced_with_its_uplift() -> None:
    from types import SimpleNamespace

    import httpx

    from budgetguard._context import Entry
    from budgetguard._providers.openai import OpenAIWire

    body = {"model": "gpt-5.4", "messages": MESSAGES, "max_completion_tokens": 10}
    options = SimpleNamespace(method="post", url="/chat/completions", json_data=body, extra_json=None)
    entries = (Entry(bg.track_usage()),)
    usage = Usage(prompt_tokens=1000, completion_tokens=100)
    calls = {
        url: OpenAIWire().begin(SimpleNamespace(base_url=httpx.URL(url)), options, entries)
        for url in ("https://eu.api.openai.com/v1/", "https://api.openai.com/v1/")
    }
    regional, global_ = (call.book.cost(usage, "gpt-5.4") for call in calls.values() if call is not None)
    assert regional == global_ * D("1.1")


def test_built_in_tool_calls_in_a_responses_reply_are_counted_and_priced_per_call() -> None:
    from budgetguard._calls import Call
    from budgetguard._context import Entry
    from budgetguard._providers.openai import OpenAIWire

    tracker = bg.track_usage()
    call = Call("responses", {"model": "gpt-4.1", "input": "find it"}, (Entry(tracker),))
    reply = {
        "object": "response",
        "model": "gpt-4.1",
        "output": [
            {"type": "web_search_call", "id": "ws_1"},
            {"type": "web_search_call", "id": "ws_2"},
            {"type": "file_search_call", "id": "fs_1"},
            {"type": "message", "content": [{"type": "output_text", "text": "found"}]},
        ],
        "usage": {"input_tokens": 100, "output_tokens": 20},
    }
    OpenAIWire().observe(call, reply)
    usage = tracker.usage
    assert (usage.web_search_requests, usage.file_search_requests) == (2, 1)
    book = PriceBook()
    tokens_only = book.cost(Usage(prompt_tokens=100, completion_tokens=20), "gpt-4.1")
    assert usage.cost_usd > tokens_only  # the searches' fees are on top of the tokens
    assert usage.cost_usd == book.cost(usage, "gpt-4.1")
