"""The demo shows what budgetguard is for: reservations next to bills, a clean stop before overspending."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest

from budgetguard._cli import main as cli
from budgetguard._demo import run_demo
from budgetguard._errors import ConfigError

MONEY = re.compile(r"\$(\d+\.\d+)")


def demo(max_usd: str = "0.001") -> str:
    out = io.StringIO()
    assert run_demo(max_usd=max_usd, out=out) == 0
    return out.getvalue()


def table(text: str) -> list[list[str]]:
    """The rows of the one table: step, request, tokens, reserved, billed, spent, left."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["step", "request"])
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        number, rest = line.split(maxsplit=1)
        label, *figures = re.split(r"\s{2,}", rest.strip())
        rows.append([number, label, *figures])
    return rows


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_the_output_says_the_simulator_is_a_simulator() -> None:
    text = demo()
    assert "SIMULATOR" in text and "a stand-in for the OpenAI" in text and "Nothing is billed" in text


def test_each_step_shows_its_reservation_its_bill_and_the_budget_after_it() -> None:
    rows = table(demo("0.05"))
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
    budget = Decimal("0.05")
    spent = Decimal(0)
    for _, _, tokens, reserved, billed, spent_text, left in rows:
        reserved_usd, billed_usd = Decimal(reserved[1:]), Decimal(billed[1:])
        assert int(tokens) > 0
        assert 0 < billed_usd <= reserved_usd  # the worst case held before sending covers the bill
        spent += billed_usd
        assert Decimal(spent_text[1:]) == spent  # the bills add up to what the budget spent
        assert Decimal(left[1:]) == budget - spent  # and spent + left is the budget


def test_the_budget_runs_out_mid_run_and_the_agent_stops_before_sending() -> None:
    text = demo("0.001")
    rows = table(text)
    assert len(rows) == 5
    *sent, refused = rows
    assert all(row[4] != "refused" for row in sent)
    assert refused[2] == "-" and refused[4] == "refused"
    reserved, left = Decimal(refused[3][1:]), Decimal(refused[6][1:])
    assert reserved > left  # refused because its worst case did not fit what was left
    assert refused[5] == sent[-1][5]  # nothing was charged for it
    assert "REFUSED before sending (budgetguard.BudgetExceeded)" in text
    assert "4 requests sent and billed, 1 refused before sending; the simulator received 4." in text


def test_one_money_format_plain_decimal_with_the_same_digits_everywhere() -> None:
    text = demo()
    amounts = MONEY.findall(text)
    assert amounts
    assert not re.search(r"\d[eE][-+]?\d", text)
    table_amounts = [a for row in table(text) for cell in row[3:] if cell.startswith("$") for a in [cell[1:]]]
    assert len({len(a.split(".")[1]) for a in table_amounts}) == 1  # one number of decimals in the table


def test_the_figures_are_printed_once_in_one_table() -> None:
    text = demo()
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("step  request"))
    end = start + 1 + len(table(text))
    outside = "\n".join(lines[:start] + lines[end:])
    assert MONEY.findall(outside) == ["0.001"]  # only the budget itself, in the first line
    assert text.count("step  request") == 1


def test_an_invalid_budget_is_an_error_before_anything_prints(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli(["demo", "--max-usd", "abc"])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "argument --max-usd: must be an amount in USD such as 25 or 0.50, got 'abc'" in captured.err
    out = io.StringIO()
    with pytest.raises(ConfigError, match="must not be negative"):
        run_demo(max_usd="-1", out=out)
    assert out.getvalue() == ""


def test_the_demo_command_runs_against_the_simulator_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["demo"]) == 0
    out = capsys.readouterr().out
    assert "budget of $0.001" in out and "REFUSED before sending" in out


def test_real_without_a_key_says_so_and_uses_the_simulator(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["demo", "--real"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--real needs OPENAI_API_KEY; running against the simulator instead.")
    assert "SIMULATOR" in out
