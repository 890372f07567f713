"""Embeddings and legacy completions: plain tokens of the input, with no message framing.

Both accept a string, a list of strings, a list of token ids or a list of token-id lists;
token ids are counted as given. Each input (or prompt) is billed on its own, so the total is
a plain sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from budgetguard._estimate._body import at, fail, json_type, need_list
from budgetguard._estimate._models import Profile
from budgetguard._estimate._result import Tally

__all__ = ["count_completions", "count_embeddings", "prompt_count"]


def count_embeddings(body: Mapping[str, Any], profile: Profile, tally: Tally) -> None:
    """Add the input tokens of an embeddings body to ``tally``."""
    if "input" not in body:
        fail("input", "required for embeddings, missing")
    tally.tokens += _text_or_tokens(body["input"], "input", profile)


def count_completions(body: Mapping[str, Any], profile: Profile, tally: Tally) -> None:
    """Add the prompt tokens of a legacy completions body to ``tally``."""
    # The API's default prompt is a lone <|endoftext|>: one token.
    prompt = body.get("prompt")
    tally.tokens += 1 if prompt is None else _text_or_tokens(prompt, "prompt", profile)
    suffix = body.get("suffix")
    if isinstance(suffix, str):
        tally.tokens += profile.count(suffix)
    elif suffix is not None:
        fail("suffix", f"expected a string, got {json_type(suffix)}")


def prompt_count(body: Mapping[str, Any]) -> int:
    """How many prompts a completions body holds (each gets its own ``n`` completions)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and not _is_token_id(prompt[0]):
        return len(prompt)
    return 1


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text_or_tokens(value: object, path: str, profile: Profile) -> int:
    if isinstance(value, str):
        return profile.count(value)
    items = need_list(value, path)
    if all(_is_token_id(v) for v in items):
        return len(items)
    total = 0
    for index, item in enumerate(items):
        ipath = at(path, index)
        if isinstance(item, str):
            total += profile.count(item)
        elif isinstance(item, list | tuple):
            if not all(_is_token_id(v) for v in item):
                fail(ipath, "expected an array of token ids (integers)")
            total += len(item)
        else:
            fail(ipath, f"expected a string or an array of token ids, got {json_type(item)}")
    return total
