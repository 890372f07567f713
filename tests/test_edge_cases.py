"""Edge cases where metering and enforcement must still hold (found by review, kept as specs)."""

from __future__ import annotations

import contextlib
import threading
import warnings
from decimal import Decimal
from typing import Any

import openai
import pytest

import budgetguard as bg
from budgetguard._ledger import Amount, Limits, MemoryLedger
from budgetguard.testing import Reply, Simulator

MESSAGES = [{"role": "user", "content": "Tell me about budgets"}]


def _chat(client: Any, max_tokens: int = 16, **extra: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=max_tokens, **extra
    )


def test_wait_gives_up_after_max_wait_while_another_call_holds_the_budget(
    client: Any, sim: Simulator
) -> None:
    reserved = bg.estimate_request(
        "chat.completions", {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 120}
    ).max_usd
    budget = bg.Budget(max_usd=reserved * Decimal("1.5"), on_exceed=bg.Wait(max_wait=0.3))
    sim.script(Reply(content="slow", delay=3.0))
    with budget:
        first = threading.Thread(target=bg.propagate(lambda: _chat(client, 120)))
        first.start()
        while budget.reserved_usd == 0:
            pass
        with pytest.raises(bg.BudgetExceeded, match="max_wait"):
            _chat(client, 120)
        sent_when_refused = len(sim.requests)
        first.join()
    assert sent_when_refused == 1


def test_clamp_counts_every_prompt_of_a_legacy_completion(client: Any, sim: Simulator) -> None:
    with bg.Budget(max_tokens=400, on_exceed="clamp") as budget:
        with contextlib.suppress(bg.BudgetExceeded):
            client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["Say hi"] * 30)
    for request in sim.requests:
        assert request.body.get("max_tokens", 16) <= 16  # never raised above the API default
    assert budget.usage.total_tokens <= 400


def test_a_stream_broken_out_of_is_settled_when_its_scope_ends(client: Any) -> None:
    with pytest.warns(bg.EstimatedUsageWarning, match="ended before"), bg.Budget(max_usd=1) as budget:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        for _ in stream:
            break
    assert budget.usage.requests == 1
    assert budget.reserved_usd == 0
    del stream


def test_a_streaming_response_read_as_json_is_charged_its_reported_usage(client: Any, sim: Simulator) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": 9, "completion_tokens": 2000}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bg.UnderReservedWarning)
        with bg.Budget(max_usd=1) as budget:
            with client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=2000
            ) as response:
                response.json()
    assert budget.usage.completion_tokens == 2000
    assert budget.usage.estimated_requests == 0
    assert budget.reserved_usd == 0


def test_reservations_are_priced_at_the_requested_service_tier(client: Any, sim: Simulator) -> None:
    body = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 500}
    standard = bg.estimate_request("chat.completions", body).max_usd
    priority = bg.estimate_request("chat.completions", {**body, "service_tier": "priority"}).max_usd
    assert priority > standard
    with bg.Budget(max_usd=standard) as budget, pytest.raises(bg.BudgetExceeded):
        client.chat.completions.create(**body, service_tier="priority")
    assert sim.requests == []
    assert budget.spent_usd == 0


def test_reservations_of_audio_input_or_output_are_priced_at_audio_rates() -> None:
    question = [{"type": "text", "text": "What is said in this recording?"}]
    # Audio by reference adds no tokens of its own: only the rates differ.
    recording = [*question, {"type": "input_audio", "input_audio": {"format": "wav"}}]

    def reserve(content: list[dict[str, Any]], **extra: Any) -> Any:
        body = {"model": "gpt-audio", "messages": [{"role": "user", "content": content}], "max_tokens": 100}
        return bg.estimate_request("chat.completions", {**body, **extra})

    text_only, heard = reserve(question), reserve(recording)
    assert heard.prompt_tokens_upper == text_only.prompt_tokens_upper
    assert heard.max_usd > text_only.max_usd
    assert reserve(question, modalities=["text", "audio"]).max_usd > text_only.max_usd


