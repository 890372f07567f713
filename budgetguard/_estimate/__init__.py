"""Pre-flight prompt-token counting: what a request body will be billed, before it is sent.

``count_request(endpoint, body)`` counts the prompt tokens of a JSON request body exactly as
it would be sent to ``chat.completions``, ``responses``, ``completions`` or ``embeddings``,
with tiktoken and the model's prompt format (message framing, tool definitions, images,
response formats). ``count_text(model, text)`` counts plain text (streamed output).

Counting is offline (the vocabularies come from the ``offline`` extra when installed) and
cached per model, so it is cheap enough to run on every API call.

An estimate is exact only when every field of the body is on the estimator's allowlist for
the endpoint (``_fields.py``: fields it counts, and fields known to add no input tokens) and
nothing in it hides context. Any other field, at the top level or inside an object that can
carry context (``reasoning``, ``text``, messages, items, content parts, tool definitions),
makes the estimate inexact, names the field, and widens the upper bound (``_unknown.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from budgetguard._errors import EstimateError
from budgetguard._estimate._anthropic import ENDPOINT as ANTHROPIC_MESSAGES
from budgetguard._estimate._anthropic import count_anthropic
from budgetguard._estimate._body import json_type, opt_int
from budgetguard._estimate._chat import count_chat
from budgetguard._estimate._fields import BODY_FIELDS
from budgetguard._estimate._legacy import count_completions, count_embeddings, prompt_count
from budgetguard._estimate._models import Profile, profile_for
from budgetguard._estimate._responses import count_responses
from budgetguard._estimate._result import Tally, TokenEstimate
from budgetguard._estimate._unknown import unknown_fields

__all__ = ["DEFAULT_SAFETY_MARGIN", "ENDPOINTS", "TokenEstimate", "count_request", "count_text"]

ENDPOINTS = ("chat.completions", "responses", "completions", "embeddings")

#: The safety margin ``m`` of the upper bound: ``ceil(prompt * (1 + m)) + ceil(m * 160)``.
#: Calibrated on real recordings: no self-contained request billed more than its upper bound.
DEFAULT_SAFETY_MARGIN = 0.05
# The margin also scales a fixed headroom (8 tokens at the default): the rules' residual error
# is a few tokens whatever the size, which a relative margin alone misses on small prompts.
_FIXED_HEADROOM = 160
# The legacy completions API writes 16 tokens when a request sets no max_tokens.
_COMPLETIONS_DEFAULT_MAX_TOKENS = 16

# Per endpoint: its counter, and the top-level fields it knows (one lookup per call).
_COUNTERS: dict[str, tuple[Callable[[Mapping[str, Any], Profile, Tally], None], frozenset[str]]] = {
    "chat.completions": (count_chat, BODY_FIELDS["chat.completions"].known),
    "responses": (count_responses, BODY_FIELDS["responses"].known),
    "completions": (count_completions, BODY_FIELDS["completions"].known),
    "embeddings": (count_embeddings, BODY_FIELDS["embeddings"].known),
}


def count_request(
    endpoint: str, body: Mapping[str, Any], *, safety_margin: float | None = None
) -> TokenEstimate:
    """Count the prompt tokens ``body`` will be billed on ``endpoint``.

    Raises ``EstimateError`` (naming the JSON path) when the body is malformed for the
    endpoint. Content the estimator does not know is counted on a best-effort basis and
    makes the estimate inexact rather than failing. So does any field, top-level or nested,
    missing from the endpoint's allowlist (``_fields.py``): the reason names it by JSON path
    and the upper bound reserves the field's compact JSON text counted as tokens plus a
    fixed allowance per field (``UNKNOWN_FIELD_ALLOWANCE``, 256); ``prompt_tokens`` assumes
    it adds nothing. A field set to ``null`` counts as absent.
    """
    found = _COUNTERS.get(endpoint)
    if found is None:
        if endpoint == ANTHROPIC_MESSAGES:  # an upper bound: Anthropic publishes no tokenizer
            return count_anthropic(body, safety_margin, DEFAULT_SAFETY_MARGIN)
        raise EstimateError(
            f"unknown endpoint {endpoint!r}: expected one of {', '.join(ENDPOINTS)}, {ANTHROPIC_MESSAGES}"
        )
    if type(body) is not dict and not isinstance(body, Mapping):  # dict first: the usual case
        raise EstimateError(f"{endpoint} body: expected a JSON object, got {json_type(body)}")
    counter, known = found
    model = body.get("model")
    if model is None:
        raise EstimateError(f"model: required for {endpoint}, missing")
    if not isinstance(model, str) or not model:
        raise EstimateError(f"model: expected a non-empty string, got {json_type(model)}")
    margin = DEFAULT_SAFETY_MARGIN if safety_margin is None else safety_margin
    if not 0 <= margin < math.inf:  # also rejects NaN
        raise ValueError(f"safety_margin must be a non-negative fraction, got {safety_margin!r}")

    profile = profile_for(model)
    tally = Tally()
    for assumption in profile.assumptions:
        tally.note(assumption)
    if not profile.known:
        tally.exact = False
    counter(body, profile, tally)
    if not known.issuperset(body):  # one set lookup per key (issuperset beats keys() <= here)
        unknown_fields(body, known, "", profile, tally)
    prompt = tally.tokens
    headroom = _HEADROOM.get(margin)
    if headroom is None:
        headroom = _ceil6(margin * _FIXED_HEADROOM)
        if len(_HEADROOM) < 64:  # margins come from callers: keep this small
            _HEADROOM[margin] = headroom
    upper = _ceil6(prompt * (1 + margin)) + headroom
    # Positional (in field order): keyword arguments cost more, and this runs on every call.
    return TokenEstimate(
        endpoint,
        model,
        prompt,  # prompt_tokens
        upper + tally.allowance,  # prompt_tokens_upper
        _output_cap(endpoint, body),  # max_output_tokens
        tally.exact,
        tuple(tally.reasons),
        tally.image_tokens,
        tally.audio,
    )


def _ceil6(value: float) -> int:
    """``ceil(round(value, 6))``: rounded first so float noise (100 * 1.05 = 105.00000000000001)
    cannot add a token. ``round`` formats the float in decimal (costly, and on every call), so
    only values within 1e-5 above a whole number, the only ones it can change, take it."""
    fraction = value - math.floor(value)
    if fraction == 0 or fraction > 1e-5:
        return math.ceil(value)
    return math.ceil(round(value, 6))


_HEADROOM: dict[float, int] = {}


def count_text(model: str, text: str) -> int:
    """Plain tokens of ``text`` in ``model``'s encoding (no message framing)."""
    return profile_for(model).count(text)


def _output_cap(endpoint: str, body: Mapping[str, Any]) -> int | None:
    """The most output tokens the request can be billed, from its own cap."""
    if endpoint == "chat.completions" and body.get("n") is None:
        # The usual chat request, one valid cap and one choice, read inline (every budgeted call
        # runs this); anything else takes the checks below, which name what is wrong.
        cap = body.get("max_completion_tokens")
        if cap is None:
            cap = body.get("max_tokens")
        if cap is None or (type(cap) is int and cap >= 0):
            return cap
    if endpoint == "embeddings":
        return 0
    if endpoint == "responses":
        return opt_int(body, "max_output_tokens", "")
    n = opt_int(body, "n", "") or 1
    if endpoint == "chat.completions":
        cap = opt_int(body, "max_completion_tokens", "")
        if cap is None:
            cap = opt_int(body, "max_tokens", "")
        return None if cap is None else cap * n
    cap = opt_int(body, "max_tokens", "")
    choices = max(n, opt_int(body, "best_of", "") or 1) * prompt_count(body)
    return (_COMPLETIONS_DEFAULT_MAX_TOKENS if cap is None else cap) * choices
