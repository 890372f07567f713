"""The simulator's own prompt-token counter, written from OpenAI's public counting rules.

This deliberately shares nothing with budgetguard's estimator (``budgetguard._estimate``):
the simulator plays the API that bills, so if the estimator is wrong, a budget comes out
wrong instead of the estimator confirming itself. Only the tiktoken vocabularies are shared
(loaded offline through ``budgetguard._tokenizer``). The rules are the simple public ones,
not a reconstruction of OpenAI's hidden prompt format:

- text: the tiktoken tokens of the string in the model's encoding (special-token text such
  as ``<|endoftext|>`` is ordinary text); any other JSON value: the tokens of its compact
  JSON text; ``null``: nothing.
- chat: the OpenAI cookbook's ``num_tokens_from_messages``: 3 tokens per message, plus the
  tokens of each of its fields' values (role, content, tool_calls, ...), plus 1 for a
  ``name``; 3 more prime the reply.
- content parts: a text part (``text``, ``input_text``, ``output_text``) its text; an image
  part (``image_url``, ``input_image``) by the vision formula below; any other part its JSON.
- images: ``detail: "low"`` costs 85. Otherwise (``high``, ``auto`` or none) the image is
  scaled to fit in 2048x2048, then its shortest side down to 768, and costs 170 per 512px
  tile plus 85. The size is read from a ``data:`` URL's PNG, GIF or JPEG header; an image of
  unknown size costs 765, the docs' worked example of a 1024x1024 image.
- function tools (a chat tool's ``function`` object, a Responses ``function`` tool, each legacy
  ``functions`` entry): ``num_tokens_for_tools`` from the OpenAI cookbook's "How to count
  tokens with tiktoken" (section 7; URL at the constants below). Each function costs 7
  (``func_init``; 10 for the cl100k_base models, gpt-3.5 and gpt-4; the cookbook names no
  other models, so every o200k_base model takes gpt-4o's) plus the tokens of
  ``name:description`` (one trailing ``.`` of the description dropped). If its
  ``parameters.properties`` has any: 3 (``prop_init``), and per property 3 (``prop_key``) plus
  the tokens of ``key:type:description`` (one trailing ``.`` dropped; nested schemas are not
  looked into), and for an ``enum`` -3 (``enum_init``) plus per item 3 (``enum_item``) and its
  tokens. 12 (``func_end``) once per request with any function. A missing name, type or
  description is empty text, any other non-string its JSON text.
- any other tool (built-in ones such as ``web_search``; a chat tool that is not a function):
  3 plus its JSON text.
- structured output: a ``json_schema`` response format (chat ``response_format.json_schema``,
  Responses ``text.format`` without its ``type``) costs its JSON text.
- Responses: ``instructions`` is a system message and a string ``input`` a user message;
  an input item with a ``role`` is a message (its role and content count); a function call
  costs 3 plus its name and arguments, a function call's output 3 plus the output (their ids
  are not prompt); any other item (reasoning, ...) 3 plus its JSON text; 3 prime the reply.
  Only the body counts: ``previous_response_id`` brings nothing back.
- legacy completions and embeddings: each prompt / input string its tokens, each token id 1,
  arrays the sum of their items; no framing.

Counting never fails: a value of an unexpected shape is counted as its JSON text. (The
endpoints reject what the real API rejects before anything is counted.)
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ._generate import model_encoding

if TYPE_CHECKING:
    import tiktoken

__all__ = ["count_prompt_tokens", "image_size", "image_tokens"]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMER = 3
# The function-tool constants of num_tokens_for_tools in the OpenAI cookbook, section 7 of
# https://github.com/openai/openai-cookbook/blob/main/examples/How_to_count_tokens_with_tiktoken.ipynb
# gpt-4o and gpt-4o-mini: these; gpt-3.5-turbo and gpt-4 differ only in func_init (10).
FUNC_INIT = 7
FUNC_INIT_CL100K = 10
PROP_INIT = 3
PROP_KEY = 3
ENUM_INIT = -3
ENUM_ITEM = 3
FUNC_END = 12
TOKENS_PER_TOOL = 3  # a non-function tool, besides its JSON text
LOW_DETAIL_IMAGE = 85
IMAGE_BASE = 85
IMAGE_PER_TILE = 170
UNKNOWN_SIZE_IMAGE = 765  # a 1024x1024 image at high detail: 4 tiles * 170 + 85

_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


def count_prompt_tokens(endpoint: str, body: Mapping[str, Any]) -> int:
    """The prompt tokens ``body`` is billed on ``endpoint`` (the ``PromptCounter`` signature)."""
    model = body.get("model")
    counter = _Counter(model_encoding(model if isinstance(model, str) else ""))
    if endpoint == "chat.completions":
        return counter.chat(body)
    if endpoint == "responses":
        return counter.responses(body)
    if endpoint == "completions":
        return counter.pieces(body.get("prompt"))
    if endpoint == "embeddings":
        return counter.pieces(body.get("input"))
    raise ValueError(f"unknown endpoint {endpoint!r}")


def image_tokens(detail: object, size: tuple[int, int] | None) -> int:
    """What one image costs at ``detail`` (``"low"``, ``"high"``, ``"auto"``, None)."""
    if detail == "low":
        return LOW_DETAIL_IMAGE
    if size is None:
        return UNKNOWN_SIZE_IMAGE
    width, height = (Fraction(side) for side in size)  # exact: no float rounding at tile edges
    if width <= 0 or height <= 0:
        return IMAGE_BASE
    fit = min(Fraction(1), 2048 / max(width, height))  # scale down (never up) to fit 2048x2048
    width, height = width * fit, height * fit
    shortest = min(Fraction(1), 768 / min(width, height))  # then the shortest side down to 768
    width, height = width * shortest, height * shortest
    tiles = math.ceil(width / 512) * math.ceil(height / 512)
    return IMAGE_PER_TILE * tiles + IMAGE_BASE


class TextCounter:
    """Tokens of text and of JSON values in one encoding: what both APIs' counters build on."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding

    def text(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))

    def value(self, value: object) -> int:
        """A string's tokens, nothing for null, else the tokens of the compact JSON text."""
        return self.text(_text(value))


