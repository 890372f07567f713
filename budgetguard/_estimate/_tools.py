"""Function tools as the model sees them: the ``namespace functions`` block and rendered calls.

Definitions become a TypeScript namespace in a system section::

    # Tools

    ## functions

    namespace functions {

    // Get the weather
    type get_weather = (_: {
    // City and country
    city: string,
    unit?: "c" | "f",
    }) => any;

    } // namespace functions

A past call is an assistant turn addressed ``to=functions.NAME`` whose body is the arguments
as compact JSON; several calls in one chatml turn are one call to
``multi_tool_use.parallel`` wrapping them. A result is a turn authored by ``functions.NAME``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from budgetguard._estimate._body import at, fail, need_mapping, need_str, opt_mapping, opt_str
from budgetguard._estimate._schema import comment, object_comments, properties_block

__all__ = [
    "FunctionDef",
    "call_header",
    "check_tool_choice",
    "compact_arguments",
    "function_def",
    "parallel_call_body",
    "render_functions",
    "result_header",
]


@dataclass(frozen=True, slots=True)
class FunctionDef:
    """A function the model may call: name, description and JSON-schema parameters."""

    name: str
    description: str
    parameters: Mapping[str, Any] | None


def function_def(spec: Mapping[str, Any], path: str) -> FunctionDef:
    """A function definition (``{name, description?, parameters?}``), validated."""
    name = spec.get("name")
    if name is None:
        fail(at(path, "name"), "a function needs a name")
    name = need_str(name, at(path, "name"))
    description = opt_str(spec, "description", path) or ""
    parameters = opt_mapping(spec, "parameters", path)
    return FunctionDef(name, description, parameters)


def render_functions(defs: Sequence[FunctionDef]) -> str:
    """The ``# Tools`` section listing function definitions."""
    parts = ["# Tools\n\n## functions\n\nnamespace functions {\n\n"]
    for fn in defs:
        if fn.description:
            parts.append(comment(fn.description))
        params = fn.parameters
        if params and isinstance(params.get("properties"), Mapping) and params["properties"]:
            head = object_comments(params)
            parts.append(f"type {fn.name} = (_: {head}{{\n{properties_block(params, params)}}}) => any;\n\n")
        else:
            parts.append(f"type {fn.name} = () => any;\n\n")
    parts.append("} // namespace functions")
    return "".join(parts)


# ``json.dumps`` with options builds an encoder per call: one, built once.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def compact_arguments(arguments: str) -> str:
    """Call arguments as the model wrote them: compact JSON (the raw text if not JSON)."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return _COMPACT(value)


def parallel_call_body(calls: Sequence[tuple[str, str]]) -> str:
    """The ``multi_tool_use.parallel`` body for several ``(name, arguments)`` calls at once."""
    uses = []
    for name, arguments in calls:
        try:
            parameters: Any = json.loads(arguments)
        except ValueError:
            parameters = arguments
        uses.append({"recipient_name": f"functions.{name}", "parameters": parameters})
    return _COMPACT({"tool_uses": uses})


def call_header(name: str) -> str:
    """The header of an assistant turn calling ``name``; its body is JSON (calibrated: +1 token)."""
    return f"assistant to=functions.{name} json"


def result_header(name: str | None) -> str:
    return f"functions.{name}" if name else "tool"


def check_tool_choice(choice: object, path: str) -> None:
    """``tool_choice`` is a mode string or an object naming a tool; it adds no prompt tokens."""
    if choice is None or isinstance(choice, str):
        return
    need_mapping(choice, path)
