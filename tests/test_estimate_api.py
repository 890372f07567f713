"""The public estimate: prices on both ends, the CLI, and exact mode through the server."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import budgetguard as bg
from budgetguard._cli import main as cli
from budgetguard.testing import Simulator

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 100}
HIDDEN = {"model": "gpt-4o-mini", "input": "And then?", "previous_response_id": "resp_abc123"}


def test_an_estimate_prices_the_prompt_and_the_worst_case_output() -> None:
    estimate = bg.estimate_request("chat.completions", CHAT)
    assert estimate.prompt_tokens > 0
    assert estimate.prompt_tokens_upper >= estimate.prompt_tokens
    assert estimate.max_output_tokens == estimate.reserved_output_tokens == 100
    assert Decimal(0) < estimate.min_usd < estimate.max_usd
    assert estimate.exact


def test_without_an_output_cap_the_model_maximum_or_the_configured_assumption_is_reserved() -> None:
    body = {k: v for k, v in CHAT.items() if k != "max_tokens"}
    assert bg.estimate_request("chat.completions", body).reserved_output_tokens == 16_384
    assert (
        bg.estimate_request("chat.completions", body, assume_output_tokens=500).reserved_output_tokens == 500
    )
    bg.configure(assume_output_tokens=700)
    assert bg.estimate_request("chat.completions", body).reserved_output_tokens == 700


def test_a_malformed_body_names_the_problem() -> None:
    with pytest.raises(bg.EstimateError, match=r"messages"):
        bg.estimate_request("chat.completions", {"model": "gpt-4o-mini", "messages": "hi"})
    with pytest.raises(bg.UnknownModelError):
        bg.estimate_request("chat.completions", {**CHAT, "model": "mystery-model"})


def test_hidden_context_is_reported_as_inexact() -> None:
    estimate = bg.estimate_request("responses", HIDDEN)
    assert not estimate.exact
    assert any("previous" in reason for reason in estimate.reasons)


def test_exact_mode_asks_the_server_without_metering_that_call(client: Any, sim: Simulator) -> None:
    estimate = bg.estimate_request("responses", HIDDEN, client=client)
    assert estimate.exact
    assert any("counted by the server" in reason for reason in estimate.reasons)
    assert [r.path for r in sim.requests] == ["/v1/responses/input_tokens"]

    sim.reset()
    bg.configure(exact_estimates=True)
    with bg.Budget(max_usd=1) as budget:
        client.responses.create(**HIDDEN, max_output_tokens=50)
    assert [r.path for r in sim.requests] == ["/v1/responses/input_tokens", "/v1/responses"]
    assert budget.usage.requests == 1


async def test_exact_mode_works_for_async_clients(aclient: Any, sim: Simulator) -> None:
    bg.configure(exact_estimates=True)
    async with bg.Budget(max_usd=1) as budget:
        await aclient.responses.create(**HIDDEN, max_output_tokens=50)
    assert [r.path for r in sim.requests] == ["/v1/responses/input_tokens", "/v1/responses"]
    assert budget.usage.requests == 1


def test_the_estimate_command_infers_the_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(CHAT), encoding="utf-8")
    assert cli(["estimate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "chat.completions" in out and "prompt tokens" in out
    assert cli(["estimate", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_output_tokens"] == 100
    path.write_text(json.dumps({"model": "gpt-4o-mini"}), encoding="utf-8")
    assert cli(["estimate", str(path)]) == 2
    assert "--endpoint" in capsys.readouterr().err


def test_the_prices_command_shows_rates_and_refuses_unknown_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli(["prices", "gpt-3.5-turbo-instruct", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["input_per_1m"] == "1.5" and line["output_per_1m"] == "2"
    assert cli(["prices", "mystery-model"]) == 2
    assert "mystery-model" in capsys.readouterr().err
