"""Budget: caps that hold before the request is sent, under nesting and concurrency."""

from __future__ import annotations

import asyncio
import threading
import warnings
from decimal import Decimal
from typing import Any

import pytest

import budgetguard as bg
from budgetguard.testing import Reply, Simulator

MESSAGES = [{"role": "user", "content": "Write a haiku about budgets"}]


def _chat(client: Any, max_tokens: int = 16, **extra: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=max_tokens, **extra
    )


def _one_call_cost(client: Any, max_tokens: int = 16) -> tuple[Decimal, Decimal]:
    """(actual cost, reserved worst case) of one capped call, measured inside a roomy budget."""
    with bg.Budget(max_usd=1) as probe:
        _chat(client, max_tokens)
    estimate = bg.estimate_request(
        "chat.completions",
        {"model": "gpt-4o-mini", "messages": MESSAGES, "max_completion_tokens": max_tokens},
    )
    return probe.spent_usd, estimate.max_usd


def test_a_refused_request_is_never_sent(client: Any, sim: Simulator) -> None:
    with bg.Budget(max_usd="0.0000001", name="tiny") as budget, pytest.raises(bg.BudgetExceeded) as info:
        _chat(client)
    assert sim.requests == []
    exc = info.value
    assert exc.budget == "tiny"
    assert exc.limit_kind == "usd"
    assert exc.limit == Decimal("0.0000001")
    assert exc.spent == 0 and exc.reserved == 0
    assert exc.requested_usd > exc.limit_usd  # type: ignore[operator]
    assert "tiny" in str(exc) and "usd" in str(exc)
    assert budget.spent_usd == 0 and budget.reserved_usd == 0


def test_token_and_request_caps_refuse_too(client: Any, sim: Simulator) -> None:
    with bg.Budget(max_tokens=5), pytest.raises(bg.BudgetExceeded) as info:
        _chat(client)
    assert info.value.limit_kind == "tokens"
    with bg.Budget(max_requests=1) as budget:
        _chat(client)
        with pytest.raises(bg.BudgetExceeded) as info:
            _chat(client)
    assert info.value.limit_kind == "requests" and info.value.spent == 1
    assert budget.usage.requests == 1
    assert len(sim.requests) == 1


def test_inner_budget_raises_at_its_cap_and_the_outer_sums_everything(client: Any) -> None:
    actual, reserved = _one_call_cost(client)
    inner_cap = reserved * 3  # fits three calls, refuses the fourth
    with bg.Budget(max_usd=actual * 1000, name="outer") as outer:
        _chat(client)
        with bg.Budget(max_usd=inner_cap, name="inner") as inner:
            with pytest.raises(bg.BudgetExceeded) as info:
                for _ in range(10):
                    _chat(client)
        _chat(client)
    assert info.value.budget == "inner"
    assert inner.usage.requests == 3
    assert inner.spent_usd <= inner_cap
    assert outer.usage.requests == 5
    assert outer.spent_usd == outer.usage.cost_usd == 5 * actual
    assert outer.reserved_usd == 0


def test_spend_rolls_up_through_trackers_and_budgets(client: Any) -> None:
    with bg.track_usage() as tracked, bg.Budget(max_usd=1) as budget, bg.track_usage() as innermost:
        _chat(client)
    assert tracked.usage == budget.usage == innermost.usage
    assert budget.spent_usd == tracked.usage.cost_usd


def test_clamp_lowers_the_output_cap_so_the_call_fits(client: Any, sim: Simulator) -> None:
    _, reserved_16 = _one_call_cost(client, 16)
    sim.reset()
    with bg.Budget(max_usd=reserved_16, on_exceed="clamp") as budget:
        _chat(client, max_tokens=4000)
    sent = sim.requests[0].body["max_completion_tokens"]
    assert 16 <= sent < 4000
    assert budget.spent_usd <= reserved_16
    estimate = bg.estimate_request(
        "chat.completions", {"model": "gpt-4o-mini", "messages": MESSAGES, "max_completion_tokens": sent}
    )
    assert estimate.max_usd <= reserved_16


def test_clamp_refuses_when_even_the_prompt_does_not_fit(client: Any, sim: Simulator) -> None:
    with bg.Budget(max_usd="0.000000001", on_exceed="clamp"), pytest.raises(bg.BudgetExceeded, match="clamp"):
        _chat(client)
    assert sim.requests == []


