"""Anthropic Messages API bodies: a documented, calibrated offline bound on the billed input.

Anthropic publishes no tokenizer for its current models, so ``count_request("anthropic.messages",
body)`` never claims an exact count (``exact`` is always False, with the reason
``NO_TOKENIZER``). It counts every text of the body with tiktoken's ``o200k_base`` and scales it:

    prompt_tokens       = ceil(T * central + W * 0.5) + framing + prompts + images + documents
    prompt_tokens_upper = ceil((ceil(T * upper + W * 1.0) + framing_upper + prompts_upper
                                + images_upper + documents_upper) * (1 + margin))
                          + ceil(margin * 160) + allowances

where ``T`` is the o200k count of all text (system, messages, tool definitions as compact JSON,
tool calls and results, thinking, text documents) and ``W`` the number of non-ASCII characters.
Each constant below names its source. The factors, per tokenizer generation:

* Claude 3 through Claude 4.6 and Haiku 4.5: ``central`` 1.1, ``upper`` 1.5. Published
  comparisons of Claude 3.5 Sonnet with gpt-4o (whose tokenizer is o200k) found 16% more tokens
  on English articles, 21% on math and 30% on Python code; Anthropic's own guidance says tiktoken
  undercounts Claude "by ~15-20% on typical text, and by much more on code or non-English input".
  Recorded counts (claude-sonnet-4-5 input, claude-3-7-sonnet output) come to 1.00-1.14x o200k
  on English text (``tests/test_estimate_anthropic.py``).
* Claude Opus 4.7 and later, Sonnet 5, Fable 5, Mythos (and any model name not recognised):
  Anthropic documents "a newer tokenizer" producing "approximately 30 percent more tokens" (1.0
  to 1.35x); public count_tokens measurements against Opus 4.6 found up to 1.47x on English
  technical prose and 1.13-1.33x on code. ``central`` 1.45, ``upper`` 2.0 (1.35 x 1.5).
* Non-Latin scripts: the last public Claude tokenizer (the Claude 2 vocabulary, shipped in
  ``anthropic`` < 0.39) needs 1.4-4x o200k's tokens on Chinese, Japanese, Russian, Arabic and
  Hindi (up to 1.35 tokens per such character), and the newer tokenizer splits those scripts
  exactly as the earlier one. Each non-ASCII character adds 0.5 token to the estimate and one
  token to the bound, on top of the factor.

Framing (role markers, block wrappers) was fitted on recorded billed counts: a one-message
request bills o200k + 6-7 tokens; the bound reserves more per request, message and block.
Tool use adds Anthropic's documented tool-use system prompt (346 tokens for ``auto``/``none``,
313 for ``any``/``tool``) plus the definitions; requests with two or more tools were billed
136-307 tokens more than that, hence a per-tool allowance. Images follow the documented
formula ``width * height / 750`` after the documented resize (long edge 1568 px and about 1.15
megapixels; 2576 px and 4784 28-px patches on the newer models), the bound also taking the
28-px patch count. A PDF page is billed as its extracted text plus a page image: public
count_tokens measurements found 1,592 (scanned) to 2,481 (dense table) tokens per page on Haiku
4.5 and a Claude 5.5 model; the estimate takes 2,300 and the bound reserves 3,500 per page
(pages are read from the PDF's page objects; when they cannot be, the bound reserves the
100-page request maximum). Nothing here can see
what server tools, MCP servers or skills bring in: those mark the estimate and reserve a
documented allowance.

``max_output_tokens`` is ``max_tokens`` (required): extended thinking (``budget_tokens``) is
billed as output within it, so the output side of the worst case is exact.

Exact mode: :func:`messages_token_counter` asks ``client.messages.count_tokens`` (free, not
billed) for the input count instead; it returns None for bodies that endpoint rejects (server
tools, MCP servers, images or documents by URL or file id).
"""

from __future__ import annotations

import base64
import binascii
import json
import marshal
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from budgetguard._context import unmetered
from budgetguard._estimate._body import at, fail, json_type, need_list, need_mapping, need_str
from budgetguard._estimate._cache import text_counter
from budgetguard._estimate._images import ASSUMED_REMOTE_SIZE, image_size
from budgetguard._estimate._result import Tally, TokenEstimate
from budgetguard._tokenizer import get_encoding

__all__ = [
    "ENDPOINT",
    "LEGACY",
    "NEWER",
    "NO_TOKENIZER",
    "Generation",
    "count_anthropic",
    "generation_for",
    "image_tokens",
    "messages_token_counter",
]

