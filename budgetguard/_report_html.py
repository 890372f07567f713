"""``budgetguard report --html``: recorded spend as one self-contained HTML page.

The page needs nothing but itself: no script, no stylesheet, font or image from anywhere else
(a Content-Security-Policy meta tag forbids all of them), charts drawn as inline SVG that any
browser shows with JavaScript off. It has, in the report's time zone:

* **spend per day**, one chart per budget: bars stacked by model, the budget's dollar cap (from
  the configuration, when one is given) drawn as a dashed line, and for each day a marker at the
  most that was counted against the cap at any moment of it: the spend settled in the cap's
  window (per key for a keyed budget: the key that came closest), which is what the cap limits;
  a day's bar can be taller than the cap when the window is shorter than a day, or shorter when
  it is longer;
* **spend per model** (a call charged to several budgets counted once);
* **the top keys** of each keyed budget;
* **refusals per day**, from records of refused calls (``extra["outcome"] == "refused"``), or a
  line that says none were recorded;
* **the table** ``budgetguard report`` prints, grouped the same way.

Every number is exact (``plain_usd``) in the text and in ``data-*`` attributes of the SVG
elements; only the geometry is rounded. Every name (budget, key, model: model names come from
the server) is escaped, with control characters shown as ``\\x1b`` as in the table.
"""

from __future__ import annotations

import html
import math
import time as _time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING

from budgetguard._ledger import SpendRecord, Window
from budgetguard._report import (
    CALL_ID,
    METRICS,
    Group,
    Metrics,
    _printable,
    calendar_day,
    group_records,
    is_refusal,
    plain_usd,
)
from budgetguard._windows import load_zone

if TYPE_CHECKING:
    from budgetguard._config import Config

__all__ = ["Cap", "caps_from_config", "render_html"]

#: How many keys of a keyed budget the page shows; the rest are summed in one line.
TOP_KEYS = 10
#: Models (and budgets, in the refusal chart) with a colour of their own; the rest share one.
_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
_OTHER_COLOR = "#bab0ac"
_OTHER = "other models"
_CAP_COLOR = "#b03a2e"
_PEAK_COLOR = "#222222"

# Chart geometry (SVG user units; the page scales it to the window).
_WIDTH = 760
_LEFT, _RIGHT, _TOP, _BOTTOM = 72, 24, 28, 40
_HEIGHT = 260
_ROW = 22
_LABEL_WIDTH = 230
_LABEL_CHARS = 34


@dataclass(frozen=True, slots=True)
class Cap:
    """A budget's dollar cap as the configuration states it."""

    max_usd: Decimal
    #: The window the cap applies to (None: all time).
    window: Window | None = None
    #: One cap per key.
    keyed: bool = False

    def describe(self) -> str:
        per_key = " per key" if self.keyed else ""
        window = f" per {self.window}" if self.window is not None else " in all (no window)"
        return f"cap ${plain_usd(self.max_usd)}{per_key}{window}"


def caps_from_config(config: Config) -> dict[str, Cap]:
    """The dollar cap of every budget of ``config`` that has one, by budget name."""
    return {
        name: Cap(budget.max_usd, budget.window, budget.keyed)
        for name, budget in config.budgets.items()
        if budget.max_usd is not None
    }