def test_warn_lets_the_call_through_and_alerts_once(client: Any, sim: Simulator) -> None:
    alerts: list[Decimal] = []
    with bg.Budget(
        max_usd="0.0000001", on_exceed="warn", on_alert=lambda b, t, s: alerts.append(t)
    ) as budget:
        with pytest.warns(bg.SoftCapWarning, match="soft usd cap"):
            _chat(client)
        with warnings.catch_warnings():
            warnings.simplefilter("error", bg.SoftCapWarning)
            _chat(client)  # already warned for this crossing
    assert len(sim.requests) == 2
    assert alerts == [Decimal(1)]
    assert budget.spent_usd > budget.max_usd  # type: ignore[operator]


def test_alert_thresholds_call_back_once_each(client: Any) -> None:
    actual, reserved = _one_call_cost(client)
    seen: list[Decimal] = []
    cap = actual * 4
    with bg.Budget(max_usd=max(cap, reserved), alerts=["50%", 0.75], on_alert=lambda b, t, s: seen.append(t)):
        for _ in range(3):
            _chat(client)
    assert seen == [Decimal("0.5"), Decimal("0.75")]


def test_when_the_api_bills_more_than_reserved_the_ledger_records_the_truth(
    client: Any, sim: Simulator
) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": 50_000, "completion_tokens": 10}))
    with bg.Budget(max_usd=1) as budget, pytest.warns(bg.UnderReservedWarning, match="billed more"):
        _chat(client)
    assert budget.usage.prompt_tokens == 50_000
    assert budget.spent_usd == budget.usage.cost_usd
    with pytest.raises(bg.BudgetExceeded), bg.Budget(max_usd=budget.usage.cost_usd):
        sim.script(Reply(content="hi", usage={"prompt_tokens": 50_000, "completion_tokens": 10}))
        with pytest.warns(bg.UnderReservedWarning):
            _chat(client)
        _chat(client)  # the next call that does not fit is refused


def test_a_failed_call_releases_its_reservation(client: Any, sim: Simulator) -> None:
    sim.fail_next(status=500)
    with bg.Budget(max_usd=1) as budget:
        with pytest.raises(Exception, match=r"500|Internal"):
            _chat(client)
        assert budget.reserved_usd == 0 and budget.spent_usd == 0
    assert budget.usage.requests == 0


def test_budget_exceeded_passes_through_the_retry_decorator_untouched(client: Any, sim: Simulator) -> None:
    attempts = []

    @bg.retry(attempts=5)
    def step() -> None:
        attempts.append(1)
        _chat(client)

    with bg.Budget(max_usd="0.0000001"), pytest.raises(bg.BudgetExceeded):
        step()
    assert len(attempts) == 1
    assert sim.requests == []


def test_retry_decorator_retries_transient_errors_honouring_retry_after(client: Any, sim: Simulator) -> None:
    sim.fail_next(status=429, retry_after=0.01, times=2)

    @bg.retry(attempts=5)
    def step() -> Any:
        return _chat(client)

    with bg.Budget(max_usd=1) as budget:
        step()
    assert len(sim.requests) == 3
    assert budget.usage.requests == 1


def test_retry_decorator_stops_when_the_next_attempt_could_not_fit(client: Any, sim: Simulator) -> None:
    import openai

    # A step makes one large call (reserved for 2000 output tokens, billed for 16) and then a
    # small one that fails. A second attempt would need the large reservation again, which no
    # longer fits: the step stops with the API's error instead of sleeping only to be refused.
    large = bg.estimate_request(
        "chat.completions", {"model": "gpt-4o-mini", "messages": MESSAGES, "max_completion_tokens": 2000}
    ).max_usd
    actual, _ = _one_call_cost(client)
    attempts = []

    @bg.retry(attempts=10)
    def step() -> Any:
        attempts.append(1)
        _chat(client, max_tokens=2000)
        sim.fail_next(status=500, times=3)
        return _chat(client)

    with bg.Budget(max_usd=large + actual / 2) as budget, pytest.raises(openai.InternalServerError):
        step()
    assert len(attempts) == 1
    assert budget.usage.requests == 1


def test_a_decorated_budget_is_fresh_per_invocation_unless_shared(client: Any) -> None:
    _, reserved = _one_call_cost(client)

    @bg.Budget(max_usd=reserved * Decimal("1.5"))
    def fresh() -> None:
        _chat(client)

    @bg.Budget(max_usd=reserved * Decimal("1.5"), shared=True)
    def shared() -> None:
        _chat(client)

    fresh()
    fresh()
    shared()
    with pytest.raises(bg.BudgetExceeded):
        shared()
    assert bg.usage_of(fresh).requests == 2


