"""What the simulated model "generates" for one choice, and how many tokens that costs.

Completion tokens are tiktoken tokens (the model's own encoding) of the text plus those of the
tool-call arguments. An output cap truncates the generation token by token: text first, then
each call's arguments in order; calls the cap never reached are dropped. Streams send one
delta per token, grouped only where a token would split a UTF-8 character.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from budgetguard._tokenizer import encoding_name_for_model, get_encoding

from ._schema import minimal_instance
from ._script import Reply, ToolCall

if TYPE_CHECKING:
    import tiktoken

__all__ = ["GeneratedCall", "Generation", "OutputFormat", "generate", "model_encoding"]

# Every word of this paragraph is one token in cl100k_base and o200k_base, and any prefix of
# its repetition re-encodes to the same count, so "16 tokens of default text" is exact.
_PARAGRAPH = (
    "The simulator answers every request with this deterministic paragraph, so that tests can "
    "count its tokens exactly and compare them with the usage it reports for each call and each "
    "stream while budgets are checked before anything is sent."
)
_PARAGRAPH_TOKENS = 41
_ENCODINGS: dict[str, tiktoken.Encoding] = {}
_ENCODINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class OutputFormat:
    """The structured output a request asked for: ``json_object`` or a JSON schema."""

    schema: Mapping[str, Any] | None = None

    def default_text(self) -> str:
        if self.schema is None:
            return "{}"
        return json.dumps(minimal_instance(self.schema))


@dataclass(frozen=True)
class GeneratedCall:
    id: str
    name: str
    arguments: str
    pieces: tuple[str, ...]


@dataclass(frozen=True)
class Generation:
    """One choice: its text (``None`` for a tool-call-only answer), calls and token cost."""

    text: str | None
    pieces: tuple[str, ...]
    calls: tuple[GeneratedCall, ...]
    tokens: int
    truncated: bool


def generate(
    *,
    model: str,
    reply: Reply | None,
    cap: int | None,
    default_tokens: int,
    output_format: OutputFormat | None,
    new_call_id: Callable[[], str],
) -> Generation:
    """The generation for one choice of ``reply`` (or the default one) under output cap ``cap``."""
    encoding = model_encoding(model)
    budget = cap if cap is not None else -1  # -1: unlimited
    calls_in: Sequence[ToolCall] = ()
    text: str | None
    if reply is not None and (reply.content is not None or reply.tool_calls):
        text, calls_in = reply.content, reply.tool_calls
    elif output_format is not None:
        text = output_format.default_text()
    else:
        # The model "wants" default_tokens tokens; a smaller cap cuts it off like any other text.
        text = _default_text(encoding, default_tokens)

    used, truncated = 0, False
    pieces: tuple[str, ...] = ()
    if text is not None:
        tokens = _encode(encoding, text)
        if budget >= 0 and len(tokens) > budget:
            tokens, truncated = tokens[:budget], True
        pieces = _pieces(encoding, tokens)
        text, used = "".join(pieces), len(tokens)

    calls: list[GeneratedCall] = []
    for call in calls_in:
        if truncated:
            break  # the cap ended the generation before this call
        tokens = _encode(encoding, call.arguments_json)
        if budget >= 0 and used + len(tokens) > budget:
            tokens, truncated = tokens[: budget - used], True
        arg_pieces = _pieces(encoding, tokens)
        calls.append(GeneratedCall(call.id or new_call_id(), call.name, "".join(arg_pieces), arg_pieces))
        used += len(tokens)
    return Generation(text=text, pieces=pieces, calls=tuple(calls), tokens=used, truncated=truncated)


def model_encoding(model: str) -> tiktoken.Encoding:
    """The tiktoken encoding of ``model``, loaded at most once however many threads ask."""
    name, _ = encoding_name_for_model(model)
    encoding = _ENCODINGS.get(name)
    if encoding is None:
        # Hundreds of requests may arrive before the first load finishes; load the vocabulary
        # once under a lock instead of once per waiting thread.
        with _ENCODINGS_LOCK:
            encoding = _ENCODINGS.get(name)
            if encoding is None:
                encoding = _ENCODINGS[name] = get_encoding(name)
    return encoding


def _default_text(encoding: tiktoken.Encoding, n_tokens: int) -> str:
    repeats = n_tokens // _PARAGRAPH_TOKENS + 1
    tokens = _encode(encoding, " ".join([_PARAGRAPH] * repeats))[:n_tokens]
    return str(encoding.decode(tokens))


def _encode(encoding: tiktoken.Encoding, text: str) -> list[int]:
    # Text that happens to contain "<|endoftext|>" is ordinary text to a chat model.
    return list(encoding.encode(text, disallowed_special=()))


def _pieces(encoding: tiktoken.Encoding, tokens: list[int]) -> tuple[str, ...]:
    """One string per token, except that tokens splitting a UTF-8 character are joined."""
    pieces: list[str] = []
    pending = b""
    for token_bytes in encoding.decode_tokens_bytes(tokens):
        pending += token_bytes
        try:
            pieces.append(pending.decode("utf-8"))
        except UnicodeDecodeError:
            continue
        pending = b""
    if pending:  # the cap cut a character in half: keep what decodes
        tail = pending.decode("utf-8", errors="ignore")
        if tail:
            pieces.append(tail)
    return tuple(pieces)