def render_html(
    records: Sequence[SpendRecord],
    *,
    caps: Mapping[str, Cap] | None = None,
    group_by: Sequence[str] = ("budget", "key", "model", "day"),
    tz: str = "UTC",
    generated: float | None = None,
) -> str:
    """The page (see the module doc) for ``records``. ``caps``: budget name to its dollar cap
    (None: no configuration was given, so caps are unknown); ``group_by`` and ``tz`` as for
    ``render_report``; ``generated``: the epoch time the page says it was made (default: now)."""
    zone = load_zone(tz)
    table_rows, table_total = group_records(records, group_by=group_by, tz=tz)  # validates group_by
    by_day, _ = group_records(records, group_by=("budget", "day", "model"), tz=tz)
    by_model, total = group_records(records, group_by=("model",), tz=tz)
    by_key, _ = group_records(records, group_by=("budget", "key"), tz=tz)
    refusals, refused = group_records(records, group_by=("day", "budget"), tz=tz, refused=True)
    budgets = sorted({record.budget for record in records})
    days = _day_range([str(group[1]) for group, _ in by_day] + [str(group[0]) for group, _ in refusals])
    models = [str(group[0]) for group, _ in sorted(by_model, key=lambda item: -_cost(item[1]))]
    colors = {model: _PALETTE[i] for i, model in enumerate(models[: len(_PALETTE) - 1])}
    if len(models) == len(_PALETTE):  # the last colour is spare only when more models share it
        colors[models[-1]] = _PALETTE[-1]

    when = datetime.fromtimestamp(_time.time() if generated is None else generated, UTC)
    span = f"{days[0]} to {days[-1]}" if days else "no records"
    parts = [
        _HEAD,
        "<h1>budgetguard spend report</h1>\n",
        f'<p class="summary">{_esc(span)} ({_esc(tz)}) · {_count(len(budgets), "budget")} · total '
        f"<b>${plain_usd(_cost(total))}</b> over {_count(total['calls'], 'call')} · made "
        f"{when.strftime('%Y-%m-%d %H:%M')} UTC</p>\n",
    ]
    if caps is None:
        parts.append('<p class="note">No configuration was given, so no cap is drawn.</p>\n')

    parts.append('<section id="daily">\n<h2>Spend per day</h2>\n')
    if not budgets:
        parts.append('<p class="empty">no spend recorded</p>\n')
    peaks = _peaks(records, caps or {}, zone)
    for budget in budgets:
        parts.append(
            _daily_chart(budget, days, by_day, colors, (caps or {}).get(budget), peaks.get(budget, {}))
        )
    parts.append("</section>\n")

    parts.append('<section id="models">\n<h2>Spend per model</h2>\n')
    parts.append(_model_chart(by_model, colors) if by_model else '<p class="empty">no spend recorded</p>\n')
    parts.append("</section>\n")

    parts.append('<section id="keys">\n<h2>Top keys of keyed budgets</h2>\n')
    keyed = [b for b in budgets if any(group[0] == b and group[1] is not None for group, _ in by_key)]
    for budget in keyed:
        parts.append(_keys_chart(budget, by_key, (caps or {}).get(budget)))
    if not keyed:
        parts.append('<p class="empty">no keyed budget has spend recorded</p>\n')
    parts.append("</section>\n")

    parts.append('<section id="refusals">\n<h2>Refusals per day</h2>\n')
    if refusals:
        parts.append(_refusal_chart(days, refusals, refused))
    else:
        parts.append('<p class="empty" data-chart="refusals">no refusals recorded</p>\n')
    parts.append("</section>\n")

    parts.append('<section id="table">\n<h2>Table</h2>\n')
    parts.append(_table(group_by, table_rows, table_total))
    parts.append("</section>\n</body>\n</html>\n")
    return "".join(parts)


# --- the charts -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Segment:
    series: str
    value: Decimal
    tooltip: str
    data: dict[str, str] = field(default_factory=dict)


