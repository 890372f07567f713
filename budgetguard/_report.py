"""Spend reports from ledger records: per budget, key, model and day, as a table, JSON or CSV.

Sums are exact: costs add as ``Decimal`` and are printed in plain notation (never a float, never
an exponent). Days and months are calendar dates in the report's time zone.

A call charged to several budgets leaves one record in each; records that carry the same call id
(``record.extra["call_id"]``) are one call, counted once in every row and in the total. Records
without a call id (written by older versions) each count as a call. Records of refused calls
(``record.extra["outcome"] == "refused"``: nothing was sent or billed) are not spend: the
table, JSON and CSV leave them out (``group_records(..., refused=True)`` groups them).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Literal, TypeAlias

from budgetguard._ledger import SpendRecord
from budgetguard._windows import load_zone

__all__ = [
    "CALL_ID", "GROUP_FIELDS", "METRICS", "OUTCOME", "REFUSED", "ReportFormat", "calendar_day",
    "group_records", "is_refusal", "plain_usd", "render_report",
]  # fmt: skip

#: The key of ``SpendRecord.extra`` that names the call a record belongs to.
CALL_ID = "call_id"
#: The key of ``SpendRecord.extra`` that says what became of a call, and its value for a call a
#: budget refused (a record with no usage: nothing was sent).
OUTCOME = "outcome"
REFUSED = "refused"

ReportFormat = Literal["table", "json", "csv"]
GROUP_FIELDS = ("budget", "key", "model", "day", "month", "scope", "endpoint")
#: One group's values of the fields grouped by (None: a record without a key).
Group: TypeAlias = tuple[str | None, ...]
#: One group's numbers, named as in ``METRICS``.
Metrics: TypeAlias = dict[str, int | Decimal]
METRICS = (
    "calls", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "estimated", "reserved_usd",
    "cost_usd",
)  # fmt: skip


@dataclass(slots=True)
class _Row:
    calls: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: int = 0
    reserved_usd: Decimal = field(default_factory=Decimal)
    cost_usd: Decimal = field(default_factory=Decimal)
    seen: set[str] = field(default_factory=set)

    def add(self, record: SpendRecord) -> None:
        call = record.extra.get(CALL_ID)
        if call is not None:
            if call in self.seen:  # the same call, charged to another budget
                return
            self.seen.add(call)
        self.calls += 1
        self.requests += record.usage.requests
        self.prompt_tokens += record.usage.prompt_tokens
        self.completion_tokens += record.usage.completion_tokens
        self.estimated += 1 if record.estimated else 0
        self.reserved_usd += record.reserved_usd
        self.cost_usd += record.usage.cost_usd

    def metrics(self) -> dict[str, int | Decimal]:
        total_tokens = self.prompt_tokens + self.completion_tokens
        return {
            "calls": self.calls, "requests": self.requests, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "total_tokens": total_tokens,
            "estimated": self.estimated, "reserved_usd": self.reserved_usd, "cost_usd": self.cost_usd,
        }  # fmt: skip


def plain_usd(amount: Decimal) -> str:
    """Dollars in plain decimal notation, every digit kept: ``0.0000006``, never ``6E-7``."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def is_refusal(record: SpendRecord) -> bool:
    """Whether ``record`` is a refused call (no usage: nothing was sent) rather than spend."""
    return record.extra.get(OUTCOME) == REFUSED


def calendar_day(time: float, zone: tzinfo) -> str:
    """The calendar date (``2024-06-01``) of the epoch time ``time`` in ``zone``."""
    return datetime.fromtimestamp(time, zone).strftime("%Y-%m-%d")


def _check_grouping(group_by: Sequence[str]) -> None:
    unknown = [name for name in group_by if name not in GROUP_FIELDS]
    if unknown:
        raise ValueError(f"cannot group a report by {unknown[0]!r}; choose from {', '.join(GROUP_FIELDS)}")


