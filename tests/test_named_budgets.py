"""Named budgets from YAML: persistent windows in SQLite and Redis, keyed caps, reports."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _redis_server import redis_url  # noqa: F401 - the fixture

import budgetguard as bg
from budgetguard._cli import main as cli
from budgetguard._ledger import close_ledgers
from budgetguard.testing import Simulator

MESSAGES = [{"role": "user", "content": "Plan a trip"}]


def _chat(client: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=16)


def _write_config(tmp_path: Path, store: str, extra: str = "") -> Path:
    path = tmp_path / "budgetguard.yaml"
    path.write_text(
        f"""version: 1
defaults:
  store: {store}
budgets:
  daily:
    max_usd: 0.50
    window: 1d
    timezone: Europe/Paris
  per-user:
    max_requests: 2
    window: 1h
    rolling: true
    keyed: true
{extra}""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(autouse=True)
def _close_ledgers() -> Any:
    yield
    close_ledgers()


def test_a_daily_budget_in_sqlite_outlives_the_process_that_spent_it(
    tmp_path: Path, client: Any, sim: Simulator
) -> None:
    db = tmp_path / "spend.db"
    config = _write_config(tmp_path, f"sqlite:///{db}")
    bg.configure(config)
    with bg.Budget.named("daily") as daily:
        _chat(client)
        _chat(client)
    spent = daily.spent_usd
    assert spent == daily.usage.cost_usd > 0

    # Another process configures the same file and sees the same window's spend.
    code = (
        "import budgetguard as bg, sys; bg.configure(sys.argv[1]); print(bg.Budget.named('daily').spent_usd)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(config)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(spent)

    records = daily.ledger.records(budget="daily")
    assert len(records) == 2
    assert sum(r.usage.cost_usd for r in records) == spent
    assert all(r.model.startswith("gpt-4o-mini") and r.endpoint == "chat.completions" for r in records)


def test_report_prints_the_ledger_as_table_json_and_csv(
    tmp_path: Path, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "spend.db"
    bg.configure(_write_config(tmp_path, f"sqlite:///{db}"))
    with bg.Budget.named("daily"):
        _chat(client)
    assert cli(["report", "--store", f"sqlite:///{db}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["budget"] for row in report["rows"]] == ["daily"]
    assert report["total"]["calls"] == 1
    assert cli(["report", "--store", f"sqlite:///{db}", "--csv"]) == 0
    assert "daily" in capsys.readouterr().out
    assert cli(["report", "--store", f"sqlite:///{db}"]) == 0
    assert "gpt-4o-mini" in capsys.readouterr().out


def test_keyed_budgets_keep_one_cap_per_key(tmp_path: Path, client: Any) -> None:
    bg.configure(_write_config(tmp_path, f"sqlite:///{tmp_path / 'spend.db'}"))
    for _ in range(2):
        with bg.Budget.named("per-user", key="alice"):
            _chat(client)
    with pytest.raises(bg.BudgetExceeded) as info, bg.Budget.named("per-user", key="alice"):
        _chat(client)
    assert info.value.key == "alice" and info.value.limit_kind == "requests"
    with bg.Budget.named("per-user", key="bob") as bob:
        _chat(client)
    assert bob.usage.requests == 1


def test_named_budget_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(bg.ConfigError, match="configure"):
        bg.Budget.named("daily")
    bg.configure(_write_config(tmp_path, "memory://"))
    with pytest.raises(bg.ConfigError, match=r"no budget named 'weekly'.*daily"):
        bg.Budget.named("weekly")
    with pytest.raises(bg.ConfigError, match="keyed"):
        bg.Budget.named("per-user")
    with pytest.raises(bg.ConfigError, match="not keyed"):
        bg.Budget.named("daily", key="x")


def test_the_config_file_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(_write_config(tmp_path, "memory://")))
    config = bg.configure()
    assert config is not None and "daily" in config.budgets
    assert bg.Budget.named("daily").max_usd == bg.Budget.named("daily").max_usd


def test_a_budget_shared_through_redis_holds_across_clients(
    tmp_path: Path,
    sim: Simulator,
    redis_url: str,  # noqa: F811
) -> None:
    from openai import OpenAI

    bg.configure(_write_config(tmp_path, redis_url))
    with OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client:
        with bg.Budget.named("per-user", key="carol"):
            _chat(client)
            _chat(client)
        with pytest.raises(bg.BudgetExceeded), bg.Budget.named("per-user", key="carol"):
            _chat(client)
    assert len(sim.requests) == 2


def test_check_command_validates_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write_config(tmp_path, "memory://")
    assert cli(["check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nbudgets:\n  daily:\n    max_usdd: 3\n", encoding="utf-8")
    assert cli(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:4" in err and "max_usdd" in err and "max_usd" in err


# --- $BUDGETGUARD_CONFIG --------------------------------------------------------------------------


def test_named_budgets_come_from_the_file_the_environment_names_without_configure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: Any
) -> None:
    monkeypatch.setenv(
        "BUDGETGUARD_CONFIG", str(_write_config(tmp_path, f"sqlite:///{tmp_path / 'spend.db'}"))
    )
    with bg.Budget.named("daily") as daily:
        _chat(client)
    assert daily.max_usd == Decimal("0.50") and daily.usage.requests == 1
    assert bg.Budget.named("daily") is daily


def test_without_configure_or_the_variable_the_error_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    with pytest.raises(bg.ConfigError, match=r"budgetguard\.configure\(path\).*\$BUDGETGUARD_CONFIG"):
        bg.Budget.named("daily")


def test_a_named_budget_configured_process_wide_counts_calls_from_any_thread(
    tmp_path: Path, client: Any
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    config = tmp_path / "bg.yaml"
    config.write_text(
        "version: 1\nbudgets:\n  proc:\n    max_usd: 1\n    process_wide: true\n"
        "  strict:\n    max_usd: 0.05\n    auto_output_cap: false\n"
    )
    bg.configure(config)
    with bg.Budget.named("proc") as budget, ThreadPoolExecutor(1) as pool:
        pool.submit(
            lambda: client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
        ).result()
    assert budget.usage.requests == 1
    assert bg.Budget.named("proc", process_wide=False) is not budget
    with bg.Budget.named("strict"), pytest.raises(bg.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_a_configured_lease_is_taken_by_a_busy_budget_and_returned_when_its_last_entry_ends(
    tmp_path: Path, client: Any
) -> None:
    from budgetguard._ledger import LeasingLedger, open_ledger

    store = f"sqlite:///{tmp_path / 'spend.db'}"
    config = tmp_path / "bg.yaml"
    config.write_text(
        f"version: 1\nbudgets:\n  busy:\n    max_usd: 1\n    store: {store}\n    lease_usd: 0.01\n"
    )
    bg.configure(config)
    plain = open_ledger(store)  # the same store, seen without a lease
    budget = bg.Budget.named("busy")
    assert isinstance(budget.ledger, LeasingLedger)
    with budget:
        for _ in range(3):  # busy: a lease is taken from the second reservation on
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
        held = plain.snapshot(budget.ledger_key, None).reserved.usd
    assert held > 0  # the slice was held in the store while the budget was in use
    assert plain.snapshot(budget.ledger_key, None).reserved.usd == 0  # and returned at its end
    assert plain.snapshot(budget.ledger_key, None).spent.usd == budget.usage.cost_usd > 0