def _daily_chart(
    budget: str,
    days: list[str],
    by_day: list[tuple[Group, Metrics]],
    colors: Mapping[str, str],
    cap: Cap | None,
    peaks: Mapping[str, Decimal],
) -> str:
    stacks: dict[str, list[_Segment]] = {}
    spent = Decimal(0)
    calls = 0
    for (name, day, model), metrics in by_day:
        if name != budget:
            continue
        assert day is not None
        assert model is not None
        cost = _cost(metrics)
        spent += cost
        calls += int(metrics["calls"])
        series = model if model in colors else _OTHER
        segments = stacks.setdefault(day, [])
        same = [s for s in segments if s.series == series]
        if same:  # several models without a colour of their own: one segment
            same[0].value += cost
            same[0].data["usd"] = plain_usd(same[0].value)
            same[0].tooltip = f"{budget} · {day} · {_OTHER}: ${plain_usd(same[0].value)}"
            continue
        segments.append(
            _Segment(
                series,
                cost,
                f"{budget} · {day} · {series}: ${plain_usd(cost)} ({_count(metrics['calls'], 'call')})",
                {"budget": budget, "day": day, "model": series, "usd": plain_usd(cost)},
            )
        )
    caption = f"${plain_usd(spent)} over {_count(calls, 'call')}"
    if cap is None:
        caption += " · no dollar cap in the configuration"
    used = sorted({s.series for segments in stacks.values() for s in segments}, key=_legend_order(colors))
    legend = [(series, colors.get(series, _OTHER_COLOR), "swatch") for series in used]
    if cap is not None:
        most = "the most counted against the cap at any moment of the day"
        legend += [
            (cap.describe(), _CAP_COLOR, "cap"),
            (most + (" (by one key)" if cap.keyed else ""), _PEAK_COLOR, "peak"),
        ]
    svg = _columns(
        chart="daily",
        title=f"Spend per day of budget {budget}",
        days=days,
        stacks=stacks,
        colors=colors,
        money=True,
        cap=cap,
        peaks=peaks if cap is not None else {},
        attrs={"data-budget": budget},
    )
    return _figure(budget, caption, svg, legend)


def _refusal_chart(days: list[str], refusals: list[tuple[Group, Metrics]], total: Metrics) -> str:
    budgets = sorted({str(group[1]) for group, _ in refusals})
    colors = {budget: _PALETTE[i % len(_PALETTE)] for i, budget in enumerate(budgets)}
    stacks: dict[str, list[_Segment]] = {}
    for (day, budget), metrics in refusals:
        assert day is not None
        assert budget is not None
        count = int(metrics["calls"])
        stacks.setdefault(day, []).append(
            _Segment(
                budget,
                Decimal(count),
                f"{day} · {budget}: {count} refused",
                {"budget": budget, "day": day, "count": str(count)},
            )
        )
    svg = _columns(
        chart="refusals",
        title="Refused calls per day",
        days=days,
        stacks=stacks,
        colors=colors,
        money=False,
        cap=None,
        peaks={},
        attrs={},
        height=_HEIGHT * 2 // 3,
    )
    caption = f"{_count(total['calls'], 'refused call')}, by the budget that refused"
    return _figure("refusals", caption, svg, [(budget, colors[budget], "swatch") for budget in budgets])


def _model_chart(by_model: list[tuple[Group, Metrics]], colors: Mapping[str, str]) -> str:
    rows = sorted(by_model, key=lambda item: (-_cost(item[1]), str(item[0][0])))
    bars = [
        (
            str(model),
            _cost(metrics),
            f"${plain_usd(_cost(metrics))} · {_count(metrics['calls'], 'call')}",
            colors.get(str(model), _OTHER_COLOR),
            {"model": str(model), "usd": plain_usd(_cost(metrics)), "calls": str(metrics["calls"])},
        )
        for (model,), metrics in rows
    ]
    return _figure(
        "models",
        "a call charged to several budgets is counted once",
        _bars("models", "Spend per model", bars),
        [],
    )


def _keys_chart(budget: str, by_key: list[tuple[Group, Metrics]], cap: Cap | None) -> str:
    rows = sorted(
        ((str(key), metrics) for (name, key), metrics in by_key if name == budget and key is not None),
        key=lambda item: (-_cost(item[1]), item[0]),
    )
    top, rest = rows[:TOP_KEYS], rows[TOP_KEYS:]
    bars = [
        (
            key,
            _cost(metrics),
            f"${plain_usd(_cost(metrics))} · {_count(metrics['calls'], 'call')}",
            _PALETTE[0],
            {"budget": budget, "key": key, "usd": plain_usd(_cost(metrics)), "calls": str(metrics["calls"])},
        )
        for key, metrics in top
    ]
    caption = f"the {_count(len(top), 'key')} that spent most, over the whole report"
    if rest:
        others = sum((_cost(metrics) for _, metrics in rest), Decimal(0))
        caption += f"; {_count(len(rest), 'more key')} spent ${plain_usd(others)}"
    if cap is not None:
        caption += f" · {cap.describe()}"
    return _figure(
        budget, caption, _bars("keys", f"Top keys of budget {budget}", bars, {"data-budget": budget}), []
    )