def test_a_raising_alert_callback_leaves_the_books_consistent(client: Any) -> None:
    def explode(budget: bg.Budget, threshold: Decimal, snapshot: Any) -> None:
        raise RuntimeError("alert!")

    with bg.Budget(max_usd=1) as outer:
        with (
            pytest.raises(RuntimeError, match="alert!"),
            bg.Budget(max_usd="0.0001", alerts=["1%"], on_alert=explode) as inner,
        ):
            _chat(client)
    assert inner.usage.requests == outer.usage.requests == 1
    assert inner.reserved_usd == outer.reserved_usd == 0


def test_warnings_turned_into_errors_do_not_lose_spend(client: Any, sim: Simulator) -> None:
    sim.script(Reply(content="hello", omit_usage=True))
    with bg.Budget(max_usd=1) as budget, warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(bg.EstimatedUsageWarning):
            _chat(client)
    assert budget.usage.requests == 1
    assert budget.reserved_usd == 0


def test_a_hold_settled_long_after_it_expired_is_still_charged() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    hold = ledger.reserve("b", Amount(100, 10, 1), Limits(), None, ttl=1)
    now[0] += 3600  # an hour-long call, far past its hold
    assert ledger.snapshot("b", None).reserved == Amount()
    ledger.settle(hold, Amount(80, 8, 1))
    ledger.settle(hold, Amount(80, 8, 1))  # a repeat is still ignored
    assert ledger.snapshot("b", None).spent == Amount(80, 8, 1)


def test_generator_functions_are_metered_while_they_run(client: Any) -> None:
    @bg.track_usage
    def chunks() -> Any:
        yield from client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)

    with bg.track_usage() as outside:
        consumed = list(chunks())
        _chat(client)  # the consumer's own call is not the generator's
    assert consumed
    assert bg.usage_of(chunks).requests == 1
    assert outside.usage.requests == 2


async def test_async_generator_functions_are_metered_while_they_run(aclient: Any) -> None:
    @bg.track_usage
    async def chunks() -> Any:
        stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        async for chunk in stream:
            yield chunk

    consumed = [chunk async for chunk in chunks()]
    assert consumed
    assert bg.usage_of(chunks).requests == 1


def test_fields_sent_through_extra_body_are_estimated(client: Any, sim: Simulator) -> None:
    big = [{"role": "user", "content": "word " * 2000}]
    with bg.Budget(max_tokens=300), pytest.raises(bg.BudgetExceeded):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=10, extra_body={"messages": big}
        )
    assert sim.requests == []


def test_unmetered_billed_endpoints_warn_inside_a_capped_budget(client: Any) -> None:
    with bg.Budget(max_usd=1), pytest.warns(bg.BudgetGuardWarning, match="images/generations"):
        with pytest.raises(openai.NotFoundError):
            client.images.generate(model="gpt-image-1", prompt="a cat")


def test_a_stored_prompt_without_a_model_is_tracked_but_cannot_be_reserved(
    client: Any, sim: Simulator
) -> None:
    body = {"prompt": {"id": "pmpt_123"}, "input": "hi"}
    with bg.Budget(max_usd=1), pytest.raises(bg.BudgetGuardError, match="model"):
        client.responses.create(**body)
    assert sim.requests == []


def test_warn_calls_back_once_at_100_percent(client: Any) -> None:
    seen: list[Decimal] = []
    with bg.Budget(
        max_usd="0.0000001", on_exceed="warn", alerts=["100%"], on_alert=lambda b, t, s: seen.append(t)
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bg.SoftCapWarning)
            _chat(client)
            _chat(client)
    assert seen == [Decimal(1)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_usd": 1, "hold_ttl": 0}, "hold_ttl"),
        ({"max_usd": 1, "hold_ttl": "600"}, "hold_ttl"),
        ({"max_usd": 1, "window": "1d"}, "window"),
        ({"max_usd": 1, "alerts": "80%"}, "alerts"),
        ({"max_usd": 1, "name": ""}, "name"),
        ({"alerts": ["50%"]}, "alerts"),
        ({"max_usd": 1, "max_wait": 5}, "max_wait"),
        ({"max_usd": -1}, "max_usd"),
        ({"max_usd": "ten"}, "max_usd"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"on_exceed": "explode"}, "on_exceed"),
    ],
)
def test_bad_budget_arguments_fail_at_construction_naming_the_argument(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(bg.ConfigError, match=message):
        bg.Budget(**kwargs)
