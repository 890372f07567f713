"""Context the server adds that the body only names: built-in tools and what they bring back.

Built-in tools (web search, code interpreter, image generation, MCP servers, tool search,
file search) run server-side and add their own instructions and results (search hits, code
output, tool lists) to the prompt. The body cannot say how much, so each adds a typical
amount to the estimate and reserves more in the upper bound. Typical values are medians of
recorded calls; the worst case is unbounded (one web search added 100k tokens), so the
upper bound covers most such calls, not all.
"""

from __future__ import annotations

from budgetguard._estimate._result import Tally

__all__ = ["add_builtin_tool"]

# Per tool type: (typical tokens added to the estimate, extra tokens the upper bound reserves).
_BUILTIN = {
    "web_search": (8_500, 24_000),
    "web_search_preview": (8_500, 24_000),
    "code_interpreter": (1_300, 3_000),
    "image_generation": (2_200, 1_000),
    "tool_search": (350, 400),
    "mcp": (1_000, 1_000),
    "file_search": (2_000, 8_000),
}
_DEFAULT = (1_000, 4_000)


def add_builtin_tool(tally: Tally, kind: str, where: str) -> None:
    """Account for a built-in tool of type ``kind`` (dated variants like ``web_search_2025_08_26`` too)."""
    typical, extra = _BUILTIN.get(kind.split("_20", 1)[0], _DEFAULT)
    tally.tokens += typical
    tally.inexact(
        f"{where}: built-in tool {kind!r} adds server-side instructions and results: "
        f"estimated {typical} tokens, {typical + extra} reserved",
        allowance=extra,
    )