# --- drawing --------------------------------------------------------------------------------------


def _columns(
    *,
    chart: str,
    title: str,
    days: list[str],
    stacks: Mapping[str, list[_Segment]],
    colors: Mapping[str, str],
    money: bool,
    cap: Cap | None,
    peaks: Mapping[str, Decimal],
    attrs: Mapping[str, str],
    height: int = _HEIGHT,
) -> str:
    """A column per day, its segments stacked; a dashed cap line and peak markers if given."""
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    highest = max([sum((s.value for s in stack), Decimal(0)) for stack in stacks.values()] + [Decimal(0)])
    highest = max([highest, *peaks.values()] + ([cap.max_usd] if cap is not None else []))
    ticks = _ticks(highest, whole=not money)
    top = ticks[-1]

    def y(value: Decimal) -> float:
        return _TOP + plot_h * (1 - float(value / top))

    out = [
        f"<svg {_attrs({'class': 'chart', 'data-chart': chart, **attrs})} "
        f'viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{_esc(title)}">',
        f"<title>{_esc(title)}</title>",
    ]
    for tick in ticks:  # the grid and the axis labels
        label = f"${plain_usd(tick)}" if money else plain_usd(tick)
        out.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
            f'<text class="axis" x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_esc(label)}</text>'
        )
    slot = plot_w / max(len(days), 1)
    width = min(slot * 0.72, 48.0)
    every = max(1, math.ceil(len(days) / 12))
    for i, day in enumerate(days):
        x = _LEFT + slot * i + (slot - width) / 2
        base = Decimal(0)
        for segment in sorted(stacks.get(day, []), key=lambda s: _legend_order(colors)(s.series)):
            y0, y1 = y(base), y(base + segment.value)
            base += segment.value
            data = {f"data-{k}": v for k, v in segment.data.items()}
            fill = colors.get(segment.series, _OTHER_COLOR)
            out.append(
                f'<rect {_attrs({"class": "bar", **data})} x="{x:.1f}" y="{y1:.1f}" width="{width:.1f}" '
                f'height="{max(y0 - y1, 0.0):.1f}" fill="{fill}">'
                f"<title>{_esc(segment.tooltip)}</title></rect>"
            )
        peak = peaks.get(day)
        if peak is not None:
            cx, cy = x + width / 2, y(peak)
            tip = f"{day}: at most ${plain_usd(peak)} counted against the cap"
            out.append(
                f'<path class="peak" data-day="{_esc(day)}" data-usd="{plain_usd(peak)}" '
                f'd="M{cx:.1f} {cy - 5:.1f}l5 5-5 5-5-5z" fill="{_PEAK_COLOR}">'
                f"<title>{_esc(tip)}</title></path>"
            )
        if i % every == 0:
            label = day if i == 0 else day[5:]
            out.append(
                f'<text class="axis" x="{_LEFT + slot * i + slot / 2:.1f}" y="{height - _BOTTOM + 16}" '
                f'text-anchor="middle">{_esc(label)}</text>'
            )
    if cap is not None:
        cy = y(cap.max_usd)
        out.append(
            f'<line class="cap" data-usd="{plain_usd(cap.max_usd)}" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" '
            f'y1="{cy:.1f}" y2="{cy:.1f}" stroke="{_CAP_COLOR}"><title>{_esc(cap.describe())}</title></line>'
        )
    out.append(
        f'<line class="axis-line" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" '
        f'y1="{_TOP + plot_h}" y2="{_TOP + plot_h}"/>'
    )
    out.append("</svg>")
    return "\n".join(out)


