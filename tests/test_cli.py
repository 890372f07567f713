"""The ``budgetguard`` command: help, version, configuration from the environment, check, report."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import budgetguard as bg
from budgetguard._cli import _parser
from budgetguard._cli import main as cli
from budgetguard._ledger import Amount, Hold, SpendRecord, close_ledgers, open_ledger
from budgetguard._report import CALL_ID
from budgetguard._usage import Usage

SUBCOMMANDS = ("run", "demo", "estimate", "prices", "check", "report")
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 100}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    yield
    close_ledgers()


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def write_records(store: str, *records: SpendRecord) -> None:
    ledger = open_ledger(store)
    for record in records:
        amount = Amount(int(record.usage.cost_usd * 10**12), record.usage.total_tokens, 1)
        ledger.settle(Hold("", record.budget, Amount(), 0.0), amount, record)


def spend(budget: str, cost: str, *, call: str | None = None, model: str = "gpt-4o-mini") -> SpendRecord:
    return SpendRecord(
        time=time.time(), budget=budget, key=None, scope_path=budget, model=model, endpoint="chat",
        usage=Usage(prompt_tokens=10, completion_tokens=5, requests=1, cost_usd=Decimal(cost)),
        reserved_usd=Decimal(cost), extra={} if call is None else {CALL_ID: call},
    )  # fmt: skip


# --- help and version -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_argument_of_every_command_has_help_text(name: str) -> None:
    parser = subparsers()[name]
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    assert parser.description


@pytest.mark.parametrize("name", ["", *SUBCOMMANDS])
def test_help_is_plain_text_without_rest_markup(name: str) -> None:
    parser = subparsers()[name] if name else _parser()
    text = parser.format_help()
    for markup in ("``", ":func:", ":class:", ":meth:", ".. ", "`_"):
        assert markup not in text, (name, markup)


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert re.search(rf"^\s+{name}\s+\w", out, re.MULTILINE), name


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"budgetguard {bg.__version__}"


def test_python_dash_m_budgetguard_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "budgetguard", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == f"budgetguard {bg.__version__}"


# --- the configuration: --config, before or after the command, or $BUDGETGUARD_CONFIG -------------


def aliased_config(tmp_path: Path, store: str = "memory://") -> Path:
    path = tmp_path / "bg.yaml"
    path.write_text(
        f"version: 1\ndefaults:\n  store: {store}\nbudgets:\n  daily: {{max_usd: 1}}\n"
        "pricing:\n  aliases:\n    prod-chat: gpt-4o-mini\n",
        encoding="utf-8",
    )
    return path


def test_estimate_and_prices_use_the_configuration_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({**CHAT, "model": "prod-chat"}), encoding="utf-8")
    assert cli(["prices", "prod-chat"]) == 2  # unknown without the configuration's alias
    assert cli(["estimate", str(request)]) == 2
    capsys.readouterr()
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(aliased_config(tmp_path)))
    assert cli(["prices", "prod-chat"]) == 0
    assert "priced_as=gpt-4o-mini" in capsys.readouterr().out
    assert cli(["estimate", str(request)]) == 0
    assert "prod-chat" in capsys.readouterr().out


def test_config_may_be_given_before_or_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(aliased_config(tmp_path))
    assert cli(["--config", config, "prices", "prod-chat"]) == 0
    assert cli(["prices", "prod-chat", "--config", config]) == 0
    assert capsys.readouterr().out.count("priced_as=gpt-4o-mini") == 2


def test_a_missing_file_named_by_the_environment_is_an_error_that_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(tmp_path / "gone.yaml"))
    assert cli(["prices", "gpt-4o"]) == 2
    assert "named by $BUDGETGUARD_CONFIG" in capsys.readouterr().err


# --- money in plain decimal -----------------------------------------------------------------------


def test_estimate_and_prices_print_money_in_plain_decimal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "embed.json"
    request.write_text(json.dumps({"model": "text-embedding-3-small", "input": "hi"}), encoding="utf-8")
    assert cli(["estimate", str(request)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"cost:\s+\$0\.0+[1-9]\d* to \$0\.0+[1-9]\d* ", out), out
    assert not re.search(r"\d[eE][-+]?\d", out)
    assert cli(["estimate", str(request), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert re.fullmatch(r"0\.0+[1-9]\d*", data["min_usd"]) and re.fullmatch(r"0\.0+[1-9]\d*", data["max_usd"])
    assert cli(["prices", "text-embedding-3-small", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["input_per_1m"] == "0.02"


# --- check ----------------------------------------------------------------------------------------


def test_check_lists_every_problem_with_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nbudgets:\n  daily:\n    max_usdd: 3\n    window: fortnight\n"
        "  weekly:\n    max_usd: -1\npricing:\n  discount: 2\n",
        encoding="utf-8",
    )
    assert cli(["check", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    expected = [
        f"{bad}:4 at 'budgets.daily.max_usdd': unknown key 'max_usdd' (did you mean 'max_usd'?)",
        f"{bad}:5 at 'budgets.daily.window': invalid window 'fortnight'",
        f"{bad}:7 at 'budgets.weekly.max_usd': must not be negative, got -1",
        f"{bad}:9 at 'pricing.discount': must be a fraction below 1",
        f"budgetguard check: {bad}: 4 problems",
    ]
    assert len(err) == len(expected)
    for line, start in zip(err, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_check_reports_a_store_whose_directory_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bg.yaml"
    path.write_text(f"version: 1\nbudgets:\n  daily:\n    store: sqlite:///{tmp_path}/no/such/dir/spend.db\n")
    assert cli(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4 at 'budgets.daily.store': the directory of this store does not exist" in err
    (tmp_path / "no" / "such" / "dir").mkdir(parents=True)
    assert cli(["check", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: OK (version 1, 1 budgets: daily)\n"


def test_check_without_a_file_checks_the_one_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["check"]) == 2
    assert "budgetguard check FILE (or set $BUDGETGUARD_CONFIG)" in capsys.readouterr().err
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(aliased_config(tmp_path)))
    assert cli(["check"]) == 0
    assert "OK" in capsys.readouterr().out


# --- report ---------------------------------------------------------------------------------------


def test_report_on_a_missing_sqlite_file_says_so_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.db"
    assert cli(["report", "--store", f"sqlite:///{missing}"]) == 2
    assert f"the file {missing} does not exist" in capsys.readouterr().err
    assert not missing.exists()


def test_report_reads_the_stores_of_the_configuration_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'spend.db'}"
    write_records(store, spend("daily", "0.25"))
    assert cli(["report"]) == 2
    assert "report needs --store URI, --config FILE or $BUDGETGUARD_CONFIG" in capsys.readouterr().err
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(aliased_config(tmp_path, store)))
    assert cli(["report", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["cost_usd"] == "0.25"


def test_report_total_counts_a_call_charged_to_two_budgets_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'spend.db'}"
    write_records(
        store,
        spend("daily", "0.25", call="c1"),
        spend("team", "0.25", call="c1"),
        spend("daily", "1", call="c2"),
    )
    assert cli(["report", "--store", store]) == 0
    total = capsys.readouterr().out.splitlines()[-1].split()
    assert total[0] == "TOTAL" and total[1] == "2" and total[-1] == "1.25"


def test_a_real_call_inside_two_persistent_budgets_is_one_call_in_the_report(
    tmp_path: Path, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'spend.db'}"
    with bg.Budget(max_usd=1, name="outer", store=store), bg.Budget(max_usd=1, name="inner", store=store):
        client.chat.completions.create(**CHAT)
    assert cli(["report", "--store", store, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [row["calls"] for row in data["rows"]] == [1, 1]
    assert data["total"]["calls"] == 1


def test_report_csv_neutralises_formulas_in_model_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'spend.db'}"
    write_records(store, spend("daily", "0.5", model="=cmd|' /C calc'!A0"))
    assert cli(["report", "--store", store, "--csv", "--by", "model"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["model"] == "'=cmd|' /C calc'!A0"


def test_report_groups_and_time_zone_are_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'spend.db'}"
    write_records(store, spend("daily", "0.5"), spend("team", "0.25"))
    assert cli(["report", "--store", store, "--by", "model", "--tz", "Europe/Paris", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["group_by"] == ["model"] and data["timezone"] == "Europe/Paris"
    assert [(r["model"], r["cost_usd"]) for r in data["rows"]] == [("gpt-4o-mini", "0.75")]
    with pytest.raises(SystemExit):
        cli(["report", "--store", store, "--by", "user"])
    assert "choose fields from budget, key" in capsys.readouterr().err


def test_report_reads_every_store_of_the_configuration_and_notes_the_missing_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    here, there, gone = (f"sqlite:///{tmp_path / name}.db" for name in ("here", "there", "gone"))
    write_records(here, spend("daily", "0.5", call="c1"))
    write_records(there, spend("team", "0.5", call="c1"), spend("team", "0.25", call="c2"))
    config = tmp_path / "bg.yaml"
    config.write_text(
        f"version: 1\nbudgets:\n  daily: {{store: '{here}'}}\n  team: {{store: '{there}'}}\n"
        f"  old: {{store: '{gone}'}}\n  local: {{max_usd: 1}}\n"
    )
    assert cli(["report", "--config", str(config), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert [(r["budget"], r["calls"]) for r in data["rows"]] == [("daily", 1), ("team", 2)]
    assert data["total"]["calls"] == 2 and data["total"]["cost_usd"] == "0.75"  # c1 once, in two stores
    assert f"note: {gone}: the file {tmp_path / 'gone.db'} does not exist" in captured.err