ENDPOINT = "anthropic.messages"
NO_TOKENIZER = "Anthropic publishes no tokenizer: an upper bound"


@dataclass(frozen=True, slots=True)
class Generation:
    """A Claude tokenizer generation: text factors over o200k and the image limits."""

    name: str
    #: o200k tokens -> Claude tokens: the best estimate, and the bound.
    central: float
    upper: float
    #: Images are resized to fit this long edge and this many 28x28-px patches.
    image_long_edge: int
    image_max_patches: int
    #: The most one image can cost in the bound, whatever its size: the larger of the 750-px
    #: area and the padded patch count at the largest size the resize allows.
    image_tokens_max: int


LEGACY = Generation("Claude 3 - 4.6", 1.1, 1.5, 1568, 1568, 1640)
NEWER = Generation("newer tokenizer", 1.45, 2.0, 2576, 4784, 5010)

#: Per non-ASCII character, on top of the factor: estimate and bound (see the module docstring).
WIDE_CENTRAL = 0.5
WIDE_UPPER = 1.0

# (estimate, bound) tokens of framing. A request and its messages: role markers (measured: a
# one-message request bills o200k + 6-7 tokens, with or without a system prompt).
_REQUEST = (4, 12)
_MESSAGE = (3, 6)
_SYSTEM = (0, 4)
_BLOCK = (0, 2)
# Tool calls and results render their ids (measured: a call and its result with 19-token ids
# billed 51 tokens).
_TOOL_USE = (8, 16)
_TOOL_RESULT = (8, 16)
_IMAGE = (0, 8)
_DOCUMENT = (8, 24)
# Extended thinking adds instructions (measured: 28 tokens on claude-3-7-sonnet).
_THINKING = (30, 64)
_ADAPTIVE_THINKING = (0, 16)
# Structured outputs (``output_config.format``): the schema is counted, plus instructions.
_OUTPUT_FORMAT = (50, 300)

#: Anthropic's documented tool-use system prompt for Claude 3.5/4 models, by ``tool_choice``.
TOOL_PROMPT = {"auto": 346, "none": 346, "any": 313, "tool": 313}
#: The bound's tool-use system prompt: above Claude 3 Opus's documented 530 and 346 x 1.35.
TOOL_PROMPT_UPPER = 600
# Per tool definition: the first, each further one (measured: requests with two tools billed
# 136-307 tokens above the prompt and the definitions), and the bound's allowance per tool.
_FIRST_TOOL = 10
_MORE_TOOLS = 150
_TOOL_UPPER = 200

#: A PDF page: its text plus a page image; measured 1,592-2,481 tokens (module docstring).
PDF_PAGE = (2300, 3500)
#: Pages assumed for a PDF whose page count cannot be read (the per-request maximum for
#: requests with a context window under 1M tokens).
UNKNOWN_PDF_PAGES = 100
_MAX_PDF_PAGES = 600

#: Tokens the bound reserves for a field or content the estimator does not know.
UNKNOWN_ALLOWANCE = 256
#: Tools Anthropic defines, by type prefix: (estimate, bound) tokens of their definition and
#: instructions, and whether the server runs them (their results are billed as input of the
#: same request). Documented: bash 245 tokens, text editor 700, computer use 735 plus a
#: 466-499-token system prompt; the server tools' results are not visible before the call.
_SERVER_RESULTS = 25_000
_BUILTIN_TOOLS: tuple[tuple[str, int, int, bool], ...] = (
    ("bash_", 245, 400, False),
    ("text_editor_", 700, 1_000, False),
    ("computer_", 1_234, 1_800, False),
    ("memory_", 500, 1_500, False),
    ("web_search_", 500, _SERVER_RESULTS, True),
    ("web_fetch_", 500, _SERVER_RESULTS, True),
    ("code_execution_", 500, _SERVER_RESULTS, True),
    ("tool_search_tool_", 500, _SERVER_RESULTS, True),
    ("browser_", 1_234, _SERVER_RESULTS, True),
    ("mcp_toolset", 1_000, _SERVER_RESULTS, True),
)
_UNKNOWN_TOOL = (1_000, _SERVER_RESULTS)
#: Per MCP server (tool definitions and results the server supplies) and per skill.
_MCP_SERVER = (1_000, _SERVER_RESULTS)
_SKILL = (200, 5_000)

# --- allowlists (spelled as the ``anthropic`` SDK's request types) --------------------------------

