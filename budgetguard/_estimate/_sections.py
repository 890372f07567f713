"""System sections: where tool definitions and response formats sit in the prompt, and their cost.

The server writes function definitions (``# Tools``) and a ``json_schema`` response format
(``# Response Formats``) into a system section. In Chat Completions the section extends
the first system/developer message (joined by a blank line) or becomes a system message
of its own; the Responses API renders it more compactly. What the rendered text does not
account for is absorbed by the per-API, per-dialect constants below, calibrated against
billed usage (``tests/test_estimate_accuracy.py`` keeps them honest).
"""

from __future__ import annotations

from typing import Any

from budgetguard._estimate._models import Profile
from budgetguard._estimate._schema import format_schema_json

__all__ = [
    "chat_host_cost",
    "chat_sections_cost",
    "chat_sections_text_cost",
    "format_section",
    "responses_sections_cost",
]

# Tokens beyond the rendered text (calibrated). Harmony models (gpt-5, o-series) behind
# Chat Completions add a fixed preamble (valid channels, tool routing) once tools are present.
_CHAT_TOOLS = {"chatml": -1, "harmony": 80}
_CHAT_FORMAT = {"chatml": 5, "harmony": 5}
_RESPONSES_TOOLS = {"chatml": -3, "harmony": 2}
# A Responses text format is a section of its own: framing + role, then this (calibrated).
_RESPONSES_FORMAT = {"chatml": -3, "harmony": -14}
# Tools and a response format together share one header and framing (calibrated).
_BOTH = -7


def format_section(name: str, schema: Any) -> str:
    """The section that tells the model about a ``json_schema`` response format."""
    return f"# Response Formats\n\n## {name}\n\n{format_schema_json(schema)}"


def chat_sections_cost(profile: Profile, host: str | None, tools: str | None, fmt: str | None) -> int:
    """Tokens of the tools/format sections of a chat request whose first system text is ``host``."""
    return chat_sections_text_cost(profile, tools, fmt) + chat_host_cost(profile, host)


def chat_sections_text_cost(profile: Profile, tools: str | None, fmt: str | None) -> int:
    """The part of ``chat_sections_cost`` that does not depend on the host message."""
    dialect = profile.dialect
    cost = profile.count("\n\n".join(s for s in (tools, fmt) if s))
    if tools:
        cost += _CHAT_TOOLS[dialect]
    if fmt:
        cost += _CHAT_FORMAT[dialect]
    if tools and fmt:
        cost += _BOTH
    return cost


def chat_host_cost(profile: Profile, host: str | None) -> int:
    """What tools/format sections add to the chat request's first system text ``host``."""
    if host is None:
        return profile.tokens_per_message + 1  # a system message of its own: framing + role
    # Joined with a blank line, which merges into the host's trailing punctuation if any.
    tail = host[-16:]
    return profile.count(tail + "\n\n") - profile.count(tail)


def responses_sections_cost(profile: Profile, tools: str | None, fmt: str | None) -> int:
    """Tokens of the tools/format sections of a Responses request."""
    count = profile.count
    dialect = profile.dialect
    cost = 0
    if tools:
        cost += count(tools) + _RESPONSES_TOOLS[dialect]
    if fmt:
        cost += count(fmt) + profile.tokens_per_message + 1 + _RESPONSES_FORMAT[dialect]
    if tools and fmt:
        cost += _BOTH
    return cost
