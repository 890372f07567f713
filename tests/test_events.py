"""Every settled call and every refusal is an event: logged, and handed to subscribers."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import budgetguard as bg
from budgetguard import _events
from budgetguard.testing import Reply, Simulator

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def events() -> Any:
    seen: list[_events.Event] = []
    _events.subscribe(seen.append)
    yield seen
    _events.unsubscribe(seen.append)


def test_a_settled_call_is_one_event_with_its_billed_usage(client: Any, sim: Simulator, events: Any) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": 12, "completion_tokens": 4}))
    with bg.Budget(max_usd=1, name="outer"), bg.Budget(max_usd=1, name="inner"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    (event,) = events
    assert isinstance(event, _events.CallSettled)
    assert (event.provider, event.endpoint, event.request_model) == (
        "openai",
        "chat.completions",
        "gpt-4o-mini",
    )
    assert (event.usage.prompt_tokens, event.usage.completion_tokens) == (12, 4)
    assert event.budgets == ("inner", "outer") and event.scope_path == "outer/inner"
    assert not event.estimated and not event.under_reserved and event.duration >= 0


def test_a_refusal_is_an_event_and_a_warning_log_record(
    client: Any, events: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="budgetguard"), bg.Budget(max_usd="0.0000001", name="tiny"):
        with pytest.raises(bg.BudgetExceeded):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    (event,) = events
    assert isinstance(event, _events.CallRefused) and event.budget == "tiny" and event.limit_kind == "usd"
    (record,) = [r for r in caplog.records if r.name == "budgetguard"]
    assert record.levelno == logging.WARNING and "refused" in record.getMessage()
    assert record.budgetguard["budget"] == "tiny"  # type: ignore[attr-defined]


def test_settled_calls_are_logged_at_debug_with_their_numbers(
    client: Any, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.script(Reply(content="hi", usage={"prompt_tokens": 12, "completion_tokens": 4}))
    with caplog.at_level(logging.DEBUG, logger="budgetguard"), bg.track_usage():
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (record,) = [r for r in caplog.records if r.name == "budgetguard"]
    fields = record.budgetguard  # type: ignore[attr-defined]
    assert (fields["prompt_tokens"], fields["completion_tokens"]) == (12, 4)


def test_a_failing_subscriber_never_fails_the_call(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: _events.Event) -> None:
        raise RuntimeError("subscriber bug")

    _events.subscribe(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="budgetguard"), bg.track_usage() as tracked:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        _events.unsubscribe(broken)
    assert tracked.usage.requests == 1
    assert any("subscriber failed" in r.getMessage() for r in caplog.records)
