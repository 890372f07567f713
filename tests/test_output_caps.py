"""Requests without an output cap of their own run inside small dollar budgets.

Frameworks (LangChain, the Agents SDK, pydantic-ai) send no max_tokens by default. Reserving a
model's maximum output would make a small budget refuse the first call, so a request with no cap
whose maximum does not fit is given the cap that fits; the budget is still never overspent.
"""

from __future__ import annotations

import threading
import warnings
from decimal import Decimal
from typing import Any

import pytest

import budgetguard as bg
from budgetguard.testing import Reply, Simulator

MESSAGES = [{"role": "user", "content": "Write a long story about budgets."}]
LONG = " ".join(["budget"] * 400)  # the model would write 400 tokens if allowed


def _capped_to(request: Any) -> int | None:
    body = request.body
    cap = body.get("max_completion_tokens", body.get("max_tokens", body.get("max_output_tokens")))
    return cap if isinstance(cap, int) else None


def test_an_uncapped_request_whose_model_maximum_does_not_fit_is_capped_to_half_the_room_left(
    client: Any, sim: Simulator
) -> None:
    uncapped = bg.estimate_request("chat.completions", {"model": "gpt-4o", "messages": MESSAGES})
    assert uncapped.max_usd > Decimal("0.05")  # 16,384 output tokens of gpt-4o: refused in 0.1
    sim.script(Reply(content=LONG))
    with pytest.warns(bg.OutputCapWarning, match=r"auto_output_cap=False") as caught:
        with bg.Budget(max_usd="0.05") as budget:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    cap = _capped_to(sim.requests[0])
    assert cap is not None and 16 <= cap < 16_384
    capped = bg.estimate_request(
        "chat.completions", {"model": "gpt-4o", "messages": MESSAGES, "max_completion_tokens": cap}
    )
    one_more = bg.estimate_request(
        "chat.completions", {"model": "gpt-4o", "messages": MESSAGES, "max_completion_tokens": cap + 1}
    )
    assert capped.max_usd <= Decimal("0.025") < one_more.max_usd  # the most that fits in half
    assert len(caught) == 1
    assert budget.spent_usd <= Decimal("0.05")


def test_uncapped_steps_run_until_the_budget_is_spent_and_the_refusal_comes_before_sending(
    client: Any, sim: Simulator
) -> None:
    cap = Decimal("0.01")
    steps = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bg.OutputCapWarning)
        with bg.Budget(max_usd=cap) as budget, pytest.raises(bg.BudgetExceeded):
            for _ in range(50):
                sim.script(Reply(content=" ".join(["word"] * 120)))
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                steps += 1
    assert steps >= 3
    assert len(sim.requests) == steps  # the refused step was never sent
    assert budget.spent_usd <= cap
    assert budget.reserved_usd == 0


def test_a_cap_the_caller_set_is_never_changed(client: Any, sim: Simulator) -> None:
    with bg.Budget(max_usd="0.001"), pytest.raises(bg.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5_000)
    assert sim.requests == []


def test_auto_output_cap_false_refuses_instead(client: Any, sim: Simulator) -> None:
    with bg.Budget(max_usd="0.05", auto_output_cap=False), pytest.raises(bg.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert sim.requests == []


def test_the_responses_api_is_capped_through_max_output_tokens(client: Any, sim: Simulator) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bg.OutputCapWarning)
        with bg.Budget(max_usd="0.02"):
            client.responses.create(model="gpt-4o", input="Write a story.")
    assert isinstance(sim.requests[0].body.get("max_output_tokens"), int)


def test_a_request_whose_cap_would_leave_too_few_tokens_is_refused(client: Any, sim: Simulator) -> None:
    prompt_only = bg.estimate_request(
        "chat.completions", {"model": "gpt-4o", "messages": MESSAGES, "max_completion_tokens": 10}
    ).max_usd
    with bg.Budget(max_usd=prompt_only), pytest.raises(bg.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert sim.requests == []


def test_concurrent_uncapped_calls_share_the_room_instead_of_one_taking_all(
    client: Any, sim: Simulator
) -> None:
    sim.script(Reply(content=LONG, delay=1.0), Reply(content=LONG))
    budget = bg.Budget(max_usd="0.05")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bg.OutputCapWarning)
        with budget:
            first = threading.Thread(
                target=bg.propagate(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
            )
            first.start()
            while budget.reserved_usd == 0:
                pass
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # runs while the first holds
            first.join()
    caps = sorted(_capped_to(request) or 0 for request in sim.requests)
    assert len(caps) == 2 and 16 <= caps[0] < caps[1]
    assert budget.spent_usd <= Decimal("0.05")


def test_a_langchain_agent_with_uncapped_requests_runs_several_steps_in_a_small_budget(
    sim: Simulator,
) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(model="gpt-4o", base_url=sim.base_url, api_key="sim", max_retries=0)
    steps = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bg.OutputCapWarning)
        with bg.Budget(max_usd="0.05") as budget, pytest.raises(bg.BudgetExceeded):
            for _ in range(100):
                sim.script(Reply(content=" ".join(["step"] * 300)))
                llm.invoke("Plan the next step.")
                steps += 1
    assert steps >= 3
    assert len(sim.requests) == steps
    assert budget.spent_usd <= Decimal("0.05")