# ``cache_control`` marks cache breakpoints anywhere: caching only, no tokens.
_CACHE = "cache_control"
_CONTEXT_FREE = frozenset(
    {
        "max_tokens",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "stream",
        "service_tier",
        "inference_geo",
        "speed",
        "diagnostics",
        _CACHE,
        "user_profile_id",
        "workspace_id",
        "betas",
        # Bedrock puts these in the body.
        "anthropic_version",
        "anthropic_beta",
    }
)
_COUNTED = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config", "output_format"}
)
_HIDDEN = frozenset({"container", "mcp_servers", "context_management", "compaction"})
KNOWN_FIELDS = _CONTEXT_FREE | _COUNTED | _HIDDEN

_MESSAGE_KEYS = frozenset({"role", "content"})
_BLOCK_KEYS: Mapping[str, frozenset[str]] = {
    "text": frozenset({"type", "text", "citations", _CACHE}),
    "image": frozenset({"type", "source", "transformations", _CACHE}),
    "document": frozenset({"type", "source", "title", "context", "citations", _CACHE}),
    "search_result": frozenset({"type", "source", "title", "content", "citations", _CACHE}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
    "tool_use": frozenset({"type", "id", "name", "input", "caller", "toolset_name", _CACHE}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "toolset_name", _CACHE}),
    "tool_reference": frozenset({"type", "tool_name", _CACHE}),
}
# Blocks of server-side tool runs: their content (often encrypted) is counted as JSON text.
_SERVER_BLOCKS = frozenset(
    {
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
        "mcp_tool_use",
        "mcp_tool_result",
        "compaction",
    }
)
_TOOL_KEYS = frozenset(
    {
        "type",
        "name",
        "description",
        "input_schema",
        "input_examples",
        "strict",
        "defer_loading",
        "allowed_callers",
        "eager_input_streaming",
        _CACHE,
    }
)
_THINKING_KEYS = frozenset({"type", "budget_tokens", "display"})
_OUTPUT_CONFIG_KEYS = frozenset({"effort", "format", "task_budget"})
_TOOL_CHOICE_KEYS = frozenset({"type", "name", "disable_parallel_tool_use"})

# --- models ----------------------------------------------------------------------------------------

# Model names on the earlier tokenizer; anything else (Opus 4.7+, Sonnet 5, Fable, Mythos, names
# not yet known) is counted with the newer tokenizer's factors, the larger ones.
_LEGACY_NAME = re.compile(
    r"claude-(?:instant|[123](?:[.-]|$)|(?:opus|sonnet|haiku)-[34](?:$|-(?:[0-6](?:$|\D)|20\d{6})))"
)


def generation_for(model: str) -> tuple[Generation, bool]:
    """The tokenizer generation of a model name, and whether the name was recognised."""
    name = _normalize(model)
    if _LEGACY_NAME.match(name):
        return LEGACY, True
    return NEWER, name.startswith("claude-")


def _normalize(model: str) -> str:
    # "anthropic/claude-...", Bedrock "us.anthropic.claude-...-v1:0", Vertex "claude-...@2024...".
    name = model.strip().lower().rsplit("/", 1)[-1]
    found = name.find("claude-")
    if found > 0:
        name = name[found:]
    return name.replace("@", "-")


_generations: dict[str, tuple[Generation, bool]] = {}

# --- counting --------------------------------------------------------------------------------------


class _Acc:
    """What a body adds up to: o200k text tokens, non-ASCII characters, fixed (estimate, bound)."""

    __slots__ = (
        "count",
        "fixed",
        "fixed_upper",
        "gen",
        "images",
        "images_upper",
        "keep_thinking",
        "tally",
        "text",
        "text_upper",
        "tools",
        "wide",
        "wide_upper",
    )

    def __init__(self, gen: Generation, count: Callable[[str], int], tally: Tally) -> None:
        self.gen = gen
        self.count = count
        self.tally = tally
        self.text = 0
        self.wide = 0
        #: Text only the bound counts (thinking of earlier turns, which is not billed).
        self.text_upper = 0
        self.wide_upper = 0
        #: Whether the message being counted keeps its thinking blocks in the prompt.
        self.keep_thinking = True
        self.fixed = 0
        self.fixed_upper = 0
        self.images = 0
        self.images_upper = 0
        #: Tool definitions by name (for ``tool_reference`` blocks).
        self.tools: dict[str, str] = {}

    def add(self, text: str) -> None:
        if text:
            self.text += self.count(text)
            if not text.isascii():
                self.wide += len(text) - len(text.encode("ascii", "ignore"))

    def add_upper(self, text: str) -> None:
        """Text the API drops before billing, which the bound counts all the same."""
        if text:
            self.text_upper += self.count(text)
            if not text.isascii():
                self.wide_upper += len(text) - len(text.encode("ascii", "ignore"))

    def frame(self, tokens: tuple[int, int], times: int = 1) -> None:
        self.fixed += tokens[0] * times
        self.fixed_upper += tokens[1] * times


