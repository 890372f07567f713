"""Spend reports: per budget, key, model and day, with exact sums, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from budgetguard._ledger import SpendRecord
from budgetguard._report import CALL_ID, render_report
from budgetguard._usage import Usage


def record(
    when: str, cost: str, *, budget: str = "daily", key: str | None = None, model: str = "gpt-4o-mini",
    estimated: bool = False, reserved: str = "0.01", call: str | None = None,
) -> SpendRecord:  # fmt: skip
    return SpendRecord(
        time=datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp(),
        budget=budget,
        key=key,
        scope_path="run",
        model=model,
        endpoint="chat.completions",
        usage=Usage(prompt_tokens=100, completion_tokens=10, requests=1, cost_usd=Decimal(cost)),
        reserved_usd=Decimal(reserved),
        estimated=estimated,
        extra={} if call is None else {CALL_ID: call},
    )


RECORDS = [
    record("2024-06-01T10:00", "0.1", key="alice"),
    record("2024-06-01T11:00", "0.2", key="alice"),
    record("2024-06-01T12:00", "0.000000000001", key="bob", model="gpt-4o", estimated=True),
    record("2024-06-02T01:00", "0.5", key="alice"),
    record("2024-06-01T13:00", "3", budget="monthly"),
]


def test_the_table_has_one_line_per_budget_key_model_and_day_and_a_total() -> None:
    lines = render_report(RECORDS).splitlines()
    assert lines[0].split() == [
        "budget", "key", "model", "day", "calls", "requests", "prompt_tokens", "completion_tokens",
        "total_tokens", "estimated", "reserved_usd", "cost_usd",
    ]  # fmt: skip
    rows = [line.split() for line in lines[2:-2]]
    assert rows == [
        ["daily", "alice", "gpt-4o-mini", "2024-06-01", "2", "2", "200", "20", "220", "0", "0.02", "0.3"],
        ["daily", "alice", "gpt-4o-mini", "2024-06-02", "1", "1", "100", "10", "110", "0", "0.01", "0.5"],
        ["daily", "bob", "gpt-4o", "2024-06-01", "1", "1", "100", "10", "110", "1", "0.01", "0.000000000001"],
        ["monthly", "-", "gpt-4o-mini", "2024-06-01", "1", "1", "100", "10", "110", "0", "0.01", "3"],
    ]
    assert lines[-1].split() == ["TOTAL", "5", "5", "500", "50", "550", "1", "0.05", "3.800000000001"]


def test_days_are_calendar_days_in_the_report_time_zone() -> None:
    late = [record("2024-06-01T02:00", "1")]  # 22:00 on 31 May in New York
    assert "2024-06-01" in render_report(late, group_by=("day",))
    assert "2024-05-31" in render_report(late, group_by=("day",), tz="America/New_York")


def test_json_carries_exact_money_as_strings() -> None:
    data = json.loads(render_report(RECORDS, group_by=("budget",), fmt="json"))
    assert data["group_by"] == ["budget"]
    assert data["rows"] == [
        {"budget": "daily", "calls": 4, "requests": 4, "prompt_tokens": 400, "completion_tokens": 40,
         "total_tokens": 440, "estimated": 1, "reserved_usd": "0.04", "cost_usd": "0.800000000001"},
        {"budget": "monthly", "calls": 1, "requests": 1, "prompt_tokens": 100, "completion_tokens": 10,
         "total_tokens": 110, "estimated": 0, "reserved_usd": "0.01", "cost_usd": "3"},
    ]  # fmt: skip
    assert Decimal(data["total"]["cost_usd"]) == sum(r.usage.cost_usd for r in RECORDS)


def test_csv_has_a_header_and_one_row_per_group() -> None:
    rows = list(
        csv.DictReader(io.StringIO(render_report(RECORDS, group_by=("budget", "key", "model"), fmt="csv")))
    )
    assert [(r["budget"], r["key"], r["model"], r["cost_usd"]) for r in rows] == [
        ("daily", "alice", "gpt-4o-mini", "0.8"),
        ("daily", "bob", "gpt-4o", "0.000000000001"),
        ("monthly", "", "gpt-4o-mini", "3"),
    ]


def test_months_scopes_and_endpoints_can_be_grouped_too() -> None:
    data = json.loads(render_report(RECORDS, group_by=("month", "scope", "endpoint"), fmt="json"))
    assert [(r["month"], r["scope"], r["endpoint"], r["calls"]) for r in data["rows"]] == [
        ("2024-06", "run", "chat.completions", 5)
    ]


def test_no_records_make_an_empty_report() -> None:
    assert render_report([]) == "no spend recorded\n"
    assert json.loads(render_report([], fmt="json"))["rows"] == []
    assert render_report([], fmt="csv").splitlines() == [
        "budget,key,model,day,calls,requests,prompt_tokens,completion_tokens,total_tokens,estimated,"
        "reserved_usd,cost_usd"
    ]


def test_an_unknown_grouping_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot group a report by 'user'; choose from budget, key"):
        render_report(RECORDS, group_by=("user",))
    with pytest.raises(ValueError, match="unknown report format 'xml'"):
        render_report(RECORDS, fmt="xml")  # type: ignore[arg-type]


# --- one call charged to several budgets ----------------------------------------------------------

#: Call "a" was charged to both "daily" and "monthly"; call "b" to "daily" only.
SHARED = [
    record("2024-06-01T10:00", "0.25", budget="daily", call="a"),
    record("2024-06-01T10:00", "0.25", budget="monthly", call="a"),
    record("2024-06-01T11:00", "0.5", budget="daily", call="b"),
]


def test_the_total_counts_a_call_charged_to_two_budgets_once() -> None:
    data = json.loads(render_report(SHARED, fmt="json"))
    assert [(r["budget"], r["calls"], r["cost_usd"]) for r in data["rows"]] == [
        ("daily", 2, "0.75"),
        ("monthly", 1, "0.25"),
    ]
    assert data["total"]["calls"] == 2
    assert data["total"]["requests"] == 2
    assert data["total"]["total_tokens"] == 220
    assert data["total"]["cost_usd"] == "0.75"
    assert render_report(SHARED).splitlines()[-1].split() == [
        "TOTAL", "2", "2", "200", "20", "220", "0", "0.02", "0.75",
    ]  # fmt: skip


def test_a_row_spanning_budgets_counts_each_call_once_too() -> None:
    data = json.loads(render_report(SHARED, group_by=("model",), fmt="json"))
    assert [(r["model"], r["calls"], r["cost_usd"]) for r in data["rows"]] == [("gpt-4o-mini", 2, "0.75")]


def test_records_without_a_call_id_each_count_as_a_call() -> None:
    old = [
        record("2024-06-01T10:00", "0.25", budget="daily"),
        record("2024-06-01T10:00", "0.25", budget="daily"),
    ]
    assert json.loads(render_report(old, fmt="json"))["total"]["calls"] == 2


# --- cells a spreadsheet would run ----------------------------------------------------------------


@pytest.mark.parametrize("model", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)"])
def test_csv_neutralises_cells_a_spreadsheet_would_execute(model: str) -> None:
    text = render_report([record("2024-06-01T10:00", "1", model=model)], group_by=("model",), fmt="csv")
    (row,) = csv.DictReader(io.StringIO(text, newline=""))
    assert row["model"] == "'" + model
    assert row["cost_usd"] == "1"


def test_csv_leaves_ordinary_names_alone() -> None:
    text = render_report([record("2024-06-01T10:00", "1", model="gpt-4o-mini-2024-07-18")], fmt="csv")
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["model"] == "gpt-4o-mini-2024-07-18"


def test_control_characters_from_the_server_are_shown_escaped_in_table_and_csv() -> None:
    records = [
        record("2024-06-01T10:00", "1", model="evil\x1b[2Jmodel"),
        record("2024-06-01T10:00", "1", model="\rcmd"),
    ]
    table = render_report(records, group_by=("model",))
    assert "\x1b" not in table and "\r" not in table
    assert "evil\\x1b[2Jmodel" in table
    text = render_report(records, group_by=("model",), fmt="csv")
    assert len(text.splitlines()) == 3  # a header and one line per row
    assert [row["model"] for row in csv.DictReader(io.StringIO(text))] == ["\\rcmd", "evil\\x1b[2Jmodel"]


def test_money_is_plain_decimal_never_an_exponent() -> None:
    tiny = [record("2024-06-01T10:00", "0.0000006", reserved="0.0000001")]
    assert "E-" not in render_report(tiny) and "e-" not in render_report(tiny)
    assert json.loads(render_report(tiny, fmt="json"))["total"]["cost_usd"] == "0.0000006"
