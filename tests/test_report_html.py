"""``budgetguard report --html``: one self-contained page with the charts and the table.

The structure is checked with Python's own HTML parser; where Debian's ``chromium`` is installed
(``scripts/test`` installs it), the page is also rendered headless and the charts are read back
from the rendered DOM and from a screenshot.
"""

from __future__ import annotations

import itertools
import json
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from budgetguard._cli import main as cli
from budgetguard._config import parse_config
from budgetguard._ledger import Amount, Hold, SpendRecord, close_ledgers, open_ledger
from budgetguard._report import CALL_ID, OUTCOME, REFUSED, render_report
from budgetguard._report_html import TOP_KEYS, Cap, _ticks, caps_from_config, render_html
from budgetguard._usage import Usage
from budgetguard._windows import Calendar, Rolling

# --- a small DOM from the standard library's parser -------------------------------------------------

_VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    text: str = ""  # the text directly inside

    def all_text(self) -> str:
        return self.text + "".join(child.all_text() for child in self.children)

    def find_all(self, tag: str, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if child.tag == tag and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                found.append(child)
            found.extend(child.find_all(tag, **attrs))
        return found

    def find(self, tag: str, **attrs: str) -> Node:
        (node,) = self.find_all(tag, **attrs)
        return node

    def ancestor(self, tag: str) -> Node:
        node = self.parent
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None, f"no <{tag}> around <{self.tag}>"
        return node


class _Builder(HTMLParser):
    """Builds the tree and fails on any element closed out of order or left open (the page must
    be well formed, so a browser cannot restructure it)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.open = [self.root]
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.open[-1])
        self.open[-1].children.append(node)
        if tag not in _VOID:
            self.open.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}, self.open[-1]))

    def handle_endtag(self, tag: str) -> None:
        assert self.open[-1].tag == tag, f"</{tag}> closes <{self.open[-1].tag}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.open[-1].text += data


def parse(page: str, *, strict: bool = True) -> Node:
    builder = _Builder()
    builder.feed(page)
    builder.close()
    if strict:
        assert builder.doctype.lower() == "doctype html"
        assert [node.tag for node in builder.open] == ["#document"], "elements left open"
    return builder.root


# --- records ---------------------------------------------------------------------------------------


def at(when: str) -> float:
    return datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()


def record(
    when: str, cost: str, *, budget: str = "daily", key: str | None = None, model: str = "gpt-4o-mini",
    call: str | None = None, refused: bool = False,
) -> SpendRecord:  # fmt: skip
    extra = {} if call is None else {CALL_ID: call}
    if refused:
        extra |= {OUTCOME: REFUSED, "limit": "usd", "requested_usd": cost}
    return SpendRecord(
        time=at(when),
        budget=budget,
        key=key,
        scope_path=budget,
        model=model,
        endpoint="chat.completions",
        usage=Usage()
        if refused
        else Usage(prompt_tokens=100, completion_tokens=10, requests=1, cost_usd=Decimal(cost)),
        reserved_usd=Decimal(0) if refused else Decimal(cost),
        extra=extra,
    )


#: A week of spend in two budgets and three models; call "shared" is charged to both budgets.
WEEK = [
    *(record(f"2024-06-0{d}T09:00", "0.5", model="gpt-4o") for d in range(3, 10)),
    *(record(f"2024-06-0{d}T15:00", "0.25", model="o3-mini") for d in range(3, 10)),
    record("2024-06-05T10:00", "0.125", model="gpt-4o-mini", call="shared"),
    record("2024-06-05T10:00", "0.125", budget="team", model="gpt-4o-mini", call="shared", key="alice"),
    record("2024-06-04T11:00", "1", budget="team", key="alice", model="o3-mini"),
    record("2024-06-04T12:00", "2", budget="team", key="bob", model="o3-mini"),
    record("2024-06-08T12:00", "0.000000001", budget="team", key="carol", model="gpt-4o"),
]
CAPS = {"daily": Cap(Decimal(1), Calendar("day")), "team": Cap(Decimal("2.5"), Rolling(86400), keyed=True)}


def rects(root: Node, chart: str, **attrs: str) -> list[Node]:
    return [
        rect
        for svg in root.find_all("svg", data_chart=chart, **attrs)
        for rect in svg.find_all("rect")
        if rect.attrs.get("class") == "bar"
    ]


def daily_values(root: Node) -> dict[tuple[str, str, str], Decimal]:
    return {
        (r.attrs["data-budget"], r.attrs["data-day"], r.attrs["data-model"]): Decimal(r.attrs["data-usd"])
        for r in rects(root, "daily")
    }


# --- the page --------------------------------------------------------------------------------------


def test_the_page_is_well_formed_and_needs_nothing_but_itself() -> None:
    page = render_html(WEEK, caps=CAPS)
    root = parse(page)
    lowered = page.lower()
    for outside in ("<script", "src=", "href=", "url(", "@import", "<link", "<iframe", "<object", "http:"):
        assert outside not in lowered, outside
    csp = [m for m in root.find_all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp and csp[0].attrs["content"].startswith("default-src 'none'")
    assert root.find("meta", charset="utf-8")
    charts = [svg.attrs["data-chart"] for svg in root.find_all("svg")]
    assert charts == ["daily", "daily", "models", "keys"]
    for svg in root.find_all("svg"):
        assert svg.attrs["role"] == "img" and svg.attrs["aria-label"]
        assert svg.attrs["viewbox"].startswith("0 0 ")  # the parser lowers attribute names


def test_spend_per_day_is_a_chart_per_budget_with_bars_stacked_by_model() -> None:
    root = parse(render_html(WEEK, caps=CAPS))
    values = daily_values(root)
    assert sorted({day for _, day, _ in values}) == [f"2024-06-0{d}" for d in range(3, 10)]
    assert values[("daily", "2024-06-05", "gpt-4o")] == Decimal("0.5")
    assert values[("daily", "2024-06-05", "o3-mini")] == Decimal("0.25")
    assert values[("daily", "2024-06-05", "gpt-4o-mini")] == Decimal("0.125")
    assert values[("team", "2024-06-04", "o3-mini")] == Decimal(3)
    assert values[("team", "2024-06-08", "gpt-4o")] == Decimal("0.000000001")  # exact, never 1E-9
    # Each budget's bars add up to its spend, as the text report says.
    report = json.loads(render_report(WEEK, group_by=("budget",), fmt="json"))
    for row in report["rows"]:
        assert sum(v for (b, _, _), v in values.items() if b == row["budget"]) == Decimal(row["cost_usd"])
    # A model keeps its colour in every chart.
    fills = {(r.attrs["data-model"], r.attrs["fill"]) for r in rects(root, "daily") + rects(root, "models")}
    assert len(fills) == 3


def test_bars_are_drawn_to_scale_and_stacked_without_gaps() -> None:
    root = parse(render_html(WEEK, caps=CAPS))
    (svg,) = root.find_all("svg", data_chart="daily", data_budget="daily")
    bars = [r for r in svg.find_all("rect") if r.attrs.get("class") == "bar"]
    scale = {round(float(r.attrs["height"]) / float(r.attrs["data-usd"]), 0) for r in bars}
    assert len(scale) == 1  # pixels per dollar, the same for every bar
    by_x: dict[str, list[Node]] = {}
    for bar in bars:
        by_x.setdefault(bar.attrs["x"], []).append(bar)
    for stack in by_x.values():
        stack.sort(key=lambda r: float(r.attrs["y"]))
        for upper, lower in itertools.pairwise(stack):
            assert abs(float(upper.attrs["y"]) + float(upper.attrs["height"]) - float(lower.attrs["y"])) < 0.2


def test_the_cap_from_the_configuration_is_drawn_with_what_was_counted_against_it() -> None:
    root = parse(render_html(WEEK, caps=CAPS))
    (daily,) = root.find_all("svg", data_chart="daily", data_budget="daily")
    (cap,) = daily.find_all("line", **{"class": "cap"})
    assert cap.attrs["data-usd"] == "1"
    figure = daily.ancestor("figure")
    assert "cap $1 per calendar day (UTC)" in figure.all_text()
    peaks = {p.attrs["data-day"]: Decimal(p.attrs["data-usd"]) for p in daily.find_all("path")}
    assert peaks["2024-06-05"] == Decimal("0.875")  # a calendar day: the day's spend
    assert peaks["2024-06-03"] == Decimal("0.75")
    # The cap line sits at $1 on the same scale as the bars.
    bars = rects(root, "daily", data_budget="daily")
    bar = next(r for r in bars if r.attrs["data-usd"] == "0.5")
    per_dollar = float(bar.attrs["height"]) / 0.5
    baseline = max(float(r.attrs["y"]) + float(r.attrs["height"]) for r in bars)
    assert abs(baseline - float(cap.attrs["y1"]) - per_dollar) < 0.3

    (team,) = root.find_all("svg", data_chart="daily", data_budget="team")
    assert team.find("line", **{"class": "cap"}).attrs["data-usd"] == "2.5"
    assert "cap $2.5 per key per rolling 1d" in team.ancestor("figure").all_text()
    peaks = {p.attrs["data-day"]: Decimal(p.attrs["data-usd"]) for p in team.find_all("path")}
    # Per key: bob's $2 on 4 June is the most any one key had in its window (alice had $1).
    assert peaks["2024-06-04"] == Decimal(2)
    # Alice's $0.125 on 5 June counts with her $1 of 23 hours before (a rolling day).
    assert peaks["2024-06-05"] == Decimal("1.125")


def test_a_cap_without_a_window_is_compared_with_everything_spent_so_far() -> None:
    root = parse(render_html(WEEK, caps={"daily": Cap(Decimal(10))}))
    (daily,) = root.find_all("svg", data_chart="daily", data_budget="daily")
    peaks = {p.attrs["data-day"]: Decimal(p.attrs["data-usd"]) for p in daily.find_all("path")}
    assert peaks["2024-06-03"] == Decimal("0.75")
    assert peaks["2024-06-09"] == Decimal("5.375")  # 7 x 0.75 + 0.125
    assert "cap $10 in all (no window)" in daily.ancestor("figure").all_text()


def test_without_a_configuration_no_cap_is_drawn_and_the_page_says_why() -> None:
    root = parse(render_html(WEEK))
    assert not root.find_all("line", **{"class": "cap"})
    assert not root.find_all("path", **{"class": "peak"})
    assert "No configuration was given, so no cap is drawn." in root.all_text()


def test_caps_come_from_the_configuration() -> None:
    config = parse_config(
        "version: 1\nbudgets:\n  daily: {max_usd: 5, window: 1d}\n"
        "  team: {max_usd: 1, window: 1d, rolling: true, keyed: true}\n  tokens: {max_tokens: 100}\n"
    )
    caps = caps_from_config(config)
    assert set(caps) == {"daily", "team"}  # a budget without a dollar cap has none to draw
    assert caps["daily"].describe() == "cap $5 per calendar day (UTC)"
    assert caps["team"].describe() == "cap $1 per key per rolling 1d"


def test_spend_per_model_counts_a_call_charged_to_two_budgets_once() -> None:
    root = parse(render_html(WEEK, caps=CAPS))
    bars = rects(root, "models")
    assert [(r.attrs["data-model"], r.attrs["data-usd"], r.attrs["data-calls"]) for r in bars] == [
        ("o3-mini", "4.75", "9"),
        ("gpt-4o", "3.500000001", "8"),
        ("gpt-4o-mini", "0.125", "1"),
    ]
    assert [float(r.attrs["width"]) for r in bars] == sorted(
        (float(r.attrs["width"]) for r in bars), reverse=True
    )


def test_the_top_keys_of_keyed_budgets_are_shown_and_the_rest_summed() -> None:
    many = [record("2024-06-01T10:00", str(n), budget="users", key=f"user{n:02}") for n in range(1, 15)]
    root = parse(render_html([*WEEK, *many], caps=CAPS))
    assert [svg.attrs["data-budget"] for svg in root.find_all("svg", data_chart="keys")] == ["team", "users"]
    team = [(r.attrs["data-key"], r.attrs["data-usd"]) for r in rects(root, "keys", data_budget="team")]
    assert team == [("bob", "2"), ("alice", "1.125"), ("carol", "0.000000001")]
    users = rects(root, "keys", data_budget="users")
    assert len(users) == TOP_KEYS
    assert users[0].attrs["data-key"] == "user14" and users[-1].attrs["data-key"] == "user05"
    caption = root.find_all("svg", data_chart="keys", data_budget="users")[0].ancestor("figure").all_text()
    assert "4 more keys spent $10" in caption  # 1 + 2 + 3 + 4


def test_refusals_are_drawn_per_day_when_recorded_and_are_not_spend() -> None:
    root = parse(render_html(WEEK, caps=CAPS))
    assert root.find("p", data_chart="refusals").all_text() == "no refusals recorded"
    refusals = [
        record("2024-06-06T20:00", "0.3", refused=True, call="r1"),
        record("2024-06-06T21:00", "0.3", refused=True, call="r2"),
        record("2024-06-07T21:00", "0.3", budget="team", key="bob", refused=True, call="r3"),
    ]
    page = render_html([*WEEK, *refusals], caps=CAPS)
    root = parse(page)
    bars = rects(root, "refusals")
    assert [(r.attrs["data-day"], r.attrs["data-budget"], r.attrs["data-count"]) for r in bars] == [
        ("2024-06-06", "daily", "2"),
        ("2024-06-07", "team", "1"),
    ]
    assert "3 refused calls" in root.find("svg", data_chart="refusals").ancestor("figure").all_text()
    # Refused calls cost nothing and are no calls in the spend charts or the table.
    assert daily_values(root) == daily_values(parse(render_html(WEEK, caps=CAPS)))
    assert render_report([*WEEK, *refusals]) == render_report(WEEK)


def test_the_table_is_the_one_report_prints() -> None:
    group_by = ("budget", "model")
    root = parse(render_html(WEEK, caps=CAPS, group_by=group_by))
    table = root.find("table")
    header = [th.all_text() for th in table.find("thead").find_all("th")]
    rows = [[td.all_text() for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")]
    footer = [cell.all_text() for cell in table.find("tfoot").find("tr").children]
    text = render_report(WEEK, group_by=group_by).splitlines()
    assert header == text[0].split()
    assert rows == [line.split() for line in text[2:-2]]
    assert footer == text[-1].split()


def test_days_are_in_the_report_time_zone() -> None:
    late = [record("2024-06-01T02:00", "1")]  # 22:00 on 31 May in New York
    root = parse(render_html(late, tz="America/New_York"))
    assert [r.attrs["data-day"] for r in rects(root, "daily")] == ["2024-05-31"]
    assert "(America/New_York)" in root.find("p", **{"class": "summary"}).all_text()


def test_names_from_the_server_are_escaped() -> None:
    evil = [
        '<script>alert("model")</script>',
        '"><img src=x onerror=alert(1)>',
        "ctrl\x1b[2J\x00name",
        "a & b",
    ]
    records = [
        record("2024-06-01T10:00", "1", model=evil[0], key=evil[1], budget="users"),
        record("2024-06-01T11:00", "1", model=evil[1], budget=evil[0]),
        record("2024-06-01T12:00", "1", model=evil[2]),
        record("2024-06-01T13:00", "1", model=evil[3]),
    ]
    page = render_html(records, caps={evil[0]: Cap(Decimal(1))}, group_by=("budget", "key", "model"))
    assert "<script" not in page and "<img" not in page
    assert "\x1b" not in page and "\x00" not in page
    root = parse(page)
    models = {r.attrs["data-model"] for r in rects(root, "models")}
    assert models == {evil[0], evil[1], "ctrl\\x1b[2J\\x00name", "a & b"}
    assert {svg.attrs["data-budget"] for svg in root.find_all("svg", data_chart="daily")} == {
        "users",
        evil[0],
        "daily",
    }
    assert rects(root, "keys")[0].attrs["data-key"] == evil[1]
    cells = {td.all_text() for td in root.find("table").find_all("td")}
    assert {evil[0], evil[1], "ctrl\\x1b[2J\\x00name", "a & b"} <= cells


def test_an_empty_ledger_makes_a_page_that_says_so() -> None:
    root = parse(render_html([], caps={}))
    assert not root.find_all("svg")
    texts = [p.all_text() for p in root.find_all("p", **{"class": "empty"})]
    assert texts == [
        "no spend recorded",
        "no spend recorded",
        "no keyed budget has spend recorded",
        "no refusals recorded",
        "no spend recorded",
    ]
    assert root.find("p", data_chart="refusals").all_text() == "no refusals recorded"


def test_more_models_than_colours_share_one() -> None:
    records = [record("2024-06-01T10:00", str(n), model=f"model-{n}") for n in range(1, 11)]
    root = parse(render_html(records))
    daily = rects(root, "daily")
    assert [r.attrs["data-model"] for r in daily][-1] == "other models"
    assert Decimal(daily[-1].attrs["data-usd"]) == 1 + 2 + 3  # the three cheapest
    assert sum(Decimal(r.attrs["data-usd"]) for r in daily) == 55
    assert len(rects(root, "models")) == 10  # every model keeps its own bar


@pytest.mark.parametrize(
    ("highest", "whole", "ticks"),
    [
        ("0.3", False, ["0", "0.1", "0.2", "0.3"]),
        ("5", False, ["0", "2", "4", "6"]),
        ("0.000000001", False, ["0", "2.5E-10", "5.0E-10", "7.5E-10", "1.00E-9"]),
        ("3", True, ["0", "1", "2", "3"]),
        ("0", False, ["0", "0.25", "0.50", "0.75", "1.00"]),
    ],
)
def test_axis_ticks_are_round_and_reach_the_highest_value(
    highest: str, whole: bool, ticks: list[str]
) -> None:
    got = _ticks(Decimal(highest), whole=whole)
    assert [Decimal(t) for t in ticks] == got
    assert got[-1] >= Decimal(highest)


# --- the command -----------------------------------------------------------------------------------


@pytest.fixture
def week_store(tmp_path: Path) -> str:
    """An SQLite store holding WEEK, each record settled at its own time."""
    now = [0.0]
    store = f"sqlite:///{tmp_path / 'spend.db'}"
    ledger = open_ledger(store, clock=lambda: now[0])
    for rec in WEEK:
        now[0] = rec.time
        ledger.settle(
            Hold("", rec.budget, Amount(), 0.0), Amount(int(rec.usage.cost_usd * 10**12), 110, 1), rec
        )
    close_ledgers()
    return store


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    yield
    close_ledgers()


def test_report_html_writes_the_page_with_the_caps_of_the_configuration(
    tmp_path: Path, week_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bg.yaml"
    config.write_text(
        f"version: 1\nbudgets:\n  daily: {{max_usd: 1, window: 1d, store: '{week_store}'}}\n"
        f"  team: {{max_usd: 2.5, window: 1d, rolling: true, keyed: true, store: '{week_store}'}}\n"
    )
    out = tmp_path / "report.html"
    assert cli(["report", "--config", str(config), "--html", str(out), "--by", "budget,model"]) == 0
    assert capsys.readouterr().out == ""
    root = parse(out.read_text(encoding="utf-8"))
    assert daily_values(root) == daily_values(parse(render_html(WEEK)))
    assert {line.attrs["data-usd"] for line in root.find_all("line", **{"class": "cap"})} == {"1", "2.5"}
    assert [th.all_text() for th in root.find("thead").find_all("th")][:2] == ["budget", "model"]


def test_report_html_to_standard_output_without_a_configuration(
    week_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["report", "--store", week_store, "--budget", "team", "--html", "-"]) == 0
    root = parse(capsys.readouterr().out)
    assert {svg.attrs["data-budget"] for svg in root.find_all("svg", data_chart="daily")} == {"team"}
    assert "No configuration was given" in root.all_text()


def test_report_html_is_one_format_of_several(week_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli(["report", "--store", week_store, "--json", "--html", "x.html"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_report_html_into_a_missing_directory_is_an_error(
    tmp_path: Path, week_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["report", "--store", week_store, "--html", str(tmp_path / "no" / "r.html")]) == 2
    assert "budgetguard report: error:" in capsys.readouterr().err


# --- rendered by a browser -------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason="Debian's chromium is not installed (scripts/test installs it): the page is not rendered",
)


def chromium(tmp_path: Path, page: Path, *args: str) -> str:
    options = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    done = subprocess.run(
        [CHROMIUM, *options, *args, page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


@needs_chromium
def test_a_browser_renders_the_charts_with_their_values(tmp_path: Path) -> None:
    refusal = record("2024-06-06T20:00", "0.3", refused=True, call="r1")
    source = render_html([*WEEK, refusal], caps=CAPS)
    page = tmp_path / "report.html"
    page.write_text(source, encoding="utf-8")
    dom = parse(chromium(tmp_path, page, "--dump-dom"), strict=False)
    expected = parse(source)
    for chart in ("daily", "models", "keys", "refusals"):
        got = [r.attrs for r in rects(dom, chart)]
        assert got and got == [r.attrs for r in rects(expected, chart)], chart
    assert daily_values(dom)[("daily", "2024-06-05", "gpt-4o-mini")] == Decimal("0.125")
    assert {line.attrs["data-usd"] for line in dom.find_all("line", **{"class": "cap"})} == {"1", "2.5"}
    assert [svg.ancestor("section").attrs["id"] for svg in dom.find_all("svg")] == [
        "daily", "daily", "models", "keys", "refusals",
    ]  # fmt: skip
    rows = [[td.all_text() for td in tr.find_all("td")] for tr in dom.find("tbody").find_all("tr")]
    assert rows == [
        [td.all_text() for td in tr.find_all("td")] for tr in expected.find("tbody").find_all("tr")
    ]

    # And the bars are painted: every model's colour is on the screenshot.
    shot = tmp_path / "report.png"
    chromium(tmp_path, page, "--window-size=1000,1400", "--hide-scrollbars", f"--screenshot={shot}")
    colours = png_colours(shot.read_bytes())
    for bar in rects(expected, "models"):
        fill = bar.attrs["fill"]
        assert tuple(int(fill[i : i + 2], 16) for i in (1, 3, 5)) in colours, bar.attrs["data-model"]


def png_colours(data: bytes) -> set[tuple[int, int, int]]:
    """The RGB colours of an 8-bit RGB or RGBA, non-interlaced PNG (what chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += length + 12
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    size = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * size
    previous = bytearray(stride)
    colours: set[tuple[int, int, int]] = set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - size] if i >= size else 0
            up, corner = previous[i], previous[i - size] if i >= size else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        colours.update((line[i], line[i + 1], line[i + 2]) for i in range(0, stride, size))
        previous = line
    return colours


def test_a_refusal_in_a_persistent_budget_is_recorded_for_the_report(tmp_path: Path, client: Any) -> None:
    import budgetguard as bg
    from budgetguard._ledger import open_ledger
    from budgetguard._report import is_refusal

    store = f"sqlite:///{tmp_path / 'spend.db'}"
    with bg.Budget(max_usd="0.0000001", name="tiny", store=store), pytest.raises(bg.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    (record,) = open_ledger(store).records()
    assert is_refusal(record) and record.budget == "tiny" and record.extra["limit"] == "usd"
    assert record.usage.requests == 0 and record.usage.cost_usd == 0