def count_anthropic(
    body: Mapping[str, Any], safety_margin: float | None, default_margin: float
) -> TokenEstimate:
    """Count an Anthropic Messages API body (see the module docstring) for ``count_request``;
    ``safety_margin`` (``default_margin`` when None) scales the bound as on other endpoints."""
    margin = default_margin if safety_margin is None else safety_margin
    if not 0 <= margin < math.inf:  # also rejects NaN
        raise ValueError(f"safety_margin must be a non-negative fraction, got {safety_margin!r}")
    if type(body) is not dict and not isinstance(body, Mapping):
        fail("", f"{ENDPOINT} body: expected a JSON object, got {json_type(body)}")
    model = body.get("model")
    if model is None:
        fail("model", f"required for {ENDPOINT}, missing")
    if not isinstance(model, str) or not model:
        fail("model", f"expected a non-empty string, got {json_type(model)}")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        fail("max_tokens", f"required for {ENDPOINT}, missing")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        fail("max_tokens", f"expected an integer, got {json_type(max_tokens)}")
    if max_tokens < 1:
        fail("max_tokens", f"expected a positive integer, got {max_tokens}")
    messages = body.get("messages")
    if messages is None:
        fail("messages", f"required for {ENDPOINT}, missing")
    messages = need_list(messages, "messages")

    found = _generations.get(model)
    if found is None:
        found = generation_for(model)
        if len(_generations) < 1024:  # model names come from callers: keep this small
            _generations[model] = found
    gen, known = found
    tally = Tally()
    tally.inexact(NO_TOKENIZER)
    if not known:
        tally.note(f"unknown model {model!r}: counted with the newer Claude tokenizer's factors")
    acc = _Acc(gen, _o200k(), tally)

    acc.frame(_REQUEST)
    system = body.get("system")
    if system is not None:
        acc.frame(_SYSTEM)
        _count_content(system, "system", acc, text_only=True)
    tools = body.get("tools")
    if tools is not None:
        _count_tools(need_list(tools, "tools"), body.get("tool_choice"), acc)
    elif body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"])
    kept = _thinking_kept(messages)
    for i, message in enumerate(messages):
        acc.keep_thinking = i == kept
        _count_message(message, at("messages", i), acc)
    _count_settings(body, max_tokens, acc)
    if not KNOWN_FIELDS.issuperset(body):
        _unknown_fields(body, KNOWN_FIELDS, "", acc)

    prompt = math.ceil(acc.text * gen.central + acc.wide * WIDE_CENTRAL) + acc.fixed + acc.images
    text, wide = acc.text + acc.text_upper, acc.wide + acc.wide_upper
    bound = math.ceil(text * gen.upper + wide * WIDE_UPPER) + acc.fixed_upper + acc.images_upper
    upper = _ceil6(bound * (1 + margin)) + _ceil6(margin * _FIXED_HEADROOM) + tally.allowance
    return TokenEstimate(ENDPOINT, model, prompt, upper, max_tokens, False, tuple(tally.reasons), acc.images)


# The same fixed headroom as the OpenAI endpoints (``count_request``): 8 tokens at the default 5%.
_FIXED_HEADROOM = 160


def _ceil6(value: float) -> int:
    """``ceil`` after rounding away float noise (100 * 1.05 is 105.00000000000001)."""
    return math.ceil(round(value, 6))


_counter: list[Callable[[str], int]] = []


def _o200k() -> Callable[[str], int]:
    """The cached o200k text count (``_cache.text_counter``), looked up once per process."""
    if not _counter:
        _counter.append(text_counter("o200k_base", get_encoding("o200k_base").encode_ordinary))
    return _counter[0]


# ``json.dumps`` with options builds an encoder per call: one, built once.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def _compact(value: Any) -> str:
    try:
        return _ENCODE(value)
    except (TypeError, ValueError):
        return str(value)


# --- messages and content ----------------------------------------------------------------------------

_ROLES = ("user", "assistant", "system")