class _Counter(TextCounter):
    # --- chat completions -----------------------------------------------------------------

    def chat(self, body: Mapping[str, Any]) -> int:
        messages = body.get("messages")
        total = REPLY_PRIMER + sum(self.chat_message(m) for m in _items(messages))
        tools = [_chat_function(tool) for tool in _items(body.get("tools"))]
        total += self.tools([*tools, *_items(body.get("functions"))])
        response_format = body.get("response_format")
        if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
            total += self.value(response_format.get("json_schema"))
        return total

    def chat_message(self, message: object) -> int:
        if not isinstance(message, Mapping):
            return TOKENS_PER_MESSAGE + self.value(message)
        total = TOKENS_PER_MESSAGE
        for key, value in message.items():
            total += self.content(value) if key == "content" else self.value(value)
            if key == "name":
                total += TOKENS_PER_NAME
        return total

    def content(self, content: object) -> int:
        if isinstance(content, list):
            return sum(self.part(part) for part in content)
        return self.value(content)

    def part(self, part: object) -> int:
        if not isinstance(part, Mapping):
            return self.value(part)
        kind = part.get("type")
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            return self.text(part["text"])
        if kind == "image_url":  # chat: {"type": "image_url", "image_url": {"url", "detail"}}
            image = part.get("image_url")
            image = image if isinstance(image, Mapping) else {"url": image}
            return image_tokens(image.get("detail"), image_size(image.get("url")))
        if kind == "input_image":  # Responses: {"type": "input_image", "image_url", "detail"}
            return image_tokens(part.get("detail"), image_size(part.get("image_url")))
        return self.value(part)

    def tools(self, tools: list[object]) -> int:
        """Function definitions (mappings whose ``type``, if any, is "function") and other tools."""
        functions: list[Mapping[str, Any]] = []
        total = 0
        for tool in tools:
            if isinstance(tool, Mapping) and tool.get("type", "function") == "function":
                functions.append(tool)
            else:
                total += TOKENS_PER_TOOL + self.value(tool)
        if functions:
            func_init = FUNC_INIT_CL100K if self.encoding.name == "cl100k_base" else FUNC_INIT
            total += FUNC_END + sum(func_init + self.function(f) for f in functions)
        return total

    def function(self, function: Mapping[str, Any]) -> int:
        """One function definition, by the cookbook's ``num_tokens_for_tools`` (without func_init)."""
        description = _text(function.get("description")).removesuffix(".")
        total = self.text(f"{_text(function.get('name'))}:{description}")
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if not isinstance(properties, Mapping) or not properties:
            return total
        total += PROP_INIT
        for key, schema in properties.items():
            schema = schema if isinstance(schema, Mapping) else {}
            total += PROP_KEY
            if "enum" in schema:
                total += ENUM_INIT + sum(ENUM_ITEM + self.value(item) for item in _items(schema["enum"]))
            description = _text(schema.get("description")).removesuffix(".")
            total += self.text(f"{key}:{_text(schema.get('type'))}:{description}")
        return total

    # --- responses ------------------------------------------------------------------------

    def responses(self, body: Mapping[str, Any]) -> int:
        total = REPLY_PRIMER
        instructions = body.get("instructions")
        if instructions is not None:
            total += self.responses_message("system", instructions)
        prompt = body.get("input")
        if isinstance(prompt, str):
            total += self.responses_message("user", prompt)
        else:
            total += sum(self.input_item(item) for item in _items(prompt))
        total += self.tools(_items(body.get("tools")))
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, Mapping) else None
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            total += self.value({k: v for k, v in fmt.items() if k != "type"})
        return total

    def responses_message(self, role: object, content: object) -> int:
        return TOKENS_PER_MESSAGE + self.value(role) + self.content(content)

    def input_item(self, item: object) -> int:
        if isinstance(item, Mapping) and "role" in item and item.get("type", "message") == "message":
            return self.responses_message(item["role"], item.get("content"))
        if isinstance(item, Mapping) and item.get("type") == "function_call":
            # What the model sees of its own call: the function's name and its arguments (ids
            # and status are bookkeeping, not prompt), framed like a message.
            return TOKENS_PER_MESSAGE + self.value(item.get("name")) + self.value(item.get("arguments"))
        if isinstance(item, Mapping) and item.get("type") == "function_call_output":
            return TOKENS_PER_MESSAGE + self.value(item.get("output"))
        return TOKENS_PER_MESSAGE + self.value(item)

    # --- legacy completions and embeddings ------------------------------------------------

    def pieces(self, value: object) -> int:
        """A string its tokens, a token id 1, an array the sum of its items."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return 1
        if isinstance(value, list):
            return sum(self.pieces(item) for item in value)
        return self.value(value)


def _items(value: object) -> list[object]:
    """``value`` if it is an array, else no items."""
    return list(value) if isinstance(value, list) else []


def _chat_function(tool: object) -> object:
    """A chat ``{"type": "function", "function": {...}}`` tool's function object, else the tool."""
    if (
        isinstance(tool, Mapping)
        and tool.get("type") == "function"
        and isinstance(tool.get("function"), Mapping)
    ):
        return tool["function"]
    return tool


def _text(value: object) -> str:
    """A string as is, null as empty text, anything else as its compact JSON text."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def image_size(url: object) -> tuple[int, int] | None:
    """(width, height) from a base64 ``data:`` URL's PNG, GIF or JPEG header, else None."""
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    _, _, payload = url.partition(",")
    try:
        data = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The size in a JPEG's first start-of-frame segment (SOF0-SOF15 but DHT, JPG and DAC)."""
    index = 2
    while index + 9 <= len(data) and data[index] == 0xFF:
        marker = data[index + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        index += 2 + length
    return None
