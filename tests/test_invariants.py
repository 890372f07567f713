"""DESIGN.md's invariants, checked end to end through the SDK, the simulator and a SQLite ledger."""

from __future__ import annotations

import asyncio
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import budgetguard as bg
from budgetguard._ledger import close_ledgers
from budgetguard.testing import Reply, Simulator

MESSAGES = [{"role": "user", "content": "Count to three"}]


@pytest.fixture
def sqlite_budget(tmp_path: Path) -> Any:
    config = tmp_path / "budgetguard.yaml"
    config.write_text(
        "version: 1\nbudgets:\n  run:\n    max_usd: 1.00\n    window: 1d\n"
        f"    store: sqlite:///{tmp_path / 'spend.db'}\n",
        encoding="utf-8",
    )
    bg.configure(config)
    yield bg.Budget.named("run")
    close_ledgers()


def test_every_billed_call_lands_in_the_ledger_exactly_once(sim: Simulator, sqlite_budget: Any) -> None:
    import openai
    from openai import OpenAI

    failed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bg.EstimatedUsageWarning)
        with OpenAI(base_url=sim.base_url, api_key="sim", max_retries=2) as client, sqlite_budget as budget:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
            for _ in client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=20, stream=True
            ):
                pass
            broken = client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=20, stream=True
            )
            for _ in broken:
                break
            broken.close()
            sim.fail_next(status=429, retry_after=0.01, times=1)  # retried by the SDK, billed once
            failed += 1
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
            sim.fail_next(status=400, times=1)  # not retried, not billed
            failed += 1
            with pytest.raises(Exception, match="400"):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
            client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=20
            )
            sim.script(Reply(content="x" * 40, cut_stream_after=2))
            # The connection drops mid-stream: billed, so charged from the estimate.
            with pytest.raises(openai.APIConnectionError):
                for _ in client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=20, stream=True
                ):
                    pass
            client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=20)
            client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])

    billed = len(sim.requests) - failed
    records = budget.ledger.records(budget="run")
    assert len(records) == billed == budget.usage.requests == 8
    assert sum((r.usage.cost_usd for r in records), Decimal(0)) == budget.usage.cost_usd
    assert budget.spent_usd == budget.usage.cost_usd
    assert budget.reserved_usd == 0
    assert sum(r.estimated for r in records) == 2  # the broken and the cut stream


async def test_cancelled_tasks_release_their_reservations(sim: Simulator) -> None:
    from openai import AsyncOpenAI

    sim.script(*[Reply(content="slow", delay=2.0) for _ in range(5)])
    async with AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client:
        async with bg.Budget(max_usd=1) as budget:
            tasks = [
                asyncio.create_task(
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
                )
                for _ in range(5)
            ]
            while budget.reserved_usd == 0 or len(sim.requests) < 5:
                await asyncio.sleep(0.01)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert budget.reserved_usd == 0
    assert budget.usage.requests == 0


def test_money_adds_exactly_across_many_calls(client: Any, sim: Simulator) -> None:
    sim.script(*[Reply(content="hi", usage={"prompt_tokens": 7, "completion_tokens": 3}) for _ in range(50)])
    with bg.Budget(max_usd=1) as budget:
        for _ in range(50):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
    one = bg.PriceBook().cost(bg.Usage(prompt_tokens=7, completion_tokens=3, requests=1), "gpt-4o-mini")
    assert budget.usage.cost_usd == 50 * one
    assert budget.spent_usd == 50 * one
