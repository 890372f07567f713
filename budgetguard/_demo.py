"""The demo: a small tool-using agent whose every step is metered and capped.

Runs against the embedded OpenAI-compatible simulator unless ``--real`` is given and
``OPENAI_API_KEY`` is set. It shows what budgetguard is for: per-step and total usage and
cost, a stream counted like any other call, and a request refused *before* it is sent.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import budgetguard as bg

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


@contextmanager
def _client(real: bool) -> Iterator[tuple[Any, str]]:
    # Any: the demo builds message dicts freely; the SDK's TypedDict overloads add nothing here.
    from openai import OpenAI

    if real:
        yield OpenAI(), "the OpenAI API"
        return
    from budgetguard.testing import Reply, Simulator, ToolCall

    with Simulator() as sim:
        sim.script(
            Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
            Reply(tool_calls=[ToolCall("convert_temperature", {"value": 18, "to": "F"})]),
            Reply(content="It is 18°C (64.4°F) and clear in Paris: a light jacket is enough."),
            Reply(content="Paris: clear, 18°C / 64.4°F. Light jacket."),
        )
        yield (
            OpenAI(base_url=sim.base_url, api_key="simulator", max_retries=0),
            f"the simulator at {sim.base_url}",
        )


def run_demo(
    *, real: bool = False, model: str = "gpt-4o-mini", max_usd: str = "0.05", out: TextIO = sys.stdout
) -> int:
    """Run the demo agent; returns a process exit code."""
    if real and not os.environ.get("OPENAI_API_KEY"):
        print("--real needs OPENAI_API_KEY; running against the simulator instead.", file=out)
        real = False
    say: Callable[[str], None] = lambda text: print(text, file=out, flush=True)  # noqa: E731
    with _client(real) as (client, where):
        say(f"budgetguard demo: a weather agent on {model}, against {where}")
        say(f"Run budget: ${max_usd}; every request is estimated and reserved before it is sent.\n")
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a concise travel assistant. Use the tools."},
            {"role": "user", "content": "What is the weather in Paris, in Fahrenheit too? Do I need a coat?"},
        ]
        steps: list[tuple[str, bg.Usage]] = []
        with bg.Budget(max_usd=max_usd, name="demo-run") as run:
            for number in range(1, 6):
                with bg.track_usage(name=f"step-{number}") as step:
                    response = client.chat.completions.create(
                        model=model,
                        messages=messages,
                        tools=TOOLS,
                        max_completion_tokens=300,
                    )
                message = response.choices[0].message
                calls = message.tool_calls or []
                action = ", ".join(f"{c.function.name}({c.function.arguments})" for c in calls) or "answer"
                steps.append((f"step {number}: {action}", step.usage))
                say(
                    f"  step {number}: {action:<45} {step.usage.total_tokens:>5} tokens  "
                    f"${step.usage.cost_usd:.6f}  (run so far ${run.spent_usd:.6f})"
                )
                messages.append(message.model_dump(exclude_none=True))
                if not calls:
                    say(f"\n  agent: {message.content}\n")
                    break
                for call in calls:
                    messages.append(
                        {
                            "role": "tool",
                            "tool_call_id": call.id,
                            "content": _run_tool(call.function.name, call.function.arguments),
                        }
                    )
            with bg.track_usage(name="summary-stream") as streamed:
                stream = client.chat.completions.create(
                    model=model,
                    stream=True,
                    max_completion_tokens=60,
                    messages=[*messages, {"role": "user", "content": "Summarise in one line."}],
                )
                text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
            steps.append(("streamed summary", streamed.usage))
            say(f"  streamed summary: {text}")
            counted = streamed.usage
            say(f"  (a stream is counted too: {counted.total_tokens} tokens, ${counted.cost_usd:.6f})\n")

        say("Per step:")
        for label, usage in steps:
            say(
                f"  {label:<60} prompt {usage.prompt_tokens:>5}  completion {usage.completion_tokens:>4}  "
                f"${usage.cost_usd:.6f}"
            )
        say("\nWhole run (the same lines LangChain's get_openai_callback prints):")
        say(str(run.usage))

        say("\nA budget too small for the next request refuses it before it is sent:")
        try:
            with bg.Budget(max_usd="0.00001", name="tiny"):
                client.chat.completions.create(model=model, messages=messages, max_completion_tokens=300)
        except bg.BudgetExceeded as exc:
            say(f"  BudgetExceeded: {exc}")
    return 0
