"""The simulator's own input-token counter for the Anthropic Messages API: a documented stand-in.

Anthropic publishes no tokenizer for its current models, so this counter does not try to
match Claude's counts. It is a simple, public, exactly computable rule, so that a test can
predict every number the simulator bills, and so that budgetguard's estimator, which shares
nothing with it, is checked against an independent bill rather than against itself:

- tokenizer: tiktoken's ``o200k_base`` (loaded offline through ``budgetguard._tokenizer``)
  stands in for Claude's. Text is counted as ordinary text (``<|endoftext|>`` included).
- ``system``: 3 tokens of framing plus its text (a string, or each text block's text).
- each message (``system``-role messages too): 3 tokens of framing (role included) plus its
  content: a string its tokens, an array the sum of its blocks.
- content blocks: ``text`` its text; ``image`` by Anthropic's documented formula
  ``tokens = ceil(width * height / 750)`` after scaling the long edge down to 1568 px, at most
  1,600 (the docs' ceiling, reached at about 1.15 megapixels); the size is read from a
  base64 PNG, GIF or JPEG header, and an image of unknown size (a URL source) costs 1,600;
  ``tool_use`` its name plus the compact JSON of its input; ``tool_result`` its content (a
  string or blocks, counted the same way); ``thinking`` its thinking text;
  ``redacted_thinking`` its data; a ``document`` with a ``text`` source its data; any other
  block (PDFs, search results, ...) the compact JSON of the block.
- ``tools``: the compact JSON of each tool definition, plus, once per request with any tool,
  Anthropic's documented tool-use system prompt: 346 tokens when ``tool_choice`` is absent,
  ``auto`` or ``none``, 313 for ``any`` or ``tool`` (the Claude 4 figures, used for every model).
- structured output (``output_config.format`` or the beta ``output_format``, type
  ``json_schema``): the compact JSON of its schema.
- ``cache_control`` markers and ``citations`` settings are not prompt: they are left out of
  every JSON text above. Nothing else (``thinking`` settings, ``metadata``, caps) counts.

Prompt caching (see ``cache_breakpoints``): the prefix up to a breakpoint is the request cut
right after the marked block, in the API's prompt order (tools, then system, then messages);
what the prefix costs is what the counter bills for that cut request.

Counting never fails: a value of an unexpected shape is counted as its compact JSON text.
(The endpoint rejects what the real API rejects before anything is counted.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ._counting import TextCounter, image_size
from ._generate import model_encoding

__all__ = [
    "STAND_IN_MODEL",
    "Breakpoint",
    "anthropic_image_tokens",
    "cache_breakpoints",
    "count_message_tokens",
    "prefix_key",
    "strip_cache_control",
]

STAND_IN_MODEL = "gpt-4o"  # a model name whose tiktoken encoding is o200k_base
TOKENS_PER_MESSAGE = 3
SYSTEM_FRAMING = 3
# The "tool use system prompt" token counts of Anthropic's tool-use pricing table (Claude 4 models).
TOOL_SYSTEM_PROMPT_AUTO = 346  # tool_choice absent, "auto" or "none"
TOOL_SYSTEM_PROMPT_ANY = 313  # tool_choice "any" or "tool"
IMAGE_PIXELS_PER_TOKEN = 750
IMAGE_MAX_LONG_EDGE = 1568
IMAGE_MAX_TOKENS = 1600
UNKNOWN_SIZE_IMAGE = IMAGE_MAX_TOKENS

# The fields of a request that make up the cached prefix (what a cache entry is keyed on).
_PREFIX_FIELDS = ("model", "tools", "tool_choice", "system", "messages")


def count_message_tokens(body: Mapping[str, Any]) -> int:
    """The input tokens the simulator bills a Messages (or count_tokens) request body."""
    counter = _Counter(model_encoding(STAND_IN_MODEL))
    total = 0
    tools = _items(body.get("tools"))
    if tools:
        total += _tool_system_prompt(body.get("tool_choice"))
        total += sum(counter.value(strip_cache_control(tool)) for tool in tools)
    system = body.get("system")
    if system is not None:
        total += SYSTEM_FRAMING + counter.content(system)
    for message in _items(body.get("messages")):
        content = message.get("content") if isinstance(message, Mapping) else message
        total += TOKENS_PER_MESSAGE + counter.content(content)
    schema = _output_schema(body)
    if schema is not None:
        total += counter.value(schema)
    return total


def anthropic_image_tokens(size: tuple[int, int] | None) -> int:
    """What one image costs: ``ceil(w * h / 750)`` after the 1568 px long-edge resize, at most 1,600."""
    if size is None:
        return UNKNOWN_SIZE_IMAGE
    width, height = (Fraction(side) for side in size)  # exact: no float rounding
    if width <= 0 or height <= 0:
        return 0
    scale = min(Fraction(1), IMAGE_MAX_LONG_EDGE / max(width, height))
    return min(IMAGE_MAX_TOKENS, math.ceil(width * scale * height * scale / IMAGE_PIXELS_PER_TOKEN))


@dataclass(frozen=True)
class Breakpoint:
    """One ``cache_control`` marker: where it is, what it says, and the prefix it ends.

    ``prefix`` is the request body cut right after the marked block (tools, system, messages,
    in that order; structured-output settings dropped). ``marker`` is the ``cache_control``
    value as sent (not checked here). The top-level ``cache_control`` marks the whole prompt.
    """

    path: str
    marker: object
    prefix: dict[str, Any]


def cache_breakpoints(body: Mapping[str, Any]) -> list[Breakpoint]:
    """Every ``cache_control`` marker of ``body``, in prompt order."""
    base = {key: value for key, value in body.items() if key not in ("output_config", "output_format")}
    tools = _items(body.get("tools"))
    system = body.get("system")
    messages = _items(body.get("messages"))
    found: list[Breakpoint] = []

    def cut(**parts: Any) -> dict[str, Any]:
        prefix = {key: value for key, value in base.items() if key not in ("system", "messages")}
        prefix.update(messages=[])
        prefix.update(parts)
        return prefix

    for index, tool in enumerate(tools):
        if isinstance(tool, Mapping) and "cache_control" in tool:
            found.append(Breakpoint(f"tools.{index}", tool["cache_control"], cut(tools=tools[: index + 1])))
    if isinstance(system, list):
        for index, block in enumerate(system):
            if isinstance(block, Mapping) and "cache_control" in block:
                found.append(
                    Breakpoint(f"system.{index}", block["cache_control"], cut(system=system[: index + 1]))
                )
    keep_system = {"system": system} if system is not None else {}
    for m_index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(message, Mapping) or not isinstance(content, list):
            continue
        for b_index, block in enumerate(content):
            if isinstance(block, Mapping) and "cache_control" in block:
                last = {**message, "content": content[: b_index + 1]}
                found.append(
                    Breakpoint(
                        f"messages.{m_index}.content.{b_index}",
                        block["cache_control"],
                        cut(**keep_system, messages=[*messages[:m_index], last]),
                    )
                )
    if body.get("cache_control") is not None:
        found.append(Breakpoint("cache_control", body["cache_control"], dict(base)))
    return found


def prefix_key(prefix: Mapping[str, Any]) -> str:
    """What a cache entry is keyed on: the model and the prompt fields, without markers."""
    fields = {key: strip_cache_control(prefix.get(key)) for key in _PREFIX_FIELDS}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def strip_cache_control(value: object) -> object:
    """``value`` without any ``cache_control`` key, at any depth."""
    if isinstance(value, Mapping):
        return {k: strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip_cache_control(item) for item in value]
    return value


class _Counter(TextCounter):
    def content(self, content: object) -> int:
        if isinstance(content, list):
            return sum(self.block(block) for block in content)
        return self.value(content)

    def block(self, block: object) -> int:
        if not isinstance(block, Mapping):
            return self.value(block)
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            return self.text(block["text"])
        if kind == "image":
            return anthropic_image_tokens(_image_size(block.get("source")))
        if kind == "tool_use":
            return self.value(block.get("name")) + self.value(block.get("input"))
        if kind == "tool_result":
            return self.content(block.get("content"))
        if kind == "thinking" and isinstance(block.get("thinking"), str):
            return self.text(block["thinking"])
        if kind == "redacted_thinking" and isinstance(block.get("data"), str):
            return self.text(block["data"])
        source = block.get("source")
        if kind == "document" and isinstance(source, Mapping) and source.get("type") == "text":
            return self.value(source.get("data"))
        return self.value(strip_cache_control({k: v for k, v in block.items() if k != "citations"}))


def _tool_system_prompt(tool_choice: object) -> int:
    kind = tool_choice.get("type") if isinstance(tool_choice, Mapping) else None
    return TOOL_SYSTEM_PROMPT_ANY if kind in ("any", "tool") else TOOL_SYSTEM_PROMPT_AUTO


def _output_schema(body: Mapping[str, Any]) -> object:
    """The JSON schema of a structured-output request, else None."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, Mapping) else None
    if not isinstance(fmt, Mapping):
        fmt = body.get("output_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        return fmt.get("schema")
    return None


def _image_size(source: object) -> tuple[int, int] | None:
    if isinstance(source, Mapping) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        return image_size(f"data:{source.get('media_type', '')};base64,{source['data']}")
    return None


def _items(value: object) -> list[Any]:
    """``value`` if it is an array, else no items."""
    return list(value) if isinstance(value, list) else []