def _count_message(message: object, path: str, acc: _Acc) -> None:
    message = need_mapping(message, path)
    role = message.get("role")
    if role is None:
        fail(at(path, "role"), "a message needs a role")
    if role not in _ROLES:
        fail(at(path, "role"), f"expected one of {', '.join(_ROLES)}, got {_compact(role)}")
    if "content" not in message:
        fail(at(path, "content"), "a message needs content")
    acc.frame(_MESSAGE)
    _count_content(message["content"], at(path, "content"), acc, text_only=role == "system")
    if not _MESSAGE_KEYS.issuperset(message):
        _unknown_fields(message, _MESSAGE_KEYS, path, acc)


def _count_content(content: object, path: str, acc: _Acc, *, text_only: bool = False) -> None:
    """A string, or a list of content blocks (only text blocks where ``text_only``)."""
    if isinstance(content, str):
        acc.add(content)
        return
    for i, block in enumerate(need_list(content, path)):
        block_path = at(path, i)
        block = need_mapping(block, block_path)
        kind = block.get("type")
        if text_only and kind != "text":
            fail(at(block_path, "type"), f"expected 'text', got {_compact(kind)}")
        _count_block(block, kind, block_path, acc)


def _count_block(block: Mapping[str, Any], kind: object, path: str, acc: _Acc) -> None:
    acc.frame(_BLOCK)
    if kind == "text":
        acc.add(need_str(block.get("text"), at(path, "text")))
        citations = block.get("citations")
        if citations:
            acc.add(_compact(citations))
    elif kind == "image":
        _count_image(block, path, acc)
    elif kind == "document":
        _count_document(block, path, acc)
    elif kind == "tool_use":
        acc.frame(_TOOL_USE)
        acc.add(need_str(block.get("id"), at(path, "id")))
        acc.add(need_str(block.get("name"), at(path, "name")))
        acc.add(_compact(block.get("input", {})))
    elif kind == "tool_result":
        acc.frame(_TOOL_RESULT)
        acc.add(need_str(block.get("tool_use_id"), at(path, "tool_use_id")))
        content = block.get("content")
        if content is not None:
            _count_content(content, at(path, "content"), acc)
    elif kind == "thinking":
        thinking = need_str(block.get("thinking"), at(path, "thinking"))
        if acc.keep_thinking:
            acc.add(thinking)
        else:  # earlier turns' thinking is stripped before billing; the bound counts it anyway
            acc.add_upper(thinking)
    elif kind == "redacted_thinking":
        data = need_str(block.get("data"), at(path, "data"))
        # Encrypted thinking: its text is hidden. About 4.5 bytes a token, at most 2 in the bound.
        size = len(data) * 3 // 4
        acc.fixed += math.ceil(size / 4.5)
        acc.fixed_upper += math.ceil(size / 2)
        acc.tally.inexact("redacted_thinking blocks are encrypted: counted from their size")
    elif kind == "search_result":
        acc.add(need_str(block.get("source"), at(path, "source")))
        acc.add(need_str(block.get("title"), at(path, "title")))
        _count_content(block.get("content", []), at(path, "content"), acc, text_only=True)
    elif kind == "tool_reference":
        name = need_str(block.get("tool_name"), at(path, "tool_name"))
        acc.add(name)
        acc.add(acc.tools.get(name, ""))  # loads the (deferred) definition
    elif isinstance(kind, str) and kind in _SERVER_BLOCKS:
        acc.add(_compact(block))
        acc.tally.inexact(f"{kind} blocks (server tool runs) are counted as their JSON text")
        return
    else:
        if kind is None:
            fail(at(path, "type"), "a content block needs a type")
        acc.add(_compact(block))
        _reserve(_compact(block), f"{path}: type {kind!r}", acc)
        return
    known = _BLOCK_KEYS[kind]
    if not known.issuperset(block):
        _unknown_fields(block, known, path, acc)


