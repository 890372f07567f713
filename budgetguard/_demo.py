"""The demo: a small tool-using agent whose every request is reserved, billed and capped.

Runs against the built-in simulator unless ``--real`` is given and ``OPENAI_API_KEY`` is set.
The agent looks up the weather, converts it, answers, streams a summary, and then asks for a
long itinerary that its budget cannot hold: budgetguard refuses that request before it is sent
and the agent stops cleanly. One table shows, per request, the worst case reserved before
sending, what was billed, and the budget's spent and remaining amounts.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TextIO

import budgetguard as bg
from budgetguard._config import usd_argument
from budgetguard._report import plain_usd

__all__ = ["run_demo"]

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "convert_temperature",
            "description": "Convert a temperature between Celsius and Fahrenheit.",
            "parameters": {
                "type": "object",
                "properties": {
                    "value": {"type": "number"},
                    "to": {"type": "string", "enum": ["C", "F"]},
                },
                "required": ["value", "to"],
            },
        },
    },
]

_WEATHER = {"paris": 18.0, "tokyo": 24.0, "oslo": 6.0}
#: The last step asks for this much output: $0.0012 on gpt-4o-mini, more than the default budget.
ITINERARY_TOKENS = 2000
MAX_AGENT_STEPS = 5


def _run_tool(name: str, arguments: str) -> str:
    try:
        args = json.loads(arguments or "{}")
    except ValueError:
        return json.dumps({"error": f"arguments are not JSON: {arguments!r}"})
    if name == "get_weather":
        city = str(args.get("city", "")).lower()
        return json.dumps({"city": city, "celsius": _WEATHER.get(city, 15.0), "sky": "clear"})
    if name == "convert_temperature":
        value = float(args.get("value", 0))
        converted = value * 9 / 5 + 32 if args.get("to") == "F" else (value - 32) * 5 / 9
        return json.dumps({"value": round(converted, 1), "unit": args.get("to")})
    return json.dumps({"error": f"unknown tool {name}"})


@dataclass
class _Step:
    label: str
    reserved: Decimal
    billed: Decimal | None = None  # None: refused before sending
    tokens: int | None = None
    spent: Decimal = Decimal(0)
    remaining: Decimal | None = None


@contextmanager
def _client(real: bool) -> Iterator[tuple[Any, str, Any]]:
    # Any: the demo builds message dicts freely; the SDK's TypedDict overloads add nothing here.
    from openai import OpenAI

    if real:
        yield OpenAI(), "the OpenAI API (requests are billed to your key)", None
        return
    from budgetguard.testing import Reply, Simulator, ToolCall

    with Simulator() as sim:
        sim.script(
            Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
            Reply(tool_calls=[ToolCall("convert_temperature", {"value": 18, "to": "F"})]),
            Reply(content="It is 18°C (64.4°F) and clear in Paris: a light jacket is enough."),
            Reply(content="Paris: clear, 18°C / 64.4°F. Light jacket."),
            Reply(content="Day 1: the Louvre and a walk along the Seine. Day 2: Montmartre. " * 8),
        )
        where = (
            f"the budgetguard SIMULATOR ({sim.base_url}): a stand-in for the OpenAI\n"
            "API on this machine, with scripted replies and token usage reported the way the API reports\n"
            "it, priced at the model's real rates. Nothing is billed. --real (with OPENAI_API_KEY) calls\n"
            "the OpenAI API instead."
        )
        yield OpenAI(base_url=sim.base_url, api_key="simulator", max_retries=0), where, sim


def _places(amount: Decimal) -> int:
    exponent = amount.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _money_format(amounts: list[Decimal]) -> Callable[[Decimal | None], str]:
    """One format for every amount in the table: as many decimals as the most precise needs,
    so each figure is exact and the column adds up."""
    places = max([2, *(_places(amount) for amount in amounts)])

    def show(amount: Decimal | None) -> str:
        return "-" if amount is None else f"${amount:.{places}f}"

    return show


def run_demo(
    *,
    real: bool = False,
    model: str = "gpt-4o-mini",
    max_usd: Decimal | str = Decimal("0.001"),
    out: TextIO | None = None,
) -> int:
    """Run the demo agent; returns a process exit code. ``max_usd`` is checked before anything
    is printed (``ConfigError``)."""
    budget_usd = max_usd if isinstance(max_usd, Decimal) else usd_argument(max_usd)
    out = sys.stdout if out is None else out
    say: Callable[[str], None] = lambda text: print(text, file=out, flush=True)  # noqa: E731
    if real and not os.environ.get("OPENAI_API_KEY"):
        say("--real needs OPENAI_API_KEY; running against the simulator instead.\n")
        real = False
    with _client(real) as (client, where, sim):
        cap = plain_usd(budget_usd)
        say(f"budgetguard demo: a weather agent on {model}, with a budget of ${cap} for the whole run.")
        say(f"It talks to {where}\n")
        say(
            "Before each request budgetguard reserves its worst case (the prompt plus the output cap,\n"
            "priced) and refuses the request if that does not fit the budget; after the response it\n"
            "charges what was billed and frees the rest.\n"
        )
        say("The agent:")
        steps = _agent(client, model, budget_usd, say)
        show = _money_format(
            [
                budget_usd,
                *(a for s in steps for a in (s.reserved, s.billed, s.spent, s.remaining) if a is not None),
            ]
        )
        say("")
        header = ("step", "request", "tokens", "reserved", "billed", "spent", "left")
        rows = [
            (
                str(number),
                step.label,
                "-" if step.tokens is None else str(step.tokens),
                show(step.reserved),
                "refused" if step.billed is None else show(step.billed),
                show(step.spent),
                show(step.remaining),
            )
            for number, step in enumerate(steps, 1)
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = [cell.ljust(widths[i]) if i == 1 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
            say("  ".join(cells).rstrip())
        sent = sum(1 for step in steps if step.billed is not None)
        refused = len(steps) - sent
        tail = f"; the simulator received {len(sim.requests)}" if sim is not None else ""
        say(f"\n{sent} requests sent and billed, {refused} refused before sending{tail}.")
        say(
            "reserved: the worst case held before sending (bg.estimate_request(...).max_usd)\n"
            "billed:   what the response's usage cost\n"
            "spent, left: the budget after the step (budget.spent_usd, budget.remaining_usd)"
        )
    return 0


def _agent(client: Any, model: str, budget_usd: Decimal, say: Callable[[str], None]) -> list[_Step]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a concise travel assistant. Use the tools."},
        {"role": "user", "content": "What is the weather in Paris, in Fahrenheit too? Do I need a coat?"},
    ]
    steps: list[_Step] = []
    with bg.Budget(max_usd=budget_usd, name="demo") as budget:

        def send(label: str, endpoint: str, body: dict[str, Any]) -> Any:
            """One request: its reservation, and (if it fits) its response and what it cost."""
            step = _Step(label, reserved=bg.estimate_request(endpoint, body).max_usd)
            steps.append(step)
            with bg.track_usage(name=f"step-{len(steps)}") as tracked:
                try:
                    result = client.chat.completions.create(**body)
                    if body.get("stream"):
                        result = "".join(chunk.choices[0].delta.content or "" for chunk in result)
                except bg.BudgetExceeded:
                    step.spent, step.remaining = budget.spent_usd, budget.remaining_usd
                    raise
            step.billed, step.tokens = tracked.usage.cost_usd, tracked.usage.total_tokens
            step.spent, step.remaining = budget.spent_usd, budget.remaining_usd
            return result

        try:
            for _ in range(MAX_AGENT_STEPS):
                body = {"model": model, "messages": messages, "tools": TOOLS, "max_completion_tokens": 300}
                message = send("chat, with tools", "chat.completions", body).choices[0].message
                messages.append(message.model_dump(exclude_none=True))
                if not message.tool_calls:
                    say(f"  answers: {message.content}")
                    break
                for call in message.tool_calls:
                    result = _run_tool(call.function.name, call.function.arguments)
                    say(f"  calls {call.function.name}({call.function.arguments}) -> {result}")
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            summary = [*messages, {"role": "user", "content": "Summarise in one line."}]
            body = {"model": model, "messages": summary, "stream": True, "max_completion_tokens": 60}
            say(f"  streams a one-line summary: {send('chat, streamed', 'chat.completions', body)}")
            itinerary = [*messages, {"role": "user", "content": "Now plan my week in Paris, day by day."}]
            body = {"model": model, "messages": itinerary, "max_completion_tokens": ITINERARY_TOKENS}
            say(f"  asks for a 7-day itinerary (up to {ITINERARY_TOKENS} output tokens) ...")
            text = send("chat, long answer", "chat.completions", body).choices[0].message.content or ""
            say(f"  ... and gets it: {text[:70]}...")
        except bg.BudgetExceeded:
            say(
                "  REFUSED before sending (budgetguard.BudgetExceeded): its worst case does not fit what\n"
                "  is left of the budget (step "
                f"{len(steps)} below). The agent stops here, cleanly: nothing was sent or billed."
            )
    return steps