def test_wait_policy_waits_for_reservations_to_be_released(client: Any, sim: Simulator) -> None:
    _, reserved = _one_call_cost(client)
    sim.reset()
    sim.script(Reply(content="slow", delay=0.3))
    budget = bg.Budget(max_usd=reserved * Decimal("1.5"), on_exceed=bg.Wait(max_wait=5))
    results: list[str] = []

    def worker() -> None:
        _chat(client)
        results.append("ok")

    with budget:
        first = threading.Thread(target=bg.propagate(worker))
        first.start()
        while budget.reserved_usd == 0:
            pass
        worker()  # must wait for the first call to settle at its (smaller) actual cost
        first.join()
    assert results == ["ok", "ok"]
    assert budget.spent_usd <= budget.max_usd  # type: ignore[operator]


def _most_that_fit(cap: Decimal, actual: Decimal) -> int:
    return int(cap / actual)


def test_32_threads_never_overspend_and_use_the_budget(client: Any) -> None:
    actual, _ = _one_call_cost(client)
    cap = actual * 40 + actual / 2
    budget = bg.Budget(max_usd=cap, on_exceed=bg.Wait(max_wait=10))
    successes = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                _chat(client)
            except bg.BudgetExceeded:
                return
            with lock:
                successes.append(1)

    with budget:
        threads = [threading.Thread(target=bg.propagate(worker)) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert budget.spent_usd <= cap
    assert budget.reserved_usd == 0
    assert len(successes) >= _most_that_fit(cap, actual) - 1
    assert budget.usage.requests == len(successes)


async def test_500_asyncio_tasks_never_overspend_and_use_the_budget(aclient: Any, client: Any) -> None:
    actual, _ = _one_call_cost(client)
    cap = actual * 120 + actual / 2
    successes = 0

    async def task() -> None:
        nonlocal successes
        try:
            await aclient.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=16
            )
            successes += 1
        except bg.BudgetExceeded:
            pass

    async with bg.Budget(max_usd=cap, on_exceed=bg.Wait(max_wait=20)) as budget:
        await asyncio.gather(*(task() for _ in range(500)))
    assert budget.spent_usd <= cap
    assert budget.reserved_usd == 0
    assert successes >= _most_that_fit(cap, actual) - 1
    assert successes == budget.usage.requests


def test_wait_policy_waits_for_a_rolling_window_to_shed_old_spend(client: Any, sim: Simulator) -> None:
    from budgetguard._windows import Rolling

    budget = bg.Budget(max_requests=1, window=Rolling(2), on_exceed=bg.Wait(max_wait=10))
    with budget:
        _chat(client)
        _chat(client)  # waits until the first request leaves the 2-second window
    assert len(sim.requests) == 2


def test_wait_policy_does_not_wait_for_a_window_that_ends_too_late(
    client: Any, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from budgetguard import _calls
    from budgetguard._windows import Calendar

    sleeps: list[float] = []
    monkeypatch.setattr(_calls.time, "sleep", sleeps.append)
    budget = bg.Budget(max_requests=1, window=Calendar("year"), on_exceed=bg.Wait(max_wait=5))
    with budget:
        _chat(client)
        with pytest.raises(bg.BudgetExceeded, match="requests"):
            _chat(client)
    assert sleeps == []
    assert len(sim.requests) == 1


def test_budget_exceeded_is_not_an_api_error_so_plain_tenacity_does_not_retry_it(client: Any) -> None:
    import openai
    import tenacity

    attempts = []

    @tenacity.retry(
        retry=tenacity.retry_if_exception_type(openai.OpenAIError), stop=tenacity.stop_after_attempt(3)
    )
    def step() -> None:
        attempts.append(1)
        _chat(client)

    with bg.Budget(max_usd="0.0000001"), pytest.raises(bg.BudgetExceeded):
        step()
    assert attempts == [1]
    assert not issubclass(bg.BudgetExceeded, openai.OpenAIError)


def test_budget_exceeded_survives_pickling_for_process_pools() -> None:
    import pickle

    exc = bg.BudgetExceeded(
        budget="run",
        limit_kind="usd",
        limit=Decimal("1"),
        spent=Decimal("0.9"),
        reserved=Decimal(0),
        requested=Decimal("0.2"),
        spent_usd=Decimal("0.9"),
        reserved_usd=Decimal(0),
        requested_usd=Decimal("0.2"),
        limit_usd=Decimal("1"),
    )
    copy = pickle.loads(pickle.dumps(exc))
    assert str(copy) == str(exc)
    assert copy.requested_usd == Decimal("0.2") and copy.budget == "run"


def test_alerts_fire_on_token_caps_too(client: Any) -> None:
    seen: list[Decimal] = []
    with bg.Budget(max_tokens=10_000, alerts=["0.1%"], on_alert=lambda b, t, s: seen.append(t)):
        _chat(client)
    assert seen == [Decimal("0.001")]
