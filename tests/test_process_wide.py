"""No silent escapes: calls from threads that did not inherit a scope are counted or flagged."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import budgetguard as bg
from budgetguard.testing import Simulator

MESSAGES = [{"role": "user", "content": "hi"}]


def _chat(client: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=16)


def test_a_call_from_a_plain_thread_pool_is_charged_to_a_process_wide_budget(client: Any) -> None:
    with bg.Budget(max_usd=1, name="process", process_wide=True) as budget:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: _chat(client), range(3)))
        _chat(client)
    assert budget.usage.requests == 4
    assert budget.reserved_usd == 0


def test_a_process_wide_budget_refuses_calls_from_any_thread_before_sending(
    client: Any, sim: Simulator
) -> None:
    with bg.Budget(max_usd="0.0000001", process_wide=True), ThreadPoolExecutor(1) as pool:
        with pytest.raises(bg.BudgetExceeded):
            pool.submit(_chat, client).result()
    assert sim.requests == []


def test_a_process_wide_scope_stops_counting_when_it_is_exited(client: Any) -> None:
    tracker = bg.track_usage(process_wide=True)
    with tracker:
        _chat(client)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_chat, client).result()
    assert tracker.usage.requests == 1


def test_process_wide_and_thread_scopes_both_see_a_call_once(client: Any) -> None:
    with bg.track_usage(process_wide=True) as everything, bg.track_usage() as here:
        _chat(client)
    assert everything.usage.requests == here.usage.requests == 1


def test_a_process_wide_scope_cannot_decorate(client: Any) -> None:
    with pytest.raises(bg.ConfigError, match="process-wide"):
        bg.Budget(max_usd=1, process_wide=True)(lambda: None)


def test_a_call_that_escapes_every_scope_while_one_is_active_elsewhere_warns_once() -> None:
    # A fresh interpreter: the warning is given once per process.
    script = textwrap.dedent(
        """
        import warnings
        from concurrent.futures import ThreadPoolExecutor
        from openai import OpenAI
        import budgetguard as bg
        from budgetguard.testing import Simulator

        warnings.simplefilter("always")
        with Simulator() as sim, OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client:
            def chat(_):
                return client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
                )
            chat(0)  # no scope anywhere: nothing to say
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with bg.Budget(max_usd=1) as budget, ThreadPoolExecutor(2) as pool:
                    list(pool.map(chat, range(3)))
            escapes = [w for w in caught if "outside every budgetguard scope" in str(w.message)]
            print(len(escapes), budget.usage.requests)
            print(str(escapes[0].message))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    count_line, message = out.stdout.splitlines()[:2]
    assert count_line == "1 0"
    for remedy in ("budgetguard.propagate", "ScopedThreadPoolExecutor", "process_wide=True"):
        assert remedy in message


def test_propagated_threads_do_not_warn(client: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", bg.BudgetGuardWarning)
        with bg.Budget(max_usd=1) as budget, bg.ScopedThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: _chat(client), range(2)))
    assert budget.usage.requests == 2


def test_keyed_named_budgets_do_not_keep_an_object_per_key(tmp_path: Path, client: Any) -> None:
    from budgetguard import _scopes

    config = tmp_path / "bg.yaml"
    config.write_text("version: 1\nbudgets:\n  per-user:\n    max_usd: 1\n    keyed: true\n")
    bg.configure(config)
    with bg.Budget.named("per-user", key="alice"):
        _chat(client)
    for i in range(90_000):
        bg.Budget.named("per-user", key=f"user-{i}")
    gc.collect()
    named = _scopes._named_budgets(bg._settings.current_settings())
    assert len(named) <= named.KEEP
    tracemalloc.start()
    for i in range(90_000, 92_000):  # the recently used ones kept are now traced
        bg.Budget.named("per-user", key=f"user-{i}")
    gc.collect()
    before, _ = tracemalloc.get_traced_memory()
    for i in range(92_000, 100_000):
        bg.Budget.named("per-user", key=f"user-{i}")
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(named) <= named.KEEP
    assert after - before < 64 * 1024  # 8,000 more keys, no more memory
    # A budget made again for an evicted key carries on from its store.
    assert bg.Budget.named("per-user", key="alice").spent_usd > Decimal(0)


@pytest.mark.parametrize("imported", ["before the first scope", "after the first scope"])
def test_a_call_through_an_sdk_budgetguard_does_not_meter_warns_inside_a_capped_budget(
    imported: str, tmp_path: Path
) -> None:
    # A stand-in for groq's generated client: the same base-client layout as openai's.
    package = tmp_path / "groq"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_base_client.py").write_text(
        "class SyncAPIClient:\n    def request(self, *args, **kwargs):\n        return 'sent'\n"
        "class AsyncAPIClient:\n    async def request(self, *args, **kwargs):\n        return 'sent'\n"
    )
    early = imported == "before the first scope"
    script = textwrap.dedent(
        f"""
        import sys, warnings
        sys.path.insert(0, {str(tmp_path)!r})
        {"import groq._base_client" if early else ""}
        import budgetguard as bg

        with bg.track_usage():
            pass  # the first scope: hooks go in
        import groq._base_client

        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            with bg.track_usage():  # not capped: nothing to say
                groq._base_client.SyncAPIClient().request()
            for _ in range(2):
                with bg.Budget(max_usd=1, name="capped"):
                    assert groq._base_client.SyncAPIClient().request() == "sent"
        notes = [str(w.message) for w in caught if "does not meter the groq SDK" in str(w.message)]
        print(len(notes), "capped" in notes[0])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True"]