def _bars(
    chart: str,
    title: str,
    bars: list[tuple[str, Decimal, str, str, dict[str, str]]],
    attrs: Mapping[str, str] | None = None,
) -> str:
    """Horizontal bars, one row each: (label, value, text after the bar, colour, data-*)."""
    height = _TOP + _ROW * len(bars) + 8
    highest = max([value for _, value, _, _, _ in bars] + [Decimal(0)])
    room = _WIDTH - _LABEL_WIDTH - _RIGHT - 170  # leaves space for the text after the longest bar
    out = [
        f"<svg {_attrs({'class': 'chart', 'data-chart': chart, **(attrs or {})})} "
        f'viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{_esc(title)}">',
        f"<title>{_esc(title)}</title>",
    ]
    for i, (label, value, text, color, data) in enumerate(bars):
        top = _TOP / 2 + _ROW * i
        length = room * float(value / highest) if highest else 0.0
        shown = _printable(label)
        if len(shown) > _LABEL_CHARS:
            shown = shown[: _LABEL_CHARS - 1] + "…"
        tip = f"{label}: {text}"
        out.append(
            f'<text class="label" x="{_LABEL_WIDTH - 8}" y="{top + 15:.1f}" text-anchor="end">'
            f"{_esc(shown, printable=True)}<title>{_esc(label)}</title></text>"
            f"<rect {_attrs({'class': 'bar', **{f'data-{k}': v for k, v in data.items()}})} "
            f'x="{_LABEL_WIDTH}" y="{top + 3:.1f}" width="{length:.1f}" height="{_ROW - 6}" fill="{color}">'
            f"<title>{_esc(tip)}</title></rect>"
            f'<text class="value" x="{_LABEL_WIDTH + length + 6:.1f}" y="{top + 15:.1f}">{_esc(text)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


_MARK_STYLES = {"swatch": "background", "cap": "border-color", "peak": "color"}


def _figure(name: str, caption: str, svg: str, legend: list[tuple[str, str, str]]) -> str:
    """A chart with its caption and legend: (label, colour, mark), mark "swatch", "cap" or "peak"."""
    items = "".join(
        f'<li><span class="mark-{mark}" style="{_MARK_STYLES[mark]}:{color}">{"◆" if mark == "peak" else ""}'
        f"</span>{_esc(label)}</li>"
        for label, color, mark in legend
    )
    legend_html = f'<ul class="legend">{items}</ul>\n' if items else ""
    return (
        f"<figure>\n<figcaption><b>{_esc(name)}</b>: {_esc(caption)}</figcaption>\n"
        f"{svg}\n{legend_html}</figure>\n"
    )


def _table(group_by: Sequence[str], rows: list[tuple[Group, Metrics]], total: Metrics) -> str:
    if not rows:
        return '<p class="empty">no spend recorded</p>\n'
    head = "".join(f"<th>{_esc(name)}</th>" for name in group_by) + "".join(
        f'<th class="num">{name}</th>' for name in METRICS
    )

    def cells(metrics: Metrics) -> str:
        return "".join(f'<td class="num">{_number(metrics[name])}</td>' for name in METRICS)

    body = "\n".join(
        "<tr>"
        + "".join(f"<td>{'-' if v is None else _esc(v)}</td>" for v in group)
        + cells(metrics)
        + "</tr>"
        for group, metrics in rows
    )
    first = f'<th colspan="{len(group_by)}">TOTAL</th>' if group_by else ""
    return (
        f'<div class="scroll"><table class="report">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n"
        f"<tfoot><tr>{first}{cells(total)}</tr></tfoot>\n</table></div>\n"
    )


# --- numbers --------------------------------------------------------------------------------------


def _peaks(
    records: Iterable[SpendRecord], caps: Mapping[str, Cap], zone: tzinfo
) -> dict[str, dict[str, Decimal]]:
    """For each capped budget and day: the most settled spend counted against the cap at any moment
    of the day (the spend in the window then; a keyed budget's key that came closest)."""
    series: dict[tuple[str, str | None], dict[str, SpendRecord]] = {}
    for record in records:
        if record.budget in caps and not is_refusal(record):
            calls = series.setdefault((record.budget, record.key), {})
            calls.setdefault(record.extra.get(CALL_ID) or f"#{len(calls)}", record)
    out: dict[str, dict[str, Decimal]] = {}
    for (budget, _key), calls in series.items():
        window = caps[budget].window
        ordered = sorted(calls.values(), key=lambda r: r.time)
        peaks = out.setdefault(budget, {})
        first = 0
        counted = Decimal(0)
        for record in ordered:
            counted += record.usage.cost_usd
            start = window.span(record.time)[0] if window is not None else -math.inf
            while ordered[first].time < start:
                counted -= ordered[first].usage.cost_usd
                first += 1
            day = calendar_day(record.time, zone)
            if counted > peaks.get(day, Decimal(-1)):
                peaks[day] = counted
    return out


def _ticks(highest: Decimal, *, whole: bool) -> list[Decimal]:
    """Round axis values from 0 to at least ``highest``: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if highest <= 0:
        highest = Decimal(1)
    raw = highest / 4
    base = Decimal(1).scaleb(raw.adjusted())
    if whole and base < 1:
        base = Decimal(1)
    step = base * 10
    for factor in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5)):
        if whole and factor != factor.to_integral_value():
            continue
        if base * factor * 4 >= highest:
            step = base * factor
            break
    count = math.ceil(highest / step)
    return [step * i for i in range(count + 1)]


def _day_range(days: Iterable[str]) -> list[str]:
    """Every calendar day from the first to the last of ``days``."""
    known = sorted(set(days))
    if not known:
        return []
    first, last = date.fromisoformat(known[0]), date.fromisoformat(known[-1])
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _cost(metrics: Metrics) -> Decimal:
    value = metrics["cost_usd"]
    assert isinstance(value, Decimal)
    return value


def _count(n: int | Decimal, thing: str) -> str:
    """``1 call``, ``2 calls``."""
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _number(value: int | Decimal) -> str:
    return plain_usd(value) if isinstance(value, Decimal) else str(value)


def _legend_order(colors: Mapping[str, str]) -> _Order:
    order = {series: i for i, series in enumerate(colors)}
    return _Order(order)


@dataclass(frozen=True, slots=True)
class _Order:
    """Sort key: series with a colour of their own in colour order, then the others by name."""

    order: Mapping[str, int]

    def __call__(self, series: str) -> tuple[int, str]:
        return (self.order.get(series, len(self.order)), series)


def _esc(text: str, *, printable: bool = False) -> str:
    """``text`` safe in HTML text and in a quoted attribute; control characters shown escaped."""
    return html.escape(text if printable else _printable(text), quote=True)


def _attrs(attrs: Mapping[str, str]) -> str:
    return " ".join(f'{name}="{_esc(value)}"' for name, value in attrs.items())


_HEAD = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="budgetguard report --html">
<title>budgetguard spend report</title>
<style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 24px auto;
       max-width: 960px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.summary, .note { color: #444; margin: 4px 0; }
.empty { color: #666; font-style: italic; }
figure { margin: 12px 0 20px; }
figcaption { margin-bottom: 4px; color: #333; }
svg.chart { width: 100%; height: auto; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
svg text.label { font-size: 12px; fill: #222; }
svg .grid { stroke: #e4e4e4; stroke-width: 1; }
svg .axis-line { stroke: #888; stroke-width: 1; }
svg .cap { stroke-width: 2; stroke-dasharray: 6 4; }
.legend { list-style: none; padding: 0; margin: 4px 0 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }
.legend li { display: flex; align-items: center; gap: 6px; }
.mark-swatch { width: 12px; height: 12px; display: inline-block; border-radius: 2px; }
.mark-cap { width: 18px; height: 0; display: inline-block; border-top: 2px dashed; }
.mark-peak { font-size: 12px; }
.scroll { overflow-x: auto; }
table.report { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; }
table.report th, table.report td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left;
                                   white-space: nowrap; }
table.report .num { text-align: right; }
table.report tfoot th, table.report tfoot td { border-top: 2px solid #888; font-weight: 600; }
</style>
</head>
<body>
"""