def _thinking_kept(messages: Sequence[Any]) -> int:
    """The index of the message whose thinking blocks stay in the prompt, or -1.

    The API strips thinking from earlier assistant turns; it keeps the last assistant turn's
    while a tool loop continues it (the next message starts with a tool result) or when it is
    the final (prefilled) message."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            if i == len(messages) - 1:
                return i
            following = messages[i + 1]
            content = following.get("content") if isinstance(following, Mapping) else None
            first = content[0] if isinstance(content, list | tuple) and content else None
            return i if isinstance(first, Mapping) and first.get("type") == "tool_result" else -1
    return -1


# --- images and documents ------------------------------------------------------------------------


def image_tokens(gen: Generation, width: int, height: int) -> tuple[int, int]:
    """(estimate, bound) tokens of one ``width`` x ``height`` image: Anthropic's documented
    ``width * height / 750`` after the resize, and the bound the larger of that and the 28-px
    patch count (``ceil(w / 28) * ceil(h / 28)``, the rule documented for current models)."""
    w, h = float(width), float(height)
    long_edge = max(w, h)
    if long_edge > gen.image_long_edge:
        scale = gen.image_long_edge / long_edge
        w, h = w * scale, h * scale
    area_max = gen.image_max_patches * 784.0
    if w * h > area_max:
        scale = math.sqrt(area_max / (w * h))
        w, h = w * scale, h * scale
    w, h = max(1, int(w)), max(1, int(h))
    central = math.ceil(w * h / 750)
    patches = math.ceil(w / 28) * math.ceil(h / 28)
    return central, max(central, patches)


def _count_image(block: Mapping[str, Any], path: str, acc: _Acc) -> None:
    source = need_mapping(block.get("source"), at(path, "source"))
    kind = source.get("type")
    acc.frame(_IMAGE)
    size: tuple[int, int] | None = None
    if kind == "base64":
        data = need_str(source.get("data"), at(at(path, "source"), "data"))
        size = _base64_image_size(data)
        if size is None:
            acc.tally.inexact(
                f"{path}: the image's size cannot be read from its data: reserved the largest image"
            )
    elif kind in ("url", "file"):
        acc.tally.inexact(
            f"{path}: an image by {kind} has no size in the body: "
            f"assumed {ASSUMED_REMOTE_SIZE[0]}x{ASSUMED_REMOTE_SIZE[1]}, reserved the largest image"
        )
    else:
        fail(at(at(path, "source"), "type"), f"expected 'base64', 'url' or 'file', got {_compact(kind)}")
    if size is None:
        central, _ = image_tokens(acc.gen, *ASSUMED_REMOTE_SIZE)
        upper = acc.gen.image_tokens_max
    else:
        central, upper = image_tokens(acc.gen, *size)
    acc.images += central
    acc.images_upper += upper


def _base64_image_size(data: str) -> tuple[int, int] | None:
    """Pixel size from base64 image data, decoding only as much as the header needs."""
    for chars in (4096, 65536, len(data)):
        chunk = data[: chars - chars % 4] if chars < len(data) else data
        try:
            raw = base64.b64decode(chunk + "=" * (-len(chunk) % 4))
        except (binascii.Error, ValueError):
            return None
        size = image_size(raw)
        if size is not None or chars >= len(data):
            return size
    return None


def _count_document(block: Mapping[str, Any], path: str, acc: _Acc) -> None:
    source_path = at(path, "source")
    source = need_mapping(block.get("source"), source_path)
    kind = source.get("type")
    acc.frame(_DOCUMENT)
    for key in ("title", "context"):
        value = block.get(key)
        if value is not None:
            acc.add(need_str(value, at(path, key)))
    if kind == "text":
        acc.add(need_str(source.get("data"), at(source_path, "data")))
    elif kind == "content":
        _count_content(source.get("content"), at(source_path, "content"), acc)
    elif kind == "base64":
        pages = _pdf_pages(need_str(source.get("data"), at(source_path, "data")))
        if pages is None:
            _unknown_pages(f"{path}: the PDF's page count cannot be read from its data", acc)
        else:
            acc.frame(PDF_PAGE, pages)
            acc.tally.note(f"{path}: a PDF of {pages} page(s): {PDF_PAGE[1]} tokens reserved per page")
    elif kind in ("url", "file"):
        _unknown_pages(f"{path}: a PDF by {kind} has no pages in the body", acc)
    else:
        fail(
            at(source_path, "type"),
            f"expected 'base64', 'text', 'content', 'url' or 'file', got {_compact(kind)}",
        )


def _unknown_pages(what: str, acc: _Acc) -> None:
    acc.fixed += PDF_PAGE[0]
    acc.tally.inexact(
        f"{what}: assumed 1 page, reserved {UNKNOWN_PDF_PAGES} pages",
        allowance=PDF_PAGE[1] * UNKNOWN_PDF_PAGES,
    )


_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_PAGE_COUNT = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b")


def _pdf_pages(data: str) -> int | None:
    """Pages of a base64 PDF, from its page objects (None when they sit in compressed streams)."""
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(b"%PDF"):
        return None
    pages = len(_PAGE.findall(raw))
    if not pages:
        counts = [int(a or b) for a, b in _PAGE_COUNT.findall(raw)]
        pages = max(counts, default=0)
    return min(pages, _MAX_PDF_PAGES) if pages else None


# --- tools and settings ---------------------------------------------------------------------------


def _tool_choice(choice: object) -> str:
    """The ``tool_choice`` mode (``auto`` when absent)."""
    if choice is None:
        return "auto"
    choice = need_mapping(choice, "tool_choice")
    kind = choice.get("type")
    if kind not in TOOL_PROMPT:
        fail("tool_choice.type", f"expected one of {', '.join(TOOL_PROMPT)}, got {_compact(kind)}")
    if kind == "tool":
        need_str(choice.get("name"), "tool_choice.name")
    return str(kind)


def _count_tools(tools: Sequence[Any], choice: object, acc: _Acc) -> None:
    mode = _tool_choice(choice)
    if isinstance(choice, Mapping) and not _TOOL_CHOICE_KEYS.issuperset(choice):
        _unknown_fields(choice, _TOOL_CHOICE_KEYS, "tool_choice", acc)
    if not tools:
        return
    acc.fixed += TOOL_PROMPT[mode]
    acc.fixed_upper += TOOL_PROMPT_UPPER
    for i, tool in enumerate(tools):
        path = at("tools", i)
        tool = need_mapping(tool, path)
        kind = tool.get("type")
        if kind is None or kind == "custom":
            name = tool.get("name")
            if name is None:
                fail(at(path, "name"), "a tool needs a name")
            name = need_str(name, at(path, "name"))
            if tool.get("input_schema") is None:
                fail(at(path, "input_schema"), "a custom tool needs an input_schema")
            need_mapping(tool["input_schema"], at(path, "input_schema"))
            rendered = _render_tool(tool)
            acc.tools[name] = rendered
            acc.add(rendered)
            acc.fixed += _FIRST_TOOL if i == 0 else _MORE_TOOLS
            acc.fixed_upper += _TOOL_UPPER
            if not _TOOL_KEYS.issuperset(tool):
                _unknown_fields(tool, _TOOL_KEYS, path, acc)
        elif isinstance(kind, str):
            _builtin_tool(tool, kind, path, acc)
        else:
            fail(at(path, "type"), f"expected a string, got {json_type(kind)}")


_RENDERED_KEYS = ("name", "description", "input_schema", "input_examples")
# Tool definitions are resent with every request of an agent: their JSON text, remembered by
# their ``marshal`` serialisation (equal data, equal bytes), a few hundred at most.
_rendered: dict[bytes, str] = {}


def _render_tool(tool: Mapping[str, Any]) -> str:
    """A custom tool as counted: compact JSON of its name, description, schema and examples."""
    try:
        key = marshal.dumps(tool, 2) if type(tool) is dict else None
    except ValueError:  # not plain data
        key = None
    rendered = _rendered.get(key) if key is not None else None
    if rendered is None:
        rendered = _compact({k: tool[k] for k in _RENDERED_KEYS if k in tool})
        if key is not None and len(key) < 65_536:
            if len(_rendered) >= 512:
                _rendered.clear()
            _rendered[key] = rendered
    return rendered


def _builtin_tool(tool: Mapping[str, Any], kind: str, path: str, acc: _Acc) -> None:
    for prefix, central, upper, server in _BUILTIN_TOOLS:
        if kind.startswith(prefix):
            acc.fixed += central
            what = (
                "runs on the server: its results are billed as input of this request"
                if server
                else ("is an Anthropic-defined tool: its definition is not in the body")
            )
            acc.tally.inexact(
                f"{path}: {kind} {what} (the upper bound reserves {upper} tokens)", allowance=upper
            )
            return
    acc.fixed += _UNKNOWN_TOOL[0]
    acc.tally.inexact(
        f"{path}: tool type {kind!r} is not known to the estimator "
        f"(the upper bound reserves {_UNKNOWN_TOOL[1]} tokens)",
        allowance=_UNKNOWN_TOOL[1],
    )


def _count_settings(body: Mapping[str, Any], max_tokens: int, acc: _Acc) -> None:
    thinking = body.get("thinking")
    if thinking is not None:
        thinking = need_mapping(thinking, "thinking")
        kind = thinking.get("type")
        if kind in ("enabled", "adaptive"):
            # Measured: enabled thinking added 28 tokens (claude-3-7-sonnet), adaptive none (claude-opus-5).
            acc.frame(_THINKING if kind == "enabled" else _ADAPTIVE_THINKING)
            acc.tally.note(f"thinking is billed as output, within max_tokens ({max_tokens})")
        budget = thinking.get("budget_tokens")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
            fail("thinking.budget_tokens", f"expected a non-negative integer, got {_compact(budget)}")
        if not _THINKING_KEYS.issuperset(thinking):
            _unknown_fields(thinking, _THINKING_KEYS, "thinking", acc)
    for key in ("output_config", "output_format"):
        config = body.get(key)
        if config is None:
            continue
        config = need_mapping(config, key)
        schema_format = config.get("format") if key == "output_config" else config
        if schema_format is not None:
            acc.frame(_OUTPUT_FORMAT)
            acc.add(_compact(need_mapping(schema_format, f"{key}.format" if key == "output_config" else key)))
        if key == "output_config" and not _OUTPUT_CONFIG_KEYS.issuperset(config):
            _unknown_fields(config, _OUTPUT_CONFIG_KEYS, key, acc)
    servers = body.get("mcp_servers")
    if servers:
        servers = need_list(servers, "mcp_servers")
        acc.fixed += _MCP_SERVER[0] * len(servers)
        acc.tally.inexact(
            f"mcp_servers: {len(servers)} MCP server(s) supply tools and results the body does not show "
            f"(the upper bound reserves {_MCP_SERVER[1]} tokens each)",
            allowance=_MCP_SERVER[1] * len(servers),
        )
    container = body.get("container")
    if isinstance(container, Mapping):
        skills = container.get("skills") or ()
        if skills:
            skills = need_list(skills, "container.skills")
            acc.fixed += _SKILL[0] * len(skills)
            acc.tally.inexact(
                f"container.skills: {len(skills)} skill(s) add instructions the body does not show "
                f"(the upper bound reserves {_SKILL[1]} tokens each)",
                allowance=_SKILL[1] * len(skills),
            )
    for key in ("context_management", "compaction"):
        if body.get(key) is not None:
            acc.tally.inexact(f"{key} may clear or summarise context server-side: counted as sent")


# --- unknown fields ------------------------------------------------------------------------------


def _unknown_fields(obj: Mapping[str, Any], known: frozenset[str], path: str, acc: _Acc) -> None:
    """Inexact for every non-null key of ``obj`` not in ``known``; the bound reserves its JSON."""
    for key, value in obj.items():
        if key in known or value is None:
            continue
        _reserve(f"{_compact(str(key))}:{_compact(value)}", at(path, str(key)), acc)


def _reserve(text: str, what: str, acc: _Acc) -> None:
    reserve = math.ceil(acc.count(text) * acc.gen.upper) + UNKNOWN_ALLOWANCE
    acc.tally.inexact(
        f"{what} is not known to the estimator: it may add context server-side "
        f"(the upper bound reserves {reserve} tokens for it)",
        allowance=reserve,
    )


# --- exact mode ----------------------------------------------------------------------------------

# The body fields ``messages.count_tokens`` accepts.
_COUNT_FIELDS = (
    "messages",
    "model",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "cache_control",
)


def messages_token_counter(client: Any, body: Mapping[str, Any]) -> Callable[[], Any] | None:
    """Exact mode: a function asking ``client.messages.count_tokens`` for the body's input
    tokens (free, neither metered nor billed), for ``plan_request(count_input_tokens=...)``.

    None when ``client`` has no such endpoint, or when the body holds what that endpoint
    rejects: server tools, MCP servers, images or documents by URL or file id. For an async
    client the function returns an awaitable.
    """
    count = getattr(getattr(client, "messages", None), "count_tokens", None)
    if not callable(count) or not _countable(body):
        return None
    arguments = {key: body[key] for key in _COUNT_FIELDS if body.get(key) is not None}

    def count_input() -> Any:
        with unmetered():
            return count(**arguments)

    return count_input


def _countable(body: Mapping[str, Any]) -> bool:
    if body.get("mcp_servers") or body.get("output_format") is not None:
        return False
    tools = body.get("tools") or ()
    if any(isinstance(tool, Mapping) and tool.get("type") not in (None, "custom") for tool in tools):
        return False
    return not _has_remote_source(body.get("messages") or ())


def _has_remote_source(value: object) -> bool:
    if isinstance(value, Mapping):
        if value.get("type") in ("image", "document"):
            source = value.get("source")
            if isinstance(source, Mapping) and source.get("type") in ("url", "file"):
                return True
        return any(
            _has_remote_source(item) for item in value.values() if isinstance(item, list | tuple | Mapping)
        )
    if isinstance(value, list | tuple):
        return any(_has_remote_source(item) for item in value)
    return False