def group_records(
    records: Sequence[SpendRecord],
    *,
    group_by: Sequence[str] = ("budget", "key", "model", "day"),
    tz: str = "UTC",
    refused: bool = False,
) -> tuple[list[tuple[Group, Metrics]], Metrics]:
    """The rows of a report, sorted, and their total: the spend records (``refused``: only the
    records of refused calls) grouped by ``group_by`` (any of ``GROUP_FIELDS``), each with the
    numbers of ``METRICS``. A call id counts once in every row and in the total."""
    _check_grouping(group_by)
    zone = load_zone(tz)

    def day(record: SpendRecord) -> str:
        return calendar_day(record.time, zone)

    extract: dict[str, Callable[[SpendRecord], str | None]] = {
        "budget": lambda r: r.budget,
        "key": lambda r: r.key,
        "model": lambda r: r.model,
        "day": day,
        "month": lambda r: day(r)[:7],
        "scope": lambda r: r.scope_path,
        "endpoint": lambda r: r.endpoint,
    }
    groups: dict[Group, _Row] = {}
    total = _Row()
    for record in records:
        if is_refusal(record) != refused:
            continue
        group = tuple(extract[name](record) for name in group_by)
        row = groups.get(group)
        if row is None:
            row = groups[group] = _Row()
        row.add(record)
        total.add(record)
    ordered = sorted(groups.items(), key=lambda item: tuple((v is not None, v or "") for v in item[0]))
    return [(group, row.metrics()) for group, row in ordered], total.metrics()


def render_report(
    records: Sequence[SpendRecord],
    *,
    group_by: Sequence[str] = ("budget", "key", "model", "day"),
    fmt: ReportFormat = "table",
    tz: str = "UTC",
) -> str:
    """Spend grouped by ``group_by`` (any of ``GROUP_FIELDS``), one row per group, sorted.

    ``calls`` counts calls (records of one call id count once), ``estimated`` the calls whose
    usage was estimated, ``reserved_usd`` what was reserved for them and ``cost_usd`` what they
    cost. The table ends with a total line; JSON has ``rows`` and ``total`` (money as strings);
    CSV has rows only, and a text cell a spreadsheet would run as a formula (first character
    ``=``, ``+``, ``-`` or ``@``: model names come from the server) is prefixed with ``'``.
    Control characters in names are shown escaped (``\\x1b``) in the table and the CSV.
    """
    _check_grouping(group_by)
    if fmt not in ("table", "json", "csv"):
        raise ValueError(f"unknown report format {fmt!r}; choose table, json or csv")
    ordered, total = group_records(records, group_by=group_by, tz=tz)

    if fmt == "json":
        rows = [
            {**dict(zip(group_by, group, strict=True)), **_jsonable(metrics)} for group, metrics in ordered
        ]
        return json.dumps(
            {"group_by": list(group_by), "timezone": tz, "rows": rows, "total": _jsonable(total)},
            indent=2,
            ensure_ascii=False,
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*group_by, *METRICS])
        for group, metrics in ordered:
            cells = ("" if v is None else _inert(_printable(v)) for v in group)
            writer.writerow([*cells, *_cells(metrics)])
        return out.getvalue()
    return _table(group_by, ordered, total)


def _inert(text: str) -> str:
    """A CSV cell no spreadsheet runs as a formula (OWASP's advice: a leading quote)."""
    return "'" + text if text[:1] in _FORMULA_STARTS else text


_FORMULA_STARTS = frozenset("=+-@\t\r")  # tab and CR are escaped first; kept for safety


def _printable(text: str) -> str:
    """Text for a terminal: control characters (escape sequences from a server) shown escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _jsonable(metrics: dict[str, int | Decimal]) -> dict[str, int | str]:
    return {
        name: plain_usd(value) if isinstance(value, Decimal) else value for name, value in metrics.items()
    }


def _cells(metrics: dict[str, int | Decimal]) -> list[str]:
    return [plain_usd(value) if isinstance(value, Decimal) else str(value) for value in metrics.values()]


def _table(group_by: Sequence[str], ordered: list[tuple[Group, Metrics]], total: Metrics) -> str:
    if not ordered:
        return "no spend recorded\n"
    header = [*group_by, *METRICS]
    lines = [
        [*("-" if v is None else _printable(v) for v in group), *_cells(metrics)]
        for group, metrics in ordered
    ]
    footer = ["TOTAL", *([""] * (len(group_by) - 1)), *_cells(total)] if group_by else [*_cells(total)]
    widths = [max(len(row[i]) for row in [header, *lines, footer]) for i in range(len(header))]
    numeric = len(group_by)

    def render(cells: list[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i >= numeric else cell.ljust(widths[i]) for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *map(render, lines), rule, render(footer)]) + "\n"
