"""The estimate a request produces, and the tally the endpoint counters fill in."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Tally", "TokenEstimate"]


class TokenEstimate(NamedTuple):
    """Prompt tokens a request will be billed for, counted from its body before it is sent.

    ``prompt_tokens`` is the best estimate of the billed prompt (input) tokens;
    ``prompt_tokens_upper`` applies the safety margin plus a worst-case allowance for parts
    the body does not pin down (remote images of unknown size, built-in tools, fields the
    estimator does not know), and is what budgets reserve. ``max_output_tokens`` is the
    request's own output cap as billed (times ``n``/``best_of``), 0 for embeddings, ``None``
    when the request sets none. ``exact`` is True only when every field of the body is on
    the estimator's allowlist (``_fields.py``) and none hides context; it is False when the
    body hides context the server adds (``previous_response_id``, conversations, files by
    id, built-in tools, audio, encrypted reasoning, unknown models) or carries a field the
    estimator does not know (named by JSON path); ``reasons`` says why, and lists
    assumptions made. ``image_tokens`` is the part of
    ``prompt_tokens`` due to images; ``audio`` says whether the prompt holds audio input
    (priced at audio rates: the worst case reserves at them).

    A named tuple: every budgeted call makes one, and it costs a fraction of a frozen dataclass.
    """

    endpoint: str
    model: str
    prompt_tokens: int
    prompt_tokens_upper: int
    max_output_tokens: int | None
    exact: bool
    reasons: tuple[str, ...]
    image_tokens: int = 0
    audio: bool = False


class Tally:
    """Mutable accumulator the endpoint counters add to; frozen into a ``TokenEstimate``."""

    __slots__ = ("allowance", "audio", "exact", "image_tokens", "reasons", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.image_tokens = 0
        self.audio = False  # audio input seen (its tokens are priced at audio rates)
        self.exact = True
        self.reasons: list[str] = []
        #: Extra tokens only the upper bound reserves (worst case of what is unknown).
        self.allowance = 0

    def inexact(self, reason: str, allowance: int = 0) -> None:
        """The server adds context the body does not show: say why, widen the upper bound."""
        self.exact = False
        self.allowance += allowance
        self.note(reason)

    def note(self, reason: str) -> None:
        """Record an assumption (or why not exact) once."""
        if reason not in self.reasons:
            self.reasons.append(reason)
